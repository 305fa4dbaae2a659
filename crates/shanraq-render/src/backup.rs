//! pgBackRest for a cluster with `spec.backup`: its pgbackrest.conf (an S3 repository, path
//! style, the retention), the archiving settings of postgresql.conf, and what the PostgreSQL
//! pod needs to run it (credentials from the Secret as pgBackRest's own environment variables,
//! the CA bundle as a volume, the instance manager's flags).
//!
//! Like postgresql.conf, pgbackrest.conf names no local path: the instance manager gives
//! pgBackRest the data dir, port and lock dir of its instance through the environment, so the
//! same file serves every pod and the local drill.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EnvVar, KeyToPath, SecretVolumeSource, Volume, VolumeMount,
};
use shanraq_api::ValidCluster;
use shanraq_api::backup::{BackupSpec, RecoveryTarget, Retention};

use crate::meta;

/// The file of the PostgreSQL config ConfigMap that holds pgbackrest.conf.
pub const PGBACKREST_CONF: &str = "pgbackrest.conf";
/// Where the CA bundle is mounted in the PostgreSQL container.
pub const CA_DIR: &str = "/etc/shanraq/backup-ca";
pub const CA_FILE: &str = "ca.crt";
/// pgBackRest reads the key pair from these variables (never from a file or a flag).
pub const ENV_ACCESS_KEY: &str = "PGBACKREST_REPO1_S3_KEY";
pub const ENV_SECRET_KEY: &str = "PGBACKREST_REPO1_S3_KEY_SECRET";
pub const ENV_CA_FILE: &str = "PGBACKREST_REPO1_STORAGE_CA_FILE";
/// Where the cluster's pgBackRest CA Secret is mounted: each instance manager issues its own
/// certificate from it and runs pgBackRest's TLS server on the pod IP, which a replica's
/// pgBackRest reaches when it backs up with `backup-standby`.
pub const TLS_DIR: &str = "/etc/shanraq/backup-tls";
/// The TLS server's port (the instance manager's default).
pub const TLS_PORT: i32 = 8432;
/// The manager takes the address its certificate names from this variable (the pod IP).
pub const ENV_TLS_ADDRESS: &str = "SHANRAQ_BACKUP_TLS_ADDRESS";

/// The stanza of a cluster: its name (one stanza per cluster in a repository).
pub fn stanza(cluster: &ValidCluster) -> &str {
    &cluster.name
}

/// pgbackrest.conf, when the cluster has `spec.backup`.
pub fn pgbackrest_conf(cluster: &ValidCluster) -> Option<String> {
    let backup = cluster.spec.backup.as_ref()?;
    Some(render_conf(backup))
}

fn render_conf(backup: &BackupSpec) -> String {
    let (host, port) = backup.host_port();
    let (retention_type, retention) = match backup.retention.resolved() {
        Retention::FullBackups(count) => ("count", count),
        Retention::Days(days) => ("time", days),
    };
    let mut settings: Vec<(&str, String)> = vec![
        ("repo1-type", "s3".to_owned()),
        ("repo1-s3-endpoint", host),
        ("repo1-s3-bucket", backup.bucket.clone()),
        ("repo1-s3-region", backup.region.clone()),
        ("repo1-s3-uri-style", "path".to_owned()),
        ("repo1-path", backup.path.clone()),
        (
            "repo1-storage-verify-tls",
            if backup.tls.verify { "y" } else { "n" }.to_owned(),
        ),
        ("repo1-retention-full-type", retention_type.to_owned()),
        ("repo1-retention-full", retention.to_string()),
        // WAL and backups are compressed as they leave the instance.
        ("compress-type", "lz4".to_owned()),
        // A backup starts with an immediate checkpoint instead of waiting for the next one.
        ("start-fast", "y".to_owned()),
        // Logs go to the manager's output, which the container runtime collects.
        ("log-level-console", "info".to_owned()),
        ("log-level-file", "off".to_owned()),
    ];
    if port != 443 {
        settings.insert(2, ("repo1-storage-port", port.to_string()));
    }
    let mut text = String::from(
        "# Rendered by the shanraq operator from spec.backup; edits are overwritten.\n\
         # The key pair comes from the environment (PGBACKREST_REPO1_S3_KEY and _KEY_SECRET);\n\
         # the instance manager sets the stanza's data dir, port and lock dir.\n\
         [global]\n",
    );
    for (key, value) in settings {
        let _ = writeln!(text, "{key}={value}");
    }
    text
}

