//! A real Apache Kafka KRaft cluster on 127.0.0.1: one JVM per node, started from the
//! server.properties files a caller hands in (the operator's rendered ones), killed on drop.
//! Only what cannot be the same on one machine is substituted: the listener addresses and ports
//! (`listeners`, `advertised.listeners`, `controller.quorum.voters`) and the data directory
//! (`log.dirs`); every other line runs as rendered. Each node's storage is formatted with the
//! caller's cluster id before its first start. Readiness is the cluster's own answer: the
//! metadata of the admin API listing every broker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tempfile::TempDir;

use crate::process::{ensure_alive, kill_and_reap, signal_group, spawn_logged, tail};
use crate::{TestkitError, binaries, free_port};

/// A JVM heap that keeps six nodes well inside a CI machine's memory.
pub const DEFAULT_HEAP: &str = "-Xmx384m";
/// How long a node gets to shut down cleanly (a broker's controlled shutdown moves its
/// leaderships away first) before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(120);
const PORT_TIMEOUT: Duration = Duration::from_secs(120);

const LOG4J2: &str = "\
# Test nodes log to stdout, which the testkit appends to the node's log file.
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
logger.raft.name = org.apache.kafka.raft
logger.raft.level = WARN
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KafkaRole {
    Controller,
    Broker,
}

/// The Prometheus JMX exporter java agent on every node, with the caller's exporter config.
#[derive(Clone, Debug)]
pub struct MetricsAgent {
    pub config_yaml: String,
}

#[derive(Clone, Debug)]
pub struct KafkaOptions {
    /// JVM heap flag for every node.
    pub heap: String,
    pub metrics: Option<MetricsAgent>,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions {
            heap: DEFAULT_HEAP.to_owned(),
            metrics: None,
        }
    }
}

#[derive(Debug)]
struct KafkaNode {
    node_id: i32,
    role: KafkaRole,
    port: u16,
    metrics_port: Option<u16>,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running KRaft cluster: controllers and brokers as separate JVMs.
#[derive(Debug)]
pub struct KafkaCluster {
    nodes: Vec<KafkaNode>,
    home: PathBuf,
    options: KafkaOptions,
    cluster_id: String,
    // Dropped last: removes the data directories after the JVMs are gone.
    dir: TempDir,
}

/// The value of `key` in a properties text (the last assignment wins, as in Java).
pub fn property<'a>(properties: &'a str, key: &str) -> Option<&'a str> {
    properties
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .filter(|(name, _)| name.trim() == key)
        .map(|(_, value)| value.trim())
        .next_back()
}

/// Why a rendered server.properties cannot be made local.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocalizeError {
    #[error("the rendered properties have no `{key}`")]
    Missing { key: &'static str },
    #[error("listener `{listener}` has no `NAME://`")]
    ListenerName { listener: String },
    #[error("quorum voter `{voter}` is not `id@host:port`")]
    VoterSyntax { voter: String },
    #[error("quorum voter {id} is not one of the controllers given")]
    UnknownVoter { id: i32 },
}

/// The cluster's metadata could not be read.
#[derive(Debug, thiserror::Error)]
enum MetadataError {
    #[error("creating a metadata client: {0}")]
    Client(rdkafka::error::KafkaError),
    #[error("metadata from {bootstrap}: {error}")]
    Fetch {
        bootstrap: String,
        error: rdkafka::error::KafkaError,
    },
}

