//! Flags of `shanraq instance postgres`, each also readable from a `SHANRAQ_*` variable so a
//! pod spec can set them as env, and their resolution into `Settings` (secrets read from files,
//! defaults for the files kept beside the data dir).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::error::InstanceError;

/// A password or token: never printed by `Debug`, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(text.to_string()))
    }
}

/// What to do with an empty data dir.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BootstrapMode {
    /// initdb a new cluster and run it as the primary.
    Primary,
    /// Clone the upstream with pg_basebackup and follow it.
    Replica,
    /// Restore the backups of `--recovery-source` with pgBackRest, then run as the primary on
    /// a new timeline.
    Recovery,
}

/// Flags of `shanraq instance postgres`.
#[derive(Clone, Debug, clap::Args)]
pub struct InstanceArgs {
    /// Instance name: the pod name in Kubernetes, also the replication `application_name`.
    #[arg(long, env = "SHANRAQ_NAME")]
    pub name: String,
    /// PostgreSQL data directory (PGDATA).
    #[arg(long, env = "SHANRAQ_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Directory of the PostgreSQL programs.
    #[arg(
        long,
        env = "SHANRAQ_BIN_DIR",
        default_value = "/usr/lib/postgresql/15/bin"
    )]
    pub bin_dir: PathBuf,
    /// `listen_addresses` of postgres (0.0.0.0 in pods).
    #[arg(long, env = "SHANRAQ_PG_LISTEN", default_value = "127.0.0.1")]
    pub pg_listen: String,
    /// Port of postgres.
    #[arg(long, env = "SHANRAQ_PG_PORT", default_value_t = 5432)]
    pub pg_port: u16,
    /// Address of the manager's HTTP server.
    #[arg(long, env = "SHANRAQ_HTTP_ADDR", default_value = "127.0.0.1:8000")]
    pub http_addr: SocketAddr,
    /// What to do with an empty data dir.
    #[arg(long, env = "SHANRAQ_BOOTSTRAP", value_enum, default_value = "replica")]
    pub bootstrap: BootstrapMode,
    /// Host of the primary to clone from when bootstrapping a replica.
    #[arg(long, env = "SHANRAQ_UPSTREAM_HOST")]
    pub upstream_host: Option<String>,
    /// Port of the primary to clone from when bootstrapping a replica.
    #[arg(long, env = "SHANRAQ_UPSTREAM_PORT", default_value_t = 5432)]
    pub upstream_port: u16,
    /// Epoch a freshly bootstrapped primary holds.
    #[arg(long, env = "SHANRAQ_INITIAL_EPOCH", default_value_t = 1)]
    pub initial_epoch: u64,
    /// `synchronous_standby_names` of a primary, e.g. `ANY 1 (*)`; empty means asynchronous.
    #[arg(long, env = "SHANRAQ_SYNCHRONOUS", default_value = "")]
    pub synchronous: String,
    /// Extra postgresql.conf fragment (rendered by the operator), included before the
    /// settings the manager owns.
    #[arg(long, env = "SHANRAQ_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// pg_hba.conf to use; without it a built-in one allows scram-sha-256 from 127.0.0.1.
    #[arg(long, env = "SHANRAQ_HBA_FILE")]
    pub hba_file: Option<PathBuf>,
    /// File holding the bearer token that commands must carry.
    #[arg(long, env = "SHANRAQ_INSTANCE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The bearer token itself (prefer the file).
    #[arg(long, env = "SHANRAQ_INSTANCE_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// Superuser (`postgres`) password.
    #[arg(long, env = "SHANRAQ_SUPERUSER_PASSWORD", hide_env_values = true)]
    pub superuser_password: Option<Secret>,
    #[arg(long, env = "SHANRAQ_SUPERUSER_PASSWORD_FILE")]
    pub superuser_password_file: Option<PathBuf>,
    /// Name of the replication role.
    #[arg(long, env = "SHANRAQ_REPLICATION_USER", default_value = "replicator")]
    pub replication_user: String,
    /// Password of the replication role.
    #[arg(long, env = "SHANRAQ_REPLICATION_PASSWORD", hide_env_values = true)]
    pub replication_password: Option<Secret>,
    #[arg(long, env = "SHANRAQ_REPLICATION_PASSWORD_FILE")]
    pub replication_password_file: Option<PathBuf>,
    /// Application database created at bootstrap (with `--app-owner` and its password).
    #[arg(long, env = "SHANRAQ_APP_DATABASE")]
    pub app_database: Option<String>,
    /// Owner role of the application database, created with LOGIN at bootstrap.
    #[arg(long, env = "SHANRAQ_APP_OWNER")]
    pub app_owner: Option<String>,
    #[arg(long, env = "SHANRAQ_APP_PASSWORD", hide_env_values = true)]
    pub app_password: Option<Secret>,
    #[arg(long, env = "SHANRAQ_APP_PASSWORD_FILE")]
    pub app_password_file: Option<PathBuf>,

    /// Where the epoch and fence are persisted (default: beside the data dir).
    #[arg(long, env = "SHANRAQ_STATE_FILE")]
    pub state_file: Option<PathBuf>,
    /// The primary's lease, in milliseconds: renewed by the operator's probes. A primary whose
    /// lease ran out and that has no (synchronous) replica streaming fences itself. 0 turns
    /// the lease off (a single instance has nobody to fail over to).
    #[arg(long, env = "SHANRAQ_LEASE_MS", default_value_t = 1500)]
    pub lease_ms: u64,
    /// How long a replica bootstrap keeps retrying pg_basebackup, in seconds.
    #[arg(long, env = "SHANRAQ_BOOTSTRAP_TIMEOUT", default_value_t = 600)]
    pub bootstrap_timeout_secs: u64,

    /// pgbackrest.conf rendered from `spec.backup`: with it the manager creates the stanza,
    /// takes backups on request (`POST /backup`) and can restore at bootstrap.
    #[arg(long, env = "SHANRAQ_BACKUP_CONFIG", requires = "backup_stanza")]
    pub backup_config: Option<PathBuf>,
    /// The cluster's stanza in the repository (the cluster's name).
    #[arg(long, env = "SHANRAQ_BACKUP_STANZA", requires = "backup_config")]
    pub backup_stanza: Option<String>,
    /// The cluster's pgBackRest CA (`ca.crt`, `ca.key`): with it the manager runs pgBackRest's
    /// TLS server, so that a replica can back up with the primary's help (`backup-standby`).
    #[arg(long, env = "SHANRAQ_BACKUP_TLS_DIR", requires = "backup_config")]
    pub backup_tls_dir: Option<PathBuf>,
    /// The address peers reach this instance's pgBackRest TLS server by (the pod IP), which
    /// its certificate names. Defaults to the address postgres listens on.
    #[arg(long, env = "SHANRAQ_BACKUP_TLS_ADDRESS")]
    pub backup_tls_address: Option<String>,
    /// The port of pgBackRest's TLS server.
    #[arg(long, env = "SHANRAQ_BACKUP_TLS_PORT", default_value_t = 8432)]
    pub backup_tls_port: u16,
    /// `--bootstrap recovery`: the stanza (cluster name) whose backups to restore.
    #[arg(long, env = "SHANRAQ_RECOVERY_SOURCE")]
    pub recovery_source: Option<String>,
    /// Restore up to this time (RFC 3339) instead of everything archived.
    #[arg(
        long,
        env = "SHANRAQ_RECOVERY_TARGET_TIME",
        conflicts_with = "recovery_target_lsn"
    )]
    pub recovery_target_time: Option<String>,
    /// Restore up to this LSN instead of everything archived.
    #[arg(long, env = "SHANRAQ_RECOVERY_TARGET_LSN")]
    pub recovery_target_lsn: Option<String>,
}