/// The postgresql.conf settings of WAL archiving. The primary archives (`archive_mode = on`;
/// pgBackRest refuses `always`, since a standby's copy of a switched segment may differ from
/// the primary's past the switch). A promoted standby pushes the completed segments of the old
/// timeline it holds, which a crashed primary may not have archived yet (see the instance
/// manager's `pgbackrest::push_previous_timeline`).
pub fn archive_settings(cluster: &ValidCluster) -> Vec<(&'static str, String)> {
    let Some(backup) = &cluster.spec.backup else {
        return Vec::new();
    };
    vec![
        ("archive_mode", "on".to_owned()),
        (
            "archive_command",
            format!("pgbackrest --stanza={} archive-push %p", stanza(cluster)),
        ),
        (
            "archive_timeout",
            format!("{}s", backup.archive_timeout.as_std().as_secs().max(1)),
        ),
    ]
}

/// The container's environment: the key pair from the Secret, the CA bundle's path.
pub fn env(cluster: &ValidCluster) -> Vec<EnvVar> {
    let Some(backup) = &cluster.spec.backup else {
        return Vec::new();
    };
    let credentials = &backup.credentials;
    let mut env = vec![
        meta::env_from_secret(
            ENV_ACCESS_KEY,
            &credentials.secret_name,
            &credentials.access_key_id_key,
        ),
        meta::env_from_secret(
            ENV_SECRET_KEY,
            &credentials.secret_name,
            &credentials.secret_access_key_key,
        ),
    ];
    if backup.tls.ca.is_some() {
        env.push(meta::env(ENV_CA_FILE, &format!("{CA_DIR}/{CA_FILE}")));
    }
    env.push(meta::field_env(ENV_TLS_ADDRESS, "status.podIP"));
    env
}

/// The pgBackRest CA Secret's volume and mount, with `spec.backup`.
pub fn tls_volume(cluster: &ValidCluster) -> Option<(Volume, VolumeMount)> {
    cluster.spec.backup.as_ref()?;
    Some((
        meta::secret_volume("backup-tls", &cluster.names.pg_backup_tls_secret()),
        meta::mount("backup-tls", TLS_DIR, true),
    ))
}

/// The CA bundle's volume and mount, when `tls.ca` is set.
pub fn ca_volume(cluster: &ValidCluster) -> Option<(Volume, VolumeMount)> {
    let ca = cluster.spec.backup.as_ref()?.tls.ca.as_ref()?;
    let item = |key: &str| {
        Some(vec![KeyToPath {
            key: key.to_owned(),
            path: CA_FILE.to_owned(),
            ..KeyToPath::default()
        }])
    };
    let volume = if let Some(secret) = &ca.secret {
        Volume {
            name: "backup-ca".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                items: item(&secret.key),
                default_mode: Some(0o444),
                optional: Some(false),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        }
    } else {
        let config_map = ca.config_map.as_ref()?;
        Volume {
            name: "backup-ca".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map.name.clone(),
                items: item(&config_map.key),
                default_mode: Some(0o444),
                optional: Some(false),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        }
    };
    Some((volume, meta::mount("backup-ca", CA_DIR, true)))
}

