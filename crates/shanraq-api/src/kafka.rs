//! Kafka in KRaft mode: dedicated controller quorum, brokers, and the topics the spec declares.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::storage::StorageSpec;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.controllers % 2 == 1").field_path(".controllers").message(
    "kafka.controllers must be odd: a KRaft quorum of n survives (n-1)/2 losses, an even member adds none"
))]
#[x_kube(validation = Rule::new("self.minInsyncReplicas < self.defaultReplicationFactor").field_path(".minInsyncReplicas").message(
    "kafka.minInsyncReplicas must be lower than kafka.defaultReplicationFactor, or acks=all writes stop when one broker is down"
))]
#[x_kube(validation = Rule::new("self.defaultReplicationFactor <= self.brokers").field_path(".defaultReplicationFactor").message(
    "kafka.defaultReplicationFactor must not exceed kafka.brokers"
))]
#[x_kube(validation = Rule::new("!has(self.topics) || self.topics.all(t, t.replicationFactor <= self.brokers)").field_path(".topics").message(
    "every kafka.topics[].replicationFactor must not exceed kafka.brokers"
))]
#[x_kube(validation = Rule::new("!has(self.topics) || self.topics.all(t, t.replicationFactor > self.minInsyncReplicas)").field_path(".topics").message(
    "every kafka.topics[].replicationFactor must exceed kafka.minInsyncReplicas, or acks=all writes stop when one broker is down"
))]
#[x_kube(validation = Rule::new("self.brokers >= oldSelf.brokers").field_path(".brokers").message(
    "kafka.brokers cannot shrink: partition replicas are not moved off removed brokers"
))]
#[x_kube(validation = Rule::new("self.controllers == oldSelf.controllers").field_path(".controllers").message(
    "kafka.controllers is immutable: the KRaft voter set is fixed when the cluster is formed"
))]
pub struct KafkaSpec {
    #[serde(default = "crate::default_true")]
    pub enabled: bool,
    /// Image: a Java 17 runtime, Apache Kafka's jars and the Prometheus JMX exporter agent
    /// (images/kafka/Dockerfile).
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Number of brokers.
    #[serde(default = "default_three")]
    #[schemars(range(min = 1, max = 32))]
    pub brokers: i32,
    /// Number of KRaft controllers; odd, so that the quorum survives (n-1)/2 losses.
    #[serde(default = "default_three")]
    #[schemars(range(min = 1, max = 9))]
    pub controllers: i32,
    /// `min.insync.replicas`: with `acks=all`, a write needs this many in-sync replicas.
    #[serde(default = "default_min_insync")]
    #[schemars(range(min = 1, max = 31))]
    pub min_insync_replicas: i32,
    /// `default.replication.factor` for topics created without one.
    #[serde(default = "default_three")]
    #[schemars(range(min = 1, max = 32))]
    pub default_replication_factor: i32,
    /// Topics reconciled from the spec (Kubernetes to Kafka) through the admin API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub topics: Vec<KafkaTopic>,
    /// What happens to a topic removed from `topics`: `Retain` (default) keeps it and its data
    /// in Kafka, `Delete` deletes it. Only topics this cluster created or managed are ever deleted.
    #[serde(default)]
    pub deletion_policy: TopicDeletionPolicy,
    #[serde(default = "default_storage")]
    pub storage: StorageSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// This component's own objectives, overriding `spec.objectives` one by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objectives: Option<crate::objectives::ComponentObjectives>,
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum TopicDeletionPolicy {
    #[default]
    Retain,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.partitions >= oldSelf.partitions").field_path(".partitions").message(
    "kafka.topics[].partitions can only grow: Kafka cannot remove partitions"
))]
#[x_kube(validation = Rule::new("self.replicationFactor == oldSelf.replicationFactor").field_path(".replicationFactor").message(
    "kafka.topics[].replicationFactor is immutable"
))]
pub struct KafkaTopic {
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]{1,249}$"), length(max = 249))]
    pub name: String,
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 10000))]
    pub partitions: i32,
    #[serde(default = "default_three")]
    #[schemars(range(min = 1, max = 32))]
    pub replication_factor: i32,
    /// Topic-level configuration (`retention.ms`, `cleanup.policy`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 100))]
    pub config: BTreeMap<String, String>,
}

fn default_image() -> String {
    crate::images::default_image("kafka")
}
fn default_three() -> i32 {
    3
}
fn default_min_insync() -> i32 {
    2
}
fn default_partitions() -> i32 {
    12
}
fn default_storage() -> StorageSpec {
    StorageSpec::of_size("20Gi")
}

impl Default for KafkaSpec {
    fn default() -> Self {
        KafkaSpec {
            enabled: true,
            image: default_image(),
            brokers: default_three(),
            controllers: default_three(),
            min_insync_replicas: default_min_insync(),
            default_replication_factor: default_three(),
            topics: Vec::new(),
            deletion_policy: TopicDeletionPolicy::Retain,
            storage: default_storage(),
            resources: None,
            objectives: None,
        }
    }
}

impl KafkaTopic {
    pub fn new(name: &str, partitions: i32, replication_factor: i32) -> Self {
        KafkaTopic {
            name: name.to_owned(),
            partitions,
            replication_factor,
            config: BTreeMap::new(),
        }
    }
}

/// `status.kafka`: the workloads' counts, and what the admin API showed of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaStatus {
    /// Controllers and brokers ready (pods).
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub replicas: i32,
    /// Brokers in the cluster's metadata (admin API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brokers_registered: Option<i32>,
    /// Partitions without a leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_partitions: Option<i32>,
    /// Partitions whose ISR is smaller than their replica set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub under_replicated_partitions: Option<i32>,
    /// The smallest ISR of any partition, next to the lowest `min.insync.replicas` in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_isr: Option<i32>,
    /// One entry per topic of `spec.kafka.topics` (and per retained topic this cluster managed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub topics: Vec<KafkaTopicStatus>,
}

/// One topic as the operator last reconciled it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopicStatus {
    pub name: String,
    /// `Ready`, `Refused` (the spec asks for what Kafka cannot do in place), `Failed` (the admin
    /// API refused or did not answer), `Retained` (removed from the spec, kept in Kafka).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub under_replicated_partitions: Option<i32>,
    /// Why it is not `Ready`, naming the field.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}
