//! PostgreSQL high availability proven through the API alone: real instance managers run the
//! rendered pods (`pods.rs`), the operator process acts as the chart's ServiceAccount, and the
//! test looks only at what a user sees: conditions, `kubectl wait`, role labels, the `-rw`
//! Service's EndpointSlice (maintained by the real kube-controller-manager), the failover record
//! and Events. Rows written before each move are read back after it.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use shanraq_api::ShanraqCluster;
use shanraq_api::conditions::{READY, RECONCILING, RTO_MET};
use shanraq_api::names::{ANNOTATION_SWITCHOVER, LABEL_ROLE, ROLE_PRIMARY, ROLE_REPLICA};
use shanraq_api::status::PostgresStatus;
use sqlx::Connection;

use super::operator::{OperatorOptions, OperatorProcess};
use super::pods::PodHost;
use super::{
    LONG, SHORT, TestNamespace, apply_cluster, client, condition, endpoint_ips, event_reasons,
    manifest, pods_run_locally, ready_now, repo_root, wait_every, wait_for,
};

pub(super) const CLUSTER: &str = "ledger";
/// PostgreSQL alone (three instances, one synchronous standby), so that every pod that matters
/// runs a real process; the failover timings are the defaults a user gets.
pub(super) const LEDGER: &str = "apiVersion: shanraq.org/v1alpha1
kind: ShanraqCluster
metadata:
  name: ledger
spec:
  postgres:
    instances: 3
    synchronous:
      number: 1
  redis:
    enabled: false
  kafka:
    enabled: false
  haproxy:
    enabled: false
";
const FAST: Duration = Duration::from_millis(50);

pub(super) async fn postgres_status(clusters: &Api<ShanraqCluster>) -> Option<PostgresStatus> {
    clusters.get(CLUSTER).await.ok()?.status?.postgres
}

/// A settled engine and `ready` instances serving as the engine's last probe round saw them (a
/// primary out of recovery, replicas streaming), not merely pods kwok marks Ready.
pub(super) async fn healthy_primary(
    clusters: &Api<ShanraqCluster>,
    ready: usize,
) -> Option<PostgresStatus> {
    let postgres = postgres_status(clusters).await?;
    let serving = postgres.instances.iter().filter(|i| i.ready).count();
    (postgres.phase.as_deref() == Some("Healthy") && serving == ready).then_some(postgres)
}