/// Resolved, validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub name: String,
    pub data_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub pg_listen: String,
    pub pg_port: u16,
    pub http_addr: SocketAddr,
    pub bootstrap: BootstrapMode,
    pub upstream: Option<(String, u16)>,
    pub initial_epoch: u64,
    pub synchronous: String,
    pub config_file: Option<PathBuf>,
    pub hba_file: Option<PathBuf>,
    pub token: Secret,
    pub superuser_password: Secret,
    pub replication_user: String,
    pub replication_password: Secret,
    /// The application database, its owner and the owner's password, created at bootstrap.
    pub app: Option<AppDatabase>,
    pub state_file: PathBuf,
    /// libpq password file beside the data dir, used by replication and pg_rewind.
    pub passfile: PathBuf,
    pub bootstrap_timeout: std::time::Duration,
    /// The primary's lease (`--lease-ms`); `None` when turned off.
    pub lease: Option<std::time::Duration>,
    /// pgBackRest, when the cluster has `spec.backup`.
    pub backup: Option<BackupSettings>,
    /// What `--bootstrap recovery` restores.
    pub recovery: Option<Recovery>,
}

/// pgBackRest's configuration for this instance.
#[derive(Clone, Debug)]
pub struct BackupSettings {
    /// The rendered pgbackrest.conf.
    pub config: PathBuf,
    /// The cluster's stanza.
    pub stanza: String,
    /// pgBackRest's lock and spool dir, beside the data dir (instances never share one).
    pub lock_dir: PathBuf,
    /// pgBackRest's TLS server, when the cluster's CA is given.
    pub tls: Option<BackupTls>,
}

