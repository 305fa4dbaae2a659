//! PostgreSQL: a primary with streaming replicas and quorum-based synchronous replication.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::storage::StorageSpec;

/// postgresql.conf settings the operator owns; a user override of any of them is rejected,
/// because changing them would break replication, failover or the instance manager.
pub const RESERVED_POSTGRES_PARAMETERS: &[&str] = &[
    "port",
    "listen_addresses",
    "wal_level",
    "hot_standby",
    "wal_log_hints",
    "synchronous_standby_names",
    "primary_conninfo",
    "restore_command",
    "recovery_target_timeline",
    "cluster_name",
    "data_directory",
    "hba_file",
    "ident_file",
    "archive_mode",
    "archive_command",
    "archive_library",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.synchronous.number < self.instances").field_path(".synchronous.number").message(
    "postgres.synchronous.number must be lower than postgres.instances: each synchronous standby is a replica"
))]
#[x_kube(validation = Rule::new("self.synchronous.dataDurability != 'preferred' || self.synchronous.number > 0").field_path(".synchronous.dataDurability").message(
    "postgres.synchronous.dataDurability preferred needs postgres.synchronous.number 1 or more: with 0 replication is asynchronous already and there is nothing to fall back from"
))]
#[x_kube(validation = Rule::new(
    "!has(self.parameters) || self.parameters.all(k, !(k in ['port', 'listen_addresses', 'wal_level', 'hot_standby', 'wal_log_hints', 'synchronous_standby_names', 'primary_conninfo', 'restore_command', 'recovery_target_timeline', 'cluster_name', 'data_directory', 'hba_file', 'ident_file', 'archive_mode', 'archive_command', 'archive_library']))"
).field_path(".parameters").message(
    "postgres.parameters must not set a setting the operator owns (port, listen_addresses, wal_level, hot_standby, wal_log_hints, synchronous_standby_names, primary_conninfo, restore_command, recovery_target_timeline, cluster_name, data_directory, hba_file, ident_file, archive_mode, archive_command, archive_library)"
))]
pub struct PostgresSpec {
    /// Turn the component off. Turning it off deletes its workloads; volumes and secrets are kept.
    #[serde(default = "crate::default_true")]
    pub enabled: bool,
    /// Number of PostgreSQL instances: one primary, the rest streaming replicas.
    #[serde(default = "default_instances")]
    #[schemars(range(min = 1, max = 9))]
    pub instances: i32,
    /// Image: PostgreSQL 15, pgBackRest and postgres_exporter, plus the `shanraq` binary, which
    /// runs as the instance manager (images/postgres/Dockerfile).
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    #[serde(default = "default_storage")]
    pub storage: StorageSpec,
    #[serde(default)]
    pub synchronous: SynchronousSpec,
    /// Extra postgresql.conf settings (user overrides win over operator defaults, except the
    /// reserved ones the operator owns for replication and failover).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 200))]
    pub parameters: BTreeMap<String, String>,
    /// The application database created at bootstrap and its owner.
    #[serde(default)]
    pub bootstrap: BootstrapSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// This component's own objectives, overriding `spec.objectives` one by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objectives: Option<crate::objectives::ComponentObjectives>,
}

/// Quorum synchronous replication (`synchronous_standby_names = 'ANY n (...)'`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SynchronousSpec {
    /// How many standbys must confirm each commit. 0 means asynchronous replication.
    #[serde(default = "default_sync_number")]
    #[schemars(range(min = 0, max = 8))]
    pub number: i32,
    /// `required` (default): a commit waits until `number` standbys have it, even if that
    /// stops writes (RPO 0 in every failure). `preferred`: when fewer than `number` standbys
    /// have streamed for a detection period, the operator lowers the primary to the standbys
    /// that stream (asynchronous when none) so that writes go on, and restores `number` once
    /// they are back; a failover while fallen back waits out the old primary's lease and may
    /// lose the commits made since the fallback. Needs `number` 1 or more.
    #[serde(default)]
    pub data_durability: DataDurability,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DataDurability {
    /// Writes stop rather than commit without `number` standbys.
    #[default]
    Required,
    /// Writes go on without the missing standbys, decided by the operator (never by the
    /// primary alone, so a network partition cannot lower it).
    Preferred,
}

/// Both names are used only when the first primary is created (initdb), so they are
/// immutable: a rename would change the pod template and the probes' database while PostgreSQL
/// and the app Secret kept the old names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.database == oldSelf.database").field_path(".database").message(
    "postgres.bootstrap.database is immutable: the database is created once, at the first bootstrap, and is never renamed; create another database in PostgreSQL yourself (CREATE DATABASE ... OWNER <owner>) and point the applications at it"
))]
#[x_kube(validation = Rule::new("self.owner == oldSelf.owner").field_path(".owner").message(
    "postgres.bootstrap.owner is immutable: the role is created once, at the first bootstrap, and the app Secret keeps its name and password; create another role in PostgreSQL yourself and grant it what it needs"
))]
pub struct BootstrapSpec {
    #[serde(default = "default_app_name")]
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]{0,62}$"))]
    pub database: String,
    #[serde(default = "default_app_name")]
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]{0,62}$"))]
    pub owner: String,
}

fn default_instances() -> i32 {
    3
}
fn default_image() -> String {
    crate::images::default_image("postgres")
}
fn default_storage() -> StorageSpec {
    StorageSpec::of_size("10Gi")
}
fn default_sync_number() -> i32 {
    1
}
fn default_app_name() -> String {
    "app".to_owned()
}

impl Default for PostgresSpec {
    fn default() -> Self {
        PostgresSpec {
            enabled: true,
            instances: default_instances(),
            image: default_image(),
            storage: default_storage(),
            synchronous: SynchronousSpec::default(),
            parameters: BTreeMap::new(),
            bootstrap: BootstrapSpec::default(),
            resources: None,
            objectives: None,
        }
    }
}

impl Default for SynchronousSpec {
    fn default() -> Self {
        SynchronousSpec {
            number: default_sync_number(),
            data_durability: DataDurability::Required,
        }
    }
}

impl Default for BootstrapSpec {
    fn default() -> Self {
        BootstrapSpec {
            database: default_app_name(),
            owner: default_app_name(),
        }
    }
}

impl SynchronousSpec {
    pub fn is_synchronous(&self) -> bool {
        self.number > 0
    }
}
