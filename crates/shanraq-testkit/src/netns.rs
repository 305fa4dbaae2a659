//! `NetLab`: real network partitions for tests. Each node is a Linux network namespace with
//! `lo` and an `eth0` veth into one bridge, which lives in a namespace of its own (the switch);
//! addresses exist only inside the lab's namespaces. Faults act where a real network fails:
//! drops and random loss are nftables rules on the bridge's forward hook, so the endpoints see
//! silence (no RST, no ICMP, no EPERM from a local rule), and delay holds packets in an NFQUEUE
//! inside the node (see `delay.rs`). Everything the lab created is deleted on drop, and labs
//! left behind by a dead test process are swept when the next one is created.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};

use crate::delay::{DelayQueue, QUEUE};
use crate::{TestkitError, binaries};

/// Every lab uses the same /24: each has its own switch, so labs never see each other.
pub const LAB_SUBNET: Ipv4Addr = Ipv4Addr::new(10, 231, 0, 0);
pub const LAB_PREFIX_LEN: u8 = 24;
/// The first node's host number; the others follow in order.
const FIRST_HOST: u8 = 10;
/// Prefix of every namespace a lab creates: `shq<pid>x<n>-<node>` and `shq<pid>x<n>_sw`.
pub(crate) const NAME_PREFIX: &str = "shq";
pub(crate) const NETNS_DIR: &str = "/run/netns";
const LINK_UP_TIMEOUT: Duration = Duration::from_secs(10);
/// The table holding the lab's drop and loss rules, in the switch namespace.
const TABLE: &str = "shanraq_lab";

static LABS_CREATED: AtomicU32 = AtomicU32::new(0);

#[derive(Debug)]
struct Node {
    name: String,
    namespace: String,
    addr: Ipv4Addr,
    /// The switch-side end of its veth.
    port: String,
}

#[derive(Debug, Default)]
struct Faults {
    /// Pairs of node indexes, smaller first.
    cuts: BTreeSet<(usize, usize)>,
    isolated: BTreeSet<usize>,
    degraded: BTreeMap<usize, Degraded>,
}

#[derive(Debug)]
struct Degraded {
    loss_percent: u8,
    /// Running while the node has a non-zero delay.
    delay: Option<DelayQueue>,
}

/// A set of network namespaces joined by a bridge, with faults to inject between them.
#[derive(Debug)]
pub struct NetLab {
    id: String,
    switch: String,
    nodes: Vec<Node>,
    /// Every namespace created so far, deleted on drop (also after a failed `create`).
    created: Vec<String>,
    faults: Mutex<Faults>,
    ip: PathBuf,
    nft: PathBuf,
    iptables_restore: PathBuf,
}

