//! The failover state the caller persists (Kubernetes status or a local file) after every step
//! that changed it: the epoch, the designated master, the phase and the failover in flight.
//! Nothing here moves on every probe, so a quiet cluster writes nothing.

use serde::{Deserialize, Serialize};

use crate::postgres::NodeId;

/// Where the engine is. A failover walks Detecting -> Detaching -> Electing -> Promoting ->
/// Routing -> Healthy; a switchover walks SwitchoverPausing -> SwitchoverDraining -> Promoting
/// -> Routing -> Healthy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// No master designated yet: adopt the one master, or promote the most advanced node when
    /// every node answers and none is a master (all pods start detached).
    #[default]
    Bootstrapping,
    Healthy,
    /// The master failed `failure_threshold` probes; waiting `failover_delay`.
    Detecting,
    /// Epoch bumped; the replicas are being detached from the old master.
    Detaching,
    /// Choosing the new master, or refusing to (see `inFlight.refusal`).
    Electing,
    Promoting,
    Routing,
    /// Planned switchover: writes on the master are being paused.
    SwitchoverPausing,
    /// Planned switchover: waiting for the target to reach the paused master's offset.
    SwitchoverDraining,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

pub use crate::record::FailoverKind;

/// The master is failing but the failover has not started.
pub type Suspicion = crate::record::Suspicion<crate::record::NoDetail>;

/// What Redis adds to a failover record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordDetail {
    /// The old master's last reported `master_repl_offset` (switchover: after the pause).
    #[serde(default)]
    pub master_offset: Option<u64>,
    /// How the old master was shown unable to take an acknowledged write.
    #[serde(default)]
    pub fenced_how: Option<String>,
    /// The elected replica's offset.
    #[serde(default)]
    pub elected_offset: Option<u64>,
}

/// One failover or switchover, from detection to routing (`fencedAt`: the old master shown
/// unable to take an acknowledged write).
pub type FailoverRecord = crate::record::FailoverRecord<RecordDetail>;

/// The persisted HA state of one Redis replication group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedisHaState {
    /// Bumped before anything else by every failover and switchover, and claimed (persisted by
    /// compare-and-swap) before any command carries it; a command of an older epoch is never
    /// executed.
    pub epoch: u64,
    /// The engine that claimed `epoch`: only it may send commands at it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default)]
    pub current_master: Option<NodeId>,
    #[serde(default)]
    pub target_master: Option<NodeId>,
    #[serde(default)]
    pub phase: Phase,
    #[serde(default)]
    pub suspect: Option<Suspicion>,
    #[serde(default)]
    pub in_flight: Option<FailoverRecord>,
    #[serde(default)]
    pub last_failover: Option<FailoverRecord>,
    /// Unplanned failovers completed since the state was created.
    #[serde(default)]
    pub failovers: u64,
    /// Switchovers completed since the state was created.
    #[serde(default)]
    pub switchovers: u64,
}

crate::claim::claimed_state!(RedisHaState);
