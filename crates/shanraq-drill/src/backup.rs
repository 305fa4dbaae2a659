//! Backups in the local drill: a `LocalCluster` whose ShanraqCluster has `spec.backup`
//! archives and backs up to a real S3-compatible store, with what the product renders (the
//! archiving settings of postgresql.conf, pgbackrest.conf, the manager's backup flags, the key
//! pair under the variable names of the pod spec, the CA bundle given to `spec.backup.tls`).
//! Only the paths are local: where pgbackrest.conf and the CA bundle live, as in a pod they
//! would be where their volumes are mounted.

use std::path::PathBuf;
use std::time::Duration;

use shanraq_api::ValidCluster;
use shanraq_api::backup::RecoverySpec;
use shanraq_ha::adapters::instance_client::{BearerToken, ClientTimeouts, InstanceClient};
use shanraq_ha::postgres::backup_source::{self, BackupPlan};
use shanraq_ha::wire::{BackupKind, BackupReply, BackupRequest, InstanceRole, InstanceStatus};
use shanraq_render::backup as rendered;
use shanraq_testkit::{LocalTopology, S3Server};
use tempfile::TempDir;

use super::error::DrillError;

/// The Secret the drill's spec names for the key pair, and the one holding the CA bundle:
/// the drill hands their contents to pgBackRest the way the pod spec does.
pub const CREDENTIALS_SECRET: &str = "drill-backup-credentials";
pub const CA_SECRET: &str = "drill-backup-ca";

/// How to reach the object store. `Debug` never shows the keys.
#[derive(Clone)]
pub struct ObjectStore {
    pub endpoint: String,
    pub bucket: String,
    pub ca_file: PathBuf,
    access_key: String,
    secret_key: String,
}

impl std::fmt::Debug for ObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStore")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl ObjectStore {
    pub fn of(server: &S3Server) -> ObjectStore {
        ObjectStore {
            endpoint: server.endpoint(),
            bucket: server.bucket().to_owned(),
            ca_file: server.ca_file().to_path_buf(),
            access_key: server.access_key().to_owned(),
            secret_key: server.secret_key().to_owned(),
        }
    }
}

/// `spec.backup` (and `spec.bootstrap.recovery`) of a local cluster.
#[derive(Clone, Debug)]
pub struct DrillBackup {
    /// The cluster's name, hence its stanza.
    pub cluster: String,
    pub store: ObjectStore,
    /// `spec.backup.archiveTimeout`.
    pub archive_timeout: Duration,
    /// Restore this cluster from another's backups.
    pub recovery: Option<RecoverySpec>,
}

impl DrillBackup {
    pub fn new(cluster: &str, store: ObjectStore) -> DrillBackup {
        DrillBackup {
            cluster: cluster.to_owned(),
            store,
            archive_timeout: Duration::from_secs(30),
            recovery: None,
        }
    }

    pub fn recovering(mut self, recovery: RecoverySpec) -> DrillBackup {
        self.recovery = Some(recovery);
        self
    }
}

/// What the topology needs for backups: a dir with the rendered pgbackrest.conf (kept as long
/// as the cluster), the manager's flags and environment, the first instance's bootstrap.
#[derive(Debug)]
pub struct LocalBackup {
    pub dir: TempDir,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub first_bootstrap: Option<String>,
}

