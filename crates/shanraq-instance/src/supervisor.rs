//! The manager's core: the runtime state shared by the HTTP server and the commands, the one
//! postmaster it supervises (restarted with exponential backoff when it dies, unless fenced or
//! stopped on purpose), and the clean exit on SIGTERM/SIGINT. Lifecycle changes (start, stop,
//! rewind, promote) are serialised by one async lock; the role flags that `/primary` reads sit
//! behind a plain mutex so a fence takes effect before any slow work starts.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shanraq_ha::wire::Lsn;
use sqlx::postgres::PgPool;

use crate::args::Settings;
use crate::config;
use crate::epoch::{PersistedState, StateFile};
use crate::error::InstanceError;
use crate::osuser::PgUser;
use crate::postmaster::{Postmaster, StopMode};
use crate::status;
use crate::tools;

const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A postmaster that ran this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
const SHUTDOWN_FAST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new `synchronous_standby_names` may take to reach new sessions after the reload.
const SYNCHRONOUS_APPLY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Bootstrapping, or waiting to restart a crashed postmaster.
    #[default]
    Starting,
    /// A postmaster runs (it may still be starting up).
    Running,
    /// No postmaster, on purpose.
    Stopped,
}

#[derive(Debug, Default)]
struct Runtime {
    persisted: PersistedState,
    phase: Phase,
    postmaster: Option<Postmaster>,
    pool: Option<PgPool>,
    /// Bumped whenever the postmaster is started or stopped on purpose, so an exit watcher or
    /// a pending restart of an older postmaster knows it is out of date.
    generation: u64,
    desired_running: bool,
    message: Option<String>,
    final_lsn: Option<Lsn>,
    stopped_timeline: Option<u32>,
    crashes: u32,
    started_at: Option<Instant>,
    /// Until when the operator's lease lets this primary take writes without replicas
    /// (asynchronous mode) and keeps the self-fence away (see `crate::lease`).
    lease_until: Option<Instant>,
    /// Whether an engine stood behind this primary since the manager started (a renewal or a
    /// promote). Until then it never self-fences: a freshly bootstrapped primary waits for its
    /// replicas to clone from it and for the operator to find it.
    lease_armed: bool,
}

/// A consistent copy of the runtime state for readers.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub persisted: PersistedState,
    pub phase: Phase,
    pub running: bool,
    pub pool: Option<PgPool>,
    pub postmaster: Option<Postmaster>,
    pub message: Option<String>,
    pub final_lsn: Option<Lsn>,
    pub stopped_timeline: Option<u32>,
}

/// A command's fencing token refused: older than the instance's, or its epoch claimed by
/// another engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleEpoch {
    pub requested: u64,
    pub requested_owner: Option<String>,
    pub current: u64,
    pub holder: Option<String>,
}

impl std::fmt::Display for StaleEpoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = |owner: &Option<String>| {
            owner
                .as_deref()
                .map_or_else(|| "an unnamed engine".to_owned(), |o| format!("engine {o}"))
        };
        if self.requested < self.current {
            write!(
                f,
                "stale epoch {} (from {}) < instance epoch {} (claimed by {})",
                self.requested,
                who(&self.requested_owner),
                self.current,
                who(&self.holder)
            )
        } else {
            write!(
                f,
                "epoch {} is claimed by {}, not by {}",
                self.current,
                who(&self.holder),
                who(&self.requested_owner)
            )
        }
    }
}

#[derive(Debug)]
pub struct Manager {
    pub settings: Settings,
    pub user: PgUser,
    state_file: StateFile,
    runtime: Mutex<Runtime>,
    ops: tokio::sync::Mutex<()>,
    /// Held while a pgBackRest backup runs: one at a time per instance.
    pub backup_running: tokio::sync::Mutex<()>,
    /// The stanza's backups as pgBackRest last listed them (`GET /status` of a primary).
    repository: Mutex<Option<shanraq_ha::wire::RepositoryInfo>>,
    /// How peers reach this instance's pgBackRest TLS server, while it runs.
    pub backup_peer: Mutex<Option<shanraq_ha::wire::BackupPeer>>,
}