/// `properties` with the addresses, ports and directory of this machine: every listener on
/// 127.0.0.1 at `port`, every quorum voter at its controller's local port, `log.dirs` at
/// `data_dir`. Any other line is kept byte for byte. Fails when a line to substitute is
/// missing or names a voter without a local port.
pub fn localize(
    properties: &str,
    port: u16,
    voter_ports: &BTreeMap<i32, u16>,
    data_dir: &Path,
) -> Result<String, LocalizeError> {
    let mut seen = BTreeMap::new();
    let mut out = String::new();
    for line in properties.lines() {
        let replaced = match line.split_once('=') {
            Some((key, value)) if !line.trim_start().starts_with('#') => {
                let key = key.trim();
                let value = value.trim();
                let new = match key {
                    "listeners" | "advertised.listeners" => Some(relisten(value, port)?),
                    "controller.quorum.voters" => Some(revoters(value, voter_ports)?),
                    "log.dirs" => Some(data_dir.display().to_string()),
                    _ => None,
                };
                new.map(|new| {
                    seen.insert(key.to_owned(), ());
                    format!("{key}={new}")
                })
            }
            _ => None,
        };
        out.push_str(replaced.as_deref().unwrap_or(line));
        out.push('\n');
    }
    for key in ["listeners", "controller.quorum.voters", "log.dirs"] {
        if !seen.contains_key(key) {
            return Err(LocalizeError::Missing { key });
        }
    }
    Ok(out)
}

/// `NAME://host:port[,NAME://host:port]` -> every listener on 127.0.0.1:`port` (one listener
/// per node, as rendered).
fn relisten(value: &str, port: u16) -> Result<String, LocalizeError> {
    value
        .split(',')
        .map(|listener| {
            let (name, _) =
                listener
                    .split_once("://")
                    .ok_or_else(|| LocalizeError::ListenerName {
                        listener: listener.to_owned(),
                    })?;
            Ok(format!("{name}://127.0.0.1:{port}"))
        })
        .collect::<Result<Vec<_>, LocalizeError>>()
        .map(|listeners| listeners.join(","))
}

/// `id@host:port,...` -> `id@127.0.0.1:<that controller's local port>,...`
fn revoters(value: &str, voter_ports: &BTreeMap<i32, u16>) -> Result<String, LocalizeError> {
    value
        .split(',')
        .map(|voter| {
            let id: i32 = voter
                .split_once('@')
                .and_then(|(id, _)| id.parse().ok())
                .ok_or_else(|| LocalizeError::VoterSyntax {
                    voter: voter.to_owned(),
                })?;
            let port = voter_ports
                .get(&id)
                .ok_or(LocalizeError::UnknownVoter { id })?;
            Ok(format!("{id}@127.0.0.1:{port}"))
        })
        .collect::<Result<Vec<_>, LocalizeError>>()
        .map(|voters| voters.join(","))
}

