//! What the manager does with its data dir at start: initdb a new primary, clone a replica
//! from its upstream, start an existing replica, or hold an existing primary's data dir down as
//! `Fenced` until the operator says which role it has now. The manager never promotes itself:
//! a former primary that comes back could otherwise accept writes beside the new one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::args::BootstrapMode;
use crate::config;
use crate::error::InstanceError;
use crate::status;
use crate::supervisor::{Manager, Phase, START_TIMEOUT};
use crate::tools;

pub const WAITING_FOR_OPERATOR: &str = "waiting for the operator";

pub async fn run(manager: &Arc<Manager>) -> Result<(), InstanceError> {
    let settings = &manager.settings;
    let data_dir = &settings.data_dir;
    if tools::is_empty_dir(data_dir)? {
        let known_member = manager.snapshot().persisted.epoch > 0;
        return match settings.bootstrap {
            BootstrapMode::Primary if known_member => {
                // The state file says this instance already belonged to a cluster: a fresh
                // initdb now would create a second, empty primary.
                hold_for_operator(
                    manager,
                    "data dir is empty but this instance was a cluster member; demote it to re-clone",
                )
                .await
            }
            BootstrapMode::Primary => bootstrap_primary(manager).await,
            BootstrapMode::Replica => bootstrap_replica(manager).await,
            // Like a fresh primary: a known member with an empty data dir must re-clone.
            BootstrapMode::Recovery if known_member => hold_for_operator(
                manager,
                "data dir is empty but this instance was a cluster member; demote it to re-clone",
            )
            .await,
            BootstrapMode::Recovery => bootstrap_recovery(manager).await,
        };
    }
    if !data_dir.join("PG_VERSION").exists() {
        return Err(InstanceError::ForeignDataDir {
            path: data_dir.display().to_string(),
        });
    }
    let fenced = manager.snapshot().persisted.fenced;
    if fenced {
        return hold_for_operator(manager, "fenced by the operator").await;
    }
    if !config::is_standby(data_dir) {
        return hold_for_operator(manager, "found a primary's data dir").await;
    }
    let _ops = manager.lock_ops().await;
    tools::prepare_data_dir(data_dir, &manager.user)?;
    manager.start_locked()?;
    if let Err(error) = manager.wait_ready(START_TIMEOUT).await {
        tracing::warn!(%error, "replica not accepting connections yet");
    }
    tracing::info!("existing replica started");
    Ok(())
}

/// Stays down, fenced, with the reason in `/status`, until `promote` or `demote`.
async fn hold_for_operator(manager: &Arc<Manager>, reason: &str) -> Result<(), InstanceError> {
    manager.persist(|state| state.fenced = true)?;
    manager.set_phase(Phase::Stopped);
    manager.record_controldata().await;
    manager.set_message(Some(format!("{WAITING_FOR_OPERATOR}: {reason}")));
    tracing::info!(reason, "{WAITING_FOR_OPERATOR}");
    Ok(())
}

async fn bootstrap_primary(manager: &Arc<Manager>) -> Result<(), InstanceError> {
    let settings = &manager.settings;
    let started = Instant::now();
    manager.set_message(Some("bootstrapping: initdb".to_string()));
    tools::prepare_data_dir(&settings.data_dir, &manager.user)?;
    config::write_passfile(settings, &manager.user)?;
    tools::initdb(settings, &manager.user).await?;
    let _ops = manager.lock_ops().await;
    manager.start_locked()?;
    manager.wait_ready(START_TIMEOUT).await?;
    let epoch = take_office_patiently(manager).await?;
    tracing::info!(
        epoch,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "primary bootstrapped"
    );
    Ok(())
}

