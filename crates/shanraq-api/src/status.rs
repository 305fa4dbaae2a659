//! The status the operator writes: kstatus conditions, per-component state, failover state that
//! must survive an operator restart, and every objective measured beside its target.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShanraqClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`, one `<Component>Ready` per component and one
    /// `<Objective>Met` per objective.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<crate::kafka::KafkaStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub haproxy: Option<WorkloadStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objectives: Option<ObjectivesStatus>,
    /// WAL archiving and backups (when `spec.backup` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatus>,
    /// The last failover drill asked for with the `shanraq.org/drill` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillStatus>,
}

/// One failover drill: the operator deleted the primary's Pod and measured the failover that
/// followed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillStatus {
    /// The value of the `shanraq.org/drill` annotation that asked for it.
    pub request: String,
    /// `Running`, `Completed`, `Failed` or `Refused`.
    pub phase: String,
    /// The primary whose Pod was deleted (absent when the drill was refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The instance promoted by the failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// RFC 3339 time the primary's Pod was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// The failover's measured RTO (`status.postgres.lastFailover.rtoMs` of that failover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_ms: Option<i64>,
    /// What happened, in words (why it was refused or failed, or the result).
    #[serde(default)]
    pub message: String,
}

/// PostgreSQL state, including what the failover engine persists (epoch, target, phase) so that
/// a restarted operator resumes an interrupted failover instead of starting over.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresStatus {
    /// The instance that holds the primary role for the current epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_primary: Option<String>,
    /// The instance being promoted during a failover or switchover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_primary: Option<String>,
    /// Fencing epoch: bumped by every failover and switchover.
    #[serde(default)]
    pub epoch: i64,
    /// `Healthy`, or the failover/switchover phase in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default)]
    pub ready_instances: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<PostgresInstanceStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,
    /// The engine's full persisted state (JSON), owned by the operator; do not edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha_state: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresInstanceStatus {
    pub name: String,
    /// `primary`, `replica`, `fenced`, `starting`, `stopped` or `unreachable`.
    pub role: String,
    #[serde(default)]
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<i64>,
    /// WAL bytes behind the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// Whether the primary counts this instance as a synchronous (quorum) standby.
    #[serde(default)]
    pub synchronous: bool,
}

/// The measured timeline of the last failover or switchover.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRecord {
    /// `failover` or `switchover`.
    pub kind: String,
    pub from: String,
    pub to: String,
    /// RFC 3339 timestamps.
    pub detected_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed_at: Option<String>,
    /// From the primary's loss (or the switchover request) to routing to the new primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_ms: Option<i64>,
    /// WAL bytes the old primary had that the new one did not (0 under synchronous replication;
    /// Redis: replication offset bytes). Absent when not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_bytes: Option<i64>,
    /// Why this failover is known to have lost data no member held any more (Redis: every node
    /// came back without it), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_lost: Option<String>,
    /// What this failover may have lost without any way to measure it (PostgreSQL with
    /// `dataDurability: preferred` fallen back: the commits made since the fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub possible_loss: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisStatus {
    /// Replication mode: the node the Redis engine designated master for the current epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_master: Option<String>,
    #[serde(default)]
    pub ready_instances: i32,
    /// Fencing epoch of the Redis engine: bumped by every failover and switchover.
    #[serde(default)]
    pub epoch: i64,
    /// `Healthy`, or the failover/switchover phase in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Unplanned failovers the engine completed.
    #[serde(default)]
    pub failovers: i64,
    /// The last failover or switchover; `lostBytes` counts replication offset bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,
    /// The Redis engine's full persisted state (JSON), owned by the operator; do not edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha_state: Option<String>,
    /// Cluster mode: the cluster as last observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<RedisClusterStatus>,
}