impl NetLab {
    /// One switch namespace holding a bridge, and one namespace per node, each with `lo` up and
    /// an `eth0` veth into the bridge with address 10.231.0.X/24 (X from 10 upwards, in the
    /// order of `nodes`). Returns once every link is up. Node names are short lowercase words
    /// (`[a-z0-9-]`, at most 20 characters).
    pub fn create(nodes: &[&str]) -> Result<NetLab, TestkitError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(TestkitError::NotRoot {
                what: "NetLab".to_string(),
            });
        }
        let ip = binaries::ip()?;
        let nft = binaries::nft()?;
        let iptables_restore = binaries::iptables_restore()?;
        let id = format!(
            "{NAME_PREFIX}{}x{}",
            std::process::id(),
            LABS_CREATED.fetch_add(1, Ordering::Relaxed)
        );
        validate_nodes(&id, nodes)?;
        sweep_stale_labs(&ip);
        let mut lab = NetLab {
            switch: format!("{id}_sw"),
            nodes: nodes
                .iter()
                .enumerate()
                .map(|(index, name)| Node {
                    name: (*name).to_string(),
                    namespace: format!("{id}-{name}"),
                    addr: host_addr(index),
                    port: format!("v{index}"),
                })
                .collect(),
            id,
            created: Vec::new(),
            faults: Mutex::new(Faults::default()),
            ip,
            nft,
            iptables_restore,
        };
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), TestkitError> {
        let namespaces: Vec<String> = std::iter::once(self.switch.clone())
            .chain(self.nodes.iter().map(|node| node.namespace.clone()))
            .collect();
        for namespace in namespaces {
            self.ip_cmd(&["netns", "add", &namespace])?;
            self.created.push(namespace);
        }
        let mut switch =
            String::from("link set lo up\nlink add br0 type bridge\nlink set br0 up\n");
        for node in &self.nodes {
            let _ = writeln!(
                switch,
                "link add {port} type veth peer name eth0 netns {namespace}\n\
                 link set {port} master br0 up",
                port = node.port,
                namespace = node.namespace,
            );
        }
        self.ip_batch(&self.switch, &switch)?;
        for node in &self.nodes {
            let batch = format!(
                "link set lo up\naddr add {addr}/{LAB_PREFIX_LEN} dev eth0\nlink set eth0 up\n",
                addr = node.addr
            );
            self.ip_batch(&node.namespace, &batch)?;
        }
        self.apply_switch_rules(&Faults::default())?;
        self.wait_links_up()
    }

    /// Waits until every bridge port carries (its peer `eth0` is up too).
    fn wait_links_up(&self) -> Result<(), TestkitError> {
        let deadline = Instant::now() + LINK_UP_TIMEOUT;
        loop {
            let links =
                self.ip_cmd(&["-n", &self.switch, "-o", "link", "show", "master", "br0"])?;
            let up = self
                .nodes
                .iter()
                .filter(|node| {
                    links.lines().any(|line| {
                        line.contains(&format!(" {}@", node.port)) && line.contains("LOWER_UP")
                    })
                })
                .count();
            if up == self.nodes.len() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(TestkitError::NotReady {
                    what: format!("links of network lab {}", self.id),
                    seconds: LINK_UP_TIMEOUT.as_secs(),
                    detail: format!("{up} of {} ports up:\n{links}", self.nodes.len()),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn node_index(&self, node: &str) -> Result<usize, TestkitError> {
        self.nodes
            .iter()
            .position(|candidate| candidate.name == node)
            .ok_or_else(|| TestkitError::Lab {
                lab: self.id.clone(),
                problem: format!(
                    "no node `{node}` (nodes: {})",
                    self.nodes
                        .iter()
                        .map(|node| node.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    /// The node's address on the lab's bridge.
    pub fn addr(&self, node: &str) -> Result<Ipv4Addr, TestkitError> {
        Ok(self.nodes[self.node_index(node)?].addr)
    }

    /// The name of the node's network namespace (as `ip netns` knows it).
    pub fn namespace(&self, node: &str) -> Result<&str, TestkitError> {
        Ok(&self.nodes[self.node_index(node)?].namespace)
    }

    /// True when the calling thread lives in the node's namespace (a task on its `runtime`).
    pub fn is_current(&self, node: &str) -> Result<bool, TestkitError> {
        use std::os::unix::fs::MetadataExt;
        let namespace = self.namespace(node)?;
        let stat = |path: &Path| {
            std::fs::metadata(path)
                .map(|meta| (meta.dev(), meta.ino()))
                .map_err(|source| TestkitError::io(format!("stat {}", path.display()), source))
        };
        Ok(stat(Path::new("/proc/thread-self/ns/net"))?
            == stat(&Path::new(NETNS_DIR).join(namespace))?)
    }

    /// Every namespace of the lab, the switch's included.
    pub fn namespaces(&self) -> Vec<&str> {
        std::iter::once(self.switch.as_str())
            .chain(self.nodes.iter().map(|node| node.namespace.as_str()))
            .collect()
    }

    /// `ip netns exec <namespace> <program>`: add the arguments and spawn. `ip` execs the
    /// program, so the child's pid is the program's own.
    pub fn command(&self, node: &str, program: impl AsRef<OsStr>) -> Result<Command, TestkitError> {
        let namespace = self.namespace(node)?;
        let mut command = Command::new(&self.ip);
        command.arg("netns").arg("exec").arg(namespace).arg(program);
        Ok(command)
    }

    /// A multi-thread tokio runtime (2 workers, every driver enabled) whose threads, the
    /// blocking pool's included, all live in the node's namespace: sockets opened by tasks
    /// spawned on it belong to the node. `block_on` runs its future on the calling thread, in
    /// the caller's namespace: spawn on the runtime and `block_on` the handle instead.
    pub fn runtime(&self, node: &str) -> Result<tokio::runtime::Runtime, TestkitError> {
        let namespace = self.namespace(node)?.to_string();
        let netns = Arc::new(open_netns(&namespace)?);
        // Prove setns works here, so that the thread-start hook below cannot fail for any
        // reason but a broken machine.
        {
            let netns = Arc::clone(&netns);
            std::thread::spawn(move || setns(&*netns, CloneFlags::CLONE_NEWNET))
                .join()
                .map_err(|_| TestkitError::Lab {
                    lab: self.id.clone(),
                    problem: format!("setns probe thread for {namespace} panicked"),
                })?
                .map_err(|source| TestkitError::sys(format!("setns into {namespace}"), source))?;
        }
        let thread_name = format!("{node}-netns");
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name(thread_name)
            .on_thread_start(move || {
                // A thread left in the test's own namespace would open sockets outside the
                // lab: better a loud panic than a test that passes for the wrong reason.
                #[allow(clippy::expect_used)]
                setns(&*netns, CloneFlags::CLONE_NEWNET)
                    .expect("runtime thread enters its node's network namespace");
            })
            .build()
            .map_err(|source| TestkitError::io(format!("building the runtime of {node}"), source))
    }

    /// Silently drops every packet between `a` and `b`, both directions (a partition, not a
    /// reset); connections between them stall until `heal`.
    pub fn cut(&self, a: &str, b: &str) -> Result<(), TestkitError> {
        let (a, b) = (self.node_index(a)?, self.node_index(b)?);
        let mut faults = self.faults();
        faults.cuts.insert((a.min(b), a.max(b)));
        self.apply_switch_rules(&faults)
    }

    /// Silently drops every packet to and from `node`, from and to every other node.
    pub fn isolate(&self, node: &str) -> Result<(), TestkitError> {
        let index = self.node_index(node)?;
        let mut faults = self.faults();
        faults.isolated.insert(index);
        self.apply_switch_rules(&faults)
    }

    /// `loss_percent` random loss and `delay` added to every packet leaving `node` and to
    /// every packet entering it (what netem on both sides of its link would do): a round trip
    /// with an undegraded peer takes at least twice `delay` longer. Replaces an earlier
    /// `degrade` of the same node.
    pub fn degrade(
        &self,
        node: &str,
        loss_percent: u8,
        delay: Duration,
    ) -> Result<(), TestkitError> {
        let index = self.node_index(node)?;
        if loss_percent > 100 {
            return Err(TestkitError::Lab {
                lab: self.id.clone(),
                problem: format!("degrade {node}: loss {loss_percent}% is over 100%"),
            });
        }
        let mut faults = self.faults();
        let previous = faults.degraded.remove(&index).and_then(|old| old.delay);
        let queue = if delay.is_zero() {
            if previous.is_some() {
                self.apply_delay_rules(index, false)?;
            }
            None
        } else if let Some(queue) = previous {
            queue.set_delay(delay);
            Some(queue)
        } else {
            let namespace = &self.nodes[index].namespace;
            let queue = DelayQueue::start(open_netns(namespace)?, namespace, delay)?;
            self.apply_delay_rules(index, true)?;
            Some(queue)
        };
        faults.degraded.insert(
            index,
            Degraded {
                loss_percent,
                delay: queue,
            },
        );
        self.apply_switch_rules(&faults)
    }

    /// Removes every fault: the links are as created. Packets held for a delay are released.
    pub fn heal(&self) -> Result<(), TestkitError> {
        let mut faults = self.faults();
        self.apply_switch_rules(&Faults::default())?;
        let delayed: Vec<usize> = faults
            .degraded
            .iter()
            .filter(|(_, degraded)| degraded.delay.is_some())
            .map(|(index, _)| *index)
            .collect();
        for index in delayed {
            self.apply_delay_rules(index, false)?;
        }
        // Dropping the queues (after their rules are gone) releases what they hold.
        *faults = Faults::default();
        Ok(())
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn apply_switch_rules(&self, faults: &Faults) -> Result<(), TestkitError> {
        let addrs: Vec<Ipv4Addr> = self.nodes.iter().map(|node| node.addr).collect();
        let rules = switch_rules(faults, &addrs);
        self.run(
            self.command_in(&self.switch, &self.nft, &["-f", "-"]),
            Some(&rules),
        )
        .map(drop)
    }

    fn apply_delay_rules(&self, index: usize, on: bool) -> Result<(), TestkitError> {
        let namespace = &self.nodes[index].namespace;
        self.run(
            self.command_in(namespace, &self.iptables_restore, &[]),
            Some(&delay_rules(on)),
        )
        .map(drop)
    }

    fn command_in(&self, namespace: &str, program: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(&self.ip);
        command
            .arg("netns")
            .arg("exec")
            .arg(namespace)
            .arg(program)
            .args(args);
        command
    }

    fn ip_cmd(&self, args: &[&str]) -> Result<String, TestkitError> {
        let mut command = Command::new(&self.ip);
        command.args(args);
        self.run(command, None)
    }

    fn ip_batch(&self, namespace: &str, batch: &str) -> Result<String, TestkitError> {
        let mut command = Command::new(&self.ip);
        command.args(["-n", namespace, "-batch", "-"]);
        self.run(command, Some(batch))
    }

    /// Runs `command` (with `stdin` fed to it) and returns its stdout; a failure names the
    /// command, its exit status, its output and what it was fed.
    fn run(&self, command: Command, stdin: Option<&str>) -> Result<String, TestkitError> {
        run(command, stdin)
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        // Delay threads first: they live in namespaces about to go.
        self.faults().degraded.clear();
        for namespace in self.created.iter().rev() {
            let mut command = Command::new(&self.ip);
            command.args(["netns", "delete", namespace]);
            if let Err(error) = run(command, None) {
                tracing::warn!(%error, "deleting a network lab namespace");
            }
        }
    }
}

pub(crate) fn run(mut command: Command, stdin: Option<&str>) -> Result<String, TestkitError> {
    let shown = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let failed = |status: String, output: String| TestkitError::CommandFailed {
        command: shown.clone(),
        status,
        output: match stdin {
            Some(input) => format!("{output}\n--- stdin ---\n{input}"),
            None => output,
        },
    };
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|source| TestkitError::io(format!("spawning `{shown}`"), source))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|source| TestkitError::io(format!("writing stdin of `{shown}`"), source))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|source| TestkitError::io(format!("waiting for `{shown}`"), source))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(failed(
            output.status.to_string(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        ))
    }
}

fn open_netns(namespace: &str) -> Result<File, TestkitError> {
    let path = Path::new(NETNS_DIR).join(namespace);
    File::open(&path)
        .map_err(|source| TestkitError::io(format!("opening {}", path.display()), source))
}

fn host_addr(index: usize) -> Ipv4Addr {
    let [a, b, c, _] = LAB_SUBNET.octets();
    // validate_nodes bounds the count, so this never saturates.
    let host = u8::try_from(index)
        .ok()
        .and_then(|index| index.checked_add(FIRST_HOST))
        .unwrap_or(u8::MAX);
    Ipv4Addr::new(a, b, c, host)
}

fn validate_nodes(lab: &str, nodes: &[&str]) -> Result<(), TestkitError> {
    let problem = |problem: String| TestkitError::Lab {
        lab: lab.to_string(),
        problem,
    };
    let most = usize::from(u8::MAX - FIRST_HOST);
    if nodes.is_empty() || nodes.len() > most {
        return Err(problem(format!(
            "needs 1 to {most} nodes, got {}",
            nodes.len()
        )));
    }
    let mut seen = BTreeSet::new();
    for node in nodes {
        let valid = !node.is_empty()
            && node.len() <= 20
            && node
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(problem(format!(
                "node name `{node}` is not 1-20 characters of [a-z0-9-]"
            )));
        }
        if !seen.insert(*node) {
            return Err(problem(format!("node `{node}` is listed twice")));
        }
    }
    Ok(())
}

/// The pid a lab's namespace name carries (`shq<pid>x...`).
pub(crate) fn owner_pid(namespace: &str) -> Option<u32> {
    let rest = namespace.strip_prefix(NAME_PREFIX)?;
    let (pid, _) = rest.split_once('x')?;
    pid.parse().ok()
}

/// Deletes the namespaces of labs whose process is gone (a test killed before its drop ran).
pub(crate) fn sweep_stale_labs(ip: &Path) {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let mut command = Command::new(ip);
        command.args(["netns", "delete", &name]);
        match run(command, None) {
            Ok(_) => tracing::info!(namespace = %name, pid, "swept a stale network lab namespace"),
            Err(error) => tracing::warn!(%error, "sweeping a stale network lab namespace"),
        }
    }
}

/// The switch's nftables script: replaces the lab's table (atomically, in one transaction)
/// with drops for cuts and isolated nodes and random loss for degraded ones. Drop rules come
/// first; a packet between two degraded nodes meets both loss rules, as it would crossing two
/// lossy links.
fn switch_rules(faults: &Faults, addrs: &[Ipv4Addr]) -> String {
    let mut rules = String::new();
    for (a, b) in &faults.cuts {
        let (a, b) = (addrs[*a], addrs[*b]);
        let _ = writeln!(rules, "    ip saddr {a} ip daddr {b} drop");
        let _ = writeln!(rules, "    ip saddr {b} ip daddr {a} drop");
    }
    for index in &faults.isolated {
        let addr = addrs[*index];
        let _ = writeln!(rules, "    ip saddr {addr} drop");
        let _ = writeln!(rules, "    ip daddr {addr} drop");
    }
    for (index, degraded) in &faults.degraded {
        if degraded.loss_percent > 0 {
            let (addr, loss) = (addrs[*index], degraded.loss_percent);
            let _ = writeln!(
                rules,
                "    ip saddr {addr} numgen random mod 100 < {loss} drop"
            );
            let _ = writeln!(
                rules,
                "    ip daddr {addr} numgen random mod 100 < {loss} drop"
            );
        }
    }
    format!(
        "table bridge {TABLE}\n\
         delete table bridge {TABLE}\n\
         table bridge {TABLE} {{\n\
         \x20 chain forward {{\n\
         \x20   type filter hook forward priority 0; policy accept;\n\
         {rules}\
         \x20 }}\n\
         }}\n"
    )
}

/// A node's iptables filter table: every packet crossing `eth0` to the delay queue, or none.
fn delay_rules(on: bool) -> String {
    let queued = if on {
        format!(
            "-A INPUT -i eth0 -j NFQUEUE --queue-num {QUEUE}\n\
             -A OUTPUT -o eth0 -j NFQUEUE --queue-num {QUEUE}\n"
        )
    } else {
        String::new()
    };
    format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{queued}COMMIT\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> Vec<Ipv4Addr> {
        (0..3).map(host_addr).collect()
    }

    #[test]
    fn nodes_get_addresses_from_ten_upwards() {
        assert_eq!(host_addr(0), Ipv4Addr::new(10, 231, 0, 10));
        assert_eq!(host_addr(2), Ipv4Addr::new(10, 231, 0, 12));
    }

    #[test]
    fn healthy_rules_replace_the_table_with_an_empty_chain() {
        let rules = switch_rules(&Faults::default(), &addrs());
        assert!(rules.starts_with("table bridge shanraq_lab\ndelete table bridge shanraq_lab\n"));
        assert!(!rules.contains("drop"), "{rules}");
    }

    #[test]
    fn a_cut_drops_both_directions_and_loss_is_random() {
        let mut faults = Faults::default();
        faults.cuts.insert((0, 2));
        faults.isolated.insert(1);
        faults.degraded.insert(
            2,
            Degraded {
                loss_percent: 30,
                delay: None,
            },
        );
        let rules = switch_rules(&faults, &addrs());
        for line in [
            "ip saddr 10.231.0.10 ip daddr 10.231.0.12 drop",
            "ip saddr 10.231.0.12 ip daddr 10.231.0.10 drop",
            "ip saddr 10.231.0.11 drop",
            "ip daddr 10.231.0.11 drop",
            "ip saddr 10.231.0.12 numgen random mod 100 < 30 drop",
            "ip daddr 10.231.0.12 numgen random mod 100 < 30 drop",
        ] {
            assert!(rules.contains(line), "missing `{line}`:\n{rules}");
        }
    }

    #[test]
    fn delay_rules_queue_eth0_only() {
        let on = delay_rules(true);
        assert!(
            on.contains("-A INPUT -i eth0 -j NFQUEUE --queue-num 0"),
            "{on}"
        );
        assert!(
            on.contains("-A OUTPUT -o eth0 -j NFQUEUE --queue-num 0"),
            "{on}"
        );
        assert!(!delay_rules(false).contains("NFQUEUE"));
    }

    #[test]
    fn node_names_are_checked() {
        assert!(validate_nodes("lab", &["pg-0", "proxy"]).is_ok());
        assert!(validate_nodes("lab", &[]).is_err());
        assert!(validate_nodes("lab", &["a", "a"]).is_err());
        assert!(validate_nodes("lab", &["Bad_Name"]).is_err());
    }

    #[test]
    fn stale_labs_are_known_by_their_pid() {
        assert_eq!(owner_pid("shq1234x0-pg-0"), Some(1234));
        assert_eq!(owner_pid("shq1234x0_sw"), Some(1234));
        assert_eq!(owner_pid("other"), None);
        assert_eq!(owner_pid("shqx0"), None);
    }
}
