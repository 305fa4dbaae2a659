//! Two operator processes with leader election, as two replicas of the chart's Deployment: only
//! the Lease holder reconciles (every Event on the cluster comes from it, the standby never
//! starts its controllers), and SIGKILL of the holder hands over within the Lease duration
//! (plus the standby's retry period), after which the new holder reconciles a changed spec.
//! The holder's `/readyz` answers 200, as the chart's readiness probe needs.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use shanraq_api::ShanraqCluster;

use super::operator::{OperatorOptions, OperatorProcess};
use super::{
    OPERATOR_NAMESPACE, SHORT, TestNamespace, apply_cluster, client, manifest, wait_every, wait_for,
};

/// `LEASE_DURATION_SECONDS` of `shanraq operator`, and the retry period of a standby
/// (`LEASE_GRACE_SECONDS`): the longest a crashed holder can keep the Lease.
const HANDOVER_BOUND: Duration = Duration::from_secs(15 + 5);

const CLUSTER: &str = "apiVersion: shanraq.org/v1alpha1
kind: ShanraqCluster
metadata:
  name: leases
spec:
  redis:
    enabled: false
  kafka:
    enabled: false
";

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases.get(name).await.ok()?.spec?.holder_identity
}

async fn observed(clusters: &Api<ShanraqCluster>) -> Option<ShanraqCluster> {
    let cluster = clusters.get("leases").await.ok()?;
    (cluster.status.as_ref()?.observed_generation == cluster.metadata.generation).then_some(cluster)
}

/// The `reportingInstance` of every Event about the cluster.
async fn reporters(client: &kube::Client, namespace: &str) -> Vec<String> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), namespace);
    let events = api
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    events
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("leases"))
        .filter_map(|e| e.reporting_instance.clone())
        .collect()
}

#[tokio::test]
async fn only_the_lease_holder_acts_and_a_killed_holder_hands_over() {
    let Some(client) = client().await else { return };
    let namespace = TestNamespace::create(&client, "leader").await;
    let ns = namespace.name.clone();
    let lease = format!("shanraq-{ns}");
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let options = |identity| OperatorOptions {
        namespace: &ns,
        lease: &lease,
        identity,
        ha: false,
    };
    let mut first = OperatorProcess::start(&client, options("operator-a")).await;
    wait_for("operator-a to hold the Lease", SHORT, || async {
        (holder(&leases, &lease).await.as_deref() == Some("operator-a")).then_some(())
    })
    .await;
    wait_for(
        "the Lease holder's /readyz to answer 200",
        SHORT,
        || async { first.is_ready().await.then_some(()) },
    )
    .await;
    let second = OperatorProcess::start(&client, options("operator-b")).await;

    let clusters: Api<ShanraqCluster> = Api::namespaced(client.clone(), &ns);
    apply_cluster(&client, &ns, &manifest(CLUSTER)).await;
    wait_for("the holder to reconcile the cluster", SHORT, || {
        observed(&clusters)
    })
    .await;
    let seen = wait_for("Events about the cluster", SHORT, || async {
        let seen = reporters(&client, &ns).await;
        (!seen.is_empty()).then_some(seen)
    })
    .await;
    assert!(
        seen.iter().all(|r| r == "operator-a"),
        "only the Lease holder acts; Events came from {seen:?}"
    );
    assert_eq!(holder(&leases, &lease).await.as_deref(), Some("operator-a"));
    assert!(
        !second.log().contains("leader: starting controllers"),
        "the standby started its controllers while operator-a held the Lease:\n{}",
        second.log()
    );

    let killed_at = Instant::now();
    first.kill();
    let took = wait_every(
        "operator-b to take the Lease",
        HANDOVER_BOUND + SHORT,
        Duration::from_millis(100),
        || async {
            (holder(&leases, &lease).await.as_deref() == Some("operator-b"))
                .then(|| killed_at.elapsed())
        },
    )
    .await;
    println!(
        "Lease handed over {} ms after SIGKILL of the holder",
        took.as_millis()
    );
    assert!(
        took <= HANDOVER_BOUND,
        "the handover took {took:?}, more than the Lease duration and retry period ({HANDOVER_BOUND:?})"
    );

    let change = json!({"spec": {"objectives": {"rto": "45s"}}});
    clusters
        .patch("leases", &PatchParams::default(), &Patch::Merge(&change))
        .await
        .expect("spec changed");
    let after = wait_for("the new holder to reconcile the change", SHORT, || {
        observed(&clusters)
    })
    .await;
    wait_for("the new holder's /readyz to answer 200", SHORT, || async {
        second.is_ready().await.then_some(())
    })
    .await;
    assert_eq!(after.spec.objectives.rto.as_std(), Duration::from_secs(45));
    first.assert_no_forbidden();
    second.stop().await;
}
