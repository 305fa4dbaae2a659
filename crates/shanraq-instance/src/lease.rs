//! Whether this primary may take writes, and the guard that fences it when it may not.
//!
//! A primary is writable (`/primary` answers 200) only while it is the designated primary of
//! its epoch AND can still commit:
//! - synchronous mode (`synchronous_standby_names` in effect): at least `n` standbys of its
//!   synchronous set stream and answered within the freshness window. Once the engine has
//!   detached a quorum of them, HAProxy stops routing here at its next check;
//! - asynchronous mode: it holds the lease the operator's probes renew, or at least one
//!   replica streams from it (so a restart of the operator alone does not take writes down).
//!
//! The guard checks the same facts a few times per lease. A primary that has lost both the
//! operator's lease and every (synchronous) replica fences itself (once an engine renewed
//! its lease since the manager started: a freshly bootstrapped primary waits for its replicas
//! to clone and for the operator to find it): postgres is stopped and
//! stays down until the operator promotes or demotes it. So a primary that nobody can see,
//! whose replicas were detached by a failover, stops accepting writes from the clients that
//! still reach it, instead of taking writes that the new primary never sees.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shanraq_ha::wire::REPLY_SLACK;
use sqlx::Row;
use sqlx::postgres::PgPool;

use crate::error::InstanceError;
use crate::status::QUERY_TIMEOUT;
use crate::supervisor::Manager;

/// A self-fence gives postgres this long for a fast shutdown before it escalates.
const SELF_FENCE_STOP: Duration = Duration::from_millis(500);
/// The shortest and longest period between two guard checks.
const GUARD_MIN: Duration = Duration::from_millis(50);
const GUARD_MAX: Duration = Duration::from_millis(250);
/// The longest lease a renewal may grant, whatever it asks for.
pub const MAX_LEASE: Duration = Duration::from_secs(60);

pub use shanraq_ha::wire::quorum_needed;

/// What postgres says about its ability to commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitAbility {
    pub in_recovery: bool,
    /// `n` of the effective `synchronous_standby_names`.
    pub quorum: Option<u32>,
    /// Streaming `sync`/`quorum` standbys that replied within the freshness window.
    pub fresh_synchronous: u32,
    /// Streaming standbys of any kind that replied within the window.
    pub fresh_streaming: u32,
}

impl CommitAbility {
    /// Whether enough standbys are connected for a commit to complete (synchronous), or at
    /// least one streams (asynchronous).
    pub fn replicas_connected(&self) -> bool {
        match self.quorum {
            Some(needed) => self.fresh_synchronous >= needed,
            None => self.fresh_streaming >= 1,
        }
    }
}

const ABILITY_QUERY: &str =
    "SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names'),
  (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'
     AND sync_state IN ('sync', 'quorum')
     AND reply_time > clock_timestamp() - make_interval(secs => $1))::int4,
  (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'
     AND reply_time > clock_timestamp() - make_interval(secs => $1))::int4";

/// Asks postgres, bounded by the status query timeout.
pub async fn commit_ability(
    pool: &PgPool,
    lease: Option<Duration>,
) -> Result<CommitAbility, InstanceError> {
    let window = lease.unwrap_or_default() + REPLY_SLACK;
    let query = sqlx::query(ABILITY_QUERY)
        .bind(window.as_secs_f64())
        .fetch_one(pool);
    let row = match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(result) => result.map_err(|source| InstanceError::Sql {
            query: "commit ability",
            source,
        })?,
        Err(_) => {
            return Err(InstanceError::Timeout {
                what: "postgres query `commit ability`".to_string(),
                seconds: QUERY_TIMEOUT.as_secs(),
            });
        }
    };
    let sql = |source| InstanceError::Sql {
        query: "commit ability",
        source,
    };
    let in_recovery: bool = row.try_get(0).map_err(sql)?;
    let names: String = row.try_get(1).map_err(sql)?;
    let fresh_synchronous: i32 = row.try_get(2).map_err(sql)?;
    let fresh_streaming: i32 = row.try_get(3).map_err(sql)?;
    Ok(CommitAbility {
        in_recovery,
        quorum: quorum_needed(&names),
        fresh_synchronous: u32::try_from(fresh_synchronous).unwrap_or(0),
        fresh_streaming: u32::try_from(fresh_streaming).unwrap_or(0),
    })
}

/// Why a designated primary may not take writes (what `/primary` answers with its 503).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotWritable {
    #[error("in recovery")]
    InRecovery,
    #[error(
        "cannot commit: {streaming} of the {needed} synchronous standbys it needs are streaming"
    )]
    NoQuorum { streaming: u32, needed: u32 },
    #[error("asynchronous primary without the operator's lease and without a streaming replica")]
    Unprotected,
}

