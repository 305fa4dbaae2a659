//! The product as a user runs it: the operator installed by its Helm chart from its own image
//! (its ServiceAccount and RBAC, leader election on), and one ShanraqCluster in a namespace that
//! enforces the `restricted` Pod Security level, its pods on the project's own images (named the
//! way a private registry would be, through the spec's image fields). The cluster must reach
//! Ready; PostgreSQL commits and Redis writes acknowledged by a replica (`WAIT 1`) go through the
//! HAProxy Service a client would use; then the PostgreSQL primary's pod and the Redis master's
//! pod are deleted at once (grace period 0); `kubectl shanraq status` must name the promoted
//! members, and every acknowledged write must be read back through the same Service from them.
//! Then the new primary's container is SIGKILLed through containerd while the operator's leader
//! pod is deleted: the standby operator (the chart runs two) takes the Lease and fails over, and
//! no committed row is missing.
//!
//! Kafka is off here: it has not been run on the lane yet (six broker and controller JVMs beside
//! the rest on two cores, or a smaller spec, are still to be tried); the `kafka_*` tests run it
//! on real processes.

use std::process::Command;

use serde_json::{Value, json};
use shanraq_api::cluster::ShanraqCluster;

use super::*;

const RELEASE: &str = "shanraq";
pub(super) const OPERATOR_NAMESPACE: &str = "shanraq-system";
const CLUSTER: &str = "ledger";
/// From apply to Ready, and a failover to its end, with every image already on the node.
const STACK_TIMEOUT: Duration = Duration::from_secs(300);
/// Rows committed, and Redis keys acknowledged, before the faults.
const WRITES: usize = 20;

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

pub(super) fn image(name: &str) -> String {
    format!("localhost/shanraq-{name}:{}", version())
}

fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// The operator, installed once per lane by whichever test needs it first.
pub(super) async fn ensure_operator(client: &Client) {
    static INSTALLED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    {
        let mut installed = INSTALLED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !*installed {
            install_operator();
            *installed = true;
        }
    }
    leader_pod(client).await;
}

/// `helm install` of the repository's chart, the operator from its own image.
fn install_operator() {
    let kubeconfig = std::env::var(KUBECONFIG_ENV).expect("the lane's kubeconfig");
    let output = Command::new("helm")
        .args(["install", RELEASE])
        .arg(repo_file("charts/shanraq-operator"))
        .args(["--namespace", OPERATOR_NAMESPACE, "--create-namespace"])
        .args(["--set", "image.repository=localhost/shanraq-operator"])
        .args(["--set", &format!("image.tag={}", version())])
        .args(["--set", "image.pullPolicy=Never"])
        .args(["--wait", "--timeout", "5m"])
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("helm runs (scripts/install-deps installs it)");
    assert!(
        output.status.success(),
        "helm install failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub(super) async fn restricted_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }}
    }))
    .expect("a Namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace created");
}

fn cluster(namespace: &str) -> ShanraqCluster {
    serde_json::from_value(json!({
        "apiVersion": "shanraq.org/v1alpha1",
        "kind": "ShanraqCluster",
        "metadata": {"name": CLUSTER, "namespace": namespace},
        "spec": {
            "postgres": {"image": image("postgres")},
            "redis": {"image": image("redis")},
            "haproxy": {"image": image("haproxy")},
            "kafka": {"enabled": false, "image": image("kafka")},
        }
    }))
    .expect("a ShanraqCluster")
}

fn condition(cluster: &ShanraqCluster, type_: &str) -> Option<(String, String)> {
    let condition = cluster
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((condition.status.clone(), condition.message.clone()))
}

async fn wait_long<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_up_to(STACK_TIMEOUT, what, check).await
}

pub(super) async fn secret_value(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> String {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), namespace);
    let secret = secrets.get(name).await.expect("the generated Secret");
    let bytes = secret
        .data
        .and_then(|data| data.get(key).cloned())
        .unwrap_or_else(|| panic!("{name} has no {key}"));
    String::from_utf8(bytes.0).expect("a UTF-8 secret value")
}

