//! The failover state the caller persists (Kubernetes status or a local file) after every step
//! that changed it. Everything a restarted engine needs to resume a failover where it stopped
//! lives here; nothing here moves on every probe, so a quiet cluster writes nothing.

use serde::{Deserialize, Serialize};

use super::model::{Millis, NodeId};
use crate::wire::Lsn;

/// Where the engine is. Each failover walks Detecting -> Fencing -> Electing -> Promoting ->
/// Routing -> Healthy; a switchover walks SwitchoverFencing -> SwitchoverDraining -> Promoting
/// -> Routing -> Healthy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// No primary known yet: the engine adopts the instance that reports itself primary.
    #[default]
    Bootstrapping,
    /// A primary is designated; replicas and returning members are converged to it.
    Healthy,
    /// The primary failed `failure_threshold` probes (or its pod is gone); waiting
    /// `failover_delay` for it to come back.
    Detecting,
    /// Epoch bumped; the old primary is being fenced.
    Fencing,
    /// Choosing the new primary, or refusing to (see `inFlight.refusal`).
    Electing,
    /// `targetPrimary` is being promoted with the current epoch.
    Promoting,
    /// The new primary is promoted; traffic is being switched to it.
    Routing,
    /// Planned switchover: the old primary is shutting down cleanly.
    SwitchoverFencing,
    /// Planned switchover: waiting for the target to replay the old primary's final LSN.
    SwitchoverDraining,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// What PostgreSQL adds to a suspicion: the primary's last reported `pg_current_wal_lsn()`,
/// to measure loss in async mode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuspicionDetail {
    #[serde(default)]
    pub primary_lsn: Option<Lsn>,
}

/// The primary is failing but the failover has not started (no epoch bump yet).
pub type Suspicion = crate::record::Suspicion<SuspicionDetail>;

/// What PostgreSQL adds to a failover record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordDetail {
    /// The old primary's last reported current LSN: `lostBytes` is measured against it.
    #[serde(default)]
    pub primary_lsn: Option<Lsn>,
    /// Switchover: the old primary's last LSN after its clean shutdown.
    #[serde(default)]
    pub final_lsn: Option<Lsn>,
    /// Why fencing could not be confirmed (old primary unreachable, command failed).
    #[serde(default)]
    pub fence_error: Option<String>,
    /// When the last of the detached members was confirmed detached.
    #[serde(default)]
    pub detached_at: Option<Millis>,
    /// When the old primary was shown unable to commit (fenced, or its synchronous quorum
    /// detached): the election may start.
    #[serde(default)]
    pub quorum_fenced_at: Option<Millis>,
}

/// One failover or switchover, from detection to routing (`fencedAt`: the old primary's fence
/// confirmed).
pub type FailoverRecord = crate::record::FailoverRecord<RecordDetail>;

pub use crate::record::FailoverKind;

/// The persisted HA state of one PostgreSQL cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HaState {
    /// Fencing token: bumped before anything else by every failover and switchover, and
    /// claimed (persisted by compare-and-swap) before any command carries it. Instances refuse
    /// commands with a lower epoch, or with this epoch from another owner; a primary holding a
    /// lower one is stale.
    pub epoch: u64,
    /// The engine that claimed `epoch`: only it may send commands at it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default)]
    pub current_primary: Option<NodeId>,
    /// The member being promoted.
    #[serde(default)]
    pub target_primary: Option<NodeId>,
    #[serde(default)]
    pub phase: Phase,
    #[serde(default)]
    pub suspect: Option<Suspicion>,
    #[serde(default)]
    pub in_flight: Option<FailoverRecord>,
    #[serde(default)]
    pub last_failover: Option<FailoverRecord>,
    /// The synchronous set of the current primary, from its last report with at least
    /// `number` streaming `sync`/`quorum` peers (a smaller set blocks commits, so the last
    /// large-enough one still holds every acknowledged commit). Cleared on every promotion:
    /// a set is only valid for the primary that reported it.
    #[serde(default)]
    pub sync_set: Vec<NodeId>,
}

impl HaState {
    /// A state that designates `primary` (for a caller that knows who was bootstrapped first).
    /// The engine grants it `epoch` with a `Promote` once it answers as a primary.
    pub fn with_primary(primary: NodeId, epoch: u64) -> HaState {
        HaState {
            epoch,
            current_primary: Some(primary),
            phase: Phase::Healthy,
            ..HaState::default()
        }
    }
}

crate::claim::claimed_state!(HaState);
