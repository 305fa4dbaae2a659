//! What Redis's engine persists beyond every engine's state (`crate::state::HaState`): its
//! phases, what it adds to a failover record, and its failover and switchover counts.

use serde::{Deserialize, Serialize};

pub use crate::record::FailoverKind;
pub use crate::state::Phase;

/// The master is failing but the failover has not started.
pub type Suspicion = crate::record::Suspicion<crate::record::NoDetail>;

/// What Redis adds to a failover record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RecordDetail {
    /// The old master's last reported `master_repl_offset` (switchover: after the pause).
    pub master_offset: Option<u64>,
    /// How the old master was shown unable to take an acknowledged write.
    pub fenced_how: Option<String>,
    /// The elected replica's offset.
    pub elected_offset: Option<u64>,
    /// The old master's replication id when the failover started: offsets are positions in
    /// its history, and a member with another id holds none of it.
    pub master_replid: Option<String>,
    /// Why the old master's data is known lost with this failover (every member came back
    /// without it), when it is.
    pub data_lost: Option<String>,
}

/// One failover or switchover, from detection to routing (`fencedAt`: the old master shown
/// unable to take an acknowledged write).
pub type FailoverRecord = crate::record::FailoverRecord<RecordDetail>;

/// What Redis adds to the persisted state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StateDetail {
    /// Unplanned failovers completed since the state was created.
    pub failovers: u64,
    /// Switchovers completed since the state was created.
    pub switchovers: u64,
}

/// The persisted HA state of one Redis replication group (`crate::state::HaState`; the
/// designated master is `current_primary`).
pub type RedisHaState = crate::state::HaState<RecordDetail, crate::record::NoDetail, StateDetail>;
