//! PostgreSQL: a StatefulSet whose pods run the instance manager (`shanraq instance postgres`),
//! the Services that route by role (`-rw` to the primary, `-ro` to replicas, `-r` to any), the
//! ConfigMap with postgresql.conf and pg_hba.conf, and a disruption budget.
//!
//! postgresql.conf is a fragment the instance manager includes before the settings it owns
//! (listen address, port, replication plumbing, `synchronous_standby_names`), so the rendered
//! file carries the operator's OLTP defaults, the settings derived from the typed spec, then the
//! user's `postgres.parameters`, and never a setting reserved to the manager.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use shanraq_api::ValidCluster;
use shanraq_api::names::{Component, LABEL_ROLE, ROLE_PRIMARY, ROLE_REPLICA};
use shanraq_api::postgres::RESERVED_POSTGRES_PARAMETERS;
use shanraq_api::storage::quantity_bytes;

use crate::backup;
use crate::meta::{self, shell_quote};
use crate::{Child, Inputs, RenderError};

/// uid and gid of `postgres` in the PostgreSQL image (images/postgres/Dockerfile creates it).
pub const POSTGRES_UID: i64 = 999;
pub const PORT: i32 = 5432;
/// The instance manager's HTTP port (`/health`, `/primary`, `/replica`, `/status`).
pub const STATUS_PORT: i32 = 8000;
/// The replication role; the same name is in the `-pg-replication` Secret.
pub const REPLICATION_USER: &str = "streaming_replica";
pub const SUPERUSER: &str = "postgres";

const DATA_MOUNT: &str = "/var/lib/postgresql/data";
/// A directory below the volume's root, which may hold `lost+found`.
const DATA_DIR: &str = "/var/lib/postgresql/data/pgdata";
const CONFIG_DIR: &str = "/etc/shanraq/postgres";
const SECRETS_DIR: &str = "/etc/shanraq/secrets";
const EXPORTER_PORT: i32 = 9187;
/// postgres_exporter in the PostgreSQL image, which the sidecar runs with this command.
const EXPORTER_COMMAND: &str = "postgres_exporter";
/// `nobody`: the exporter needs no file of the instance's but the superuser's password, which
/// it reads through the pod's fsGroup.
const EXPORTER_UID: i64 = 65534;

/// Settings that are directives rather than parameters; a user key must never be one of them.
const DIRECTIVES: &[&str] = &["include", "include_if_exists", "include_dir", "config_file"];

/// postgresql.conf: operator defaults < typed spec < user parameters, reserved keys excluded.
pub fn postgresql_conf(cluster: &ValidCluster) -> Result<String, RenderError> {
    let spec = &cluster.spec.postgres;
    let mut settings: BTreeMap<String, String> = operator_defaults()
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    for (key, value) in from_typed_spec(cluster)
        .into_iter()
        .chain(backup::archive_settings(cluster))
    {
        settings.insert(key.to_owned(), value);
    }
    let mut user = BTreeMap::new();
    for (key, value) in &spec.parameters {
        check_parameter(key, value)?;
        let key = key.to_ascii_lowercase();
        if is_reserved(&key) {
            continue;
        }
        settings.remove(&key);
        user.insert(key, value.clone());
    }

    let mut text = String::from(
        "# Rendered by the shanraq operator from the ShanraqCluster spec; edits are overwritten.\n\
         # The instance manager includes this file before the settings it owns (listen address,\n\
         # port, replication plumbing and the synchronous standby list), which always win.\n",
    );
    text.push_str("\n# Operator defaults and settings derived from the spec\n");
    for (key, value) in &settings {
        let _ = writeln!(text, "{key} = {}", quote_conf(value));
    }
    if !user.is_empty() {
        text.push_str("\n# postgres.parameters\n");
        for (key, value) in &user {
            let _ = writeln!(text, "{key} = {}", quote_conf(value));
        }
    }
    Ok(text)
}