async fn postgres(address: &str, password: &str) -> Option<sqlx::PgConnection> {
    use sqlx::Connection;
    let options = sqlx::postgres::PgConnectOptions::new()
        .host(address)
        .port(5432)
        .username("app")
        .password(password)
        .database("app");
    tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::PgConnection::connect_with(&options),
    )
    .await
    .ok()?
    .ok()
}

/// A connection through HAProxy on which a commit of ledger row `id` went through: the
/// primary behind the Service takes writes.
async fn commit_through(address: &str, password: &str, id: usize) -> Option<sqlx::PgConnection> {
    let mut connection = postgres(address, password).await?;
    sqlx::query("INSERT INTO ledger VALUES ($1, 0) ON CONFLICT DO NOTHING")
        .bind(i32::try_from(id).expect("a small id"))
        .execute(&mut connection)
        .await
        .ok()?;
    Some(connection)
}

async fn redis(address: &str, password: &str) -> Option<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://:{password}@{address}:6379/")).ok()?;
    tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()
}

/// The PostgreSQL instances the status shows in the primary role.
fn status_primaries(cluster: &ShanraqCluster) -> Option<Vec<String>> {
    let instances = &cluster.status.as_ref()?.postgres.as_ref()?.instances;
    Some(
        instances
            .iter()
            .filter(|i| i.role == "primary")
            .map(|i| i.name.clone())
            .collect(),
    )
}

fn status_field(cluster: &ShanraqCluster, pointer: &str) -> Option<String> {
    let status = serde_json::to_value(cluster.status.as_ref()?).ok()?;
    match status.pointer(pointer)? {
        Value::String(value) => Some(value.clone()),
        _ => None,
    }
}

fn leader_lease(client: &Client) -> Api<k8s_openapi::api::coordination::v1::Lease> {
    Api::namespaced(client.clone(), OPERATOR_NAMESPACE)
}

/// `wait_long`, and on a timeout the operators' last log lines before the test fails.
pub(super) async fn wait_explained<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    if let Some(value) = poll_until(STACK_TIMEOUT, check).await {
        return value;
    }
    let logs = Command::new("kubectl")
        .args(["-n", OPERATOR_NAMESPACE, "logs", "--tail=60", "--prefix"])
        .args(["-l", "app.kubernetes.io/name=shanraq-operator"])
        .env(
            "KUBECONFIG",
            std::env::var(KUBECONFIG_ENV).unwrap_or_default(),
        )
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    panic!("timed out after {STACK_TIMEOUT:?} waiting for {what}; the operators' logs:\n{logs}");
}

/// The operator pod holding the leader Lease.
async fn leader_pod(client: &Client) -> String {
    let leases = leader_lease(client);
    wait_long("an operator holding the Lease", || {
        let leases = leases.clone();
        async move {
            leases
                .get("shanraq-operator")
                .await
                .ok()?
                .spec?
                .holder_identity
                .filter(|holder| !holder.is_empty())
        }
    })
    .await
}

/// The containerd id of `pod`'s container `name`.
fn container_id(pod: &Pod, name: &str) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|statuses| statuses.iter().find(|c| c.name == name))
        .and_then(|c| c.container_id.as_deref())
        .and_then(|id| id.strip_prefix("containerd://"))
        .unwrap_or_else(|| panic!("{name} has a running container"))
        .to_owned()
}