impl Manager {
    pub fn new(settings: Settings, user: PgUser) -> Result<Arc<Manager>, InstanceError> {
        let state_file = StateFile::new(settings.state_file.clone());
        let persisted = state_file.load()?.unwrap_or_default();
        Ok(Arc::new(Manager {
            settings,
            user,
            state_file,
            runtime: Mutex::new(Runtime {
                persisted,
                ..Runtime::default()
            }),
            ops: tokio::sync::Mutex::new(()),
            backup_running: tokio::sync::Mutex::new(()),
            repository: Mutex::new(None),
            backup_peer: Mutex::new(None),
        }))
    }

    fn runtime(&self) -> MutexGuard<'_, Runtime> {
        self.runtime
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn snapshot(&self) -> Snapshot {
        let runtime = self.runtime();
        Snapshot {
            persisted: runtime.persisted.clone(),
            phase: runtime.phase,
            running: runtime
                .postmaster
                .as_ref()
                .is_some_and(|postmaster| !postmaster.has_exited()),
            pool: runtime.pool.clone(),
            postmaster: runtime.postmaster.clone(),
            message: runtime.message.clone(),
            final_lsn: runtime.final_lsn,
            stopped_timeline: runtime.stopped_timeline,
        }
    }

    /// Serialises lifecycle changes.
    pub async fn lock_ops(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.ops.lock().await
    }

    pub fn set_message(&self, message: Option<String>) {
        self.runtime().message = message;
    }

    pub fn set_phase(&self, phase: Phase) {
        self.runtime().phase = phase;
    }

    /// Changes the persisted state and writes it to disk before returning.
    pub fn persist(&self, change: impl FnOnce(&mut PersistedState)) -> Result<(), InstanceError> {
        let mut runtime = self.runtime();
        let mut next = runtime.persisted.clone();
        change(&mut next);
        if next != runtime.persisted {
            self.state_file.store(&next)?;
            runtime.persisted = next;
        }
        Ok(())
    }

    /// Takes the token `(epoch, owner)` if the instance admits it (newer than its own, or the
    /// same claim; `shanraq_ha::wire::admits`); `fence` also sets the fence in the same step,
    /// so `/primary` stops answering before anything else happens.
    pub fn take_epoch(
        &self,
        epoch: u64,
        owner: Option<&str>,
        fence: bool,
    ) -> Result<Result<(), StaleEpoch>, InstanceError> {
        let mut runtime = self.runtime();
        if let Err(stale) = Self::admit(&runtime.persisted, epoch, owner) {
            return Ok(Err(stale));
        }
        let mut next = runtime.persisted.clone();
        if epoch > next.epoch || next.owner.is_none() {
            next.owner = owner.map(str::to_owned);
        }
        next.epoch = epoch;
        if fence {
            next.fenced = true;
            runtime.message = Some(format!("fenced at epoch {epoch}"));
        }
        if next != runtime.persisted {
            // Apply in memory first: a fence must hold even if the disk write fails.
            runtime.persisted = next.clone();
            self.state_file.store(&next)?;
        }
        Ok(Ok(()))
    }

    /// Whether the operator's lease still runs at `now` (always, when the lease is off).
    pub fn lease_valid(&self, now: Instant) -> bool {
        if self.settings.lease.is_none() {
            return true;
        }
        self.runtime().lease_until.is_some_and(|until| now < until)
    }

    /// Renews the lease for `duration` (capped) when `(epoch, owner)` is the token this
    /// instance holds the primary role at; true when renewed. Another epoch, or the same epoch
    /// from another engine, renews nothing: only the engine that made this instance primary
    /// keeps it writable.
    pub fn renew_lease(&self, epoch: u64, owner: Option<&str>, duration: Duration) -> bool {
        let mut runtime = self.runtime();
        let holds = runtime.persisted.holds_primary_epoch()
            && runtime.persisted.epoch == epoch
            && Self::admit(&runtime.persisted, epoch, owner).is_ok();
        if holds && self.settings.lease.is_some() {
            runtime.lease_until = Some(Instant::now() + duration.min(crate::lease::MAX_LEASE));
            runtime.lease_armed = true;
        }
        holds
    }

    /// Whether the self-fence is armed (see `Runtime::lease_armed`).
    pub fn lease_armed(&self) -> bool {
        self.runtime().lease_armed
    }

    /// Restarts the lease after a promotion: the engine that promoted this instance just
    /// spoke to it.
    pub fn grant_lease(&self) {
        if let Some(lease) = self.settings.lease {
            let mut runtime = self.runtime();
            runtime.lease_until = Some(Instant::now() + lease);
            runtime.lease_armed = true;
        }
    }

