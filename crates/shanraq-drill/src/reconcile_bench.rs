//! `shanraq bench reconcile`: how the operator keeps up with many ShanraqClusters, measured
//! against a real API server (the one `scripts/e2e` starts, or any other the kubeconfig
//! names). It lives apart from the failover benchmark because it needs no local PostgreSQL:
//! what it measures is the control loop (watches, renders, server-side applies, status
//! writes), so the operator runs as the separate process a user deploys, with the HA tasks
//! off (behind kwok pods there is no instance to probe, and probing their IPs would send
//! traffic off the machine).
//!
//! One run, in a namespace of its own that is deleted at the end:
//! 1. the CRD is applied (server-side), the operator started watching only that namespace,
//!    and the namespace's pods are bound to the kwok nodes (there is no scheduler), so the
//!    workloads really roll out and their pods' changes reach the operator as they would;
//! 2. one cluster is created and, once converged, its spec changed `samples` times: each
//!    sample is the time from the apply to a watch event showing
//!    `status.observedGeneration == metadata.generation`;
//! 3. N more clusters are applied (a bounded number at once) and timed until a watch shows
//!    every one of them converged;
//! 4. the operator's peak RSS is read from `/proc/<pid>/status` (`VmHWM`) before it is
//!    stopped by PID.
//!
//! Every cluster gets the spec of `deploy/examples/minimal.yaml`: what a user applies, the
//! whole production stack.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Binding, Namespace, ObjectReference, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{CustomResourceExt, ObjectMeta};
use kube::runtime::{WatchStreamExt, conditions, wait, watcher};
use kube::{Client, ResourceExt};
use serde::Serialize;
use shanraq_api::ShanraqCluster;
use shanraq_api::names::{API_VERSION, CRD_NAME, KIND};

use super::error::DrillError;

/// What a user applies: the whole production stack with its defaults.
const MINIMAL_EXAMPLE: &str = include_str!("../../../deploy/examples/minimal.yaml");
/// The field manager of the benchmark's own writes (never the operator's).
const MANAGER: &str = "shanraq-bench";
/// The nodes `scripts/e2e` registers.
pub const NODES: [&str; 3] = ["kwok-node-0", "kwok-node-1", "kwok-node-2"];
/// The cluster the single-cluster samples change.
const LATENCY_CLUSTER: &str = "latency";
/// Bounds of each wait.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(60);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(900);
/// Bindings in flight at once.
const BIND_CONCURRENCY: usize = 16;
/// The environment variables that may name the kubeconfig, in order.
pub const KUBECONFIG_ENVS: [&str; 2] = ["KUBECONFIG", "SHANRAQ_E2E_KUBECONFIG"];

/// What one run does.
#[derive(Clone, Debug)]
pub struct ReconcilePlan {
    pub clusters: usize,
    pub samples: usize,
    /// Cluster applies in flight at once.
    pub concurrency: usize,
    pub kubeconfig: Option<PathBuf>,
}

/// The figures of one run, printed as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct ReconcileReport {
    pub scenario: &'static str,
    pub clusters: usize,
    /// From the first apply of the N clusters until every one had
    /// `observedGeneration == generation`.
    pub converged_s: f64,
    pub single_apply_to_status_ms: LatencyFigures,
    /// `VmHWM` of the operator process at the end of the run.
    pub operator_peak_rss_mib: f64,
    /// Whether the operator ran its HA tasks (never here: see the module comment).
    pub ha: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct LatencyFigures {
    pub samples: usize,
    pub p50: f64,
    pub p99: f64,
}

/// The figures as a few lines for a person.
pub fn summary(report: &ReconcileReport) -> String {
    let single = &report.single_apply_to_status_ms;
    format!(
        "reconcile: {} clusters converged in {:.1} s\n\
         one cluster, apply to status: p50 {:.0} ms, p99 {:.0} ms ({} samples)\n\
         operator peak RSS: {:.1} MiB (HA tasks {})\n",
        report.clusters,
        report.converged_s,
        single.p50,
        single.p99,
        single.samples,
        report.operator_peak_rss_mib,
        if report.ha { "on" } else { "off" },
    )
}

