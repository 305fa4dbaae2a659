//! Kafka in KRaft mode with a dedicated controller quorum: two StatefulSets (controllers,
//! brokers) with their headless Services, a bootstrap Service, disruption budgets and a
//! ConfigMap with one server.properties per node. The declared topics are not rendered: the
//! operator reconciles them through Kafka's admin API (`engines::kafka` of shanraq-operator).
//! Both StatefulSets roll `OnDelete`: the operator deletes one pod at a time, only when the
//! partitions' in-sync replicas and the controller quorum allow it.
//!
//! Every node formats its storage with a cluster id derived from the ShanraqCluster's uid, so
//! the id is stable across reconciles and distinct between clusters, without any state.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Probe, ResourceRequirements, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};
use shanraq_api::ValidCluster;
use shanraq_api::names::Component;

use crate::meta;
use crate::{Child, RenderError};

/// uid and gid of `kafka` in the Kafka image (images/kafka/Dockerfile creates it).
pub const KAFKA_UID: i64 = 1000;
pub const BROKER_PORT: i32 = 9092;
pub const CONTROLLER_PORT: i32 = 9093;
/// Broker node ids start here, so they never collide with controller ids (0..controllers).
pub const BROKER_ID_BASE: i32 = 100;
/// The KRaft cluster id used when the cluster has no uid yet (offline `shanraq render`).
pub const OFFLINE_CLUSTER_ID: &str = "c2hhbnJhcS1vZmZsaW5lIQ";
const KAFKA_HOME: &str = "/opt/kafka";
const CONFIG_DIR: &str = "/etc/shanraq/kafka";
const DATA_MOUNT: &str = "/var/lib/kafka/data";
/// Below the volume's root, which may hold `lost+found` (not a valid partition directory).
const LOG_DIRS: &str = "/var/lib/kafka/data/kraft-logs";
/// How long a Kafka node may take to start listening before the kubelet restarts it.
pub const STARTUP_SECONDS: i32 = 600;

/// The KRaft cluster id: the cluster uid's 16 bytes in unpadded base64url (22 characters).
/// A uid that is not a UUID is hashed instead.
pub fn cluster_id(cluster: &ValidCluster) -> String {
    if cluster.uid.is_empty() {
        return OFFLINE_CLUSTER_ID.to_owned();
    }
    let hex: String = cluster.uid.chars().filter(|c| *c != '-').collect();
    let mut bytes = [0_u8; 16];
    let parsed = hex.len() == 32
        && (0..16).all(|i| match u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16) {
            Ok(byte) => {
                bytes[i] = byte;
                true
            }
            Err(_) => false,
        });
    if !parsed {
        let digest = Sha256::digest(cluster.uid.as_bytes());
        bytes.copy_from_slice(&digest[..16]);
    }
    base64url(&bytes)
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let symbols = chunk.len() + 1;
        for i in 0..symbols {
            let index = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out
}