/// The pods carrying `shanraq.org/role=primary`.
async fn labelled_primaries(client: &Client, namespace: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&kube::api::ListParams::default().labels(&format!("{LABEL_ROLE}={ROLE_PRIMARY}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.iter().map(ResourceExt::name_any).collect()
}

/// A connection to the application database on `ip`, with the credentials of the app Secret.
pub(super) async fn connect(
    client: &Client,
    namespace: &str,
    database: &str,
    ip: &str,
) -> sqlx::PgConnection {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .get(&format!("{CLUSTER}-pg-app"))
        .await
        .expect("the app Secret");
    let value = |key: &str| {
        let data = secret.data.as_ref().expect("Secret data");
        String::from_utf8(data[key].0.clone()).expect("UTF-8")
    };
    let options = sqlx::postgres::PgConnectOptions::new()
        .host(ip)
        .port(5432)
        .database(database)
        .username(&value("username"))
        .password(&value("password"));
    let deadline = Instant::now() + SHORT;
    loop {
        match sqlx::PgConnection::connect_with(&options).await {
            Ok(connection) => return connection,
            Err(error) => {
                assert!(Instant::now() < deadline, "cannot connect to {ip}: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

pub(super) async fn insert_rows(connection: &mut sqlx::PgConnection, from: i64, to: i64) {
    sqlx::query("CREATE TABLE IF NOT EXISTS ledger (id bigint PRIMARY KEY)")
        .execute(&mut *connection)
        .await
        .expect("table");
    for id in from..to {
        sqlx::query("INSERT INTO ledger (id) VALUES ($1)")
            .bind(id)
            .execute(&mut *connection)
            .await
            .expect("a committed row");
    }
}

pub(super) async fn count_rows(connection: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ledger")
        .fetch_one(&mut *connection)
        .await
        .expect("count")
}

/// Waits until the `-rw` EndpointSlice names exactly `ip`; returns when it did.
pub(super) async fn wait_rw_endpoint(
    client: &Client,
    namespace: &str,
    ip: &str,
    timeout: Duration,
) -> Instant {
    wait_every(&format!("-rw to select {ip} alone"), timeout, FAST, || {
        let client = client.clone();
        async move {
            (endpoint_ips(&client, namespace, &format!("{CLUSTER}-pg-rw")).await
                == vec![ip.to_owned()])
            .then(Instant::now)
        }
    })
    .await
}

fn kubectl(args: &[&str]) -> std::process::Output {
    std::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", super::kubeconfig_path().expect("kubeconfig"))
        .output()
        .expect("kubectl is installed (scripts/install-deps)")
}

/// `kubectl shanraq ARGS...` in `namespace`, through the plugin's own code; its output.
async fn plugin(client: &Client, namespace: &str, args: &[&str]) -> String {
    use clap::Parser;
    let cli = kubectl_shanraq::cli::Cli::try_parse_from(
        std::iter::once("kubectl-shanraq").chain(args.iter().copied()),
    )
    .expect("plugin arguments");
    let mut out = Vec::new();
    let mut input = std::io::Cursor::new(Vec::new());
    if let Err(error) =
        kubectl_shanraq::run(client, namespace, &cli.command, &mut input, &mut out).await
    {
        panic!(
            "kubectl shanraq {}: {error}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out)
        );
    }
    String::from_utf8(out).expect("UTF-8 output")
}

/// The Argo CD health status of the live object, from the shipped `health.lua`.
fn argocd_health(cluster: &ShanraqCluster) -> String {
    let script = repo_root().join("deploy/argocd/shanraq.org/ShanraqCluster/health.lua");
    let object = serde_json::to_value(cluster).expect("JSON");
    shanraq_testkit::lua::argocd_health(&script, &object)
        .expect("health.lua runs")
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_fails_over_switches_over_and_resumes_through_the_api() {
    let Some(client) = client().await else { return };
    if !pods_run_locally() {
        return;
    }
    let namespace = TestNamespace::create(&client, "failover").await;
    let ns = namespace.name.clone();
    let lease = format!("shanraq-{ns}");
    let host = PodHost::start(&client, &ns);
    let mut operator = OperatorProcess::start(
        &client,
        OperatorOptions {
            namespace: &ns,
            lease: &lease,
            identity: "operator-0",
            ha: true,
        },
    )
    .await;
    let applied = apply_cluster(&client, &ns, &manifest(LEDGER)).await;
    let database = applied.spec.postgres.bootstrap.database.clone();
    let rto_target = applied.spec.objectives.rto.as_std();
    host.run_postgres(CLUSTER, 3).await;
    let clusters: Api<ShanraqCluster> = Api::namespaced(client.clone(), &ns);

    // Ready, as a user waits for it.
    let first = wait_for("3 instances with a healthy primary", LONG, || {
        healthy_primary(&clusters, 3)
    })
    .await
    .current_primary
    .expect("a primary");
    let wait = kubectl(&[
        "wait",
        "--for=condition=Ready",
        &format!("shanraqcluster/{CLUSTER}"),
        "-n",
        &ns,
        "--timeout=120s",
    ]);
    if !wait.status.success() {
        let conditions = clusters
            .get(CLUSTER)
            .await
            .ok()
            .and_then(|c| c.status)
            .map(|s| serde_json::to_string_pretty(&s.conditions).unwrap_or_default());
        panic!(
            "kubectl wait: {}{}\nconditions: {}",
            String::from_utf8_lossy(&wait.stdout),
            String::from_utf8_lossy(&wait.stderr),
            conditions.unwrap_or_default()
        );
    }
    let first_ip = host.ip(&first).to_string();
    wait_rw_endpoint(&client, &ns, &first_ip, SHORT).await;
    let status = plugin(&client, &ns, &["status", CLUSTER]).await;
    println!("kubectl shanraq status {CLUSTER}:\n{status}");
    assert!(status.contains(&format!("primary {first}")), "{status}");
    assert_eq!(labelled_primaries(&client, &ns).await, vec![first.clone()]);
    let mut connection = connect(&client, &ns, &database, &first_ip).await;
    insert_rows(&mut connection, 0, 100).await;
    drop(connection);

    // SIGKILL of the primary's instance: the operator fails over on its own.
    let killed_at = Instant::now();
    host.kill(&first);
    let failed_over = wait_every("a new healthy primary", LONG, FAST, || async {
        let postgres = postgres_status(&clusters).await?;
        let record = postgres.last_failover.clone()?;
        (record.from == first
            && record.kind == "failover"
            && postgres.phase.as_deref() == Some("Healthy"))
        .then_some(postgres)
    })
    .await;
    let second = failed_over.current_primary.clone().expect("a primary");
    assert_ne!(second, first);
    let second_ip = host.ip(&second).to_string();
    let routed_at = wait_rw_endpoint(&client, &ns, &second_ip, SHORT).await;
    let to_endpoint = routed_at - killed_at;
    let record = failed_over.last_failover.clone().expect("recorded");
    let rto_ms = record.rto_ms.expect("a measured RTO");
    println!(
        "failover {first} -> {second}: RTO {rto_ms} ms in status.postgres.lastFailover, {} ms from SIGKILL to the -rw EndpointSlice",
        to_endpoint.as_millis()
    );
    assert!(
        Duration::from_millis(u64::try_from(rto_ms).expect("positive")) <= rto_target,
        "RTO {rto_ms} ms exceeds the objective {rto_target:?}"
    );
    assert_eq!(
        record.lost_bytes,
        Some(0),
        "synchronous replication loses nothing"
    );
    assert!(failed_over.epoch >= 2, "the failover bumped the epoch");
    wait_for("the role labels to follow", SHORT, || async {
        (labelled_primaries(&client, &ns).await == vec![second.clone()]).then_some(())
    })
    .await;
    let measured = format!(
        "last failover {}",
        shanraq_ha::objectives::human(Duration::from_millis(
            u64::try_from(rto_ms).expect("positive")
        ))
    );
    let rto = wait_for("RTOMet with the measured value", SHORT, || async {
        let cluster = clusters.get(CLUSTER).await.ok()?;
        condition(&cluster, RTO_MET).filter(|c| c.status == "True" && c.message.contains(&measured))
    })
    .await;
    println!("RTOMet: {}", rto.message);
    let reasons = wait_for(
        "FailoverStarted and FailoverCompleted Events",
        SHORT,
        || async {
            let reasons = event_reasons(&client, &ns, CLUSTER).await;
            let has = |r: &str| reasons.iter().any(|(reason, _)| reason == r);
            (has("FailoverStarted") && has("FailoverCompleted")).then_some(reasons)
        },
    )
    .await;
    let completed = reasons
        .iter()
        .find(|(reason, _)| reason == "FailoverCompleted")
        .expect("FailoverCompleted");
    assert!(completed.1.contains(&second), "{completed:?}");
    let mut connection = connect(&client, &ns, &database, &second_ip).await;
    assert_eq!(
        count_rows(&mut connection).await,
        100,
        "every committed row survived the failover"
    );
    insert_rows(&mut connection, 100, 200).await;
    drop(connection);

    // The node comes back: the old primary rejoins as a replica.
    host.restart(&first).await;
    wait_for("the old primary to rejoin as a replica", LONG, || {
        healthy_primary(&clusters, 3)
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let rejoined = pods.get(&first).await.expect("pod");
    assert_eq!(
        rejoined.labels().get(LABEL_ROLE).map(String::as_str),
        Some(ROLE_REPLICA)
    );

    // A switchover by annotation (set by `kubectl shanraq switchover`, which waits for the
    // operator's answer) moves the primary without losing a row.
    let answer = plugin(&client, &ns, &["switchover", CLUSTER]).await;
    println!("kubectl shanraq switchover {CLUSTER}: {answer}");
    let switched = wait_every("the switchover to complete", LONG, FAST, || async {
        let cluster = clusters.get(CLUSTER).await.ok()?;
        let annotated = cluster
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(ANNOTATION_SWITCHOVER));
        let postgres = cluster.status?.postgres?;
        let last = postgres.last_failover.clone()?;
        (!annotated
            && last.kind == "switchover"
            && last.from == second
            && postgres.phase.as_deref() == Some("Healthy"))
        .then_some(postgres)
    })
    .await;
    let third = switched.current_primary.clone().expect("a primary");
    assert_ne!(third, second);
    assert_eq!(
        switched.last_failover.as_ref().and_then(|l| l.lost_bytes),
        Some(0)
    );
    let third_ip = host.ip(&third).to_string();
    wait_rw_endpoint(&client, &ns, &third_ip, SHORT).await;
    let mut connection = connect(&client, &ns, &database, &third_ip).await;
    assert_eq!(
        count_rows(&mut connection).await,
        200,
        "the switchover lost no row"
    );
    drop(connection);
    wait_for("3 ready instances after the switchover", LONG, || {
        healthy_primary(&clusters, 3)
    })
    .await;

    // The operator dies mid-failover: the replicas' managers hang so that fencing cannot
    // finish, the primary dies, and the operator is SIGKILLed once the status says Fencing.
    // Its container restarts in the same pod (the same identity, so the same owner of the
    // epoch it claimed): it resumes the failover at that epoch.
    let replicas: Vec<String> = (0..3)
        .map(|i| format!("{CLUSTER}-pg-{i}"))
        .filter(|pod| *pod != third)
        .collect();
    for replica in &replicas {
        host.freeze(replica, true);
    }
    host.kill(&third);
    let fencing = wait_every(
        "the failover to persist the Fencing phase",
        LONG,
        FAST,
        || async {
            let postgres = postgres_status(&clusters).await?;
            (postgres.phase.as_deref() == Some("Fencing")).then_some(postgres)
        },
    )
    .await;
    operator.kill();
    operator.assert_no_forbidden();
    for replica in &replicas {
        host.freeze(replica, false);
    }
    let operator = OperatorProcess::start(
        &client,
        OperatorOptions {
            namespace: &ns,
            lease: &lease,
            identity: "operator-0",
            ha: true,
        },
    )
    .await;
    let resumed = wait_every("the resumed failover to complete", LONG, FAST, || async {
        let postgres = postgres_status(&clusters).await?;
        let record = postgres.last_failover.clone()?;
        (record.from == third
            && record.kind == "failover"
            && postgres.phase.as_deref() == Some("Healthy"))
        .then_some(postgres)
    })
    .await;
    assert_eq!(
        resumed.epoch, fencing.epoch,
        "the new operator resumed the failover with the epoch the status held"
    );
    let fourth = resumed.current_primary.clone().expect("a primary");
    assert!(replicas.contains(&fourth), "{fourth} was a replica");
    let fourth_ip = host.ip(&fourth).to_string();
    wait_rw_endpoint(&client, &ns, &fourth_ip, SHORT).await;
    let mut connection = connect(&client, &ns, &database, &fourth_ip).await;
    assert_eq!(
        count_rows(&mut connection).await,
        200,
        "the resumed failover lost no row"
    );
    drop(connection);
    host.restart(&third).await;
    wait_for("3 ready instances after the resumed failover", LONG, || {
        healthy_primary(&clusters, 3)
    })
    .await;

    // kstatus after a changed spec: Reconciling=True, then Ready=True for the new generation,
    // and Argo CD's health script says Progressing, then Healthy.
    let before = clusters.get(CLUSTER).await.expect("cluster");
    assert_eq!(argocd_health(&before), "Healthy");
    let change = json!({"spec": {"postgres": {"parameters": {"work_mem": "8MB"}}}});
    clusters
        .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&change))
        .await
        .expect("spec changed");
    let progressing = wait_every(
        "Reconciling=True for the new generation",
        LONG,
        FAST,
        || async {
            let cluster = clusters.get(CLUSTER).await.ok()?;
            let reconciling = condition(&cluster, RECONCILING)?;
            (reconciling.status == "True"
                && reconciling.observed_generation == cluster.metadata.generation)
                .then_some(cluster)
        },
    )
    .await;
    assert_eq!(argocd_health(&progressing), "Progressing");
    let ready = wait_for("Ready=True for the new generation", LONG, || async {
        let cluster = clusters.get(CLUSTER).await.ok()?;
        ready_now(&cluster).then_some(cluster)
    })
    .await;
    assert!(ready.metadata.generation > before.metadata.generation);
    assert_eq!(
        condition(&ready, READY).map(|c| c.status).as_deref(),
        Some("True")
    );
    assert_eq!(argocd_health(&ready), "Healthy");

    // An on-demand failover drill through the plugin: the operator deletes the primary's Pod,
    // the StatefulSet controller recreates it (this host restarts its process), the engine
    // fails over, and status.drill records the achieved RTO.
    wait_for("3 ready instances before the drill", LONG, || {
        healthy_primary(&clusters, 3)
    })
    .await;
    let drill = plugin(&client, &ns, &["drill", CLUSTER, "--yes"]).await;
    println!("kubectl shanraq drill {CLUSTER} --yes: {drill}");
    let drilled = clusters.get(CLUSTER).await.expect("cluster");
    let record = drilled
        .status
        .as_ref()
        .and_then(|s| s.drill.clone())
        .expect("status.drill");
    assert_eq!(record.phase, "Completed", "{record:?}");
    assert!(record.rto_ms.is_some(), "{record:?}");
    wait_for("3 ready instances after the drill", LONG, || {
        healthy_primary(&clusters, 3)
    })
    .await;
    let status = plugin(&client, &ns, &["status", CLUSTER]).await;
    println!("kubectl shanraq status {CLUSTER} after the drill:\n{status}");
    operator.stop().await;
    drop(host);
}