/// The `quantile` (0..=1) of `samples` by nearest rank; 0 when there are none.
pub fn nearest_rank(samples: &[f64], quantile: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The kubeconfig to use: the flag, else the first of [`KUBECONFIG_ENVS`] that is set.
pub fn kubeconfig_path(flag: Option<&Path>) -> Result<PathBuf, DrillError> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    KUBECONFIG_ENVS
        .iter()
        .filter_map(std::env::var_os)
        .find(|value| !value.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| DrillError::InvalidOption {
            option: "--kubeconfig",
            reason: format!(
                "no kubeconfig: pass --kubeconfig or set {} (scripts/e2e sets the latter)",
                KUBECONFIG_ENVS.join(" or ")
            ),
        })
}

fn kube_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> DrillError {
    let what = what.into();
    move |source| DrillError::Kube { what, source }
}

async fn client(path: &Path) -> Result<Client, DrillError> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|error| DrillError::InvalidOption {
        option: "--kubeconfig",
        reason: format!("cannot read {}: {error}", path.display()),
    })?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|error| DrillError::InvalidOption {
            option: "--kubeconfig",
            reason: format!("{} is not usable: {error}", path.display()),
        })?;
    Client::try_from(config).map_err(kube_error("building a Kubernetes client"))
}

/// The spec of `deploy/examples/minimal.yaml`, as JSON.
fn minimal_spec() -> Result<serde_json::Value, DrillError> {
    let example: serde_json::Value =
        serde_saphyr::from_str(MINIMAL_EXAMPLE).map_err(|error| DrillError::InvalidOption {
            option: "the minimal example",
            reason: format!("deploy/examples/minimal.yaml does not parse: {error}"),
        })?;
    Ok(example
        .get("spec")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({})))
}

fn manifest(name: &str, spec: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": { "name": name },
        "spec": spec,
    })
}

fn converged(cluster: &ShanraqCluster) -> bool {
    let generation = cluster.metadata.generation;
    generation.is_some()
        && cluster.status.as_ref().and_then(|s| s.observed_generation) == generation
}

async fn install_crd(client: &Client) -> Result<(), DrillError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        CRD_NAME,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&ShanraqCluster::crd()),
    )
    .await
    .map_err(kube_error(format!("applying the CRD {CRD_NAME}")))?;
    let established = wait::await_condition(api, CRD_NAME, conditions::is_crd_established());
    tokio::time::timeout(SETUP_TIMEOUT, established)
        .await
        .map_err(|_| {
            DrillError::timeout(
                format!("the CRD {CRD_NAME} to be Established"),
                SETUP_TIMEOUT,
            )
        })?
        .map_err(|error| DrillError::Watch {
            what: format!("the CRD {CRD_NAME}"),
            detail: error.to_string(),
        })?;
    Ok(())
}

/// The node a pod is bound to: its ordinal spread over the nodes.
fn node_for(pod: &str) -> &'static str {
    let ordinal: usize = pod
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| pod.bytes().map(usize::from).sum());
    NODES[ordinal % NODES.len()]
}

/// Binds every pending pod of the namespace to a kwok node, until aborted: what the scheduler
/// would do.
async fn bind_pods(pods: Api<Pod>) {
    let unbound = watcher(pods.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .filter_map(|event| async move {
            let pod = event.ok()?;
            let pending = pod.spec.as_ref().is_some_and(|s| s.node_name.is_none());
            (pending && pod.metadata.deletion_timestamp.is_none()).then(|| pod.name_any())
        });
    unbound
        .for_each_concurrent(BIND_CONCURRENCY, |name| {
            let pods = pods.clone();
            async move {
                let binding = Binding {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..ObjectMeta::default()
                    },
                    target: ObjectReference {
                        kind: Some("Node".to_owned()),
                        name: Some(node_for(&name).to_owned()),
                        ..ObjectReference::default()
                    },
                };
                if let Err(error) = pods
                    .create_subresource::<_, serde_json::Value>(
                        "binding",
                        &name,
                        &PostParams::default(),
                        &binding,
                    )
                    .await
                {
                    // Bound by an earlier event, or gone: the watch shows the truth.
                    tracing::debug!(pod = %name, %error, "binding");
                }
            }
        })
        .await;
}

