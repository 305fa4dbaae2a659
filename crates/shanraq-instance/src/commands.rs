//! The operator's commands: promote, fence, demote, repoint. Each first checks the epoch (an
//! older one is refused so a stale operator cannot act), then does its work under the
//! lifecycle lock, re-checking that no newer epoch arrived while it waited.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shanraq_ha::wire::{
    DemoteRequest, DetachRequest, FenceRequest, PromoteRequest, RepointRequest, SynchronousRequest,
};

use crate::bootstrap::clone_from;
use crate::config;
use crate::error::InstanceError;
use crate::status;
use crate::supervisor::{Manager, START_TIMEOUT, StaleEpoch};
use crate::tools;

const PROMOTE_TIMEOUT: Duration = Duration::from_secs(15);
const DEMOTE_STOP_TIMEOUT: Duration = Duration::from_secs(10);
const RECLONE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `detach` waits for the WAL receiver to exit after the reload.
const DETACH_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub enum CommandError {
    /// The request's epoch is older than the instance's: 409.
    Stale(StaleEpoch),
    /// The command makes no sense in the current state: 422.
    Refused(String),
    /// The command was valid but failed: 500.
    Failed(InstanceError),
}

impl From<StaleEpoch> for CommandError {
    fn from(stale: StaleEpoch) -> CommandError {
        CommandError::Stale(stale)
    }
}

impl From<InstanceError> for CommandError {
    fn from(error: InstanceError) -> CommandError {
        CommandError::Failed(error)
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Stale(stale) => write!(f, "{stale}"),
            CommandError::Refused(reason) => f.write_str(reason),
            CommandError::Failed(error) => write!(f, "{error}"),
        }
    }
}

/// Every command's start: take the token (refused when older than the instance's, or its
/// epoch claimed by another engine; `fence` also sets the fence at once), wait for the
/// lifecycle lock, and refuse if a newer token arrived meanwhile. The guard holds the lock for
/// the rest of the command. A refusal is logged: it means a stale engine tried to act.
async fn begin<'m>(
    manager: &'m Manager,
    command: &'static str,
    epoch: u64,
    owner: Option<&str>,
    fence: bool,
) -> Result<tokio::sync::MutexGuard<'m, ()>, CommandError> {
    let admitted = async {
        manager.take_epoch(epoch, owner, fence)??;
        let ops = manager.lock_ops().await;
        manager.still_current(epoch, owner)?;
        Ok(ops)
    }
    .await;
    if let Err(CommandError::Stale(stale)) = &admitted {
        tracing::warn!(command, refused = %stale, "refused a command from a stale engine");
    }
    admitted
}

/// Sets `primary_conninfo` of a replica: through ALTER SYSTEM and a reload when postgres runs,
/// in postgresql.auto.conf when it is down. A primary is refused (`instead` says what to do).
async fn set_primary_conninfo(
    manager: &Manager,
    conninfo: &str,
    instead: &str,
) -> Result<(), CommandError> {
    let settings = &manager.settings;
    if manager.snapshot().running {
        let pool = manager.pool()?;
        if !status::in_recovery(&pool).await? {
            return Err(CommandError::Refused(format!(
                "this instance is a primary: {instead}"
            )));
        }
        status::alter_system(&pool, "primary_conninfo", conninfo).await?;
    } else {
        if !config::is_standby(&settings.data_dir) {
            return Err(CommandError::Refused(format!(
                "this data dir is a primary's: {instead}"
            )));
        }
        config::set_auto_conf(
            &settings.data_dir,
            "primary_conninfo",
            Some(conninfo),
            &manager.user,
        )?;
    }
    Ok(())
}