fn parse_node(properties: &str) -> Result<(i32, KafkaRole), TestkitError> {
    let bad = |problem: String| TestkitError::Kafka { problem };
    let node_id = property(properties, "node.id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| bad("a server.properties has no numeric `node.id`".to_owned()))?;
    let role = match property(properties, "process.roles") {
        Some("controller") => KafkaRole::Controller,
        Some("broker") => KafkaRole::Broker,
        other => {
            return Err(bad(format!(
                "node {node_id}: process.roles {other:?} is neither `controller` nor `broker`"
            )));
        }
    };
    Ok((node_id, role))
}

impl KafkaCluster {
    /// Formats and starts every node of `properties` (one server.properties per node, as
    /// rendered), then waits until the cluster's metadata lists every broker.
    pub async fn start(
        cluster_id: &str,
        properties: &[String],
        options: KafkaOptions,
        ready_timeout: Duration,
    ) -> Result<KafkaCluster, TestkitError> {
        let home = binaries::kafka_home()?;
        let java = binaries::java()?;
        let dir = crate::process::temp_dir("shanraq-kafka-")?;
        let log4j = dir.path().join("log4j2.properties");
        write(&log4j, LOG4J2)?;
        if let Some(metrics) = &options.metrics {
            write(&dir.path().join("jmx-exporter.yaml"), &metrics.config_yaml)?;
        }

        let mut parsed = Vec::new();
        for text in properties {
            let (node_id, role) = parse_node(text)?;
            parsed.push((node_id, role, text, free_port()?));
        }
        let voter_ports: BTreeMap<i32, u16> = parsed
            .iter()
            .filter(|(_, role, _, _)| *role == KafkaRole::Controller)
            .map(|(id, _, _, port)| (*id, *port))
            .collect();

        let mut nodes = Vec::new();
        for (node_id, role, text, port) in parsed {
            let node_dir = dir.path().join(format!("node-{node_id}"));
            let data_dir = node_dir.join("kraft-logs");
            std::fs::create_dir_all(&node_dir)
                .map_err(|source| TestkitError::io("creating node dir", source))?;
            let local = localize(text, port, &voter_ports, &data_dir).map_err(|problem| {
                TestkitError::Kafka {
                    problem: format!("node {node_id}: {problem}"),
                }
            })?;
            let config = node_dir.join("server.properties");
            write(&config, &local)?;
            format_storage(&java, &home, &config, cluster_id, node_id)?;
            let metrics_port = match &options.metrics {
                Some(_) => Some(free_port()?),
                None => None,
            };
            nodes.push(KafkaNode {
                node_id,
                role,
                port,
                metrics_port,
                config,
                log: node_dir.join("kafka.log"),
                child: None,
            });
        }
        let mut cluster = KafkaCluster {
            nodes,
            home,
            options,
            cluster_id: cluster_id.to_owned(),
            dir,
        };
        let ids: Vec<i32> = cluster.nodes.iter().map(|node| node.node_id).collect();
        for id in &ids {
            cluster.spawn(*id)?;
        }
        for id in &ids {
            cluster.wait_listening(*id).await?;
        }
        let brokers = cluster.broker_ids().len();
        cluster
            .wait_brokers_registered(brokers, ready_timeout)
            .await?;
        Ok(cluster)
    }

    fn node(&self, node_id: i32) -> Result<&KafkaNode, TestkitError> {
        self.nodes
            .iter()
            .find(|node| node.node_id == node_id)
            .ok_or_else(|| TestkitError::Kafka {
                problem: format!("no Kafka node {node_id} in this cluster"),
            })
    }

    fn node_mut(&mut self, node_id: i32) -> Result<&mut KafkaNode, TestkitError> {
        self.nodes
            .iter_mut()
            .find(|node| node.node_id == node_id)
            .ok_or_else(|| TestkitError::Kafka {
                problem: format!("no Kafka node {node_id} in this cluster"),
            })
    }

    fn spawn(&mut self, node_id: i32) -> Result<(), TestkitError> {
        let java = binaries::java()?;
        let classpath = self.home.join("lib").join("*");
        let log4j = self.dir.path().join("log4j2.properties");
        let agent = self
            .options
            .metrics
            .as_ref()
            .map(|_| binaries::jmx_exporter_agent(&self.home))
            .transpose()?;
        let exporter_config = self.dir.path().join("jmx-exporter.yaml");
        let heap = self.options.heap.clone();
        let node = self.node_mut(node_id)?;
        if node.child.is_some() {
            return Err(TestkitError::Kafka {
                problem: format!("Kafka node {node_id} is already running"),
            });
        }
        let mut command = Command::new(java);
        command
            .arg(&heap)
            .args(["-Xms64m", "-XX:+UseSerialGC", "-Djava.awt.headless=true"])
            .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()));
        if let (Some(agent), Some(port)) = (&agent, node.metrics_port) {
            command.arg(format!(
                "-javaagent:{}=127.0.0.1:{port}:{}",
                agent.display(),
                exporter_config.display()
            ));
        }
        command
            .arg("-cp")
            .arg(&classpath)
            .arg("kafka.Kafka")
            .arg(&node.config);
        node.child = Some(spawn_logged(
            &mut command,
            &node.log,
            &format!("kafka node {node_id}"),
        )?);
        Ok(())
    }

    async fn wait_listening(&mut self, node_id: i32) -> Result<(), TestkitError> {
        let node = self.node_mut(node_id)?;
        let what = format!("kafka node {node_id}");
        let (port, log) = (node.port, node.log.clone());
        let child = node.child.as_mut().ok_or_else(|| TestkitError::Kafka {
            problem: format!("Kafka node {node_id} is not running"),
        })?;
        crate::process::wait_for_port(child, port, &what, &log, PORT_TIMEOUT).await
    }

    /// Waits until the cluster's metadata lists `count` brokers, while every started node
    /// stays alive.
    pub async fn wait_brokers_registered(
        &mut self,
        count: usize,
        timeout: Duration,
    ) -> Result<(), TestkitError> {
        let deadline = Instant::now() + timeout;
        let bootstrap = self.bootstrap_servers();
        loop {
            for node in &mut self.nodes {
                if let Some(child) = node.child.as_mut() {
                    ensure_alive(child, &format!("kafka node {}", node.node_id), &node.log)?;
                }
            }
            let servers = bootstrap.clone();
            let registered = tokio::task::spawn_blocking(move || registered_brokers(&servers))
                .await
                .map_err(|error| TestkitError::Kafka {
                    problem: format!("metadata task: {error}"),
                })?;
            let last = match registered {
                Ok(ids) if ids.len() >= count => return Ok(()),
                Ok(ids) => format!("brokers registered: {ids:?}"),
                Err(error) => error.to_string(),
            };
            if Instant::now() >= deadline {
                let logs: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|node| format!("node {}:\n{}", node.node_id, tail(&node.log, 15)))
                    .collect();
                return Err(TestkitError::NotReady {
                    what: "kafka cluster".to_owned(),
                    seconds: timeout.as_secs(),
                    detail: format!("{last}\n{}", logs.join("\n")),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `127.0.0.1:port,...` of every broker, running or not.
    pub fn bootstrap_servers(&self) -> String {
        self.nodes
            .iter()
            .filter(|node| node.role == KafkaRole::Broker)
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn broker_ids(&self) -> Vec<i32> {
        self.ids(KafkaRole::Broker)
    }

    pub fn controller_ids(&self) -> Vec<i32> {
        self.ids(KafkaRole::Controller)
    }

    fn ids(&self, role: KafkaRole) -> Vec<i32> {
        self.nodes
            .iter()
            .filter(|node| node.role == role)
            .map(|node| node.node_id)
            .collect()
    }

    /// The node's own port on 127.0.0.1 (its broker or controller listener).
    pub fn port(&self, node_id: i32) -> Result<u16, TestkitError> {
        Ok(self.node(node_id)?.port)
    }

    pub fn is_running(&self, node_id: i32) -> bool {
        self.node(node_id).is_ok_and(|node| node.child.is_some())
    }

    /// `http://127.0.0.1:PORT/metrics` of a node's JMX exporter agent.
    pub fn metrics_url(&self, node_id: i32) -> Result<String, TestkitError> {
        let node = self.node(node_id)?;
        node.metrics_port
            .map(|port| format!("http://127.0.0.1:{port}/metrics"))
            .ok_or_else(|| TestkitError::Kafka {
                problem: format!("Kafka node {node_id} runs no metrics agent"),
            })
    }

    /// SIGTERM, then waits for the JVM to exit: a broker's controlled shutdown (leaderships
    /// moved away first), as a pod deletion does. Killed after a bounded wait.
    pub async fn stop(&mut self, node_id: i32) -> Result<(), TestkitError> {
        let node = self.node_mut(node_id)?;
        let Some(mut child) = node.child.take() else {
            return Ok(());
        };
        signal_group(child.id(), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => {
                    kill_and_reap(&mut child);
                    return Ok(());
                }
            }
        }
    }

    /// SIGKILL (kill -9): no controlled shutdown.
    pub fn kill(&mut self, node_id: i32) -> Result<(), TestkitError> {
        let node = self.node_mut(node_id)?;
        if let Some(mut child) = node.child.take() {
            kill_and_reap(&mut child);
        }
        Ok(())
    }

    /// Starts a stopped node again on its port and data directory, as a restarted pod on its
    /// volume; returns once it listens (callers wait on the cluster's own conditions next).
    pub async fn start_node(&mut self, node_id: i32) -> Result<(), TestkitError> {
        self.spawn(node_id)?;
        self.wait_listening(node_id).await
    }

    /// The node's log so far.
    pub fn log(&self, node_id: i32) -> String {
        self.node(node_id)
            .map(|node| std::fs::read_to_string(&node.log).unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                kill_and_reap(&mut child);
            }
        }
    }
}

/// The broker ids in the cluster's metadata, from the admin protocol.
fn registered_brokers(bootstrap: &str) -> Result<Vec<i32>, MetadataError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "3000")
        .create()
        .map_err(MetadataError::Client)?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(3))
        .map_err(|error| MetadataError::Fetch {
            bootstrap: bootstrap.to_owned(),
            error,
        })?;
    Ok(metadata
        .brokers()
        .iter()
        .map(|broker| broker.id())
        .collect())
}