/// `take_office`, tried again until `START_TIMEOUT` has passed since the first attempt: on a
/// busy node a postgres that has just started can take longer than one query's timeout (1 s)
/// to fork a backend and authenticate it, and a bootstrap given up here leaves a primary's data
/// dir that never took office, which the manager, restarted, only holds for the operator (on a
/// 2-core node starting six Kafka JVMs beside it, the first primary stopped that way). Every
/// step is idempotent, so trying again is safe.
async fn take_office_patiently(manager: &Arc<Manager>) -> Result<u64, InstanceError> {
    let started = Instant::now();
    loop {
        match take_office(manager).await {
            Ok(epoch) => return Ok(epoch),
            Err(error) if started.elapsed() < START_TIMEOUT => {
                tracing::warn!(%error, "taking office failed; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// What a first primary does once it runs, whether made by initdb or restored from backups:
/// the replication role and the application database, its epoch persisted (unfenced), the
/// synchronous standby requirement (only now: from here on every commit waits for one), and
/// the repository's stanza. Returns the epoch.
async fn take_office(manager: &Arc<Manager>) -> Result<u64, InstanceError> {
    let settings = &manager.settings;
    create_replication_role(manager).await?;
    if let Some(app) = &settings.app {
        create_app_database(manager, app).await?;
    }
    let epoch = settings
        .initial_epoch
        .max(manager.snapshot().persisted.epoch);
    manager.persist(|state| {
        if state.epoch != epoch {
            // A bootstrap epoch has not been claimed by any engine yet.
            state.owner = None;
        }
        state.epoch = epoch;
        state.primary_epoch = Some(epoch);
        state.fenced = false;
    })?;
    manager.ensure_synchronous().await?;
    create_stanza(manager).await;
    manager.set_message(None);
    Ok(epoch)
}

/// The cluster's stanza in the repository, on its first primary. A failure (the object store
/// unreachable, say) does not stop the primary: archiving fails and shows it in
/// `pg_stat_archiver` until the stanza exists, and every backup creates it first.
async fn create_stanza(manager: &Arc<Manager>) {
    if manager.settings.backup.is_none() {
        return;
    }
    let started = Instant::now();
    match crate::pgbackrest::stanza_create(&manager.settings, &manager.user).await {
        Ok(()) => tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "pgbackrest stanza ready"
        ),
        Err(error) => {
            tracing::warn!(%error, "pgbackrest stanza-create failed; archiving waits for it")
        }
    }
}

/// How long a restored instance may take to replay the archive up to its target.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(3600);

/// Restores `--recovery-source`'s backups (pgBackRest), starts postgres, which replays the
/// archive up to the target and promotes itself onto a new timeline, then runs as this
/// cluster's first primary. Replicas clone from it as from any primary.
async fn bootstrap_recovery(manager: &Arc<Manager>) -> Result<(), InstanceError> {
    let settings = &manager.settings;
    let recovery = settings.recovery.clone().ok_or_else(|| {
        InstanceError::Refused("--bootstrap recovery without --recovery-source".to_string())
    })?;
    let started = Instant::now();
    manager.set_message(Some(format!(
        "bootstrapping: restoring the backups of {}",
        recovery.source
    )));
    tools::prepare_data_dir(&settings.data_dir, &manager.user)?;
    config::write_passfile(settings, &manager.user)?;
    crate::pgbackrest::restore(settings, &manager.user, &recovery).await?;
    // The source's own settings must not come along: a synchronous standby list would make
    // the first commit wait for standbys that do not exist yet, an upstream would be wrong.
    for key in ["synchronous_standby_names", "primary_conninfo"] {
        config::set_auto_conf(&settings.data_dir, key, None, &manager.user)?;
    }
    let restored_ms = started.elapsed().as_millis() as u64;
    manager.set_message(Some(format!(
        "bootstrapping: replaying the archive of {}",
        recovery.source
    )));
    let _ops = manager.lock_ops().await;
    manager.start_locked()?;
    wait_promoted(manager, RECOVERY_TIMEOUT).await?;
    // The restored roles carry the source cluster's passwords: this cluster's own take over,
    // first the superuser's through the socket, then the others as at an initdb.
    set_superuser_password(manager).await?;
    manager.wait_ready(START_TIMEOUT).await?;
    // The recovery settings pgBackRest wrote would stop a later standby of this instance at
    // the same target, and fetch WAL from the source's stanza: gone once promoted.
    status::reset_system(
        &manager.pool()?,
        &[
            "restore_command",
            "recovery_target",
            "recovery_target_time",
            "recovery_target_lsn",
            "recovery_target_action",
        ],
    )
    .await?;
    let epoch = take_office_patiently(manager).await?;
    tracing::info!(
        epoch,
        source = %recovery.source,
        restored_ms,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "primary recovered from backups"
    );
    Ok(())
}

/// Runs `statements` with psql over the unix socket in the manager's private dir (peer
/// authentication as the postgres OS user), statements on stdin, never on a command line;
/// returns what psql printed (unaligned, tuples only).
async fn psql(manager: &Arc<Manager>, statements: &str) -> Result<String, InstanceError> {
    use tokio::io::AsyncWriteExt;
    let settings = &manager.settings;
    let socket_dir = settings
        .backup
        .as_ref()
        .map(|backup| backup.lock_dir.clone())
        .ok_or_else(|| InstanceError::Refused("recovery without --backup-config".to_string()))?;
    let mut command = manager.user.command(&settings.tool("psql"));
    command
        .args(["--no-psqlrc", "--quiet", "--tuples-only", "--no-align"])
        .arg("--set=ON_ERROR_STOP=1")
        .arg(format!("--host={}", socket_dir.display()))
        .arg(format!("--port={}", settings.pg_port))
        .args(["--username=postgres", "--dbname=postgres"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|source| InstanceError::io("running psql", source))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(statements.as_bytes())
            .await
            .map_err(|source| InstanceError::io("writing to psql", source))?;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|source| InstanceError::io("running psql", source))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(InstanceError::ToolFailed {
            program: "psql".to_string(),
            status: output.status.to_string(),
            output: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// `ALTER ROLE postgres PASSWORD`, through the socket: the restored role has the source's.
async fn set_superuser_password(manager: &Arc<Manager>) -> Result<(), InstanceError> {
    let statements = format!(
        "SET log_statement = 'none';\nSET log_min_error_statement = 'panic';\nSET log_min_duration_statement = -1;\nALTER ROLE postgres WITH PASSWORD {};\n",
        config::quote_conf(manager.settings.superuser_password.expose())
    );
    psql(manager, &statements).await.map(|_| ())
}

/// Waits until postgres has left recovery (reached its target and promoted), asked through
/// the socket: the superuser's password is still the source cluster's.
async fn wait_promoted(manager: &Arc<Manager>, timeout: Duration) -> Result<(), InstanceError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(answer) = psql(manager, "SELECT pg_is_in_recovery();\n").await
            && answer == "f"
        {
            return Ok(());
        }
        if let Some(postmaster) = manager.snapshot().postmaster
            && postmaster.has_exited()
        {
            return Err(InstanceError::Refused(format!(
                "postgres exited during recovery ({})",
                postmaster.wait().await
            )));
        }
        if Instant::now() >= deadline {
            return Err(InstanceError::Timeout {
                what: "waiting for the restored instance to reach its target and promote"
                    .to_string(),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The role replicas (and pg_basebackup) connect as. The statement carries a password, so
/// this session logs no statements, not even on error.
async fn create_replication_role(manager: &Arc<Manager>) -> Result<(), InstanceError> {
    let settings = &manager.settings;
    let mut connection = status::connect(settings).await?;
    let user = &settings.replication_user;
    let statements = format!(
        "SET log_statement = 'none';
         SET log_min_error_statement = 'panic';
         SET log_min_duration_statement = -1;
         DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{user}') THEN
             CREATE ROLE \"{user}\" WITH REPLICATION LOGIN;
           END IF;
         END $$;
         ALTER ROLE \"{user}\" WITH REPLICATION LOGIN PASSWORD {};",
        config::quote_conf(settings.replication_password.expose()),
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(statements))
        .execute(&mut connection)
        .await
        .map_err(|source| InstanceError::Sql {
            query: "create replication role",
            source,
        })?;
    Ok(())
}

/// The application's owner role and database. Runs before synchronous replication is switched
/// on, so it cannot wait for a standby. Like the replication role, the session logs nothing.
async fn create_app_database(
    manager: &Arc<Manager>,
    app: &crate::args::AppDatabase,
) -> Result<(), InstanceError> {
    let settings = &manager.settings;
    let mut connection = status::connect(settings).await?;
    let (owner, database) = (&app.owner, &app.database);
    let role = format!(
        "SET log_statement = 'none';
         SET log_min_error_statement = 'panic';
         SET log_min_duration_statement = -1;
         DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{owner}') THEN
             CREATE ROLE \"{owner}\" WITH LOGIN;
           END IF;
         END $$;
         ALTER ROLE \"{owner}\" WITH LOGIN PASSWORD {};",
        config::quote_conf(app.password.expose()),
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(role))
        .execute(&mut connection)
        .await
        .map_err(|source| InstanceError::Sql {
            query: "create application role",
            source,
        })?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut connection)
            .await
            .map_err(|source| InstanceError::Sql {
                query: "look up application database",
                source,
            })?;
    if !exists {
        // CREATE DATABASE cannot run in a transaction block or take bind parameters; both names
        // were checked to be plain identifiers.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{database}\" OWNER \"{owner}\""
        )))
        .execute(&mut connection)
        .await
        .map_err(|source| InstanceError::Sql {
            query: "create application database",
            source,
        })?;
    }
    Ok(())
}

async fn bootstrap_replica(manager: &Arc<Manager>) -> Result<(), InstanceError> {
    let settings = &manager.settings;
    let (host, port) = settings.upstream.clone().ok_or(InstanceError::NoUpstream)?;
    let started = Instant::now();
    tools::prepare_data_dir(&settings.data_dir, &manager.user)?;
    config::write_passfile(settings, &manager.user)?;
    clone_from(manager, &host, port, settings.bootstrap_timeout).await?;
    config::make_standby(settings, &manager.user, &host, port)?;
    let epoch = settings
        .initial_epoch
        .max(manager.snapshot().persisted.epoch);
    manager.persist(|state| {
        if state.epoch != epoch {
            state.owner = None;
        }
        state.epoch = epoch;
        state.primary_epoch = None;
        state.fenced = false;
    })?;
    let _ops = manager.lock_ops().await;
    manager.start_locked()?;
    // The data dir is a complete replica now: if postgres dies while starting, the
    // supervisor restarts it like any crash, instead of the whole bootstrap failing.
    if let Err(error) = manager.wait_ready(START_TIMEOUT).await {
        tracing::warn!(%error, "replica not accepting connections yet");
    }
    manager.set_message(None);
    tracing::info!(
        upstream = %format!("{host}:{port}"),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "replica bootstrapped"
    );
    Ok(())
}

/// pg_basebackup into the emptied data dir, retried with backoff until the upstream answers
/// or `timeout` passes.
pub async fn clone_from(
    manager: &Manager,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<(), InstanceError> {
    let settings = &manager.settings;
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(250);
    loop {
        manager.set_message(Some(format!("cloning from {host}:{port} (pg_basebackup)")));
        tools::empty_dir(&settings.data_dir)?;
        match tools::basebackup(settings, &manager.user, host, port).await {
            Ok(()) => return Ok(()),
            Err(error) if Instant::now() + delay < deadline => {
                tracing::info!(%error, retry_ms = delay.as_millis() as u64, "pg_basebackup failed; retrying");
                manager.set_message(Some(format!(
                    "pg_basebackup from {host}:{port} failed; retrying: {error}"
                )));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(error) => return Err(error),
        }
    }
}