/// pgBackRest's TLS server of this instance (see `backup_tls`).
#[derive(Clone, Debug)]
pub struct BackupTls {
    /// The mounted CA Secret.
    pub ca_dir: PathBuf,
    /// Where this instance's certificate, key and CA copy are written at start.
    pub dir: PathBuf,
    /// The address its certificate names and the server listens on.
    pub address: String,
    pub port: u16,
}

/// A restore: the source stanza and where recovery stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    pub source: String,
    pub target: RecoveryTarget,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryTarget {
    Latest,
    Time(String),
    Lsn(String),
}

/// The application database created once, at the first primary's bootstrap.
#[derive(Clone, Debug)]
pub struct AppDatabase {
    pub database: String,
    pub owner: String,
    pub password: Secret,
}

impl Settings {
    pub fn resolve(args: InstanceArgs) -> Result<Settings, InstanceError> {
        if !is_identifier(&args.name.replace('-', "_")) {
            return Err(InstanceError::InvalidArg {
                flag: "--name",
                reason: "use lowercase letters, digits, '-' and '_'".to_string(),
            });
        }
        if !is_identifier(&args.replication_user) {
            return Err(InstanceError::InvalidArg {
                flag: "--replication-user",
                reason: "use lowercase letters, digits and '_'".to_string(),
            });
        }
        let data_dir = absolute(&args.data_dir)?;
        let token = secret(args.token, args.token_file.as_deref(), "--token-file")?.ok_or(
            InstanceError::MissingSecret {
                what: "command token",
                flags: "--token-file or SHANRAQ_INSTANCE_TOKEN",
            },
        )?;
        let superuser_password = secret(
            args.superuser_password,
            args.superuser_password_file.as_deref(),
            "--superuser-password-file",
        )?
        .ok_or(InstanceError::MissingSecret {
            what: "superuser password",
            flags: "SHANRAQ_SUPERUSER_PASSWORD or SHANRAQ_SUPERUSER_PASSWORD_FILE",
        })?;
        let replication_password = secret(
            args.replication_password,
            args.replication_password_file.as_deref(),
            "--replication-password-file",
        )?
        .ok_or(InstanceError::MissingSecret {
            what: "replication password",
            flags: "SHANRAQ_REPLICATION_PASSWORD or SHANRAQ_REPLICATION_PASSWORD_FILE",
        })?;
        let app_password = secret(
            args.app_password,
            args.app_password_file.as_deref(),
            "--app-password-file",
        )?;
        let app = match (args.app_database, args.app_owner, app_password) {
            (None, None, None) => None,
            (Some(database), Some(owner), Some(password)) => {
                for (flag, value) in [("--app-database", &database), ("--app-owner", &owner)] {
                    if !is_identifier(value) {
                        return Err(InstanceError::InvalidArg {
                            flag,
                            reason: "use lowercase letters, digits and '_'".to_string(),
                        });
                    }
                }
                Some(AppDatabase {
                    database,
                    owner,
                    password,
                })
            }
            _ => {
                return Err(InstanceError::InvalidArg {
                    flag: "--app-database",
                    reason: "--app-database, --app-owner and the app password (SHANRAQ_APP_PASSWORD or --app-password-file) go together".to_string(),
                });
            }
        };
        let beside = |suffix: &str| -> PathBuf {
            let file_name = data_dir
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| "pgdata".to_string());
            data_dir
                .parent()
                .unwrap_or(Path::new("/"))
                .join(format!("{file_name}.{suffix}"))
        };
        let state_file = match args.state_file {
            Some(path) => absolute(&path)?,
            None => beside("shanraq-state.json"),
        };
        if args.bootstrap == BootstrapMode::Replica && args.upstream_host.is_none() {
            tracing::info!(
                "no --upstream-host: this instance can only start on an existing data dir"
            );
        }
        let backup = match (args.backup_config, args.backup_stanza) {
            (Some(config), Some(stanza)) => {
                if !is_stanza(&stanza) {
                    return Err(InstanceError::InvalidArg {
                        flag: "--backup-stanza",
                        reason: "use lowercase letters, digits and '-'".to_string(),
                    });
                }
                let tls = match &args.backup_tls_dir {
                    Some(ca_dir) => Some(BackupTls {
                        ca_dir: absolute(ca_dir)?,
                        dir: beside("pgbackrest-tls"),
                        address: args
                            .backup_tls_address
                            .clone()
                            .unwrap_or_else(|| local_host_of(&args.pg_listen).to_owned()),
                        port: args.backup_tls_port,
                    }),
                    None => None,
                };
                Some(BackupSettings {
                    config: absolute(&config)?,
                    stanza,
                    lock_dir: beside("pgbackrest"),
                    tls,
                })
            }
            _ => None,
        };
        let recovery = match &args.recovery_source {
            Some(source) => {
                if !is_stanza(source) {
                    return Err(InstanceError::InvalidArg {
                        flag: "--recovery-source",
                        reason: "use lowercase letters, digits and '-'".to_string(),
                    });
                }
                let target = match (args.recovery_target_time, args.recovery_target_lsn) {
                    (Some(time), _) => RecoveryTarget::Time(time),
                    (None, Some(lsn)) => RecoveryTarget::Lsn(lsn),
                    (None, None) => RecoveryTarget::Latest,
                };
                Some(Recovery {
                    source: source.clone(),
                    target,
                })
            }
            None => None,
        };
        if args.bootstrap == BootstrapMode::Recovery && (recovery.is_none() || backup.is_none()) {
            return Err(InstanceError::InvalidArg {
                flag: "--bootstrap",
                reason: "recovery needs --recovery-source, --backup-config and --backup-stanza"
                    .to_string(),
            });
        }
        Ok(Settings {
            name: args.name,
            backup,
            recovery,
            passfile: beside("pgpass"),
            data_dir,
            bin_dir: args.bin_dir,
            pg_listen: args.pg_listen,
            pg_port: args.pg_port,
            http_addr: args.http_addr,
            bootstrap: args.bootstrap,
            upstream: args.upstream_host.map(|host| (host, args.upstream_port)),
            initial_epoch: args.initial_epoch,
            synchronous: args.synchronous.trim().to_string(),
            config_file: args.config_file.map(|path| absolute(&path)).transpose()?,
            hba_file: args.hba_file.map(|path| absolute(&path)).transpose()?,
            token,
            superuser_password,
            replication_user: args.replication_user,
            replication_password,
            app,
            state_file,
            bootstrap_timeout: std::time::Duration::from_secs(args.bootstrap_timeout_secs),
            lease: (args.lease_ms > 0).then(|| std::time::Duration::from_millis(args.lease_ms)),
        })
    }

    /// Host the manager uses to reach its own postgres.
    pub fn local_host(&self) -> &str {
        local_host_of(&self.pg_listen)
    }

    pub fn tool(&self, program: &str) -> PathBuf {
        self.bin_dir.join(program)
    }
}

