//! The `ShanraqBackup` custom resource: one backup of one ShanraqCluster, asked for by
//! creating the object (by hand, from Git, or by the operator's schedules) and carried out
//! once by the operator, on a streaming replica when one qualifies, else on the primary. Its
//! status says how it went, with pgBackRest's own error when it failed. The spec cannot change: a new backup is a new object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One pgBackRest backup of a ShanraqCluster in the same namespace.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "shanraq.org",
    version = "v1alpha1",
    kind = "ShanraqBackup",
    plural = "shanraqbackups",
    shortname = "sqb",
    namespaced,
    status = "ShanraqBackupStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "One pgBackRest backup of a ShanraqCluster, taken once by the operator.",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.cluster"}"#,
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Label","type":"string","jsonPath":".status.label"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message(
    "a ShanraqBackup's spec cannot change: create a new ShanraqBackup for another backup"
))]
pub struct ShanraqBackupSpec {
    /// The ShanraqCluster to back up; it must have `spec.backup`.
    #[schemars(regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"), length(max = 30))]
    pub cluster: String,
    /// `full`, `diff` (changes since the last full backup) or `incr` (since the last backup).
    #[serde(default, rename = "type")]
    pub kind: BackupType,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    #[default]
    Full,
    Diff,
    Incr,
}

impl BackupType {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Diff => "diff",
            BackupType::Incr => "incr",
        }
    }
}

/// Phases of a ShanraqBackup.
pub const PHASE_RUNNING: &str = "Running";
pub const PHASE_COMPLETED: &str = "Completed";
pub const PHASE_FAILED: &str = "Failed";
/// The condition a ShanraqBackup ends with.
pub const SUCCEEDED: &str = "Succeeded";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShanraqBackupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Running`, `Completed` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `Succeeded`: True once completed, False with the tool's error once failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The instance the backup was taken on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// pgBackRest's label of the backup, e.g. `20261202-031500F`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// What happened: pgBackRest's error when it failed (credentials never appear in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ShanraqBackupStatus {
    /// Completed or failed: the operator never runs it again.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.phase.as_deref(),
            Some(PHASE_COMPLETED) | Some(PHASE_FAILED)
        )
    }
}
