//! The failover state the caller persists (Kubernetes status or a local file) after every step
//! that changed it: the epoch, the designated master, the phase and the failover in flight.
//! Nothing here moves on every probe, so a quiet cluster writes nothing.

use serde::{Deserialize, Serialize};

use crate::postgres::{Millis, NodeId};

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

/// The same kinds as PostgreSQL's (and stored the same way).
pub use crate::postgres::FailoverKind;

/// The master is failing but the failover has not started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Suspicion {
    pub node: NodeId,
    pub first_failure_at: Millis,
    pub confirmed_at: Millis,
    pub reason: String,
}

/// One failover or switchover, from detection to routing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRecord {
    pub kind: FailoverKind,
    pub epoch: u64,
    pub from: NodeId,
    #[serde(default)]
    pub to: Option<NodeId>,
    /// Failover: the first failed probe. Switchover: the request.
    pub detected_at: Millis,
    pub started_at: Millis,
    /// The old master's last reported `master_repl_offset` (switchover: after the pause).
    #[serde(default)]
    pub master_offset: Option<u64>,
    /// Replicas confirmed detached from the old master at this epoch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detached: Vec<NodeId>,
    /// When the old master was shown unable to take an acknowledged write.
    #[serde(default)]
    pub fenced_at: Option<Millis>,
    #[serde(default)]
    pub fenced_how: Option<String>,
    #[serde(default)]
    pub elected_offset: Option<u64>,
    #[serde(default)]
    pub promoted_at: Option<Millis>,
    #[serde(default)]
    pub routed_at: Option<Millis>,
    /// `routedAt - detectedAt`.
    #[serde(default)]
    pub rto_ms: Option<u64>,
    /// Offset bytes the new master never received, against the old master's last report.
    #[serde(default)]
    pub lost_bytes: Option<u64>,
    /// Why no replica may be promoted right now (the engine keeps retrying).
    #[serde(default)]
    pub refusal: Option<String>,
    /// Switchover aborted: why (the old master was resumed).
    #[serde(default)]
    pub aborted: Option<String>,
}

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

impl crate::claim::Claimed for RedisHaState {
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