    /// After waiting for the lifecycle lock: refuses when a newer token arrived meanwhile.
    pub fn still_current(&self, epoch: u64, owner: Option<&str>) -> Result<(), StaleEpoch> {
        Self::admit(&self.runtime().persisted, epoch, owner)
    }

    fn admit(held: &PersistedState, epoch: u64, owner: Option<&str>) -> Result<(), StaleEpoch> {
        shanraq_ha::wire::admits(held.epoch, held.owner.as_deref(), epoch, owner).map_err(|_| {
            StaleEpoch {
                requested: epoch,
                requested_owner: owner.map(str::to_owned),
                current: held.epoch,
                holder: held.owner.clone(),
            }
        })
    }

    /// The pool of the running postmaster.
    /// The repository as last listed, if ever.
    pub fn repository(&self) -> Option<shanraq_ha::wire::RepositoryInfo> {
        self.repository
            .lock()
            .map(|slot| slot.clone())
            .unwrap_or_default()
    }

    /// Lists the stanza's backups with pgBackRest and keeps the answer; a failure keeps the
    /// previous one (and is logged).
    pub async fn refresh_repository(&self) {
        let Some(backup) = &self.settings.backup else {
            return;
        };
        match crate::pgbackrest::info(&self.settings, &self.user, &backup.stanza).await {
            Ok(info) => {
                if let Ok(mut slot) = self.repository.lock() {
                    *slot = Some(info);
                }
            }
            Err(error) => tracing::info!(%error, "pgbackrest info failed"),
        }
    }

    pub fn pool(&self) -> Result<PgPool, InstanceError> {
        self.runtime()
            .pool
            .clone()
            .ok_or_else(|| InstanceError::Refused("postgres is not running".to_string()))
    }

    /// Writes the owned configuration and starts a postmaster. Caller holds the ops lock.
    pub fn start_locked(self: &Arc<Self>) -> Result<(), InstanceError> {
        config::apply(&self.settings, &self.user)?;
        let postmaster = Postmaster::spawn(&self.settings, &self.user)?;
        let generation = {
            let mut runtime = self.runtime();
            runtime.generation += 1;
            runtime.postmaster = Some(postmaster.clone());
            runtime.pool = Some(status::pool(&self.settings));
            runtime.phase = Phase::Running;
            runtime.desired_running = true;
            runtime.final_lsn = None;
            runtime.stopped_timeline = None;
            runtime.started_at = Some(Instant::now());
            if !runtime.persisted.fenced {
                runtime.message = None;
            }
            runtime.generation
        };
        tokio::spawn(Arc::clone(self).watch_exit(postmaster, generation));
        Ok(())
    }

