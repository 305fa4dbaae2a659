//! What the kubelet would do for the suite's pods, on kwok nodes that have none: bind pending
//! pods to the three nodes (there is no scheduler), and for PostgreSQL pods run the pod's own
//! container command, with its environment, ConfigMaps and Secrets, as a real process in a
//! network namespace that owns the pod's IP.
//!
//! Only directories are substituted (each volume's mount path becomes a host directory, in the
//! command, the environment and the mounted files) and `shanraq` is this build's binary; every
//! flag, setting and secret comes from the rendered pod. A PVC is a directory that outlives the
//! pod, as a volume does. Names the pod resolves (the per-pod DNS names of the headless
//! Service, the `-rw` Service for the first clone) go to the namespace's /etc/hosts. A pod
//! recreated by the StatefulSet controller (new UID) gets its process restarted, as a kubelet
//! would start the new pod's container.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Binding, ConfigMap, Container, KeyToPath, ObjectReference, Pod, Secret,
};
use kube::api::{Api, PostParams};
use kube::core::ObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use shanraq_api::names::{LABEL_CLUSTER, LABEL_COMPONENT, LABEL_ROLE, ROLE_PRIMARY};
use shanraq_testkit::user::PostgresUser;
use shanraq_testkit::{InstanceProcess, PodNetwork};

use super::{LONG, POD_NETWORK_ENV, wait_for};

/// The nodes scripts/e2e registers.
pub const NODES: [&str; 3] = ["kwok-node-0", "kwok-node-1", "kwok-node-2"];

/// One pod network per test process: every pod IP lives in one prefix, so one bridge serves
/// them all (two bridges with the same prefix would split the host's route).
static NETWORK: OnceLock<PodNetwork> = OnceLock::new();

fn network() -> &'static PodNetwork {
    NETWORK.get_or_init(|| {
        let range = std::env::var(POD_NETWORK_ENV).expect("the pod network range");
        let (base, prefix) = range
            .split_once('/')
            .and_then(|(base, prefix)| {
                Some((base.parse::<Ipv4Addr>().ok()?, prefix.parse::<u8>().ok()?))
            })
            .unwrap_or_else(|| panic!("{POD_NETWORK_ENV}={range} is not an IPv4 prefix"));
        // The last usable address of the prefix is the host's end, outside every node's podCIDR.
        let size = 1u32 << (32 - u32::from(prefix));
        let gateway = Ipv4Addr::from(u32::from(base) + size - 2);
        PodNetwork::create(gateway, prefix).expect("the pod network")
    })
}

/// The node a pod is bound to: its ordinal spread over the nodes, like the rendered
/// anti-affinity asks.
fn node_for(pod: &str) -> &'static str {
    let ordinal: usize = pod
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| pod.bytes().map(usize::from).sum());
    NODES[ordinal % NODES.len()]
}

/// Binds every pending pod of `namespace` to a node, until aborted.
async fn bind_pods(client: Client, namespace: String) {
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let mut stream = watcher(pods.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = stream.next().await {
        let Ok(pod) = event else { continue };
        let unbound = pod.spec.as_ref().is_some_and(|s| s.node_name.is_none());
        if !unbound || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.name_any();
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
            // Already bound by an earlier event, or the pod is gone: the watch shows the truth.
            tracing::debug!(pod = %name, %error, "binding");
        }
    }
}

struct Running {
    uid: String,
    process: Option<InstanceProcess>,
}

struct Inner {
    client: Client,
    namespace: String,
    root: tempfile::TempDir,
    bin_dir: PathBuf,
    user: PostgresUser,
    /// Clusters whose PostgreSQL pods run here.
    clusters: Mutex<BTreeSet<String>>,
    /// Names outside the cluster every pod resolves (`resolve`), as cluster DNS would.
    names: Mutex<Vec<(String, Ipv4Addr)>>,
    running: Mutex<BTreeMap<String, Running>>,
    starts: std::sync::atomic::AtomicU32,
}

