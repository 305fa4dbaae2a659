//! The paused leader (ANCHORS, "where they break" 8) through the real API server: two operator
//! processes run the chart's ServiceAccount against a three-instance PostgreSQL cluster whose
//! pods run real instance managers. The leader is SIGSTOPped past its Lease; the standby takes
//! the Lease, claims the HA state at a new epoch and fails the primary over when it is killed;
//! then the old leader is SIGCONTed. It must touch no instance, write nothing (its HA state
//! writes would be refused by compare-and-swap, its reconcile refuses to write without the
//! Lease), and step down; the new leader's failover stays the only one.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use shanraq_api::ShanraqCluster;
use shanraq_api::status::PostgresStatus;
use shanraq_ha::driver::state_store::{Stored, decode};
use shanraq_ha::postgres::HaState;

use super::failover::{
    CLUSTER, LEDGER, connect, count_rows, healthy_primary, insert_rows, postgres_status,
    wait_rw_endpoint,
};
use super::operator::{OperatorOptions, OperatorProcess};
use super::pods::PodHost;
use super::{
    LONG, SHORT, TestNamespace, apply_cluster, client, manifest, pods_run_locally, wait_every,
    wait_for,
};

/// The Lease duration of `shanraq operator`, plus a standby's look period: the longest a
/// silent holder keeps the Lease.
const HANDOVER_BOUND: Duration = Duration::from_secs(15 + 5);
const FAST: Duration = Duration::from_millis(100);

fn claim(postgres: &PostgresStatus) -> Option<Stored<HaState>> {
    decode(postgres.ha_state.as_deref()?).ok()
}

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases.get(name).await.ok()?.spec?.holder_identity
}