fn format_storage(
    java: &Path,
    home: &Path,
    config: &Path,
    cluster_id: &str,
    node_id: i32,
) -> Result<(), TestkitError> {
    let output = Command::new(java)
        .args([DEFAULT_HEAP, "-XX:+UseSerialGC", "-cp"])
        .arg(home.join("lib").join("*"))
        .args([
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cluster_id,
        ])
        .arg("--config")
        .arg(config)
        .output()
        .map_err(|source| TestkitError::io("running the Kafka storage tool", source))?;
    if !output.status.success() {
        return Err(TestkitError::CommandFailed {
            command: format!("kafka storage format of node {node_id}"),
            status: output.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), TestkitError> {
    std::fs::write(path, text)
        .map_err(|source| TestkitError::io(format!("writing {}", path.display()), source))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BROKER: &str = "\
# rendered
advertised.listeners=PLAINTEXT://p-kafka-broker-0.p-kafka-broker.ns.svc.cluster.local:9092
controller.quorum.voters=0@c-0.x:9093,1@c-1.x:9093,2@c-2.x:9093
listeners=PLAINTEXT://:9092
log.dirs=/var/lib/kafka/data/kraft-logs
min.insync.replicas=2
node.id=100
process.roles=broker
";

    #[test]
    fn only_addresses_ports_and_directories_change() {
        let voters = BTreeMap::from([(0, 21000), (1, 21001), (2, 21002)]);
        let local =
            localize(BROKER, 22000, &voters, Path::new("/tmp/x/kraft-logs")).expect("localized");
        assert_eq!(
            local,
            "\
# rendered
advertised.listeners=PLAINTEXT://127.0.0.1:22000
controller.quorum.voters=0@127.0.0.1:21000,1@127.0.0.1:21001,2@127.0.0.1:21002
listeners=PLAINTEXT://127.0.0.1:22000
log.dirs=/tmp/x/kraft-logs
min.insync.replicas=2
node.id=100
process.roles=broker
"
        );
        assert_eq!(parse_node(BROKER).expect("node"), (100, KafkaRole::Broker));
        assert_eq!(property(BROKER, "min.insync.replicas"), Some("2"));
    }

    #[test]
    fn a_voter_without_a_controller_is_refused() {
        let voters = BTreeMap::from([(0, 21000)]);
        let error = localize(BROKER, 22000, &voters, Path::new("/tmp/x"))
            .expect_err("voter 1 has no local controller");
        assert_eq!(error, LocalizeError::UnknownVoter { id: 1 });
        assert!(error.to_string().contains("quorum voter 1"), "{error}");
        let error = localize("node.id=1\n", 1, &voters, Path::new("/tmp/x"))
            .expect_err("nothing to substitute");
        assert!(error.to_string().contains("listeners"), "{error}");
    }
}
