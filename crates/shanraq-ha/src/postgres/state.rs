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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailoverKind {
    /// Unplanned: the primary failed.
    Failover,
    /// Planned: requested by a user, without loss.
    Switchover,
}

/// The primary is failing but the failover has not started (no epoch bump yet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Suspicion {
    pub node: NodeId,
    /// The first failed probe of the streak: the best estimate of when writes stopped.
    pub first_failure_at: Millis,
    /// When the threshold was reached (or the pod was seen deleted).
    pub confirmed_at: Millis,
    pub reason: String,
    /// The primary's last reported `pg_current_wal_lsn()`, to measure loss in async mode.
    #[serde(default)]
    pub primary_lsn: Option<Lsn>,
}

/// One failover or switchover, from detection to routing. Kept in `inFlight` while it runs and
/// in `lastFailover` once done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRecord {
    pub kind: FailoverKind,
    /// The epoch this failover took.
    pub epoch: u64,
    pub from: NodeId,
    /// The new primary, once elected (switchover: the target from the start).
    #[serde(default)]
    pub to: Option<NodeId>,
    /// Failover: the first failed probe. Switchover: the request.
    pub detected_at: Millis,
    /// When the epoch was bumped and the failover or switchover began.
    pub started_at: Millis,
    #[serde(default)]
    pub fenced_at: Option<Millis>,
    #[serde(default)]
    pub promoted_at: Option<Millis>,
    #[serde(default)]
    pub routed_at: Option<Millis>,
    /// `routedAt - detectedAt`: how long writes were unavailable.
    #[serde(default)]
    pub rto_ms: Option<u64>,
    /// WAL bytes the new primary never received (`primaryLsn - received LSN`). In synchronous
    /// mode these were never acknowledged to a client.
    #[serde(default)]
    pub lost_bytes: Option<u64>,
    /// The old primary's last reported current LSN.
    #[serde(default)]
    pub primary_lsn: Option<Lsn>,
    /// Switchover: the old primary's last LSN after its clean shutdown.
    #[serde(default)]
    pub final_lsn: Option<Lsn>,
    /// Why fencing could not be confirmed (old primary unreachable, command failed).
    #[serde(default)]
    pub fence_error: Option<String>,
    /// Members confirmed detached from the old primary (WAL receiver stopped) at this epoch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detached: Vec<NodeId>,
    /// When the last of them was confirmed detached.
    #[serde(default)]
    pub detached_at: Option<Millis>,
    /// When the old primary was shown unable to commit (fenced, or its synchronous quorum
    /// detached): the election may start.
    #[serde(default)]
    pub quorum_fenced_at: Option<Millis>,
    /// Why no replica may be promoted right now (election keeps retrying).
    #[serde(default)]
    pub refusal: Option<String>,
    /// Switchover aborted: why, and the old primary was resumed with the new epoch.
    #[serde(default)]
    pub aborted: Option<String>,
}

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

impl crate::claim::Claimed for HaState {
    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    fn set_claim(&mut self, epoch: u64, owner: &str) {
        self.epoch = epoch;
        self.owner = Some(owner.to_owned());
    }

    fn in_flight_epoch(&mut self) -> Option<&mut u64> {
        self.in_flight.as_mut().map(|record| &mut record.epoch)
    }
}