/// Cluster mode, as the operator last observed it (`CLUSTER INFO`, `CLUSTER NODES`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisClusterStatus {
    /// `cluster_state`: `ok` or `fail`.
    pub state: String,
    /// Slots served by a healthy master, of 16384.
    pub slots_covered: i32,
    /// The masters serving slots, as `address (slots, replicas)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masters: Vec<String>,
    /// Failovers Redis Cluster performed that the operator saw (a replica turned master).
    #[serde(default)]
    pub failovers_seen: i64,
}

/// Readiness of a workload the operator does not fail over itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub replicas: i32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectivesStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<ObjectiveStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto: Option<ObjectiveStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99: Option<ObjectiveStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<ObjectiveStatus>,
    /// The disaster-recovery RPO: the age of the last archived WAL (`spec.backup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dr_rpo: Option<ObjectiveStatus>,
    /// The share of the availability objective's error budget left over
    /// `objectives.availabilityWindow`, in percent (`100%` untouched, negative once overspent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_budget_remaining: Option<String>,
    /// The write-probe counts the availability objective is measured from, kept here so that
    /// they outlive operator restarts and leader changes. Owned by the operator; do not edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_ledger: Option<AvailabilityLedgerStatus>,
    /// Each critical path the operator probes (a PostgreSQL read and commit, a Redis GET and
    /// SET, a Kafka produce with `acks=all`): its latency over the last five minutes against
    /// its target, and the last outage a client of that path saw.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub probe_paths: Vec<ProbePathStatus>,
}

/// One probed path over the latency window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbePathStatus {
    /// `postgres-read`, `postgres-write`, `redis-get`, `redis-set`, `kafka-produce`.
    pub path: String,
    /// `PostgreSQL`, `Redis` or `Kafka`.
    pub component: String,
    /// Percentiles of the successful probes, for example `412us`; absent while none succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<String>,
    /// The p99 target this path is judged against.
    pub target: String,
    /// Probes in the window, and how many of them failed.
    pub samples: i64,
    pub failures: i64,
    /// Whether the p99 is within the target.
    pub met: bool,
    /// The last outage this path's write probes saw: from the first failed probe to the next
    /// successful one (write paths only; kept until the next outage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_outage: Option<ProbeOutageStatus>,
}

/// An outage seen by a write probe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeOutageStatus {
    /// When the first failed probe started (RFC 3339).
    pub started: String,
    /// How long until a probe succeeded again, in milliseconds.
    pub duration_ms: i64,
}

/// Write-probe counts in buckets of `bucketSeconds` (a whole number of hours, at most 241
/// buckets over the window).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilityLedgerStatus {
    pub bucket_seconds: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 241))]
    pub buckets: Vec<AvailabilityBucket>,
}

/// One bucket: its start (Unix seconds), and the write probes that succeeded and ran in it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilityBucket {
    pub start: i64,
    pub ok: i64,
    pub total: i64,
}

/// One objective: its target, the measured value, and whether the target is met.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectiveStatus {
    pub target: String,
    pub measured: String,
    pub met: bool,
    /// The component whose figure this is: the worst of the enabled components (the
    /// condition's message gives every one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
}

/// WAL archiving and backups, as the operator last observed them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// The last backup that completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<BackupRecord>,
    /// The earliest time a restore can reach (RFC 3339): the start of the oldest backup kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_recoverability_point: Option<String>,
    /// The last WAL segment the primary archived (`pg_stat_archiver`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_archived_wal: Option<String>,
    /// When it was archived (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_archived_at: Option<String>,
    /// The slot of `spec.backup.schedules.full` the operator last acted on (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scheduled_full: Option<String>,
    /// The slot of `spec.backup.schedules.differential` last acted on (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scheduled_differential: Option<String>,
}

/// One backup pgBackRest completed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRecord {
    /// pgBackRest's label, e.g. `20261202-031500F`.
    pub label: String,
    /// `full`, `diff` or `incr`.
    #[serde(rename = "type")]
    pub type_: String,
    /// RFC 3339 start and stop times.
    pub started_at: String,
    pub completed_at: String,
    /// The instance it was taken on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}