/// Writes the rendered pgbackrest.conf where the postgres user can read it, and turns the
/// rendered flags and environment into local ones.
pub fn prepare(cluster: &ValidCluster, backup: &DrillBackup) -> Result<LocalBackup, DrillError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |what: &str, source: std::io::Error| {
        DrillError::Topology(shanraq_testkit::TestkitError::Io {
            what: what.to_owned(),
            source,
        })
    };
    let conf = rendered::pgbackrest_conf(cluster).ok_or_else(|| DrillError::InvalidOption {
        option: "backup",
        reason: "the cluster has no spec.backup".to_owned(),
    })?;
    let dir = tempfile::Builder::new()
        .prefix("shanraq-pgbackrest-")
        .tempdir()
        .map_err(|source| io("creating the pgbackrest.conf dir", source))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|source| io("chmod the pgbackrest.conf dir", source))?;
    let path = dir.path().join(rendered::PGBACKREST_CONF);
    std::fs::write(&path, conf).map_err(|source| io("writing pgbackrest.conf", source))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
        .map_err(|source| io("chmod pgbackrest.conf", source))?;
    // The cluster's pgBackRest CA, as the operator generates it into the Secret the pods
    // mount (readable by the postgres user, which runs the managers' pgBackRest).
    let tls_dir = dir.path().join("backup-tls");
    std::fs::create_dir(&tls_dir).map_err(|source| io("creating the CA dir", source))?;
    std::fs::set_permissions(&tls_dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|source| io("chmod the CA dir", source))?;
    let authority =
        shanraq_instance::backup_tls::new_authority(&cluster.name).map_err(|error| {
            DrillError::Operator {
                problem: format!("generating the pgBackRest CA: {error}"),
            }
        })?;
    for (file, text) in [
        (shanraq_instance::backup_tls::CA_CERT, &authority.cert_pem),
        (shanraq_instance::backup_tls::CA_KEY, &authority.key_pem),
    ] {
        let path = tls_dir.join(file);
        std::fs::write(&path, text).map_err(|source| io("writing the CA", source))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(|source| io("chmod the CA", source))?;
    }
    let args = rendered::manager_flags(
        cluster,
        &dir.path().display().to_string(),
        &tls_dir.display().to_string(),
    )
    .into_iter()
    .map(|(flag, value)| format!("{flag}={value}"))
    .collect();
    let env = vec![
        (
            rendered::ENV_ACCESS_KEY.to_owned(),
            backup.store.access_key.clone(),
        ),
        (
            rendered::ENV_SECRET_KEY.to_owned(),
            backup.store.secret_key.clone(),
        ),
        (
            rendered::ENV_CA_FILE.to_owned(),
            backup.store.ca_file.display().to_string(),
        ),
    ];
    Ok(LocalBackup {
        dir,
        args,
        env,
        first_bootstrap: backup.recovery.as_ref().map(|_| "recovery".to_owned()),
    })
}

/// A backup where the ShanraqBackup controller would take it (`backup_source::plan`: a
/// streaming replica with the primary's help, else the primary), from every member's
/// `/status`. Returns the plan and the reply.
pub async fn take_planned(
    topology: &LocalTopology,
    kind: BackupKind,
) -> Result<(BackupPlan, BackupReply), DrillError> {
    let mut sample = Vec::with_capacity(topology.len());
    for index in 0..topology.len() {
        // A member that does not answer is left out, as the engine's probe would leave it.
        if let Ok(value) = topology.status(index).await
            && let Ok(status) = serde_json::from_value::<InstanceStatus>(value)
        {
            sample.push(status);
        }
    }
    let primary = sample
        .iter()
        .find(|status| status.role == InstanceRole::Primary && status.writable == Some(true))
        .map(|status| status.name.clone())
        .ok_or_else(|| DrillError::Operator {
            problem: "no member answers as a writable primary".to_owned(),
        })?;
    let plan =
        backup_source::plan(&sample, &primary, kind).ok_or_else(|| DrillError::Operator {
            problem: format!("no backup plan: {primary} is not serving"),
        })?;
    let index = topology
        .members()
        .iter()
        .position(|member| member.name == plan.instance)
        .ok_or_else(|| DrillError::Operator {
            problem: format!("{} is not a member", plan.instance),
        })?;
    let reply = take(topology, index, &plan.request).await?;
    Ok((plan, reply))
}

/// `POST /backup` on member `index`, through the client the ShanraqBackup controller uses.
pub async fn take(
    topology: &LocalTopology,
    index: usize,
    request: &BackupRequest,
) -> Result<BackupReply, DrillError> {
    let member = topology.member(index)?;
    let client = InstanceClient::new(
        member.name.clone(),
        member.http_url.clone(),
        BearerToken::new(topology.token()),
        ClientTimeouts::for_probe_period(Duration::from_secs(1)),
    )
    .map_err(|error| DrillError::Operator {
        problem: format!("building the client of {}: {error}", member.name),
    })?;
    client
        .backup(request, BACKUP_TIMEOUT)
        .await
        .map_err(|error| DrillError::Operator {
            problem: format!("POST /backup on {}: {error}", member.name),
        })
}

/// The longest a drill's backup may take.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(600);