pub async fn promote(
    manager: &Arc<Manager>,
    request: PromoteRequest,
) -> Result<String, CommandError> {
    let started = Instant::now();
    let _ops = begin(
        manager,
        "promote",
        request.epoch,
        request.owner.as_deref(),
        false,
    )
    .await?;
    if !manager.settings.data_dir.join("PG_VERSION").exists() {
        return Err(CommandError::Refused(
            "the data dir is empty: demote this instance to clone it first".to_string(),
        ));
    }
    let snapshot = manager.snapshot();
    if snapshot.persisted.fenced || !snapshot.running {
        // A fenced primary data dir starts out of recovery: no pg_promote needed. A fenced
        // replica data dir starts in recovery and is promoted below.
        manager.persist(|state| state.fenced = false)?;
        manager.start_locked()?;
        manager.wait_ready(START_TIMEOUT).await?;
    }
    let pool = manager.pool()?;
    // The configured synchronous_standby_names is in effect before the instance leaves
    // recovery: a replica's own configuration has none, and a primary promoted without it
    // would acknowledge commits no standby holds until it was set. (Under
    // `dataDurability: preferred` the engine lowers it afterwards when too few standbys stream.)
    manager
        .ensure_synchronous()
        .await
        .map_err(CommandError::Failed)?;
    if status::in_recovery(&pool).await? {
        let promoted = tokio::time::timeout(
            PROMOTE_TIMEOUT,
            sqlx::query_scalar::<_, bool>("SELECT pg_promote(true, 10)").fetch_one(&pool),
        )
        .await
        .map_err(|_| InstanceError::Timeout {
            what: "pg_promote".to_string(),
            seconds: PROMOTE_TIMEOUT.as_secs(),
        })?
        .map_err(|source| InstanceError::Sql {
            query: "pg_promote(true, 10)",
            source,
        })?;
        if !promoted {
            return Err(CommandError::Failed(InstanceError::Refused(
                "pg_promote returned false (promotion did not finish within 10 s)".to_string(),
            )));
        }
    }
    manager.persist(|state| {
        state.primary_epoch = Some(request.epoch);
        state.fenced = false;
    })?;
    manager.grant_lease();
    manager.set_message(None);
    let promoted_ms = started.elapsed().as_millis() as u64;
    tracing::info!(epoch = request.epoch, promoted_ms, "promoted");
    push_previous_timeline(manager, &pool);
    Ok(format!(
        "primary at epoch {} (promoted in {promoted_ms} ms)",
        request.epoch
    ))
}

/// In the background, once promoted: archive the old timeline's segments this instance holds
/// (see `pgbackrest::push_previous_timeline`), without delaying the promotion's answer.
fn push_previous_timeline(manager: &Arc<Manager>, pool: &sqlx::PgPool) {
    if manager.settings.backup.is_none() {
        return;
    }
    let manager = Arc::clone(manager);
    let pool = pool.clone();
    tokio::spawn(async move {
        let timeline = match status::observe(&pool).await {
            Ok(observed) => observed.timeline,
            Err(error) => {
                tracing::warn!(%error, "reading the timeline after promote");
                return;
            }
        };
        let Some(timeline) = timeline else { return };
        match crate::pgbackrest::push_previous_timeline(&manager.settings, &manager.user, timeline)
            .await
        {
            Ok(count) => tracing::info!(count, timeline, "previous timeline's segments archived"),
            Err(error) => tracing::warn!(%error, "archiving the previous timeline's segments"),
        }
    });
}

pub async fn fence(manager: &Arc<Manager>, request: FenceRequest) -> Result<String, CommandError> {
    let _ops = begin(
        manager,
        "fence",
        request.epoch,
        request.owner.as_deref(),
        true,
    )
    .await?;
    let mode = manager
        .stop_locked(Duration::from_millis(request.timeout_ms))
        .await;
    let final_lsn = manager.snapshot().final_lsn;
    tracing::info!(epoch = request.epoch, ?mode, ?final_lsn, "fenced");
    Ok(match mode {
        Some(mode) => format!(
            "fenced at epoch {}; postgres stopped ({mode:?})",
            request.epoch
        ),
        None => format!(
            "fenced at epoch {}; postgres was not running",
            request.epoch
        ),
    })
}

