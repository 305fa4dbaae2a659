//! The `ShanraqCluster` custom resource: one object for the whole HA stack.
//!
//! Cross-field rules live here and on the component specs as CEL (`x-kubernetes-validations`),
//! so the API server rejects an invalid spec at admission with a message naming the field. The
//! operator evaluates the very same rules offline (see `admission`), so the CRD is the single
//! source of truth.

use kube::CustomResource;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::backup::{BackupSpec, ClusterBootstrap};
use crate::failover::FailoverSpec;
use crate::haproxy::HAProxySpec;
use crate::kafka::KafkaSpec;
use crate::monitoring::MonitoringSpec;
use crate::objectives::Objectives;
use crate::postgres::PostgresSpec;
use crate::redis::RedisSpec;
use crate::status::ShanraqClusterStatus;

/// A complete high-availability stack: PostgreSQL, Redis, Kafka, HAProxy and monitoring, with
/// recovery objectives that the operator measures and reports.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "shanraq.org",
    version = "v1alpha1",
    kind = "ShanraqCluster",
    plural = "shanraqclusters",
    shortname = "sqc",
    namespaced,
    status = "ShanraqClusterStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A high-availability fintech stack (PostgreSQL, Redis, Kafka, HAProxy, monitoring) with measured recovery objectives.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Primary","type":"string","jsonPath":".status.postgres.currentPrimary"}"#,
    printcolumn = r#"{"name":"RPO","type":"string","jsonPath":".status.objectives.rpo.measured"}"#,
    printcolumn = r#"{"name":"RTO","type":"string","jsonPath":".status.objectives.rto.measured"}"#,
    printcolumn = r#"{"name":"P99","type":"string","jsonPath":".status.objectives.latencyP99.measured"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.size() <= 30").message("metadata.name must be at most 30 characters: child objects such as <name>-kafka-controller-0 must stay within Kubernetes name limits"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name must be a DNS-1035 label (lower case letters, digits and '-', starting with a letter), because Services are named after it")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(has(self.postgres.objectives) && has(self.postgres.objectives.rpo)) || duration(self.objectives.rpo) != duration('0s') || !self.postgres.enabled || (self.postgres.instances >= 2 && self.postgres.synchronous.number >= 1)"
).field_path(".objectives.rpo").message(
    "objectives.rpo 0s requires synchronous PostgreSQL replication: postgres.instances >= 2 and postgres.synchronous.number >= 1 (or give PostgreSQL its own postgres.objectives.rpo)"
))]
#[x_kube(validation = Rule::new(
    "!has(self.postgres.objectives) || !has(self.postgres.objectives.rpo) || duration(self.postgres.objectives.rpo) != duration('0s') || !self.postgres.enabled || (self.postgres.instances >= 2 && self.postgres.synchronous.number >= 1)"
).field_path(".postgres.objectives.rpo").message(
    "postgres.objectives.rpo 0s requires synchronous PostgreSQL replication: postgres.instances >= 2 and postgres.synchronous.number >= 1"
))]
#[x_kube(validation = Rule::new(
    "(has(self.kafka.objectives) && has(self.kafka.objectives.rpo)) || duration(self.objectives.rpo) != duration('0s') || !self.kafka.enabled || self.kafka.minInsyncReplicas >= 2"
).field_path(".objectives.rpo").message(
    "objectives.rpo 0s requires kafka.minInsyncReplicas >= 2, so that an acknowledged write survives the loss of a broker (or give Kafka its own kafka.objectives.rpo)"
))]
#[x_kube(validation = Rule::new(
    "!has(self.kafka.objectives) || !has(self.kafka.objectives.rpo) || duration(self.kafka.objectives.rpo) != duration('0s') || !self.kafka.enabled || self.kafka.minInsyncReplicas >= 2"
).field_path(".kafka.objectives.rpo").message(
    "kafka.objectives.rpo 0s requires kafka.minInsyncReplicas >= 2, so that an acknowledged write survives the loss of a broker"
))]
#[x_kube(validation = Rule::new(
    "!has(self.bootstrap) || !has(self.bootstrap.recovery) || has(self.backup)"
).field_path(".bootstrap.recovery").message(
    "bootstrap.recovery restores from spec.backup's object store: set spec.backup"
))]
#[x_kube(validation = Rule::new(
    "!has(self.backup) || !self.postgres.enabled || duration(self.backup.archiveTimeout) <= duration(self.objectives.dr.rpo)"
).field_path(".backup.archiveTimeout").message(
    "backup.archiveTimeout must not exceed objectives.dr.rpo: a WAL segment may wait that long before it is archived"
))]
#[x_kube(validation = Rule::new(
    "!has(self.backup) || self.postgres.enabled"
).field_path(".postgres.enabled").message(
    "postgres.enabled cannot be false while spec.backup is set: backups and WAL archiving are PostgreSQL's, and scheduled backups would keep failing; remove spec.backup first (the repository keeps its backups)"
))]
#[x_kube(validation = Rule::new(
    "!has(self.bootstrap) || !has(self.bootstrap.recovery) || (has(oldSelf.bootstrap) && has(oldSelf.bootstrap.recovery) && self.bootstrap.recovery == oldSelf.bootstrap.recovery)"
).field_path(".bootstrap.recovery").message(
    "bootstrap.recovery is used only when the cluster is created: it cannot be added or changed afterwards (removing it is allowed); restore into a new cluster instead"
))]
pub struct ShanraqClusterSpec {
    /// Recovery and service objectives, measured and reported in the status.
    #[serde(default)]
    pub objectives: Objectives,
    #[serde(default)]
    pub postgres: PostgresSpec,
    #[serde(default)]
    pub redis: RedisSpec,
    #[serde(default)]
    pub kafka: KafkaSpec,
    #[serde(default)]
    pub haproxy: HAProxySpec,
    #[serde(default)]
    pub monitoring: MonitoringSpec,
    /// How fast failures are detected and acted on.
    #[serde(default)]
    pub failover: FailoverSpec,
    /// WAL archiving and backups to an S3-compatible object store (pgBackRest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,
    /// How the first primary gets its data: empty (the default) or restored from backups.
    #[serde(default, skip_serializing_if = "ClusterBootstrap::is_empty")]
    pub bootstrap: ClusterBootstrap,
}

impl ShanraqClusterSpec {
    /// The components whose objectives are judged: the enabled ones.
    pub fn objective_components(&self) -> Vec<crate::objectives::ObjectiveComponent> {
        use crate::objectives::ObjectiveComponent;
        ObjectiveComponent::ALL
            .into_iter()
            .filter(|component| match component {
                ObjectiveComponent::Postgres => self.postgres.enabled,
                ObjectiveComponent::Redis => self.redis.enabled,
                ObjectiveComponent::Kafka => self.kafka.enabled,
            })
            .collect()
    }

    /// `component`'s targets: its own `objectives` where set, else `spec.objectives`, except
    /// that Redis never inherits a `0s` RPO (see `crate::objectives::TargetSource::RedisDefault`).
    pub fn objective_targets(
        &self,
        component: crate::objectives::ObjectiveComponent,
    ) -> crate::objectives::EffectiveTargets {
        crate::objectives::effective_targets(self, component)
    }
}