/// The kubelet stand-in of one test namespace. Everything it started is killed on drop.
pub struct PodHost {
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl PodHost {
    pub fn start(client: &Client, namespace: &str) -> PodHost {
        let root = tempfile::tempdir().expect("temp dir");
        let bin_dir = root.path().join("bin");
        std::fs::create_dir_all(&bin_dir).expect("bin dir");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_shanraq"), bin_dir.join("shanraq"))
            .expect("shanraq on the pods' PATH");
        let inner = Arc::new(Inner {
            client: client.clone(),
            namespace: namespace.to_owned(),
            root,
            bin_dir,
            user: PostgresUser::lookup().expect("the postgres user"),
            clusters: Mutex::new(BTreeSet::new()),
            names: Mutex::new(Vec::new()),
            running: Mutex::new(BTreeMap::new()),
            starts: std::sync::atomic::AtomicU32::new(0),
        });
        let tasks = vec![
            tokio::spawn(bind_pods(client.clone(), namespace.to_owned())),
            tokio::spawn(follow(inner.clone())),
        ];
        PodHost { inner, tasks }
    }

    /// Runs the PostgreSQL pods of `cluster` (its `instances` pods) once all have an IP, and
    /// from then on restarts a pod's process when the pod is recreated.
    pub async fn run_postgres(&self, cluster: &str, instances: usize) {
        let pods: Api<Pod> = Api::namespaced(self.inner.client.clone(), &self.inner.namespace);
        let names: Vec<String> = (0..instances)
            .map(|i| format!("{cluster}-pg-{i}"))
            .collect();
        wait_for(
            &format!("{instances} PostgreSQL pods of {cluster} with an IP"),
            LONG,
            || {
                let pods = pods.clone();
                let names = names.clone();
                async move {
                    for name in &names {
                        pods.get(name).await.ok()?.status?.pod_ip?;
                    }
                    Some(())
                }
            },
        )
        .await;
        self.inner
            .clusters
            .lock()
            .expect("clusters")
            .insert(cluster.to_owned());
        for name in &names {
            let pod = pods.get(name).await.expect("the pod");
            self.inner.start(&pod).await;
        }
    }

    /// Every pod started from now on resolves `name` to `addr` (a service outside the
    /// cluster, such as the object store, that cluster DNS would answer for).
    pub fn resolve(&self, name: &str, addr: Ipv4Addr) {
        self.inner
            .names
            .lock()
            .expect("names")
            .push((name.to_owned(), addr));
    }

    /// The host's address on the pod network: a server the test runs there is reachable
    /// from every pod.
    pub fn gateway() -> Ipv4Addr {
        network().gateway()
    }

    /// SIGKILL of the pod's instance manager and postgres (a crashed node); the pod object is
    /// untouched, so nothing restarts it until `restart`.
    pub fn kill(&self, pod: &str) {
        if let Some(running) = self.inner.running.lock().expect("running").get_mut(pod)
            && let Some(mut process) = running.process.take()
        {
            process.kill();
        }
    }

    /// SIGSTOP / SIGCONT of the pod's instance manager (postgres keeps running).
    pub fn freeze(&self, pod: &str, frozen: bool) {
        if let Some(running) = self.inner.running.lock().expect("running").get(pod)
            && let Some(process) = &running.process
        {
            if frozen {
                process.freeze();
            } else {
                process.thaw();
            }
        }
    }

    /// Starts the pod's process again (the node came back), on the same data.
    pub async fn restart(&self, pod: &str) {
        let pods: Api<Pod> = Api::namespaced(self.inner.client.clone(), &self.inner.namespace);
        let pod = pods.get(pod).await.expect("the pod");
        self.inner.start(&pod).await;
    }

    /// The pod's IP in its network namespace.
    pub fn ip(&self, pod: &str) -> Ipv4Addr {
        network()
            .addr(&self.inner.key(pod))
            .expect("the pod runs here")
    }

    /// Every instance log in full, of every process this host ever ran.
    pub fn all_logs(&self) -> String {
        let Ok(entries) = std::fs::read_dir(self.inner.dir(&["logs"])) else {
            return String::new();
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        paths
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The last lines of every instance log, for a failing test's message.
    pub fn logs(&self) -> String {
        let running = self.inner.running.lock().expect("running");
        running
            .values()
            .filter_map(|r| r.process.as_ref().map(|p| p.log_tail(40)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for PodHost {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if std::thread::panicking() {
            eprintln!("--- instance logs ---\n{}", self.logs());
            let running = self.inner.running.lock().expect("running");
            for pod in running.keys() {
                let key = self.inner.key(pod);
                if let Ok(namespace) = network().namespace(&key) {
                    let addr = std::process::Command::new("ip")
                        .args(["-n", &namespace, "-br", "addr"])
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default();
                    eprintln!("--- {key} in {namespace} ---\n{addr}");
                }
            }
        }
        let mut running = self.inner.running.lock().expect("running");
        for (pod, mut entry) in std::mem::take(&mut *running) {
            if let Some(mut process) = entry.process.take() {
                process.kill();
            }
            network().remove(&self.inner.key(&pod));
        }
    }
}

/// Restarts a managed pod's process when the StatefulSet controller recreated the pod, and
/// stops it when the pod is deleted.
async fn follow(inner: Arc<Inner>) {
    let pods: Api<Pod> = Api::namespaced(inner.client.clone(), &inner.namespace);
    let mut stream = watcher(
        pods,
        watcher::Config::default().labels(&format!("{LABEL_COMPONENT}=postgres")),
    )
    .default_backoff()
    .boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                let managed = pod
                    .labels()
                    .get(LABEL_CLUSTER)
                    .is_some_and(|c| inner.clusters.lock().expect("clusters").contains(c));
                let has_ip = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.as_ref())
                    .is_some();
                let replaced = {
                    let running = inner.running.lock().expect("running");
                    running
                        .get(&pod.name_any())
                        .is_some_and(|r| Some(r.uid.as_str()) != pod.uid().as_deref())
                };
                if managed && has_ip && replaced && pod.metadata.deletion_timestamp.is_none() {
                    inner.start(&pod).await;
                }
            }
            Ok(watcher::Event::Delete(pod)) => {
                let mut running = inner.running.lock().expect("running");
                if let Some(entry) = running.get_mut(&pod.name_any())
                    && Some(entry.uid.as_str()) == pod.uid().as_deref()
                    && let Some(mut process) = entry.process.take()
                {
                    process.kill();
                }
            }
            _ => {}
        }
    }
}

/// The files of a ConfigMap or Secret volume in `dir`, as the kubelet projects them: every key
/// under its own name, or with `items` only the keys listed, each at its `path`. A listed key
/// the object lacks fails, as the kubelet fails a volume that is not `optional`.
fn write_volume(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    what: &str,
) {
    let files: Vec<(&str, &[u8])> = match items {
        Some(items) if !items.is_empty() => items
            .iter()
            .map(|item| {
                let value = data
                    .get(&item.key)
                    .unwrap_or_else(|| panic!("{what} has no key {}", item.key));
                (item.path.as_str(), value.as_slice())
            })
            .collect(),
        _ => data
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_slice()))
            .collect(),
    };
    for (path, value) in files {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).expect("volume subdir");
        }
        std::fs::write(&file, value).unwrap_or_else(|error| panic!("{what}: {path}: {error}"));
    }
}