/// The instance manager's flags for backups and recovery, given the config dir and the dir
/// of the pgBackRest CA; the values are raw (the pod's start script quotes them).
pub fn manager_flags(
    cluster: &ValidCluster,
    config_dir: &str,
    tls_dir: &str,
) -> Vec<(&'static str, String)> {
    if cluster.spec.backup.is_none() {
        return Vec::new();
    }
    let mut flags = vec![
        ("--backup-config", format!("{config_dir}/{PGBACKREST_CONF}")),
        ("--backup-stanza", stanza(cluster).to_owned()),
        ("--backup-tls-dir", tls_dir.to_owned()),
    ];
    if let Some(recovery) = &cluster.spec.bootstrap.recovery {
        flags.push(("--recovery-source", recovery.source.clone()));
        match recovery.target() {
            RecoveryTarget::Time(time) => flags.push(("--recovery-target-time", time)),
            RecoveryTarget::Lsn(lsn) => flags.push(("--recovery-target-lsn", lsn)),
            RecoveryTarget::Latest => {}
        }
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;
    use shanraq_api::backup::BackupRetention;

    #[test]
    fn the_conf_names_the_store_and_no_secret() {
        let mut backup = BackupSpec::new("https://s3.example.com:9000", "backups", "s3-creds");
        backup.retention = BackupRetention {
            full_backups: Some(4),
            days: None,
        };
        let conf = render_conf(&backup);
        assert!(
            conf.contains("repo1-s3-endpoint=s3.example.com\n"),
            "{conf}"
        );
        assert!(conf.contains("repo1-storage-port=9000\n"), "{conf}");
        assert!(conf.contains("repo1-s3-uri-style=path\n"), "{conf}");
        assert!(conf.contains("repo1-retention-full-type=count\nrepo1-retention-full=4\n"));
        assert!(!conf.contains("s3-creds") && !conf.contains("repo1-s3-key="));
    }

    fn valid(spec: shanraq_api::ShanraqClusterSpec) -> ValidCluster {
        let mut object = shanraq_api::ShanraqCluster::new("payments", spec);
        object.metadata.namespace = Some("fintech".to_owned());
        shanraq_api::validate(&object, &shanraq_api::LiveState::default()).expect("valid")
    }

    #[test]
    fn the_pod_gets_the_key_pair_from_the_secret_and_the_ca_as_a_volume() {
        let mut backup = BackupSpec::new("https://s3.example.com", "backups", "s3-creds");
        backup.tls.ca = Some(shanraq_api::backup::CaBundle {
            secret: None,
            config_map: Some(shanraq_api::backup::KeyRef {
                name: "corp-ca".to_owned(),
                key: "bundle.pem".to_owned(),
            }),
        });
        let cluster = valid(shanraq_api::ShanraqClusterSpec {
            backup: Some(backup),
            ..shanraq_api::ShanraqClusterSpec::default()
        });
        let env = env(&cluster);
        let names: Vec<&str> = env.iter().map(|var| var.name.as_str()).collect();
        assert_eq!(
            names,
            [ENV_ACCESS_KEY, ENV_SECRET_KEY, ENV_CA_FILE, ENV_TLS_ADDRESS]
        );
        let from = env[1]
            .value_from
            .as_ref()
            .and_then(|from| from.secret_key_ref.as_ref())
            .expect("from the Secret");
        assert_eq!(
            (from.name.as_str(), from.key.as_str()),
            ("s3-creds", "SECRET_ACCESS_KEY")
        );
        assert!(env[0].value.is_none() && env[1].value.is_none());
        let (volume, mount) = ca_volume(&cluster).expect("CA volume");
        let items = volume.config_map.and_then(|cm| cm.items).expect("items");
        assert_eq!(
            (items[0].key.as_str(), items[0].path.as_str()),
            ("bundle.pem", CA_FILE)
        );
        assert_eq!(mount.mount_path, CA_DIR);
    }

    #[test]
    fn without_backup_nothing_is_rendered() {
        let cluster = valid(shanraq_api::ShanraqClusterSpec::default());
        assert!(pgbackrest_conf(&cluster).is_none());
        assert!(archive_settings(&cluster).is_empty());
        assert!(env(&cluster).is_empty() && manager_flags(&cluster, "/etc", "/tls").is_empty());
        assert!(tls_volume(&cluster).is_none());
    }

    #[test]
    fn a_recovering_cluster_passes_its_target_to_the_manager() {
        let mut spec = shanraq_api::ShanraqClusterSpec {
            backup: Some(BackupSpec::new("https://s3.example.com", "backups", "s")),
            ..shanraq_api::ShanraqClusterSpec::default()
        };
        spec.bootstrap.recovery = Some(shanraq_api::backup::RecoverySpec {
            source: "old".to_owned(),
            target_time: Some("2026-12-02T03:00:00Z".to_owned()),
            target_lsn: None,
            latest: None,
        });
        let cluster = valid(spec);
        let flags = manager_flags(&cluster, "/etc/shanraq/postgres", TLS_DIR);
        assert_eq!(
            flags,
            [
                (
                    "--backup-config",
                    "/etc/shanraq/postgres/pgbackrest.conf".to_owned()
                ),
                ("--backup-stanza", "payments".to_owned()),
                ("--backup-tls-dir", TLS_DIR.to_owned()),
                ("--recovery-source", "old".to_owned()),
                ("--recovery-target-time", "2026-12-02T03:00:00Z".to_owned()),
            ]
        );
        // The TLS server's CA, and the pod IP its certificate names.
        let (volume, mount) = tls_volume(&cluster).expect("the CA volume");
        assert_eq!(
            volume.secret.and_then(|s| s.secret_name).as_deref(),
            Some("payments-pg-backup-tls")
        );
        assert_eq!(mount.mount_path, TLS_DIR);
        let address = env(&cluster)
            .into_iter()
            .find(|var| var.name == ENV_TLS_ADDRESS)
            .and_then(|var| var.value_from)
            .and_then(|from| from.field_ref)
            .map(|field| field.field_path);
        assert_eq!(address.as_deref(), Some("status.podIP"));
    }

    #[test]
    fn the_default_port_is_left_out() {
        let conf = render_conf(&BackupSpec::new("https://s3.example.com", "b", "s"));
        assert!(!conf.contains("repo1-storage-port"), "{conf}");
        assert!(conf.contains("repo1-retention-full-type=time\nrepo1-retention-full=7\n"));
    }
}
