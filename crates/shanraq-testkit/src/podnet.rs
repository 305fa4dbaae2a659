//! `PodNetwork`: network namespaces that give the pods of a simulated Kubernetes cluster (kwok
//! nodes, no kubelet) real, non-loopback IPs, so that a real API server accepts them in
//! Endpoints and EndpointSlices and a process started "in the pod" owns the pod's address.
//!
//! Unlike a `NetLab` (whose switch lives in a namespace of its own, out of the host's reach),
//! the bridge lives in the host's namespace and carries the gateway address: a process on the
//! host (the operator, the test) reaches every pod directly, as a node reaches its pods. Each
//! pod namespace has `lo`, an `eth0` veth into the bridge with the pod's IP, and a default route
//! through the gateway. Names a pod must resolve go to `/etc/netns/<namespace>/hosts`, which
//! `ip netns exec` mounts over `/etc/hosts`. Everything is deleted on drop, and networks left
//! behind by a dead test process are swept when the next one is created.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::netns::{NAME_PREFIX, NETNS_DIR, owner_pid, run, sweep_stale_labs};
use crate::{TestkitError, binaries};

static NETWORKS_CREATED: AtomicU32 = AtomicU32::new(0);
/// Where `ip netns exec` looks for per-namespace replacements of files in /etc.
const ETC_NETNS: &str = "/etc/netns";

#[derive(Debug)]
struct Pod {
    namespace: String,
    addr: Ipv4Addr,
}

/// A host bridge with a gateway address, and one network namespace per pod behind it.
#[derive(Debug)]
pub struct PodNetwork {
    id: String,
    bridge: String,
    gateway: Ipv4Addr,
    prefix_len: u8,
    pods: Mutex<BTreeMap<String, Pod>>,
    veths: AtomicU32,
    ip: PathBuf,
}