/// Defaults for an OLTP payments workload with streaming replication. The replication values
/// match what the instance manager enforces, so the file reads the same as the running server.
fn operator_defaults() -> Vec<(&'static str, &'static str)> {
    vec![
        // Replication and durability.
        ("wal_level", "replica"),
        ("hot_standby", "on"),
        ("hot_standby_feedback", "on"),
        ("wal_log_hints", "on"),
        ("max_wal_senders", "10"),
        ("max_replication_slots", "10"),
        ("wal_keep_size", "512MB"),
        ("synchronous_commit", "on"),
        ("fsync", "on"),
        ("full_page_writes", "on"),
        ("wal_compression", "on"),
        ("checkpoint_timeout", "15min"),
        ("checkpoint_completion_target", "0.9"),
        ("max_wal_size", "4GB"),
        ("min_wal_size", "1GB"),
        // Connections and security.
        ("max_connections", "200"),
        ("password_encryption", "scram-sha-256"),
        ("idle_in_transaction_session_timeout", "5min"),
        ("tcp_keepalives_idle", "60"),
        ("tcp_keepalives_interval", "10"),
        ("tcp_keepalives_count", "6"),
        // Memory and planner (SSD-backed volumes).
        ("shared_buffers", "128MB"),
        ("work_mem", "4MB"),
        ("maintenance_work_mem", "64MB"),
        ("random_page_cost", "1.1"),
        ("effective_io_concurrency", "200"),
        // Statistics for monitoring.
        ("shared_preload_libraries", "pg_stat_statements"),
        ("pg_stat_statements.track", "top"),
        ("track_io_timing", "on"),
        ("autovacuum_vacuum_scale_factor", "0.05"),
        ("autovacuum_analyze_scale_factor", "0.02"),
        // Logging to stderr, collected by the container runtime.
        ("log_destination", "stderr"),
        ("logging_collector", "off"),
        ("log_line_prefix", "%m [%p] %q%u@%d "),
        ("log_timezone", "UTC"),
        ("timezone", "UTC"),
        ("log_checkpoints", "on"),
        ("log_connections", "on"),
        ("log_disconnections", "on"),
        ("log_lock_waits", "on"),
        ("log_temp_files", "0"),
        ("log_min_duration_statement", "1s"),
        ("log_autovacuum_min_duration", "10s"),
        ("log_replication_commands", "on"),
    ]
}

/// Memory settings sized from the container's memory (limit, else request).
fn from_typed_spec(cluster: &ValidCluster) -> Vec<(&'static str, String)> {
    let Some(resources) = &cluster.spec.postgres.resources else {
        return Vec::new();
    };
    let memory = resources
        .limits
        .as_ref()
        .and_then(|limits| limits.get("memory"))
        .or_else(|| {
            resources
                .requests
                .as_ref()
                .and_then(|requests| requests.get("memory"))
        });
    let Some(bytes) = memory.and_then(|quantity| quantity_bytes(&quantity.0)) else {
        return Vec::new();
    };
    let mib = bytes / (1 << 20);
    if mib < 256 {
        return Vec::new();
    }
    vec![
        ("shared_buffers", format!("{}MB", mib / 4)),
        ("effective_cache_size", format!("{}MB", mib * 3 / 4)),
        (
            "maintenance_work_mem",
            format!("{}MB", (mib / 16).min(2048)),
        ),
    ]
}

fn is_reserved(key: &str) -> bool {
    RESERVED_POSTGRES_PARAMETERS.contains(&key) || DIRECTIVES.contains(&key)
}

/// A key or value that could break out of its line would let a parameter rewrite the file.
fn check_parameter(key: &str, value: &str) -> Result<(), RenderError> {
    let key_ok = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !key_ok {
        return Err(RenderError::InvalidParameter {
            field: format!("spec.postgres.parameters.{key}"),
            reason: "a setting name has only letters, digits, '_' and '.'".to_owned(),
        });
    }
    if value.chars().any(char::is_control) {
        return Err(RenderError::InvalidParameter {
            field: format!("spec.postgres.parameters.{key}"),
            reason: "the value must not contain control characters (newlines)".to_owned(),
        });
    }
    Ok(())
}

