//! Backups and WAL archiving to an S3-compatible object store with pgBackRest (`spec.backup`),
//! and recovery of a new cluster from another cluster's backups (`spec.bootstrap.recovery`).
//!
//! pgBackRest keeps one stanza per cluster (named after the cluster) in the repository at
//! `s3://<bucket><path>`; a recovering cluster restores from the stanza of `recovery.source`
//! in the same repository, then archives into its own.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// The object store, retention, schedules and archiving of one cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.archiveTimeout) >= duration('1s')").field_path(".archiveTimeout").message(
    "backup.archiveTimeout must be at least 1s"
))]
pub struct BackupSpec {
    /// The S3 endpoint, `https://host[:port]` (pgBackRest speaks S3 over HTTPS only).
    #[schemars(
        regex(pattern = r"^https://[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?$"),
        length(max = 253)
    )]
    pub endpoint: String,
    /// The bucket; it must exist.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"))]
    pub bucket: String,
    /// The repository's path inside the bucket.
    #[serde(default = "default_path")]
    #[schemars(regex(pattern = r"^/[A-Za-z0-9._/-]*$"), length(max = 200))]
    pub path: String,
    /// The S3 region requests are signed for.
    #[serde(default = "default_region")]
    #[schemars(regex(pattern = r"^[a-z0-9-]{1,40}$"))]
    pub region: String,
    /// The Secret in the cluster's namespace with the access key pair.
    pub credentials: S3Credentials,
    #[serde(default)]
    pub tls: BackupTls,
    #[serde(default)]
    pub retention: BackupRetention,
    #[serde(default)]
    pub schedules: BackupSchedules,
    /// `archive_timeout`: the longest a committed transaction waits before its WAL segment is
    /// switched and archived, which bounds the disaster-recovery RPO.
    #[serde(default = "default_archive_timeout")]
    pub archive_timeout: Duration,
}

/// Keys of the credentials Secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Credentials {
    /// The Secret's name.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub secret_name: String,
    /// The key holding the access key id.
    #[serde(default = "default_access_key_key")]
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"), length(max = 253))]
    pub access_key_id_key: String,
    /// The key holding the secret access key.
    #[serde(default = "default_secret_key_key")]
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"), length(max = 253))]
    pub secret_access_key_key: String,
}

/// How the store's certificate is checked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.ca) || (has(self.ca.secret) != has(self.ca.configMap))").field_path(".ca").message(
    "backup.tls.ca names exactly one of secret or configMap"
))]
pub struct BackupTls {
    /// Verify the server's certificate (on by default; turning it off is for tests only).
    #[serde(default = "crate::default_true")]
    pub verify: bool,
    /// A CA bundle (PEM) to verify against instead of the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaBundle>,
}

/// A PEM bundle in a Secret or a ConfigMap of the cluster's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaBundle {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<KeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<KeyRef>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub name: String,
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"), length(max = 253))]
    pub key: String,
}

/// How long full backups (and the WAL they need) are kept: a count of full backups or a
/// number of days, not both. Neither given means 7 days.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.fullBackups) && has(self.days))").field_path(".days").message(
    "backup.retention keeps either fullBackups or days, not both (pgBackRest retains by count or by time)"
))]
pub struct BackupRetention {
    /// Keep this many full backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 9999))]
    pub full_backups: Option<i32>,
    /// Keep full backups for this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 9999))]
    pub days: Option<i32>,
}

/// Retention as pgBackRest takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    FullBackups(i32),
    Days(i32),
}

impl BackupRetention {
    pub fn resolved(&self) -> Retention {
        match (self.full_backups, self.days) {
            (Some(count), _) => Retention::FullBackups(count),
            (None, Some(days)) => Retention::Days(days),
            (None, None) => Retention::Days(DEFAULT_RETENTION_DAYS),
        }
    }
}

pub const DEFAULT_RETENTION_DAYS: i32 = 7;

/// Cron schedules (five fields, UTC) of the operator's scheduled backups.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSchedules {
    /// Full backups (default: daily at 00:00 UTC).
    #[serde(default = "default_full_schedule")]
    #[schemars(length(min = 9, max = 100))]
    pub full: String,
    /// Differential backups against the last full one (default: hourly); empty turns them off.
    #[serde(default = "default_differential_schedule")]
    #[schemars(length(max = 100))]
    pub differential: String,
}