/// The host to reach a postgres listening on `pg_listen` from the same machine.
fn local_host_of(pg_listen: &str) -> &str {
    match pg_listen {
        "*" | "0.0.0.0" | "" | "::" => "127.0.0.1",
        other => other.split(',').next().unwrap_or("127.0.0.1").trim(),
    }
}

/// A stanza is a cluster name: a DNS label.
fn is_stanza(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
}

fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn absolute(path: &Path) -> Result<PathBuf, InstanceError> {
    std::path::absolute(path).map_err(|source| InstanceError::Io {
        what: format!("resolving {}", path.display()),
        source,
    })
}

/// A file wins over the inline value; a trailing newline in the file is not part of it.
fn secret(
    inline: Option<Secret>,
    file: Option<&Path>,
    flag: &'static str,
) -> Result<Option<Secret>, InstanceError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| InstanceError::Io {
            what: format!("reading {flag} {}", path.display()),
            source,
        })?;
        let value = text.trim_end_matches(['\n', '\r']).to_string();
        if value.is_empty() {
            return Err(InstanceError::InvalidArg {
                flag,
                reason: format!("{} is empty", path.display()),
            });
        }
        return Ok(Some(Secret(value)));
    }
    Ok(inline.filter(|secret| !secret.0.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: InstanceArgs,
    }

    fn parse(extra: &[&str]) -> InstanceArgs {
        let mut argv = vec!["test", "--name", "pg-0", "--data-dir", "/var/lib/pg/data"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).expect("args parse").args
    }

    const SECRETS: [&str; 6] = [
        "--token",
        "t",
        "--superuser-password",
        "s",
        "--replication-password",
        "r",
    ];

    #[test]
    fn the_application_database_needs_its_owner_and_password() {
        let mut partial = SECRETS.to_vec();
        partial.extend_from_slice(&["--app-database", "ledger"]);
        let error = Settings::resolve(parse(&partial)).expect_err("database without owner");
        assert!(error.to_string().contains("go together"), "{error}");

        let mut bad = SECRETS.to_vec();
        bad.extend_from_slice(&[
            "--app-database",
            "ledger",
            "--app-owner",
            "Robert'); DROP",
            "--app-password",
            "p",
        ]);
        assert!(
            Settings::resolve(parse(&bad)).is_err(),
            "owner must be a plain identifier"
        );

        let mut full = SECRETS.to_vec();
        full.extend_from_slice(&[
            "--app-database",
            "ledger",
            "--app-owner",
            "payments",
            "--app-password",
            "app-secret-42",
        ]);
        let settings = Settings::resolve(parse(&full)).expect("complete app flags");
        let app = settings.app.as_ref().expect("app database configured");
        assert_eq!(
            (app.database.as_str(), app.owner.as_str()),
            ("ledger", "payments")
        );
        assert!(
            !format!("{settings:?}").contains("app-secret-42"),
            "app password leaked"
        );

        assert!(
            Settings::resolve(parse(&SECRETS))
                .expect("no app flags")
                .app
                .is_none()
        );
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let args = parse(&[
            "--token",
            "tok-value-123",
            "--superuser-password",
            "su-value-456",
            "--replication-password",
            "rep-value-789",
        ]);
        let settings = Settings::resolve(args).expect("settings");
        let printed = format!("{settings:?}");
        for secret in ["tok-value-123", "su-value-456", "rep-value-789"] {
            assert!(!printed.contains(secret), "{secret} leaked: {printed}");
        }
        assert_eq!(settings.token.expose(), "tok-value-123");
    }

    #[test]
    fn a_missing_token_is_refused_and_named() {
        let args = parse(&["--superuser-password", "a", "--replication-password", "b"]);
        let error = Settings::resolve(args).expect_err("no token");
        assert!(
            error.to_string().contains("SHANRAQ_INSTANCE_TOKEN"),
            "{error}"
        );
    }

    #[test]
    fn files_beside_the_data_dir_and_secret_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "from-file\n").expect("write token");
        let token_path = token_file.to_string_lossy().into_owned();
        let args = parse(&[
            "--token",
            "inline",
            "--token-file",
            &token_path,
            "--superuser-password",
            "a",
            "--replication-password",
            "b",
        ]);
        let settings = Settings::resolve(args).expect("settings");
        assert_eq!(settings.token.expose(), "from-file");
        assert_eq!(
            settings.state_file,
            PathBuf::from("/var/lib/pg/data.shanraq-state.json")
        );
        assert_eq!(settings.passfile, PathBuf::from("/var/lib/pg/data.pgpass"));
        assert_eq!(
            settings.bin_dir,
            PathBuf::from("/usr/lib/postgresql/15/bin")
        );
        assert_eq!(settings.http_addr.to_string(), "127.0.0.1:8000");
    }

    #[test]
    fn local_host_reaches_postgres_on_loopback_when_it_listens_everywhere() {
        let mut args = parse(&["--token", "t", "--superuser-password", "a"]);
        args.replication_password = Some(Secret::new("b"));
        args.pg_listen = "0.0.0.0".to_string();
        let settings = Settings::resolve(args).expect("settings");
        assert_eq!(settings.local_host(), "127.0.0.1");
    }
}
