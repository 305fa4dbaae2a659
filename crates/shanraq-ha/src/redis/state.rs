//! What Redis's engine persists beyond every engine's state (`crate::state::HaState`): what it
//! adds to a failover record.

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
    /// Why the old master's data is known lost with this failover (every member came back
    /// without it), when it is.
    pub data_lost: Option<String>,
}

/// One failover or switchover, from detection to routing (`fencedAt`: the old master shown
/// unable to take an acknowledged write).
pub type FailoverRecord = crate::record::FailoverRecord<RecordDetail>;

/// The persisted HA state of one Redis replication group (`crate::state::HaState`; the
/// designated master is `current_primary`).
pub type RedisHaState =
    crate::state::HaState<RecordDetail, crate::record::NoDetail, crate::record::NoDetail>;