/// `spec.bootstrap`: how a new cluster's first primary gets its data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterBootstrap {
    /// Restore from another cluster's backups instead of starting empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoverySpec>,
}

/// Point-in-time recovery from the stanza of `source` in `spec.backup`'s repository.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.targetTime), has(self.targetLSN), has(self.latest) && self.latest].filter(x, x).size() == 1").field_path(".latest").message(
    "bootstrap.recovery needs exactly one of targetTime, targetLSN or latest: true"
))]
pub struct RecoverySpec {
    /// The name of the cluster whose backups and WAL to restore.
    #[schemars(regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"), length(max = 30))]
    pub source: String,
    /// Restore every transaction committed at or before this RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"
    ))]
    pub target_time: Option<String>,
    /// Restore up to this WAL location (`X/X`).
    #[serde(default, rename = "targetLSN", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$"))]
    pub target_lsn: Option<String>,
    /// Restore everything archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<bool>,
}

/// Where a recovery stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryTarget {
    Time(String),
    Lsn(String),
    Latest,
}

impl ClusterBootstrap {
    pub fn is_empty(&self) -> bool {
        self.recovery.is_none()
    }
}

impl RecoverySpec {
    pub fn target(&self) -> RecoveryTarget {
        if let Some(time) = &self.target_time {
            RecoveryTarget::Time(time.clone())
        } else if let Some(lsn) = &self.target_lsn {
            RecoveryTarget::Lsn(lsn.clone())
        } else {
            RecoveryTarget::Latest
        }
    }
}

fn default_path() -> String {
    "/shanraq".to_owned()
}
fn default_region() -> String {
    "us-east-1".to_owned()
}
fn default_access_key_key() -> String {
    "ACCESS_KEY_ID".to_owned()
}
fn default_secret_key_key() -> String {
    "SECRET_ACCESS_KEY".to_owned()
}
fn default_archive_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_full_schedule() -> String {
    "0 0 * * *".to_owned()
}
fn default_differential_schedule() -> String {
    "0 * * * *".to_owned()
}

impl Default for BackupTls {
    fn default() -> Self {
        BackupTls {
            verify: true,
            ca: None,
        }
    }
}

impl Default for BackupSchedules {
    fn default() -> Self {
        BackupSchedules {
            full: default_full_schedule(),
            differential: default_differential_schedule(),
        }
    }
}

impl BackupSpec {
    /// `host` and `port` of the endpoint (443 when none is given).
    pub fn host_port(&self) -> (String, u16) {
        let rest = self
            .endpoint
            .strip_prefix("https://")
            .unwrap_or(&self.endpoint);
        match rest.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().unwrap_or(443)),
            None => (rest.to_owned(), 443),
        }
    }

    /// A spec with the given store and every default, for tests and the drill.
    pub fn new(endpoint: &str, bucket: &str, secret_name: &str) -> BackupSpec {
        BackupSpec {
            endpoint: endpoint.to_owned(),
            bucket: bucket.to_owned(),
            path: default_path(),
            region: default_region(),
            credentials: S3Credentials {
                secret_name: secret_name.to_owned(),
                access_key_id_key: default_access_key_key(),
                secret_access_key_key: default_secret_key_key(),
            },
            tls: BackupTls::default(),
            retention: BackupRetention::default(),
            schedules: BackupSchedules::default(),
            archive_timeout: default_archive_timeout(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_split_into_host_and_port() {
        let spec = BackupSpec::new("https://s3.example.com:9000", "b", "s");
        assert_eq!(spec.host_port(), ("s3.example.com".to_owned(), 9000));
        let spec = BackupSpec::new("https://s3.example.com", "b", "s");
        assert_eq!(spec.host_port(), ("s3.example.com".to_owned(), 443));
    }

    #[test]
    fn retention_defaults_to_seven_days() {
        assert_eq!(
            BackupRetention::default().resolved(),
            Retention::Days(DEFAULT_RETENTION_DAYS)
        );
        let count = BackupRetention {
            full_backups: Some(3),
            days: None,
        };
        assert_eq!(count.resolved(), Retention::FullBackups(3));
    }
}