/// SIGKILL to a container's processes, through the node's containerd.
fn kill_container(id: &str) {
    let address = std::env::var("SHANRAQ_E2E_CONTAINERD_ADDRESS")
        .expect("scripts/e2e --node exports the containerd address");
    let output = Command::new("ctr")
        .args(["--address", &address, "--namespace", "k8s.io"])
        .args(["tasks", "kill", "--all", "--signal", "SIGKILL", id])
        .output()
        .expect("ctr runs");
    assert!(
        output.status.success(),
        "ctr tasks kill failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
#[ignore = "needs a real node: scripts/e2e --node cargo test ... -- --include-ignored (scripts/test runs it)"]
async fn the_whole_stack_runs_from_one_resource_and_fails_over_without_loss() {
    use sqlx::Row;
    let Some(lane) = lane().await else { return };
    let started = Instant::now();
    ensure_operator(&lane.client).await;
    println!(
        "operator installed by its chart in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let namespace = "bank";
    restricted_namespace(&lane.client, namespace).await;
    let clusters: Api<ShanraqCluster> = Api::namespaced(lane.client.clone(), namespace);
    clusters
        .create(&PostParams::default(), &cluster(namespace))
        .await
        .expect("the ShanraqCluster admitted");
    let applied = Instant::now();
    let ready = wait_long("the cluster Ready", || {
        let clusters = clusters.clone();
        async move {
            let cluster = clusters.get(CLUSTER).await.ok()?;
            (condition(&cluster, "Ready")?.0 == "True").then_some(cluster)
        }
    })
    .await;
    println!(
        "{CLUSTER} Ready {:.1}s after it was applied",
        applied.elapsed().as_secs_f64()
    );
    for type_ in ["PostgresReady", "RedisReady", "HAProxyReady"] {
        let (status, message) = condition(&ready, type_).expect(type_);
        assert_eq!(status, "True", "{type_}: {message}");
    }

    // Clients use the HAProxy Service, as an application in the cluster would.
    let services: Api<Service> = Api::namespaced(lane.client.clone(), namespace);
    let haproxy = services
        .get(&format!("{CLUSTER}-haproxy"))
        .await
        .expect("the HAProxy Service")
        .spec
        .and_then(|spec| spec.cluster_ip)
        .expect("its ClusterIP");
    let pg_password = secret_value(
        &lane.client,
        namespace,
        &format!("{CLUSTER}-pg-app"),
        "password",
    )
    .await;
    let redis_password = secret_value(
        &lane.client,
        namespace,
        &format!("{CLUSTER}-redis-auth"),
        "password",
    )
    .await;

    let mut pg = wait_long("PostgreSQL through HAProxy", || {
        postgres(&haproxy, &pg_password)
    })
    .await;
    sqlx::query("CREATE TABLE ledger (id int PRIMARY KEY, amount bigint NOT NULL)")
        .execute(&mut pg)
        .await
        .expect("table created");
    for id in 0..WRITES {
        let id = i32::try_from(id).expect("a small id");
        sqlx::query("INSERT INTO ledger VALUES ($1, $2)")
            .bind(id)
            .bind(i64::from(id) * 100)
            .execute(&mut pg)
            .await
            .expect("a commit through HAProxy");
    }
    drop(pg);

    let mut kv = wait_long("Redis through HAProxy", || redis(&haproxy, &redis_password)).await;
    for key in 0..WRITES {
        let _: () = redis::cmd("SET")
            .arg(format!("k{key}"))
            .arg(key)
            .query_async(&mut kv)
            .await
            .expect("SET through HAProxy");
        let acknowledged: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(2000)
            .query_async(&mut kv)
            .await
            .expect("WAIT");
        assert!(acknowledged >= 1, "k{key} acknowledged by no replica");
    }
    drop(kv);

    // Faults: the PostgreSQL primary's and the Redis master's pods, gone at once.
    let current = clusters.get(CLUSTER).await.expect("the cluster");
    let old_primary = status_field(&current, "/postgres/currentPrimary").expect("a primary");
    let old_master = status_field(&current, "/redis/currentMaster").expect("a master");
    let pods: Api<Pod> = Api::namespaced(lane.client.clone(), namespace);
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    let faulted = Instant::now();
    pods.delete(&old_primary, &now)
        .await
        .expect("primary pod deleted");
    pods.delete(&old_master, &now)
        .await
        .expect("master pod deleted");
    println!("deleted {old_primary} (PostgreSQL primary) and {old_master} (Redis master)");

    let failed_over = wait_long("both failovers to end", || {
        let clusters = clusters.clone();
        let (old_primary, old_master) = (old_primary.clone(), old_master.clone());
        async move {
            let cluster = clusters.get(CLUSTER).await.ok()?;
            let primary = status_field(&cluster, "/postgres/currentPrimary")?;
            let master = status_field(&cluster, "/redis/currentMaster")?;
            let pg_done = status_field(&cluster, "/postgres/phase")? == "Healthy";
            let redis_done = status_field(&cluster, "/redis/phase")? == "Healthy";
            (primary != old_primary && master != old_master && pg_done && redis_done)
                .then_some(cluster)
        }
    })
    .await;
    println!(
        "failed over in {:.1}s: PostgreSQL lastFailover {}, Redis lastFailover {}",
        faulted.elapsed().as_secs_f64(),
        failed_over
            .status
            .as_ref()
            .and_then(|s| s.postgres.as_ref())
            .and_then(|p| p.last_failover.as_ref())
            .map(|r| format!("{} -> {} rto {:?} ms", r.from, r.to, r.rto_ms))
            .unwrap_or_default(),
        failed_over
            .status
            .as_ref()
            .and_then(|s| s.redis.as_ref())
            .and_then(|r| r.last_failover.as_ref())
            .map(|r| format!("{} -> {} rto {:?} ms", r.from, r.to, r.rto_ms))
            .unwrap_or_default(),
    );

    // Once the status shows each promoted member as the one primary of its component, `kubectl
    // shanraq status` must say so.
    let failed_over = wait_explained("the status to show the promoted members", || {
        let clusters = clusters.clone();
        async move {
            let cluster = clusters.get(CLUSTER).await.ok()?;
            let primary = status_field(&cluster, "/postgres/currentPrimary")?;
            (status_primaries(&cluster)? == vec![primary]).then_some(cluster)
        }
    })
    .await;
    let pods_now = pods
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={CLUSTER}")))
        .await
        .expect("the cluster's pods");
    let report = kubectl_shanraq::report::build(&failed_over, &pods_now.items);
    println!("{}", kubectl_shanraq::report::text(&report));
    let new_primary = status_field(&failed_over, "/postgres/currentPrimary").expect("a primary");
    let new_master = status_field(&failed_over, "/redis/currentMaster").expect("a master");
    for (component, primary) in [("postgres", &new_primary), ("redis", &new_master)] {
        let shown = report
            .components
            .iter()
            .find(|c| c.component == component)
            .unwrap_or_else(|| panic!("kubectl shanraq status shows {component}"));
        assert_eq!(
            shown.primary.as_ref(),
            Some(primary),
            "kubectl shanraq status names {component}'s promoted member"
        );
    }

    // Every acknowledged write, read back through the same Service from the new primaries.
    let mut pg = wait_long("a commit through HAProxy after the failover", || {
        commit_through(&haproxy, &pg_password, WRITES)
    })
    .await;
    let rows = sqlx::query(
        "SELECT count(*) AS n, coalesce(sum(amount), 0)::bigint AS total FROM ledger WHERE id < $1",
    )
    .bind(i32::try_from(WRITES).expect("a small id"))
    .fetch_one(&mut pg)
    .await
    .expect("the ledger read back");
    let (count, total): (i64, i64) = (rows.get("n"), rows.get("total"));
    let expected: i64 = (0..WRITES)
        .map(|id| i64::try_from(id).expect("small") * 100)
        .sum();
    assert_eq!(
        (count, total),
        (i64::try_from(WRITES).expect("small"), expected),
        "every committed row survives the PostgreSQL failover"
    );

    let mut kv = wait_long("Redis through HAProxy after the failover", || {
        let (haproxy, password) = (haproxy.clone(), redis_password.clone());
        async move {
            let mut connection = redis(&haproxy, &password).await?;
            let _: () = redis::cmd("SET")
                .arg("after")
                .arg(1)
                .query_async(&mut connection)
                .await
                .ok()?;
            Some(connection)
        }
    })
    .await;
    for key in 0..WRITES {
        let value: Option<i64> = redis::cmd("GET")
            .arg(format!("k{key}"))
            .query_async(&mut kv)
            .await
            .expect("GET through HAProxy");
        assert_eq!(
            value,
            Some(i64::try_from(key).expect("small")),
            "k{key}, acknowledged by a replica, survives the Redis failover"
        );
    }

    // Second round: the new primary's PostgreSQL container SIGKILLed through containerd (its pod
    // stays; the kubelet restarts the container) while the operator's leader pod is deleted: the
    // standby operator takes the Lease and the failover.
    let second_primary = new_primary.clone();
    let leader = leader_pod(&lane.client).await;
    let primary_pod = pods.get(&second_primary).await.expect("the primary's pod");
    let container = container_id(&primary_pod, "postgres");
    let faulted = Instant::now();
    kill_container(&container);
    let operator_pods: Api<Pod> = Api::namespaced(lane.client.clone(), OPERATOR_NAMESPACE);
    operator_pods
        .delete(&leader, &now)
        .await
        .expect("the operator's leader pod deleted");
    println!(
        "SIGKILLed the postgres container of {second_primary}; deleted the operator's leader {leader}"
    );
    // The standby operator takes the Lease; whether the engine failed over or the kubelet's
    // restart of the container brought the primary back first, the cluster must converge to
    // one primary that every member follows, take writes, and miss no committed row.
    let converged = wait_explained("the cluster to converge under the standby operator", || {
        let clusters = clusters.clone();
        let leases = leader_lease(&lane.client);
        let leader = leader.clone();
        async move {
            let holder = leases
                .get("shanraq-operator")
                .await
                .ok()?
                .spec?
                .holder_identity?;
            let cluster = clusters.get(CLUSTER).await.ok()?;
            let primary = status_field(&cluster, "/postgres/currentPrimary")?;
            let healthy = status_field(&cluster, "/postgres/phase")? == "Healthy";
            let ready = condition(&cluster, "PostgresReady")?.0 == "True";
            let primaries = status_primaries(&cluster)?;
            (holder != leader && healthy && ready && primaries == vec![primary.clone()])
                .then_some((holder, primary))
        }
    })
    .await;
    let (new_leader, third) = converged;
    let restarts = wait_long(
        "the kubelet to report the killed container's restart",
        || {
            let pods = pods.clone();
            let second_primary = second_primary.clone();
            async move {
                let pod = pods.get(&second_primary).await.ok()?;
                let restarts = pod
                    .status?
                    .container_statuses?
                    .into_iter()
                    .find(|c| c.name == "postgres")?
                    .restart_count;
                (restarts >= 1).then_some(restarts)
            }
        },
    )
    .await;
    println!(
        "converged in {:.1}s under {new_leader}: primary {third} ({}), its postgres container restarted {restarts} time(s)",
        faulted.elapsed().as_secs_f64(),
        if third == second_primary {
            "back before a failover was due"
        } else {
            "failed over"
        }
    );
    let mut pg = wait_long("a commit through HAProxy after the second round", || {
        commit_through(&haproxy, &pg_password, WRITES + 1)
    })
    .await;
    let count: i64 = sqlx::query("SELECT count(*) AS n FROM ledger")
        .fetch_one(&mut pg)
        .await
        .expect("the ledger read back")
        .get("n");
    assert_eq!(
        count,
        i64::try_from(WRITES + 2).expect("small"),
        "every committed row survives the second round"
    );

    println!(
        "the whole stack passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