/// Events about the cluster reported by `instance` at or after `since`.
async fn events_from(
    client: &kube::Client,
    namespace: &str,
    instance: &str,
    since: jiff::Timestamp,
) -> Vec<String> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), namespace);
    let events = api
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    events
        .iter()
        .filter(|e| e.reporting_instance.as_deref() == Some(instance))
        .filter(|e| {
            let at = e
                .series
                .as_ref()
                .map(|s| s.last_observed_time.0)
                .or_else(|| e.event_time.as_ref().map(|t| t.0));
            at.is_some_and(|at| at >= since)
        })
        .map(|e| format!("{:?}: {:?}", e.reason, e.note))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_paused_past_its_lease_wakes_touches_nothing_and_steps_down() {
    let Some(client) = client().await else { return };
    if !pods_run_locally() {
        return;
    }
    let namespace = TestNamespace::create(&client, "paused").await;
    let ns = namespace.name.clone();
    let lease = format!("shanraq-{ns}");
    let leases: Api<Lease> = Api::namespaced(client.clone(), super::OPERATOR_NAMESPACE);
    let host = PodHost::start(&client, &ns);
    let options = |identity| OperatorOptions {
        namespace: &ns,
        lease: &lease,
        identity,
        ha: true,
    };
    let a = OperatorProcess::start(&client, options("operator-a")).await;
    wait_for("operator-a to hold the Lease", SHORT, || async {
        (holder(&leases, &lease).await.as_deref() == Some("operator-a")).then_some(())
    })
    .await;
    let b = OperatorProcess::start(&client, options("operator-b")).await;

    let applied = apply_cluster(&client, &ns, &manifest(LEDGER)).await;
    let database = applied.spec.postgres.bootstrap.database.clone();
    host.run_postgres(CLUSTER, 3).await;
    let clusters: Api<ShanraqCluster> = Api::namespaced(client.clone(), &ns);
    let healthy = wait_for("3 instances with a healthy primary", LONG, || {
        healthy_primary(&clusters, 3)
    })
    .await;
    let first = healthy.current_primary.clone().expect("a primary");
    let a_claim = claim(&healthy).expect("the HA state");
    assert_eq!(a_claim.state.owner.as_deref(), Some("operator-a"));
    let first_ip = host.ip(&first).to_string();
    wait_rw_endpoint(&client, &ns, &first_ip, SHORT).await;
    let mut connection = connect(&client, &ns, &database, &first_ip).await;
    insert_rows(&mut connection, 0, 100).await;
    drop(connection);

    // The leader stops dead, holding the Lease.
    let paused_at = Instant::now();
    a.pause();
    let took = wait_every(
        "operator-b to take the Lease",
        HANDOVER_BOUND + SHORT,
        FAST,
        || async {
            (holder(&leases, &lease).await.as_deref() == Some("operator-b"))
                .then(|| paused_at.elapsed())
        },
    )
    .await;
    println!(
        "operator-b took the Lease {} ms after operator-a was paused",
        took.as_millis()
    );
    let b_claim = wait_every("operator-b to claim the HA state", LONG, FAST, || async {
        let postgres = healthy_primary(&clusters, 3).await?;
        let stored = claim(&postgres)?;
        (stored.state.owner.as_deref() == Some("operator-b")).then_some(stored)
    })
    .await;
    assert_eq!(
        b_claim.state.epoch,
        a_claim.state.epoch + 1,
        "a new leader claims the next epoch"
    );

    host.kill(&first);
    let failed_over = wait_every("operator-b's failover", LONG, FAST, || async {
        let postgres = postgres_status(&clusters).await?;
        let record = postgres.last_failover.clone()?;
        (record.from == first
            && record.kind == "failover"
            && postgres.phase.as_deref() == Some("Healthy"))
        .then_some(postgres)
    })
    .await;
    let second = failed_over.current_primary.clone().expect("a primary");
    let b_failover = claim(&failed_over).expect("the HA state");
    assert_eq!(b_failover.state.owner.as_deref(), Some("operator-b"));
    println!(
        "operator-b failed {first} over to {second} at epoch {} (RTO {:?} ms)",
        b_failover.state.epoch,
        failed_over.last_failover.as_ref().and_then(|r| r.rto_ms)
    );

    // The old leader wakes with its stale view.
    let woke = jiff::Timestamp::now();
    let a_log_before = a.log().len();
    a.resume();
    wait_for("operator-a to step down", SHORT, || async {
        let log = a.log();
        log.get(a_log_before..)
            .is_some_and(|after| after.contains("leadership lost"))
            .then_some(())
    })
    .await;
    // operator-b keeps working: the old primary comes back and rejoins under it.
    host.restart(&first).await;
    let settled = wait_for("3 ready instances under operator-b", LONG, || {
        healthy_primary(&clusters, 3)
    })
    .await;
    let after_wake = a.log().get(a_log_before..).unwrap_or_default().to_owned();
    println!("operator-a after SIGCONT:\n{after_wake}");
    assert!(
        !after_wake.contains("command done") && !after_wake.contains("command failed"),
        "the stale operator sent commands:\n{after_wake}"
    );
    let refused = host.all_logs().matches("refused a command").count();
    assert_eq!(
        refused, 0,
        "no command from a stale engine even reached an instance"
    );
    let settled_claim = claim(&settled).expect("the HA state");
    assert_eq!(settled_claim.state.owner.as_deref(), Some("operator-b"));
    assert_eq!(
        settled_claim.state.epoch, b_failover.state.epoch,
        "no epoch after operator-b's failover"
    );
    assert_eq!(
        settled.last_failover.as_ref().map(|r| (&r.from, &r.to)),
        failed_over.last_failover.as_ref().map(|r| (&r.from, &r.to)),
        "no second failover"
    );
    assert_eq!(settled.current_primary.as_deref(), Some(second.as_str()));
    let stale_events = events_from(&client, &ns, "operator-a", woke).await;
    assert!(
        stale_events.is_empty(),
        "operator-a published after it woke: {stale_events:?}"
    );
    assert_eq!(
        holder(&leases, &lease).await.as_deref(),
        Some("operator-b"),
        "operator-a did not take the Lease back"
    );

    let second_ip = host.ip(&second).to_string();
    wait_rw_endpoint(&client, &ns, &second_ip, SHORT).await;
    let mut connection = connect(&client, &ns, &database, &second_ip).await;
    assert_eq!(count_rows(&mut connection).await, 100, "no row lost");
    drop(connection);
    a.stop().await;
    b.stop().await;
    drop(host);
}
