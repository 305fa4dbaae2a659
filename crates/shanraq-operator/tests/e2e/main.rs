//! Cluster end-to-end suite against a real API server. `scripts/e2e` builds and starts one
//! (etcd, kube-apiserver, kube-controller-manager, kwok with three nodes) and exports
//! `SHANRAQ_E2E_KUBECONFIG`; `scripts/test` runs the whole workspace under it. The operator
//! runs as a separate `shanraq operator` process authenticated as the Helm chart's own
//! ServiceAccount; PostgreSQL pods run the real instance manager, from the rendered pod, in
//! network namespaces that own the pods' IPs (`pods.rs`).
//!
//! Without `SHANRAQ_E2E_KUBECONFIG` every test says why it did nothing, except under CI
//! (`CI` set), where that is a failure. Every wait is bounded; every process a test starts is
//! stopped by PID when the test ends.

mod admission;
mod backups;
mod basics;
mod chart;
mod failover;
mod leader;
mod operator;
mod paused_leader;
mod pods;
mod transitions;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::ObjectMeta;
use kube::{Client, ResourceExt};
use shanraq_api::ShanraqCluster;
use shanraq_api::names::CRD_NAME;

pub const ENV: &str = "SHANRAQ_E2E_KUBECONFIG";
/// Set by `scripts/e2e`: the pods' address range, owned by namespaces the suite creates.
pub const POD_NETWORK_ENV: &str = "SHANRAQ_E2E_POD_NETWORK";
pub const SHORT: Duration = Duration::from_secs(60);
pub const LONG: Duration = Duration::from_secs(240);
pub const GC_TIMEOUT: Duration = Duration::from_secs(180);
/// Where the operator's own namespace, Lease and ServiceAccount live (the chart's release).
pub const OPERATOR_NAMESPACE: &str = "shanraq-system";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn kubeconfig_path() -> Option<PathBuf> {
    std::env::var_os(ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// The admin client, or `None` (after saying why) when no API server was given. Under CI a
/// missing API server fails the test: the suite never skips there.
pub async fn client() -> Option<Client> {
    let Some(path) = kubeconfig_path() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{ENV} is not set under CI: run the suite through scripts/e2e (scripts/test does)"
        );
        println!("skipped: {ENV} is not set (scripts/e2e sets it)");
        return None;
    };
    let kubeconfig = Kubeconfig::read_from(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    let client = Client::try_from(config).expect("a Kubernetes client");
    install_crds(&client).await;
    Some(client)
}

/// True when pods can run real processes (the API server is the local one of scripts/e2e).
/// Under CI it must be.
pub fn pods_run_locally() -> bool {
    let set = std::env::var_os(POD_NETWORK_ENV).is_some_and(|v| !v.is_empty());
    assert!(
        set || std::env::var_os("CI").is_none(),
        "{POD_NETWORK_ENV} is not set under CI: run the suite through scripts/e2e"
    );
    if !set {
        println!("skipped: {POD_NETWORK_ENV} is not set (scripts/e2e sets it)");
    }
    set
}

/// Polls `check` every `every` until it returns `Some`, or fails the test after `timeout`.
pub async fn wait_every<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// `wait_every` with a 200 ms poll.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_every(what, timeout, Duration::from_millis(200), check).await
}

/// The CRDs the operator serves, as `shanraq crdgen` writes them.
const CRD_FILES: [&str; 2] = [
    shanraq_api::crd::CRD_FILE,
    shanraq_api::crd::BACKUP_CRD_FILE,
];

/// Applies every CRD the operator serves and waits until each is Established.
async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for file in CRD_FILES {
        let text = std::fs::read_to_string(repo_root().join(file))
            .unwrap_or_else(|error| panic!("the generated CRD file {file}: {error}"));
        let crd: CustomResourceDefinition =
            serde_saphyr::from_str(&text).unwrap_or_else(|error| panic!("{file}: {error}"));
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply("shanraq-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|error| panic!("CRD {name} applied: {error}"));
        names.push(name);
    }
    assert!(names.iter().any(|name| name == CRD_NAME), "{names:?}");
    for name in &names {
        wait_for(&format!("the CRD {name} to be Established"), SHORT, || {
            let api = api.clone();
            async move {
                let crd = api.get(name).await.ok()?;
                let established = crd
                    .status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(())
            }
        })
        .await;
    }
}