/// postgresql.conf quoting: single quotes, an embedded one doubled, backslashes escaped.
fn quote_conf(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// pg_hba.conf: nothing is trusted over TCP. Local (socket) connections are allowed only to the
/// `postgres` OS user as the `postgres` role (`peer`); replication and every other connection
/// authenticate with scram-sha-256.
pub fn pg_hba_conf() -> String {
    format!(
        "# Rendered by the shanraq operator; edits are overwritten.\n\
         # TYPE  DATABASE     USER                ADDRESS       METHOD\n\
         local   all          {SUPERUSER}                          peer\n\
         local   replication  {SUPERUSER}                          peer\n\
         host    replication  {REPLICATION_USER}   0.0.0.0/0     scram-sha-256\n\
         host    replication  {REPLICATION_USER}   ::/0          scram-sha-256\n\
         host    all          all                 0.0.0.0/0     scram-sha-256\n\
         host    all          all                 ::/0          scram-sha-256\n"
    )
}

/// The `synchronous_standby_names` the instance manager sets once standbys stream, if any.
pub fn synchronous_standby_names(cluster: &ValidCluster) -> Option<String> {
    let sync = &cluster.spec.postgres.synchronous;
    sync.is_synchronous()
        .then(|| format!("ANY {} (*)", sync.number))
}

/// The file of the config ConfigMap that says whether the cluster ever had a primary
/// (`true` or `false`). It lives in the ConfigMap, not in the pod template: the template of an
/// `OnDelete` StatefulSet must not change when the first primary appears, or no pod would ever
/// run the current revision.
pub const PRIMARY_KNOWN_FILE: &str = "primary-known";

/// The container's entrypoint script. Once the cluster has had a primary (the ConfigMap's
/// `primary-known` says `true`), every instance with an empty data directory clones, even
/// ordinal 0, so a lost volume can never initdb a second, empty primary next to the real one.
fn start_script(cluster: &ValidCluster) -> String {
    let mut flags = vec![
        ("--name", "\"$POD_NAME\"".to_owned()),
        ("--data-dir", DATA_DIR.to_owned()),
        ("--pg-listen", "0.0.0.0".to_owned()),
        ("--pg-port", PORT.to_string()),
        ("--http-addr", format!("0.0.0.0:{STATUS_PORT}")),
        ("--bootstrap", "\"$bootstrap\"".to_owned()),
        ("--upstream-host", cluster.names.pg_rw()),
        ("--upstream-port", PORT.to_string()),
    ];
    if let Some(names) = synchronous_standby_names(cluster) {
        flags.push(("--synchronous", shell_quote(&names)));
    }
    // A single instance has nobody to fail over to: no lease, no self-fence.
    let lease_ms = if cluster.spec.postgres.instances > 1 {
        cluster.spec.failover.lease().as_millis()
    } else {
        0
    };
    flags.push(("--lease-ms", lease_ms.to_string()));
    flags.push(("--config-file", format!("{CONFIG_DIR}/postgresql.conf")));
    flags.push(("--hba-file", format!("{CONFIG_DIR}/pg_hba.conf")));
    flags.extend(
        backup::manager_flags(cluster, CONFIG_DIR, backup::TLS_DIR)
            .into_iter()
            .map(|(flag, value)| (flag, shell_quote(&value))),
    );
    // A cluster bootstrapped from backups restores on ordinal 0 instead of initdb.
    let first = if cluster.spec.bootstrap.recovery.is_some() {
        "recovery"
    } else {
        "primary"
    };
    let choose = format!(
        "# On an empty data directory, ordinal 0 of a cluster that never had a primary creates it;\n\
         # every other instance, and any instance once the cluster has had a primary, clones the\n\
         # primary through the -rw Service. Afterwards roles follow the operator's commands.\n\
         ordinal=\"${{POD_NAME##*-}}\"\n\
         if [ \"$(cat {CONFIG_DIR}/{PRIMARY_KNOWN_FILE} 2>/dev/null)\" != \"true\" ] && [ \"$ordinal\" = \"0\" ]; then\n\
         \x20 bootstrap={first}\n\
         else\n\
         \x20 bootstrap=replica\n\
         fi\n"
    );
    let mut script = format!("set -eu\n{choose}exec shanraq instance postgres");
    for (flag, value) in flags {
        let _ = write!(script, " \\\n  {flag} {value}");
    }
    script.push('\n');
    script
}

pub fn render(cluster: &ValidCluster, inputs: &Inputs) -> Result<Vec<Child>, RenderError> {
    let spec = &cluster.spec.postgres;
    if !spec.enabled {
        return Ok(Vec::new());
    }
    let names = &cluster.names;
    let workload = names.workload(Component::Postgres);
    let conf = postgresql_conf(cluster)?;
    let hba = pg_hba_conf();
    let pgbackrest = backup::pgbackrest_conf(cluster);
    let mut hashed = vec![
        ("postgresql.conf", conf.as_str()),
        ("pg_hba.conf", hba.as_str()),
    ];
    if let Some(text) = &pgbackrest {
        hashed.push((backup::PGBACKREST_CONF, text.as_str()));
    }
    let hash = meta::config_hash(&hashed);

    let mut data = BTreeMap::from([
        ("pg_hba.conf".to_owned(), hba),
        ("postgresql.conf".to_owned(), conf),
        (
            PRIMARY_KNOWN_FILE.to_owned(),
            inputs.postgres_primary.is_some().to_string(),
        ),
    ]);
    if let Some(text) = pgbackrest {
        data.insert(backup::PGBACKREST_CONF.to_owned(), text);
    }
    let config_map = ConfigMap {
        metadata: meta::object_meta(cluster, &names.pg_config(), Component::Postgres),
        data: Some(data),
        ..ConfigMap::default()
    };

    let ports = || {
        vec![
            meta::service_port("postgres", PORT),
            meta::service_port("status", STATUS_PORT),
        ]
    };
    let pg_port = || vec![meta::service_port("postgres", PORT)];
    let services = vec![
        meta::headless_service(cluster, &workload, Component::Postgres, ports()),
        meta::cluster_ip_service(
            cluster,
            &names.pg_rw(),
            Component::Postgres,
            &[(LABEL_ROLE, ROLE_PRIMARY)],
            pg_port(),
        ),
        meta::cluster_ip_service(
            cluster,
            &names.pg_ro(),
            Component::Postgres,
            &[(LABEL_ROLE, ROLE_REPLICA)],
            pg_port(),
        ),
        meta::cluster_ip_service(cluster, &names.pg_r(), Component::Postgres, &[], pg_port()),
    ];

    let mut children = vec![Child::StatefulSet(stateful_set(cluster, &hash))];
    children.extend(services.into_iter().map(Child::Service));
    children.push(Child::ConfigMap(config_map));
    children.push(Child::PodDisruptionBudget(meta::pod_disruption_budget(
        cluster,
        &workload,
        Component::Postgres,
    )));
    Ok(children)
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("status".to_owned()),
            scheme: Some("HTTP".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn stateful_set(cluster: &ValidCluster, config_hash: &str) -> StatefulSet {
    let spec = &cluster.spec.postgres;
    let names = &cluster.names;

    let mut postgres = meta::container("postgres", &spec.image, POSTGRES_UID, true);
    postgres.command = meta::shell(start_script(cluster));
    let mut env = vec![
        meta::pod_name_env(),
        meta::env(
            "SHANRAQ_SUPERUSER_PASSWORD_FILE",
            &format!("{SECRETS_DIR}/superuser/password"),
        ),
        meta::env("SHANRAQ_REPLICATION_USER", REPLICATION_USER),
        meta::env(
            "SHANRAQ_REPLICATION_PASSWORD_FILE",
            &format!("{SECRETS_DIR}/replication/password"),
        ),
        meta::env(
            "SHANRAQ_INSTANCE_TOKEN_FILE",
            &format!("{SECRETS_DIR}/token/token"),
        ),
        // The application database and its owner, created once at the first bootstrap.
        meta::env("SHANRAQ_APP_DATABASE", &spec.bootstrap.database),
        meta::env("SHANRAQ_APP_OWNER", &spec.bootstrap.owner),
        meta::env(
            "SHANRAQ_APP_PASSWORD_FILE",
            &format!("{SECRETS_DIR}/app/password"),
        ),
    ];
    // pgBackRest's key pair, straight from the user's Secret into its own variables.
    env.extend(backup::env(cluster));
    postgres.env = Some(env);
    let mut ports = vec![
        meta::container_port("postgres", PORT),
        meta::container_port("status", STATUS_PORT),
    ];
    if cluster.spec.backup.is_some() {
        ports.push(meta::container_port("pgbackrest", backup::TLS_PORT));
    }
    postgres.ports = Some(ports);
    // Readiness follows postgres itself; liveness asks only the manager, which stays up while
    // it restarts or fences postgres, so the kubelet never kills an instance mid-recovery.
    postgres.readiness_probe = Some(http_probe("/health", 2, 3));
    postgres.liveness_probe = Some(http_probe("/status", 10, 6));
    postgres.resources = spec.resources.clone();
    let mut mounts = vec![
        meta::mount("pgdata", DATA_MOUNT, false),
        meta::mount("config", CONFIG_DIR, true),
        meta::mount("superuser", &format!("{SECRETS_DIR}/superuser"), true),
        meta::mount("replication", &format!("{SECRETS_DIR}/replication"), true),
        meta::mount("token", &format!("{SECRETS_DIR}/token"), true),
        meta::mount("app", &format!("{SECRETS_DIR}/app"), true),
        meta::mount("tmp", "/tmp", false),
        meta::mount("run", "/var/run/postgresql", false),
    ];
    let ca = backup::ca_volume(cluster);
    if let Some((_, mount)) = &ca {
        mounts.push(mount.clone());
    }
    let tls = backup::tls_volume(cluster);
    if let Some((_, mount)) = &tls {
        mounts.push(mount.clone());
    }
    postgres.volume_mounts = Some(mounts);

    let mut containers = vec![postgres];
    if cluster.spec.monitoring.pod_monitors {
        containers.push(exporter(&spec.image));
    }

    let mut volumes = vec![
        meta::config_map_volume("config", &names.pg_config()),
        meta::secret_volume("superuser", &names.pg_superuser_secret()),
        meta::secret_volume("replication", &names.pg_replication_secret()),
        meta::secret_volume("token", &names.instance_token_secret()),
        meta::secret_volume("app", &names.pg_app_secret()),
        meta::empty_dir_volume("tmp"),
        meta::empty_dir_volume("run"),
    ];
    if let Some((volume, _)) = ca {
        volumes.push(volume);
    }
    if let Some((volume, _)) = tls {
        volumes.push(volume);
    }
    meta::stateful_set(
        cluster,
        Component::Postgres,
        meta::Workload {
            replicas: spec.instances,
            uid: POSTGRES_UID,
            containers,
            volumes,
            termination_grace_seconds: 60,
            ordered_start: true,
            // The kubelet's rolling update would restart the primary whenever the template
            // changes; with OnDelete a pod picks up a new template only when it is deleted
            // (`shanraq.org/config-hash` on each pod shows which ones are stale).
            on_delete: true,
            data_volume: "pgdata",
            storage: &spec.storage,
            config_hash,
        },
    )
}

/// postgres_exporter from the PostgreSQL image, connecting over loopback as the superuser with
/// the password file.
fn exporter(image: &str) -> Container {
    let mut exporter = meta::container("postgres-exporter", image, EXPORTER_UID, true);
    exporter.command = Some(vec![
        EXPORTER_COMMAND.to_owned(),
        format!("--web.listen-address=:{EXPORTER_PORT}"),
    ]);
    exporter.env = Some(vec![
        meta::env(
            "DATA_SOURCE_URI",
            &format!("127.0.0.1:{PORT}/postgres?sslmode=disable"),
        ),
        meta::env("DATA_SOURCE_USER", SUPERUSER),
        meta::env(
            "DATA_SOURCE_PASS_FILE",
            &format!("{SECRETS_DIR}/superuser/password"),
        ),
    ]);
    exporter.ports = Some(vec![meta::container_port("metrics", EXPORTER_PORT)]);
    exporter.resources = Some(meta::sidecar_resources());
    exporter.volume_mounts = Some(vec![meta::mount(
        "superuser",
        &format!("{SECRETS_DIR}/superuser"),
        true,
    )]);
    exporter
}