pub async fn demote(
    manager: &Arc<Manager>,
    request: DemoteRequest,
) -> Result<String, CommandError> {
    let started = Instant::now();
    let _ops = begin(
        manager,
        "demote",
        request.epoch,
        request.owner.as_deref(),
        false,
    )
    .await?;
    let settings = &manager.settings;
    let upstream = &request.upstream;
    manager.stop_locked(DEMOTE_STOP_TIMEOUT).await;
    config::write_passfile(settings, &manager.user)?;
    let how = if settings.data_dir.join("PG_VERSION").exists() {
        manager.set_message(Some(format!("pg_rewind from {}", upstream.name)));
        // pg_rewind compares timelines from the source's control file, which a freshly
        // promoted primary only updates at its first checkpoint: without one it would say
        // "no rewind required" about a diverged data dir.
        if let Err(error) = status::checkpoint_remote(settings, &upstream.host, upstream.port).await
        {
            tracing::warn!(%error, upstream = %upstream.name, "CHECKPOINT on the upstream before pg_rewind");
        }
        match tools::rewind(settings, &manager.user, &upstream.host, upstream.port).await {
            Ok(output) => {
                if output.contains("no rewind required") {
                    "no rewind required"
                } else {
                    "rewound with pg_rewind"
                }
            }
            Err(error) => {
                tracing::warn!(%error, "pg_rewind failed; cloning afresh");
                clone_from(manager, &upstream.host, upstream.port, RECLONE_TIMEOUT).await?;
                "pg_rewind failed; cloned with pg_basebackup"
            }
        }
    } else {
        clone_from(manager, &upstream.host, upstream.port, RECLONE_TIMEOUT).await?;
        "cloned with pg_basebackup"
    };
    tools::prepare_data_dir(&settings.data_dir, &manager.user)?;
    config::make_standby(settings, &manager.user, &upstream.host, upstream.port)?;
    manager.persist(|state| {
        state.fenced = false;
        state.primary_epoch = None;
    })?;
    manager.set_message(None);
    manager.start_locked()?;
    manager.wait_ready(START_TIMEOUT).await?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::info!(epoch = request.epoch, upstream = %upstream.name, how, elapsed_ms, "demoted");
    Ok(format!(
        "replica of {} at epoch {} ({how}, {elapsed_ms} ms)",
        upstream.name, request.epoch
    ))
}

pub async fn repoint(
    manager: &Arc<Manager>,
    request: RepointRequest,
) -> Result<String, CommandError> {
    let _ops = begin(
        manager,
        "repoint",
        request.epoch,
        request.owner.as_deref(),
        false,
    )
    .await?;
    let settings = &manager.settings;
    let upstream = &request.upstream;
    let conninfo = config::primary_conninfo(settings, &upstream.host, upstream.port);
    set_primary_conninfo(manager, &conninfo, "demote it instead of repointing").await?;
    tracing::info!(epoch = request.epoch, upstream = %upstream.name, "repointed");
    Ok(format!(
        "streaming from {} ({}:{}) at epoch {}",
        upstream.name, upstream.host, upstream.port, request.epoch
    ))
}

/// Stops streaming from any upstream and waits until the WAL receiver is gone, so that this
/// replica acknowledges nothing more of the old primary; its final received LSN is in the
/// reply's status. A stopped replica is detached in its configuration only (it cannot be
/// streaming).
pub async fn detach(
    manager: &Arc<Manager>,
    request: DetachRequest,
) -> Result<String, CommandError> {
    let started = Instant::now();
    let _ops = begin(
        manager,
        "detach",
        request.epoch,
        request.owner.as_deref(),
        false,
    )
    .await?;
    set_primary_conninfo(manager, "", "fence it instead of detaching").await?;
    if manager.snapshot().running {
        status::wait_wal_receiver_gone(&manager.pool()?, DETACH_TIMEOUT).await?;
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        epoch = request.epoch,
        elapsed_ms,
        "detached from the upstream"
    );
    Ok(format!(
        "detached at epoch {} ({elapsed_ms} ms)",
        request.epoch
    ))
}

/// Sets the primary's `synchronous_standby_names`: lowered to what the engine sends, or back
/// to the configured setting. A primary never lowers it on its own (see `SynchronousRequest`):
/// only an engine holding the current epoch does, after it recorded the fallback.
pub async fn synchronous(
    manager: &Arc<Manager>,
    request: SynchronousRequest,
) -> Result<String, CommandError> {
    let _ops = begin(
        manager,
        "synchronous",
        request.epoch,
        request.owner.as_deref(),
        false,
    )
    .await?;
    if !manager.snapshot().running {
        return Err(CommandError::Refused(
            "postgres is not running: synchronous_standby_names applies to a running primary"
                .to_string(),
        ));
    }
    let pool = manager.pool()?;
    if status::in_recovery(&pool).await? {
        return Err(CommandError::Refused(
            "this instance is a replica: synchronous_standby_names applies to the primary"
                .to_string(),
        ));
    }
    let names = request
        .standby_names
        .unwrap_or_else(|| manager.settings.synchronous.clone());
    manager.set_synchronous(&names).await?;
    tracing::info!(epoch = request.epoch, synchronous = %names, "synchronous_standby_names set by the engine");
    Ok(format!(
        "synchronous_standby_names = '{names}' at epoch {}",
        request.epoch
    ))
}