/// Replaces each mount path by its host directory where it starts a path, in one pass (a host
/// directory is never rewritten again), the longest mount path winning.
fn substitute(text: &str, mounts: &[(String, PathBuf)]) -> String {
    let starts_path = |before: Option<char>| {
        before.is_none_or(|c| c.is_whitespace() || c == '\'' || c == '"' || c == '=')
    };
    let ends_path = |after: Option<char>| {
        after.is_none_or(|c| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
    };
    let mut out = String::with_capacity(text.len());
    let mut index = 0;
    let mut before: Option<char> = None;
    while index < text.len() {
        let rest = &text[index..];
        let matched = starts_path(before)
            .then(|| {
                mounts
                    .iter()
                    .filter(|(mount, _)| rest.starts_with(mount.as_str()))
                    .filter(|(mount, _)| ends_path(rest[mount.len()..].chars().next()))
                    .max_by_key(|(mount, _)| mount.len())
            })
            .flatten();
        if let Some((mount, host)) = matched {
            out.push_str(&host.display().to_string());
            index += mount.len();
            before = mount.chars().last();
        } else {
            let c = rest.chars().next().expect("not at the end");
            out.push(c);
            index += c.len_utf8();
            before = Some(c);
        }
    }
    out
}

impl Inner {
    /// The pod's name in the process-wide pod network: pods of two tests may share a name.
    fn key(&self, pod: &str) -> String {
        format!("{}/{pod}", self.namespace)
    }

    fn dir(&self, parts: &[&str]) -> PathBuf {
        let mut path = self.root.path().to_path_buf();
        for part in parts {
            path.push(part);
        }
        path
    }

    fn own_tree(&self, path: &Path) {
        self.user.own(path).expect("chown");
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.filter_map(Result::ok) {
                self.user.own(&entry.path()).expect("chown");
            }
        }
    }

    /// The hosts file of a pod of `cluster`: every PostgreSQL pod's per-pod DNS names, and the
    /// `-rw` Service at the pod the EndpointSlice names (ordinal 0 before the first primary).
    async fn hosts(&self, cluster: &str) -> Vec<(String, Ipv4Addr)> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = pods
            .list(&kube::api::ListParams::default().labels(&format!(
                "{LABEL_CLUSTER}={cluster},{LABEL_COMPONENT}=postgres"
            )))
            .await
            .expect("PostgreSQL pods");
        let mut hosts = self.names.lock().expect("names").clone();
        let namespace = &self.namespace;
        let headless = format!("{cluster}-pg");
        let mut rw = None;
        for pod in &list.items {
            let name = pod.name_any();
            let Some(ip) = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            for host in [
                format!("{name}.{headless}.{namespace}.svc.cluster.local"),
                format!("{name}.{headless}.{namespace}.svc"),
                format!("{name}.{headless}.{namespace}"),
                format!("{name}.{headless}"),
            ] {
                hosts.push((host, ip));
            }
            let primary = pod.labels().get(LABEL_ROLE).map(String::as_str) == Some(ROLE_PRIMARY);
            if primary || (rw.is_none() && name.ends_with("-0")) {
                rw = Some(ip);
            }
        }
        if let Some(ip) = rw {
            let service = format!("{cluster}-pg-rw");
            for host in [
                format!("{service}.{namespace}.svc.cluster.local"),
                format!("{service}.{namespace}.svc"),
                format!("{service}.{namespace}"),
                service.clone(),
            ] {
                hosts.push((host, ip));
            }
        }
        hosts
    }

    /// Starts (or restarts) `pod`'s PostgreSQL container as a process in its namespace.
    async fn start(&self, pod: &Pod) {
        let name = pod.name_any();
        let uid = pod.uid().expect("a uid");
        let ip: Ipv4Addr = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .expect("a pod IP")
            .parse()
            .expect("an IPv4 pod IP");
        let cluster = pod
            .labels()
            .get(LABEL_CLUSTER)
            .cloned()
            .expect("the cluster label");
        // The previous process of this pod, if any, goes first (a recreated pod, a restart).
        if let Some(entry) = self.running.lock().expect("running").get_mut(&name)
            && let Some(mut process) = entry.process.take()
        {
            process.kill();
        }
        let hosts = self.hosts(&cluster).await;
        let key = self.key(&name);
        // Every running pod of the cluster sees the new address too, as cluster DNS would
        // answer with it (`ip netns exec` bind-mounts the file, so an in-place rewrite reaches
        // processes already running).
        let others: Vec<String> = self
            .running
            .lock()
            .expect("running")
            .keys()
            .filter(|pod| **pod != name && pod.starts_with(&format!("{cluster}-pg-")))
            .map(|pod| self.key(pod))
            .collect();
        for other in others {
            if network().namespace(&other).is_ok() {
                network().set_hosts(&other, &hosts).expect("hosts");
            }
        }
        if network().addr(&key).ok() == Some(ip) {
            network().set_hosts(&key, &hosts).expect("hosts");
        } else {
            network()
                .add(&key, ip, &hosts)
                .expect("the pod's network namespace");
        }

        let spec = pod.spec.as_ref().expect("a pod spec");
        let container: &Container = spec
            .containers
            .iter()
            .find(|c| c.name == "postgres")
            .expect("the postgres container");
        let start = self
            .starts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Volumes: a directory each; a PVC's outlives the pod.
        let mut volume_dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
        for volume in spec.volumes.iter().flatten() {
            let dir = match &volume.persistent_volume_claim {
                Some(claim) => self.dir(&["pvc", &claim.claim_name]),
                None => self.dir(&["pods", &format!("{name}-{start}"), &volume.name]),
            };
            std::fs::create_dir_all(&dir).expect("volume dir");
            volume_dirs.insert(volume.name.clone(), dir);
        }
        // The claim of a volumeClaimTemplate appears as a volume named like the template.
        for mount in container.volume_mounts.iter().flatten() {
            volume_dirs.entry(mount.name.clone()).or_insert_with(|| {
                let dir = self.dir(&["pvc", &format!("{}-{name}", mount.name)]);
                std::fs::create_dir_all(&dir).expect("claim dir");
                dir
            });
        }
        let mut mounts: Vec<(String, PathBuf)> = container
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| {
                let dir = volume_dirs[&m.name].clone();
                let dir = match &m.sub_path {
                    Some(sub) if !sub.is_empty() => dir.join(sub),
                    _ => dir,
                };
                (m.mount_path.clone(), dir)
            })
            .collect();
        mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));

        let config_maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        for volume in spec.volumes.iter().flatten() {
            let dir = &volume_dirs[&volume.name];
            if let Some(source) = &volume.config_map {
                let map = config_maps.get(&source.name).await.expect("the ConfigMap");
                let data: BTreeMap<String, Vec<u8>> = map
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(key, value)| (key, substitute(&value, &mounts).into_bytes()))
                    .collect();
                let what = format!("pod {name}: ConfigMap {}", source.name);
                write_volume(dir, &data, source.items.as_deref(), &what);
            }
            if let Some(source) = &volume.secret {
                let secret_name = source.secret_name.clone().expect("a Secret name");
                let secret = secrets.get(&secret_name).await.expect("the Secret");
                let data: BTreeMap<String, Vec<u8>> = secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(key, value)| (key, value.0))
                    .collect();
                let what = format!("pod {name}: Secret {secret_name}");
                write_volume(dir, &data, source.items.as_deref(), &what);
            }
            self.own_tree(dir);
        }

        let mut env: Vec<(String, String)> = Vec::new();
        for var in container.env.iter().flatten() {
            let value = if let Some(value) = &var.value {
                substitute(value, &mounts)
            } else if let Some(from) = &var.value_from {
                if let Some(field) = &from.field_ref {
                    match field.field_path.as_str() {
                        "metadata.name" => name.clone(),
                        "metadata.namespace" => self.namespace.clone(),
                        "status.podIP" => ip.to_string(),
                        other => panic!(
                            "pod {name}: env {} from unsupported field {other}",
                            var.name
                        ),
                    }
                } else if let Some(key) = &from.secret_key_ref {
                    let secret = secrets.get(&key.name).await.expect("the Secret");
                    let bytes = secret
                        .data
                        .and_then(|d| d.get(&key.key).cloned())
                        .expect("the Secret key");
                    String::from_utf8(bytes.0).expect("UTF-8 secret")
                } else {
                    panic!("pod {name}: env {} has an unsupported source", var.name);
                }
            } else {
                String::new()
            };
            env.push((var.name.clone(), value));
        }
        let argv: Vec<String> = container
            .command
            .iter()
            .flatten()
            .chain(container.args.iter().flatten())
            .map(|part| substitute(part, &mounts))
            .collect();
        let data_dir = argv
            .iter()
            .flat_map(|part| part.split_whitespace())
            .skip_while(|word| *word != "--data-dir")
            .nth(1)
            .map(PathBuf::from)
            .expect("the instance's --data-dir");

        let mut command = network()
            .command(&key, &argv[0])
            .expect("the pod's namespace");
        command
            .args(&argv[1..])
            .env_clear()
            .envs(env)
            .env(
                "PATH",
                format!(
                    "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    self.bin_dir.display()
                ),
            )
            .env("RUST_LOG", "info");
        let logs = self.dir(&["logs"]);
        std::fs::create_dir_all(&logs).expect("logs dir");
        let process = InstanceProcess::spawn(
            &name,
            &mut command,
            &data_dir,
            &logs.join(format!("{name}-{start}.log")),
        )
        .expect("the instance starts");
        self.running.lock().expect("running").insert(
            name,
            Running {
                uid,
                process: Some(process),
            },
        );
    }
}