/// `controller.quorum.voters`: every controller by its stable DNS name.
fn quorum_voters(cluster: &ValidCluster) -> String {
    (0..cluster.spec.kafka.controllers)
        .map(|ordinal| {
            format!(
                "{ordinal}@{}:{CONTROLLER_PORT}",
                meta::pod_fqdn(cluster, Component::KafkaController, ordinal)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn properties(settings: &BTreeMap<&str, String>, title: &str) -> String {
    let mut text = format!(
        "# Rendered by the shanraq operator from the ShanraqCluster spec; edits are overwritten.\n# {title}\n"
    );
    for (key, value) in settings {
        let _ = writeln!(text, "{key}={value}");
    }
    text
}

fn common_settings(cluster: &ValidCluster) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("controller.quorum.voters", quorum_voters(cluster)),
        ("controller.listener.names", "CONTROLLER".to_owned()),
        (
            "listener.security.protocol.map",
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT".to_owned(),
        ),
        ("log.dirs", LOG_DIRS.to_owned()),
    ])
}

/// How long the controllers wait for a broker's heartbeat before fencing it and moving its
/// partitions' leadership (Kafka's own default, rendered so that the RTO projection and the
/// cluster read the same figure): what an unclean broker loss costs producers.
pub const BROKER_SESSION_TIMEOUT_MS: u64 = 9000;

/// server.properties of controller `ordinal`.
pub fn controller_properties(cluster: &ValidCluster, ordinal: i32) -> String {
    let mut settings = common_settings(cluster);
    settings.insert("process.roles", "controller".to_owned());
    settings.insert("node.id", ordinal.to_string());
    settings.insert("listeners", format!("CONTROLLER://:{CONTROLLER_PORT}"));
    // With eligible leader replicas (on by default since Kafka 4.1) the controllers hold the
    // cluster-wide min.insync.replicas, and it overrides the brokers' static value: without
    // it here, every topic would run with Kafka's default of 1.
    settings.insert(
        "min.insync.replicas",
        cluster.spec.kafka.min_insync_replicas.to_string(),
    );
    settings.insert(
        "broker.session.timeout.ms",
        BROKER_SESSION_TIMEOUT_MS.to_string(),
    );
    properties(
        &settings,
        &format!(
            "KRaft controller {ordinal} of {}",
            cluster.spec.kafka.controllers
        ),
    )
}

/// server.properties of broker `ordinal` (node id `BROKER_ID_BASE + ordinal`).
pub fn broker_properties(cluster: &ValidCluster, ordinal: i32) -> String {
    let spec = &cluster.spec.kafka;
    let internal_rf = spec.brokers.min(3);
    let mut settings = common_settings(cluster);
    settings.insert("process.roles", "broker".to_owned());
    settings.insert("node.id", (BROKER_ID_BASE + ordinal).to_string());
    settings.insert("listeners", format!("PLAINTEXT://:{BROKER_PORT}"));
    settings.insert(
        "advertised.listeners",
        format!(
            "PLAINTEXT://{}:{BROKER_PORT}",
            meta::pod_fqdn(cluster, Component::KafkaBroker, ordinal)
        ),
    );
    settings.insert("inter.broker.listener.name", "PLAINTEXT".to_owned());
    settings.insert("num.partitions", "12".to_owned());
    settings.insert(
        "default.replication.factor",
        spec.default_replication_factor.to_string(),
    );
    settings.insert("min.insync.replicas", spec.min_insync_replicas.to_string());
    settings.insert("offsets.topic.replication.factor", internal_rf.to_string());
    settings.insert(
        "transaction.state.log.replication.factor",
        internal_rf.to_string(),
    );
    settings.insert(
        "transaction.state.log.min.isr",
        spec.min_insync_replicas.min(internal_rf).to_string(),
    );
    settings.insert("unclean.leader.election.enable", "false".to_owned());
    settings.insert("auto.create.topics.enable", "false".to_owned());
    settings.insert("auto.leader.rebalance.enable", "true".to_owned());
    settings.insert("group.initial.rebalance.delay.ms", "3000".to_owned());
    properties(
        &settings,
        &format!("KRaft broker {ordinal} of {}", spec.brokers),
    )
}

/// The port of the JMX exporter agent's `/metrics` in every Kafka pod.
pub const METRICS_PORT: i32 = 9404;
/// The Prometheus JMX exporter java agent inside the Kafka image (images/kafka/Dockerfile puts
/// it there, checked against its SHA-256), so a pod starts without reaching Maven Central.
pub const JMX_AGENT_JAR: &str = "/opt/kafka/agent/jmx_prometheus_javaagent.jar";
const EXPORTER_CONFIG: &str = "jmx-exporter.yaml";

/// The Prometheus JMX exporter's rules: only the series the dashboard, the alert rules and the
/// roller read, named in lower case. Controllers export their raft state (leader, high
/// watermark, log end offset) and the offline partition count; brokers their replica manager
/// (under-replicated and under-min-ISR partitions, ISR shrinks and expands), bytes and
/// messages in and out, and request latency percentiles.
pub fn jmx_exporter_config() -> String {
    r#"# Rendered by the shanraq operator; read by the JMX exporter java agent in every Kafka pod.
lowercaseOutputName: true
lowercaseOutputLabelNames: true
rules:
  - pattern: 'kafka.server<type=raft-metrics><>(current-leader|current-epoch|high-watermark|log-end-offset|number-of-voters|commit-latency-avg): (.*)'
    name: kafka_server_raft_metrics_$1
    type: GAUGE
  - pattern: 'kafka.controller<type=KafkaController, name=(OfflinePartitionsCount|ActiveControllerCount|GlobalPartitionCount|GlobalTopicCount)><>Value'
    name: kafka_controller_kafkacontroller_$1
    type: GAUGE
  - pattern: 'kafka.server<type=ReplicaManager, name=(UnderReplicatedPartitions|UnderMinIsrPartitionCount|AtMinIsrPartitionCount|OfflineReplicaCount|PartitionCount|LeaderCount)><>Value'
    name: kafka_server_replicamanager_$1
    type: GAUGE
  - pattern: 'kafka.server<type=ReplicaManager, name=(IsrShrinksPerSec|IsrExpandsPerSec)><>Count'
    name: kafka_server_replicamanager_$1_total
    type: COUNTER
  - pattern: 'kafka.server<type=BrokerTopicMetrics, name=(BytesInPerSec|BytesOutPerSec|MessagesInPerSec)><>Count'
    name: kafka_server_brokertopicmetrics_$1_total
    type: COUNTER
  - pattern: 'kafka.network<type=RequestMetrics, name=TotalTimeMs, request=(Produce|FetchConsumer|FetchFollower)><>(50|99|999)thPercentile'
    name: kafka_network_requestmetrics_totaltimems
    type: GAUGE
    labels:
      request: "$1"
      quantile: "0.$2"
"#
    .to_owned()
}

/// Every node's file, keyed `controller-N.properties` / `broker-N.properties`.
pub fn config_files(cluster: &ValidCluster) -> BTreeMap<String, String> {
    let spec = &cluster.spec.kafka;
    let mut files = BTreeMap::new();
    for ordinal in 0..spec.controllers {
        files.insert(
            format!("controller-{ordinal}.properties"),
            controller_properties(cluster, ordinal),
        );
    }
    for ordinal in 0..spec.brokers {
        files.insert(
            format!("broker-{ordinal}.properties"),
            broker_properties(cluster, ordinal),
        );
    }
    files.insert(EXPORTER_CONFIG.to_owned(), jmx_exporter_config());
    files
}

fn start_script(cluster: &ValidCluster, role: &str) -> String {
    format!(
        "# One pod template serves every node of this role: the ordinal picks the node's own\n\
         # server.properties. A formatted volume (meta.properties written) is not formatted\n\
         # again: a restart then starts one JVM instead of two.\n\
         set -eu\n\
         ordinal=\"${{POD_NAME##*-}}\"\n\
         config=\"{CONFIG_DIR}/{role}-${{ordinal}}.properties\"\n\
         if [ ! -f {LOG_DIRS}/meta.properties ]; then\n\
         \x20   {KAFKA_HOME}/bin/kafka-storage.sh format --ignore-formatted --cluster-id {id} --config \"$config\"\n\
         fi\n\
         exec {KAFKA_HOME}/bin/kafka-server-start.sh \"$config\"\n",
        id = cluster_id(cluster),
    )
}

/// CPU requested by a Kafka node whose spec sets no resources.
pub const DEFAULT_CPU_REQUEST: &str = "100m";
/// Memory requested by a Kafka node whose spec sets no resources: the 1 GiB heap
/// kafka-server-start.sh gives the JVM (`-Xms1G -Xmx1G`) and what the JVM needs besides it.
pub const DEFAULT_MEMORY_REQUEST: &str = "1536Mi";

/// Requests for a Kafka node when `spec.kafka.resources` is not set. Without any, a Kafka pod
/// is BestEffort: the kubelet gives its cgroup 2 CPU shares against the 51 or more of every
/// Burstable pod beside it (PostgreSQL and Redis are, through their exporters), so on a busy
/// node the JVMs hardly ran and never started listening; and BestEffort pods are the first
/// evicted under memory pressure.
fn default_resources() -> ResourceRequirements {
    meta::requests(DEFAULT_CPU_REQUEST, DEFAULT_MEMORY_REQUEST)
}

pub fn render(cluster: &ValidCluster) -> Result<Vec<Child>, RenderError> {
    let spec = &cluster.spec.kafka;
    if !spec.enabled {
        return Ok(Vec::new());
    }
    let names = &cluster.names;
    let files = config_files(cluster);
    let parts: Vec<(&str, &str)> = files
        .iter()
        .map(|(name, text)| (name.as_str(), text.as_str()))
        .collect();
    let hash = meta::config_hash(&parts);

    let controllers = names.workload(Component::KafkaController);
    let brokers = names.workload(Component::KafkaBroker);
    let children = vec![
        Child::StatefulSet(stateful_set(cluster, Component::KafkaController, &hash)),
        Child::StatefulSet(stateful_set(cluster, Component::KafkaBroker, &hash)),
        Child::Service(meta::headless_service(
            cluster,
            &controllers,
            Component::KafkaController,
            vec![meta::service_port("controller", CONTROLLER_PORT)],
        )),
        Child::Service(meta::headless_service(
            cluster,
            &brokers,
            Component::KafkaBroker,
            vec![meta::service_port("kafka", BROKER_PORT)],
        )),
        Child::Service(meta::cluster_ip_service(
            cluster,
            &names.kafka_bootstrap(),
            Component::KafkaBroker,
            &[],
            vec![meta::service_port("kafka", BROKER_PORT)],
        )),
        Child::ConfigMap(ConfigMap {
            metadata: meta::object_meta(cluster, &names.kafka_config(), Component::KafkaBroker),
            data: Some(files),
            ..ConfigMap::default()
        }),
        Child::PodDisruptionBudget(meta::pod_disruption_budget(
            cluster,
            &controllers,
            Component::KafkaController,
        )),
        Child::PodDisruptionBudget(meta::pod_disruption_budget(
            cluster,
            &brokers,
            Component::KafkaBroker,
        )),
    ];
    Ok(children)
}

fn stateful_set(cluster: &ValidCluster, component: Component, config_hash: &str) -> StatefulSet {
    let spec = &cluster.spec.kafka;
    let (role, port_name, port, replicas) = match component {
        Component::KafkaController => (
            "controller",
            "controller",
            CONTROLLER_PORT,
            spec.controllers,
        ),
        _ => ("broker", "kafka", BROKER_PORT, spec.brokers),
    };

    let mut kafka = meta::container("kafka", &spec.image, KAFKA_UID, true);
    kafka.command = meta::shell(start_script(cluster, role));
    kafka.env = Some(vec![
        meta::pod_name_env(),
        // kafka.logs.dir of kafka-run-class.sh, for a log4j configuration that writes files:
        // the root filesystem is read-only (the image's own configuration logs to the console).
        meta::env("LOG_DIR", "/opt/kafka/logs"),
        // kafka-run-class.sh passes KAFKA_OPTS to the JVM: the exporter serves /metrics.
        meta::env(
            "KAFKA_OPTS",
            &format!("-javaagent:{JMX_AGENT_JAR}={METRICS_PORT}:{CONFIG_DIR}/{EXPORTER_CONFIG}"),
        ),
    ]);
    kafka.ports = Some(vec![
        meta::container_port(port_name, port),
        meta::container_port("metrics", METRICS_PORT),
    ]);
    let tcp_probe = |period: i32, failures: i32| Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(port_name.to_owned()),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    kafka.readiness_probe = Some(tcp_probe(5, 3));
    // A node's start is two JVMs (the storage format, then the server with the JMX agent):
    // seconds on an idle machine, minutes on a busy one, where a liveness probe with a fixed
    // initial delay restarted every node before it listened, again and again. The startup
    // probe allows STARTUP_SECONDS; only then does the liveness probe restart a node that
    // stopped answering.
    kafka.startup_probe = Some(tcp_probe(5, STARTUP_SECONDS / 5));
    kafka.liveness_probe = Some(tcp_probe(10, 6));
    kafka.resources = Some(spec.resources.clone().unwrap_or_else(default_resources));
    kafka.volume_mounts = Some(vec![
        meta::mount("data", DATA_MOUNT, false),
        meta::mount("config", CONFIG_DIR, true),
        meta::mount("logs", "/opt/kafka/logs", false),
        meta::mount("tmp", "/tmp", false),
    ]);

    meta::stateful_set(
        cluster,
        component,
        meta::Workload {
            replicas,
            uid: KAFKA_UID,
            containers: vec![kafka],
            volumes: vec![
                meta::config_map_volume("config", &cluster.names.kafka_config()),
                meta::empty_dir_volume("logs"),
                meta::empty_dir_volume("tmp"),
            ],
            termination_grace_seconds: 120,
            // The quorum needs a majority of controllers up before any of them is ready, and
            // brokers wait for the quorum: start every pod at once.
            ordered_start: false,
            // The operator's roller deletes the pods one at a time (ISR and quorum checked):
            // the StatefulSet controller never restarts a Kafka pod by itself.
            on_delete: true,
            data_volume: "data",
            storage: &spec.storage,
            config_hash,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_known_vectors() {
        assert_eq!(base64url(b"shanraq-offline!"), OFFLINE_CLUSTER_ID);
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url(&[0_u8; 16]).len(), 22);
    }
}