/// A fresh namespace, deleted when dropped (best effort).
pub struct TestNamespace {
    client: Client,
    pub name: String,
}

impl TestNamespace {
    pub async fn create(client: &Client, prefix: &str) -> Self {
        let name = format!(
            "e2e-{prefix}-{}",
            shanraq_operator::controller::secrets::generate(5).to_lowercase()
        );
        let api: Api<Namespace> = Api::all(client.clone());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        api.create(&PostParams::default(), &namespace)
            .await
            .expect("namespace created");
        TestNamespace {
            client: client.clone(),
            name,
        }
    }
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish()
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let client = self.client.clone();
        let name = self.name.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let api: Api<Namespace> = Api::all(client);
                let _ = api.delete(&name, &DeleteParams::default()).await;
            });
        }
    }
}

pub fn examples() -> Vec<(PathBuf, ShanraqCluster)> {
    let dir = repo_root().join("deploy/examples");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("deploy/examples") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
            let text = std::fs::read_to_string(&path).expect("example");
            let cluster: ShanraqCluster = serde_saphyr::from_str(&text)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            found.push((path, cluster));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!found.is_empty(), "no example in {}", dir.display());
    found
}

/// A ShanraqCluster from YAML text.
pub fn manifest(text: &str) -> ShanraqCluster {
    serde_saphyr::from_str(text).unwrap_or_else(|error| panic!("{error}:\n{text}"))
}

/// Applies `cluster` into `namespace` the way a user would (server-side apply).
pub async fn apply_cluster(
    client: &Client,
    namespace: &str,
    cluster: &ShanraqCluster,
) -> ShanraqCluster {
    let mut object = cluster.clone();
    object.metadata.namespace = Some(namespace.to_owned());
    object.metadata.resource_version = None;
    let api: Api<ShanraqCluster> = Api::namespaced(client.clone(), namespace);
    api.patch(
        &object.name_any(),
        &PatchParams::apply("shanraq-e2e").force(),
        &Patch::Apply(&object),
    )
    .await
    .expect("ShanraqCluster applied")
}

pub fn condition(cluster: &ShanraqCluster, type_: &str) -> Option<Condition> {
    cluster
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

pub fn condition_status(cluster: &ShanraqCluster, type_: &str) -> Option<(String, Option<i64>)> {
    condition(cluster, type_).map(|c| (c.status, c.observed_generation))
}

/// True when `Ready=True` holds for the current generation.
pub fn ready_now(cluster: &ShanraqCluster) -> bool {
    let generation = cluster.metadata.generation;
    condition_status(cluster, shanraq_api::conditions::READY)
        .is_some_and(|(status, observed)| status == "True" && observed == generation)
        && cluster.status.as_ref().and_then(|s| s.observed_generation) == generation
}

/// The ready IPs behind a Service, from the EndpointSlices the controller-manager maintains.
pub async fn endpoint_ips(client: &Client, namespace: &str, service: &str) -> Vec<String> {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let slices = api
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .map(|list| list.items)
        .unwrap_or_default();
    let mut ips: Vec<String> = slices
        .iter()
        .flat_map(|slice| slice.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
        .flat_map(|e| e.addresses.clone())
        .collect();
    ips.sort();
    ips
}

/// The reasons of the Events about ShanraqCluster `name`.
pub async fn event_reasons(client: &Client, namespace: &str, name: &str) -> Vec<(String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), namespace);
    let Ok(events) = api.list(&ListParams::default()).await else {
        return Vec::new();
    };
    events
        .items
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| Some((e.reason.clone()?, e.note.clone().unwrap_or_default())))
        .collect()
}