impl PodNetwork {
    /// A bridge on the host with `gateway/prefix_len` (for example 10.78.255.254/16). Pods
    /// added later get addresses inside that prefix.
    pub fn create(gateway: Ipv4Addr, prefix_len: u8) -> Result<PodNetwork, TestkitError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(TestkitError::NotRoot {
                what: "PodNetwork".to_string(),
            });
        }
        let ip = binaries::ip()?;
        sweep_stale_labs(&ip);
        sweep_stale_bridges(&ip);
        let id = format!(
            "{NAME_PREFIX}{}x{}",
            std::process::id(),
            NETWORKS_CREATED.fetch_add(1, Ordering::Relaxed)
        );
        let bridge = format!(
            "{NAME_PREFIX}{}b{}",
            std::process::id(),
            NETWORKS_CREATED.load(Ordering::Relaxed)
        );
        let network = PodNetwork {
            id,
            bridge,
            gateway,
            prefix_len,
            pods: Mutex::new(BTreeMap::new()),
            veths: AtomicU32::new(0),
            ip,
        };
        network.ip_batch(
            None,
            &format!(
                "link add {bridge} type bridge\naddr add {gateway}/{prefix_len} dev {bridge}\nlink set {bridge} up\n",
                bridge = network.bridge
            ),
        )?;
        Ok(network)
    }

    /// The host's address on the bridge, every pod's default route.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    fn pods(&self) -> MutexGuard<'_, BTreeMap<String, Pod>> {
        self.pods
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A namespace for `pod` owning `addr`, with `hosts` as its /etc/hosts. A pod added again
    /// (it was recreated with a new IP) gets a fresh namespace.
    pub fn add(
        &self,
        pod: &str,
        addr: Ipv4Addr,
        hosts: &[(String, Ipv4Addr)],
    ) -> Result<(), TestkitError> {
        self.remove(pod);
        let index = self.veths.fetch_add(1, Ordering::Relaxed);
        let namespace = format!("{}-{index}", self.id);
        let host_end = format!("{NAME_PREFIX}{}v{index}", std::process::id());
        self.ip_cmd(&["netns", "add", &namespace])?;
        // Recorded at once, so that a failure below still deletes the namespace.
        self.pods().insert(
            pod.to_string(),
            Pod {
                namespace: namespace.clone(),
                addr,
            },
        );
        self.ip_batch(
            None,
            &format!(
                "link add {host_end} type veth peer name eth0 netns {namespace}\n\
                 link set {host_end} master {bridge} up\n",
                bridge = self.bridge
            ),
        )?;
        self.ip_batch(
            Some(&namespace),
            &format!(
                "link set lo up\naddr add {addr}/{prefix} dev eth0\nlink set eth0 up\n\
                 route add default via {gateway}\n",
                prefix = self.prefix_len,
                gateway = self.gateway
            ),
        )?;
        self.set_hosts(pod, hosts)
    }

    /// Rewrites `pod`'s /etc/hosts (localhost plus `hosts`). Takes effect for processes started
    /// afterwards; a running process keeps the file it was started with.
    pub fn set_hosts(&self, pod: &str, hosts: &[(String, Ipv4Addr)]) -> Result<(), TestkitError> {
        let namespace = self.namespace(pod)?;
        let dir = Path::new(ETC_NETNS).join(&namespace);
        std::fs::create_dir_all(&dir)
            .map_err(|error| TestkitError::io(format!("creating {}", dir.display()), error))?;
        let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for (name, addr) in hosts {
            text.push_str(&format!("{addr} {name}\n"));
        }
        let path = dir.join("hosts");
        std::fs::write(&path, text)
            .map_err(|error| TestkitError::io(format!("writing {}", path.display()), error))
    }

    /// The network namespace of `pod`.
    pub fn namespace(&self, pod: &str) -> Result<String, TestkitError> {
        self.pods()
            .get(pod)
            .map(|pod| pod.namespace.clone())
            .ok_or_else(|| TestkitError::Lab {
                lab: self.id.clone(),
                problem: format!("no pod `{pod}` in the pod network"),
            })
    }

    /// The address of `pod`.
    pub fn addr(&self, pod: &str) -> Result<Ipv4Addr, TestkitError> {
        self.pods()
            .get(pod)
            .map(|pod| pod.addr)
            .ok_or_else(|| TestkitError::Lab {
                lab: self.id.clone(),
                problem: format!("no pod `{pod}` in the pod network"),
            })
    }

    /// `ip netns exec <pod's namespace> program`: add arguments and spawn.
    pub fn command(&self, pod: &str, program: impl AsRef<OsStr>) -> Result<Command, TestkitError> {
        let namespace = self.namespace(pod)?;
        let mut command = Command::new(&self.ip);
        command.args(["netns", "exec"]).arg(namespace).arg(program);
        Ok(command)
    }

    /// Deletes `pod`'s namespace (its veth goes with it), if it has one.
    pub fn remove(&self, pod: &str) {
        let Some(removed) = self.pods().remove(pod) else {
            return;
        };
        self.delete_namespace(&removed.namespace);
    }

    fn delete_namespace(&self, namespace: &str) {
        let mut command = Command::new(&self.ip);
        command.args(["netns", "delete", namespace]);
        if let Err(error) = run(command, None) {
            tracing::warn!(%error, "deleting a pod network namespace");
        }
        let _ = std::fs::remove_dir_all(Path::new(ETC_NETNS).join(namespace));
    }

    fn ip_cmd(&self, args: &[&str]) -> Result<String, TestkitError> {
        let mut command = Command::new(&self.ip);
        command.args(args);
        run(command, None)
    }

    fn ip_batch(&self, namespace: Option<&str>, batch: &str) -> Result<String, TestkitError> {
        let mut command = Command::new(&self.ip);
        if let Some(namespace) = namespace {
            command.args(["-n", namespace]);
        }
        command.args(["-batch", "-"]);
        run(command, Some(batch))
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        let pods: Vec<Pod> = std::mem::take(&mut *self.pods()).into_values().collect();
        for pod in pods {
            self.delete_namespace(&pod.namespace);
        }
        if let Err(error) = self.ip_cmd(&["link", "delete", &self.bridge]) {
            tracing::warn!(%error, "deleting the pod network bridge");
        }
    }
}

/// Deletes the host bridges and veths of pod networks whose process is gone.
fn sweep_stale_bridges(ip: &Path) {
    let mut command = Command::new(ip);
    command.args(["-o", "link", "show"]);
    let Ok(links) = run(command, None) else {
        return;
    };
    for line in links.lines() {
        // "12: shq4242b0: <BROADCAST,...": the name is the second field, up to '@' or ':'.
        let Some(name) = line
            .split_whitespace()
            .nth(1)
            .map(|field| field.trim_end_matches(':'))
            .map(|field| field.split('@').next().unwrap_or(field))
        else {
            continue;
        };
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once(['b', 'v']) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let mut command = Command::new(ip);
        command.args(["link", "delete", name]);
        if run(command, None).is_ok() {
            tracing::info!(link = %name, pid, "swept a stale pod network link");
        }
    }
    // Leftover /etc/netns entries of dead processes.
    if let Ok(entries) = std::fs::read_dir(ETC_NETNS) {
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = owner_pid(&name)
                && !Path::new(&format!("/proc/{pid}")).exists()
                && !Path::new(NETNS_DIR).join(&name).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}