/// The operator under measurement, SIGKILLed by PID when dropped.
struct OperatorProcess {
    child: Child,
    metrics: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl OperatorProcess {
    fn start(
        binary: &Path,
        kubeconfig: &Path,
        namespace: &str,
        port: u16,
    ) -> Result<OperatorProcess, DrillError> {
        let dir = tempfile::tempdir().map_err(|error| DrillError::Operator {
            problem: format!("no directory for its log: {error}"),
        })?;
        let log = dir.path().join("operator.log");
        let out = std::fs::File::create(&log).map_err(|error| DrillError::Operator {
            problem: format!("cannot create {}: {error}", log.display()),
        })?;
        let err = out.try_clone().map_err(|error| DrillError::Operator {
            problem: format!("cannot share {}: {error}", log.display()),
        })?;
        let metrics = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(binary)
            .arg("operator")
            .arg("--leader-election=false")
            .env("KUBECONFIG", kubeconfig)
            .env("SHANRAQ_HA", "false")
            .env("SHANRAQ_WATCH_NAMESPACES", namespace)
            .env("SHANRAQ_METRICS_ADDR", metrics.to_string())
            .env("SHANRAQ_LOG_LEVEL", "warn")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|error| DrillError::Operator {
                problem: format!("{} operator did not start: {error}", binary.display()),
            })?;
        Ok(OperatorProcess {
            child,
            metrics,
            log,
            _dir: dir,
        })
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(20).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Whether `/healthz` answers 200 (the operator serves; the first cluster's convergence
    /// then shows that its controller acts).
    fn ready(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&self.metrics, Duration::from_secs(1))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        if stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
    }

    async fn wait_ready(&mut self) -> Result<(), DrillError> {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(DrillError::Operator {
                    problem: format!(
                        "exited ({status}) before it was ready:\n{}",
                        self.log_tail()
                    ),
                });
            }
            if self.ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DrillError::timeout_with(
                    format!("the operator's /healthz on {}", self.metrics),
                    SETUP_TIMEOUT,
                    self.log_tail(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `VmHWM` of the process, in MiB.
    fn peak_rss_mib(&self) -> Result<f64, DrillError> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).map_err(|error| DrillError::Operator {
            problem: format!("cannot read {path}: {error}"),
        })?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map(|kib| kib / 1024.0)
            .ok_or_else(|| DrillError::Operator {
                problem: format!("{path} has no VmHWM line"),
            })
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the benchmark and returns its figures. The namespace is deleted and the operator
/// stopped whatever the outcome.
pub async fn run(binary: &Path, plan: &ReconcilePlan) -> Result<ReconcileReport, DrillError> {
    if plan.samples == 0 || plan.concurrency == 0 {
        return Err(DrillError::InvalidOption {
            option: "--samples/--concurrency",
            reason: "both must be at least 1".to_owned(),
        });
    }
    let kubeconfig = kubeconfig_path(plan.kubeconfig.as_deref())?;
    let client = client(&kubeconfig).await?;
    let spec = minimal_spec()?;
    install_crd(&client).await?;

    let namespace = format!(
        "shanraq-bench-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_second()
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let body = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &body)
        .await
        .map_err(kube_error(format!("creating the namespace {namespace}")))?;

    let binder = tokio::spawn(bind_pods(Api::namespaced(client.clone(), &namespace)));
    let outcome = measure(binary, &kubeconfig, &client, &namespace, &spec, plan).await;
    binder.abort();
    let deleted = namespaces
        .delete(&namespace, &DeleteParams::background())
        .await
        .map_err(kube_error(format!("deleting the namespace {namespace}")));
    let report = outcome?;
    deleted?;
    Ok(report)
}

async fn measure(
    binary: &Path,
    kubeconfig: &Path,
    client: &Client,
    namespace: &str,
    spec: &serde_json::Value,
    plan: &ReconcilePlan,
) -> Result<ReconcileReport, DrillError> {
    let port = shanraq_testkit::free_port()?;
    let mut operator = OperatorProcess::start(binary, kubeconfig, namespace, port)?;
    operator.wait_ready().await?;
    let clusters: Api<ShanraqCluster> = Api::namespaced(client.clone(), namespace);

    let latencies = single_cluster(&clusters, spec, plan.samples)
        .await
        .map_err(|error| with_log(error, &operator))?;
    let converged_s = many_clusters(&clusters, spec, plan)
        .await
        .map_err(|error| with_log(error, &operator))?;
    let peak = operator.peak_rss_mib()?;
    drop(operator);
    Ok(ReconcileReport {
        scenario: "reconcile",
        clusters: plan.clusters,
        converged_s: round(converged_s, 3),
        single_apply_to_status_ms: LatencyFigures {
            samples: latencies.len(),
            p50: round(nearest_rank(&latencies, 0.50), 1),
            p99: round(nearest_rank(&latencies, 0.99), 1),
        },
        operator_peak_rss_mib: round(peak, 1),
        ha: false,
    })
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// A timeout or watch failure with the operator's last log lines, which usually say why.
fn with_log(error: DrillError, operator: &OperatorProcess) -> DrillError {
    match error {
        DrillError::Timeout {
            what,
            seconds,
            detail,
        } => DrillError::Timeout {
            what,
            seconds,
            detail: format!(
                "{detail}\noperator log (last lines):\n{}",
                operator.log_tail()
            ),
        },
        other => other,
    }
}

async fn apply(
    clusters: &Api<ShanraqCluster>,
    name: &str,
    spec: &serde_json::Value,
) -> Result<ShanraqCluster, DrillError> {
    clusters
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&manifest(name, spec)),
        )
        .await
        .map_err(kube_error(format!(
            "applying the ShanraqCluster {}/{name}",
            clusters.namespace().unwrap_or_default()
        )))
}

/// Waits, on a watch, until the cluster's status has observed `generation`.
async fn await_observed(
    clusters: &Api<ShanraqCluster>,
    name: &str,
    generation: i64,
    timeout: Duration,
) -> Result<(), DrillError> {
    let observed = wait::await_condition(
        clusters.clone(),
        name,
        move |cluster: Option<&ShanraqCluster>| {
            cluster
                .and_then(|c| c.status.as_ref())
                .and_then(|s| s.observed_generation)
                .is_some_and(|seen| seen >= generation)
        },
    );
    tokio::time::timeout(timeout, observed)
        .await
        .map_err(|_| {
            DrillError::timeout(
                format!("status.observedGeneration {generation} of the ShanraqCluster {name}"),
                timeout,
            )
        })?
        .map_err(|error| DrillError::Watch {
            what: format!("the ShanraqCluster {name}"),
            detail: error.to_string(),
        })?;
    Ok(())
}

/// Creates one cluster, waits until it converged, then changes its spec `samples` times and
/// returns each apply-to-status latency in milliseconds.
async fn single_cluster(
    clusters: &Api<ShanraqCluster>,
    spec: &serde_json::Value,
    samples: usize,
) -> Result<Vec<f64>, DrillError> {
    let created = apply(clusters, LATENCY_CLUSTER, spec).await?;
    await_observed(
        clusters,
        LATENCY_CLUSTER,
        created.metadata.generation.unwrap_or(1),
        SAMPLE_TIMEOUT,
    )
    .await?;
    let mut latencies = Vec::with_capacity(samples);
    for sample in 0..samples {
        // A change a user makes without touching any workload: the availability objective,
        // alternating between two values that both differ from the default.
        let mut changed = spec.clone();
        let availability = if sample % 2 == 0 { "99.9" } else { "99.95" };
        changed["objectives"]["availability"] = availability.into();
        let started = Instant::now();
        let applied = apply(clusters, LATENCY_CLUSTER, &changed).await?;
        let generation = applied.metadata.generation.unwrap_or(1);
        await_observed(clusters, LATENCY_CLUSTER, generation, SAMPLE_TIMEOUT).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(latencies)
}

/// Applies `plan.clusters` clusters, `plan.concurrency` at a time, and returns the seconds
/// from the first apply until a watch showed all of them converged.
async fn many_clusters(
    clusters: &Api<ShanraqCluster>,
    spec: &serde_json::Value,
    plan: &ReconcilePlan,
) -> Result<f64, DrillError> {
    let names: BTreeSet<String> = (0..plan.clusters)
        .map(|i| format!("bench-{i:04}"))
        .collect();
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
    let watch = {
        let clusters = clusters.clone();
        let names = names.clone();
        async move {
            let mut stream = watcher(clusters, watcher::Config::default()).boxed();
            let mut synced = Some(synced_tx);
            let mut state: BTreeMap<String, bool> = BTreeMap::new();
            while let Some(event) = stream.try_next().await.map_err(|error| DrillError::Watch {
                what: "the bench namespace's ShanraqClusters".to_owned(),
                detail: error.to_string(),
            })? {
                match event {
                    watcher::Event::InitDone => {
                        if let Some(tx) = synced.take() {
                            let _ = tx.send(());
                        }
                    }
                    watcher::Event::Apply(cluster) | watcher::Event::InitApply(cluster) => {
                        let name = cluster.name_any();
                        if names.contains(&name) {
                            state.insert(name, converged(&cluster));
                        }
                    }
                    watcher::Event::Delete(cluster) => {
                        state.remove(&cluster.name_any());
                    }
                    watcher::Event::Init => {}
                }
                if state.len() == names.len() && state.values().all(|done| *done) {
                    return Ok(Instant::now());
                }
            }
            Err(DrillError::Watch {
                what: "the bench namespace's ShanraqClusters".to_owned(),
                detail: "the watch ended".to_owned(),
            })
        }
    };
    let watch = tokio::spawn(watch);
    tokio::time::timeout(SETUP_TIMEOUT, synced_rx)
        .await
        .map_err(|_| DrillError::timeout("the ShanraqCluster watch's initial list", SETUP_TIMEOUT))?
        .map_err(|_| DrillError::Watch {
            what: "the bench namespace's ShanraqClusters".to_owned(),
            detail: "the watch ended before its initial list".to_owned(),
        })?;

    let started = Instant::now();
    futures::stream::iter(names.iter())
        .map(|name| apply(clusters, name, spec))
        .buffer_unordered(plan.concurrency)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    let applied_in = started.elapsed();
    let remaining = CONVERGE_TIMEOUT.saturating_sub(applied_in);
    let done = match tokio::time::timeout(remaining, watch).await {
        Ok(Ok(result)) => result?,
        Ok(Err(join)) => {
            return Err(DrillError::Watch {
                what: "the bench namespace's ShanraqClusters".to_owned(),
                detail: join.to_string(),
            });
        }
        Err(_) => {
            let list = clusters
                .list(&Default::default())
                .await
                .map_err(kube_error("listing the bench's ShanraqClusters"))?;
            let behind: Vec<String> = list
                .items
                .iter()
                .filter(|c| names.contains(&c.name_any()) && !converged(c))
                .map(ResourceExt::name_any)
                .collect();
            return Err(DrillError::timeout_with(
                format!("all {} ShanraqClusters to converge", plan.clusters),
                CONVERGE_TIMEOUT,
                format!(
                    "{} not converged (first: {:?})",
                    behind.len(),
                    behind.iter().take(5).collect::<Vec<_>>()
                ),
            ));
        }
    };
    Ok(done.duration_since(started).as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_a_sample() {
        let samples: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(nearest_rank(&samples, 0.50), 10.0);
        assert_eq!(nearest_rank(&samples, 0.99), 20.0);
        assert_eq!(nearest_rank(&[7.0], 0.99), 7.0);
        assert_eq!(nearest_rank(&[], 0.5), 0.0);
    }

    #[test]
    fn the_minimal_example_is_what_is_applied() {
        let spec = minimal_spec().expect("the example parses");
        let manifest = manifest("bench-0000", &spec);
        let cluster: ShanraqCluster = serde_json::from_value(manifest).expect("a ShanraqCluster");
        assert_eq!(cluster.name_any(), "bench-0000");
    }

    #[test]
    fn pods_spread_over_the_nodes() {
        assert_eq!(node_for("bench-0001-pg-0"), "kwok-node-0");
        assert_eq!(node_for("bench-0001-pg-1"), "kwok-node-1");
        assert_eq!(node_for("bench-0001-pg-2"), "kwok-node-2");
    }
}