/// Whether a designated primary with this ability may take writes; the reason when not.
pub fn writable(ability: &CommitAbility, lease_valid: bool) -> Result<(), NotWritable> {
    if ability.in_recovery {
        return Err(NotWritable::InRecovery);
    }
    match ability.quorum {
        Some(needed) if ability.fresh_synchronous < needed => Err(NotWritable::NoQuorum {
            streaming: ability.fresh_synchronous,
            needed,
        }),
        Some(_) => Ok(()),
        None if lease_valid || ability.fresh_streaming >= 1 => Ok(()),
        None => Err(NotWritable::Unprotected),
    }
}

/// Runs until the manager exits: every few tens of milliseconds, a primary that holds its
/// epoch checks that it still has the lease or its replicas, and fences itself when it has
/// neither.
pub async fn guard(manager: Arc<Manager>) {
    let Some(lease) = manager.settings.lease else {
        return;
    };
    let period = (lease / 6).clamp(GUARD_MIN, GUARD_MAX);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let snapshot = manager.snapshot();
        if !snapshot.persisted.holds_primary_epoch() || !snapshot.running {
            continue;
        }
        if !manager.lease_armed() || manager.lease_valid(Instant::now()) {
            continue;
        }
        let Some(pool) = snapshot.pool else {
            continue;
        };
        let connected = match commit_ability(&pool, Some(lease)).await {
            Ok(ability) => ability.in_recovery || ability.replicas_connected(),
            // A postgres that does not answer cannot prove it still has its replicas.
            Err(_) => false,
        };
        if !connected {
            self_fence(&manager, lease).await;
        }
    }
}

async fn self_fence(manager: &Arc<Manager>, lease: Duration) {
    let _ops = manager.lock_ops().await;
    // Re-checked under the lock: a promote or a renewal may have arrived meanwhile.
    let snapshot = manager.snapshot();
    if !snapshot.persisted.holds_primary_epoch() || manager.lease_valid(Instant::now()) {
        return;
    }
    let reason = format!(
        "fenced itself at epoch {}: no lease renewal from the operator and no streaming \
         (synchronous) replica for {} ms",
        snapshot.persisted.epoch,
        lease.as_millis()
    );
    if let Err(error) = manager.persist(|state| state.fenced = true) {
        tracing::error!(%error, "persisting the self-fence; stopping postgres anyway");
    }
    manager.set_message(Some(reason.clone()));
    tracing::warn!("{reason}");
    let mode = manager.stop_locked(SELF_FENCE_STOP).await;
    tracing::warn!(?mode, "postgres stopped by the self-fence");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_needed_reads_every_form() {
        assert_eq!(quorum_needed(""), None);
        assert_eq!(quorum_needed("  "), None);
        assert_eq!(quorum_needed("ANY 1 (*)"), Some(1));
        assert_eq!(quorum_needed("any 2 (a, b, c)"), Some(2));
        assert_eq!(quorum_needed("FIRST 2 (a, b)"), Some(2));
        assert_eq!(quorum_needed("2 (a, b)"), Some(2));
        assert_eq!(quorum_needed("a, b"), Some(1));
        assert_eq!(quorum_needed("*"), Some(1));
        assert_eq!(quorum_needed("\"2fast\""), Some(1));
    }

    fn ability(quorum: Option<u32>, synchronous: u32, streaming: u32) -> CommitAbility {
        CommitAbility {
            in_recovery: false,
            quorum,
            fresh_synchronous: synchronous,
            fresh_streaming: streaming,
        }
    }

    #[test]
    fn synchronous_primary_is_writable_only_with_its_quorum() {
        assert!(writable(&ability(Some(1), 1, 1), false).is_ok());
        assert!(writable(&ability(Some(2), 2, 2), false).is_ok());
        let lost = writable(&ability(Some(2), 1, 2), true).expect_err("one of two");
        assert!(lost.to_string().contains("1 of the 2"), "{lost}");
        // The lease does not make a primary without its quorum able to commit.
        assert!(writable(&ability(Some(1), 0, 0), true).is_err());
    }

    #[test]
    fn asynchronous_primary_needs_the_lease_or_a_replica() {
        assert!(writable(&ability(None, 0, 0), true).is_ok());
        assert!(writable(&ability(None, 0, 1), false).is_ok());
        assert!(writable(&ability(None, 0, 0), false).is_err());
    }

    #[test]
    fn a_replica_is_never_writable() {
        let mut replica = ability(None, 0, 0);
        replica.in_recovery = true;
        assert_eq!(writable(&replica, true), Err(NotWritable::InRecovery));
        assert_eq!(NotWritable::InRecovery.to_string(), "in recovery");
    }

    #[test]
    fn replicas_connected_follows_the_mode() {
        assert!(ability(Some(1), 1, 1).replicas_connected());
        assert!(!ability(Some(2), 1, 2).replicas_connected());
        assert!(ability(None, 0, 1).replicas_connected());
        assert!(!ability(None, 0, 0).replicas_connected());
    }
}