    /// Waits until postgres accepts connections, or fails when the postmaster exits.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), InstanceError> {
        let deadline = Instant::now() + timeout;
        loop {
            let (pool, postmaster) = {
                let runtime = self.runtime();
                (runtime.pool.clone(), runtime.postmaster.clone())
            };
            let (Some(pool), Some(postmaster)) = (pool, postmaster) else {
                return Err(InstanceError::Refused(
                    "postgres is not running".to_string(),
                ));
            };
            if postmaster.has_exited() {
                return Err(InstanceError::Refused(format!(
                    "postgres exited during start-up ({})",
                    postmaster.wait().await
                )));
            }
            if status::ping(&pool).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(InstanceError::Timeout {
                    what: "waiting for postgres to accept connections".to_string(),
                    seconds: timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the postmaster (fast, then immediate, then SIGKILL) and records what
    /// pg_controldata says. Caller holds the ops lock.
    pub async fn stop_locked(&self, fast_timeout: Duration) -> Option<StopMode> {
        let (postmaster, pool) = {
            let mut runtime = self.runtime();
            runtime.generation += 1;
            runtime.desired_running = false;
            runtime.phase = Phase::Stopped;
            (runtime.postmaster.take(), runtime.pool.take())
        };
        if let Some(pool) = pool {
            tokio::spawn(async move { pool.close().await });
        }
        let mode = match postmaster {
            Some(postmaster) => Some(postmaster.stop(fast_timeout).await),
            None => None,
        };
        self.record_controldata().await;
        mode
    }

    /// final_lsn (only after a clean stop) and timeline of a stopped data dir.
    pub async fn record_controldata(&self) {
        if !self.settings.data_dir.join("PG_VERSION").exists() {
            return;
        }
        match tools::controldata(&self.settings, &self.user).await {
            Ok(control) => {
                let mut runtime = self.runtime();
                runtime.final_lsn = control.clean().then_some(control.checkpoint_lsn).flatten();
                runtime.stopped_timeline = control.timeline;
            }
            Err(error) => tracing::warn!(%error, "pg_controldata"),
        }
    }

    async fn watch_exit(self: Arc<Self>, postmaster: Postmaster, generation: u64) {
        let how = postmaster.wait().await;
        postmaster.kill_group();
        let delay = {
            let mut runtime = self.runtime();
            if runtime.generation != generation || !runtime.desired_running {
                return;
            }
            let stable = runtime
                .started_at
                .is_some_and(|started| started.elapsed() >= STABLE_AFTER);
            runtime.crashes = if stable { 1 } else { runtime.crashes + 1 };
            let delay = backoff(runtime.crashes);
            runtime.postmaster = None;
            runtime.pool = None;
            runtime.phase = Phase::Starting;
            runtime.message = Some(format!(
                "postgres exited unexpectedly ({how}); restart in {} ms",
                delay.as_millis()
            ));
            delay
        };
        tracing::warn!(%how, delay_ms = delay.as_millis() as u64, "postgres exited unexpectedly");
        self.restart_after(generation, delay).await;
    }

    async fn restart_after(self: Arc<Self>, generation: u64, mut delay: Duration) {
        loop {
            tokio::time::sleep(delay).await;
            let _ops = self.lock_ops().await;
            {
                let runtime = self.runtime();
                if runtime.generation != generation
                    || !runtime.desired_running
                    || runtime.persisted.fenced
                {
                    return;
                }
            }
            match self.start_locked() {
                Ok(()) => return,
                Err(error) => {
                    delay = (delay * 2).min(BACKOFF_MAX);
                    tracing::error!(%error, "restarting postgres");
                    self.set_message(Some(format!("restarting postgres failed: {error}")));
                }
            }
        }
    }

    /// Sets `synchronous_standby_names` on a primary to the configured value, if it differs.
    pub async fn ensure_synchronous(&self) -> Result<(), InstanceError> {
        let configured = self.settings.synchronous.clone();
        self.set_synchronous(&configured).await
    }

    /// Sets `synchronous_standby_names` to `names`, if it differs, and waits until a session
    /// sees it: the reload is asynchronous, and the status the command answers with must show
    /// what is in effect (the engine clears or keeps its fallback on that evidence).
    pub async fn set_synchronous(&self, names: &str) -> Result<(), InstanceError> {
        let pool = self.pool()?;
        if current_synchronous(&pool).await? == names {
            return Ok(());
        }
        status::alter_system(&pool, "synchronous_standby_names", names).await?;
        let deadline = Instant::now() + SYNCHRONOUS_APPLY_TIMEOUT;
        while current_synchronous(&pool).await? != names {
            if Instant::now() >= deadline {
                return Err(InstanceError::Timeout {
                    what: format!("synchronous_standby_names = '{names}' to take effect"),
                    seconds: SYNCHRONOUS_APPLY_TIMEOUT.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(synchronous = %names, "synchronous_standby_names set");
        Ok(())
    }

    /// Clean exit: fast shutdown of postgres, escalating if it hangs.
    pub async fn shutdown(&self) {
        let _ops = tokio::time::timeout(Duration::from_secs(5), self.lock_ops())
            .await
            .ok();
        let mode = self.stop_locked(SHUTDOWN_FAST_TIMEOUT).await;
        tracing::info!(?mode, "postgres stopped; instance manager exiting");
    }
}

async fn current_synchronous(pool: &PgPool) -> Result<String, InstanceError> {
    sqlx::query_scalar("SELECT current_setting('synchronous_standby_names')")
        .fetch_one(pool)
        .await
        .map_err(|source| InstanceError::Sql {
            query: "current_setting('synchronous_standby_names')",
            source,
        })
}

fn backoff(crashes: u32) -> Duration {
    let exponent = crashes.saturating_sub(1).min(16);
    (BACKOFF_FIRST * 2_u32.pow(exponent)).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(4), Duration::from_millis(1600));
        assert_eq!(backoff(30), BACKOFF_MAX);
    }
}
