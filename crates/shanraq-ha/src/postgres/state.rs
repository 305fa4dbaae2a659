//! What PostgreSQL's engine persists beyond every engine's state (`crate::state::HaState`): its
//! phases, what it adds to a suspicion and a failover record (LSNs), and the synchronous set.
//! Everything a restarted engine needs to resume a failover where it stopped lives there.

use serde::{Deserialize, Serialize};

use super::model::{Millis, NodeId};
use crate::wire::Lsn;

pub use crate::state::Phase;
/// What PostgreSQL adds to a suspicion: the primary's last reported `pg_current_wal_lsn()`,
/// to measure loss in async mode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SuspicionDetail {
    pub primary_lsn: Option<Lsn>,
}

/// The primary is failing but the failover has not started (no epoch bump yet).
pub type Suspicion = crate::record::Suspicion<SuspicionDetail>;

/// What PostgreSQL adds to a failover record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RecordDetail {
    /// The old primary's last reported current LSN: `lostBytes` is measured against it.
    pub primary_lsn: Option<Lsn>,
    /// Switchover: the old primary's last LSN after its clean shutdown.
    pub final_lsn: Option<Lsn>,
    /// Why fencing could not be confirmed (old primary unreachable, command failed).
    pub fence_error: Option<String>,
    /// When the last of the detached members was confirmed detached.
    pub detached_at: Option<Millis>,
    /// When the old primary was shown unable to commit (fenced, or its synchronous quorum
    /// detached): the election may start.
    pub quorum_fenced_at: Option<Millis>,
    /// The failover started while `dataDurability: preferred` had fallen back (since this
    /// instant): the old primary may have committed without its synchronous quorum, so the
    /// engine waited out its lease instead of counting on the quorum, and commits acknowledged
    /// since then may be lost. `lostBytes` is then left unknown.
    pub fallback_since: Option<Millis>,
}

/// One failover or switchover, from detection to routing (`fencedAt`: the old primary's fence
/// confirmed).
pub type FailoverRecord = crate::record::FailoverRecord<RecordDetail>;

pub use crate::record::FailoverKind;

/// What PostgreSQL adds to the persisted state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StateDetail {
    /// The synchronous set of the current primary, from its last report with at least
    /// `number` streaming `sync`/`quorum` peers (a smaller set blocks commits, so the last
    /// large-enough one still holds every acknowledged commit). Cleared on every promotion:
    /// a set is only valid for the primary that reported it.
    pub sync_set: Vec<NodeId>,
    /// How many standbys the current primary's `synchronous_standby_names` in effect waits
    /// for, from its last report (`Some(0)`: none, it commits alone). The quorum argument
    /// counts on this rather than on the configured `number` alone: after `number` is raised,
    /// a primary keeps its lower quorum until its pod restarts. `None` before any report.
    /// Cleared with `sync_set`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_quorum: Option<u32>,
    /// Set while `dataDurability: preferred` has fallen back: written (and persisted) before
    /// the primary is told to lower `synchronous_standby_names`, cleared only once it reports
    /// `ANY number` again with a quorum that has every commit. While it is set, a failover
    /// cannot count on the synchronous set and waits out the old primary's lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
}

/// The primary commits without its full synchronous quorum (`dataDurability: preferred`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Fallback {
    /// When the engine decided it, before the first command lowered the primary.
    pub since: Millis,
    /// The primary the setting applies to.
    pub primary: NodeId,
    /// The `synchronous_standby_names` last commanded (`ANY k (...)` or `''`), or what is being
    /// restored (`restoring`).
    pub standby_names: String,
    /// The standbys that did not stream when the engine last lowered the setting.
    pub missing: Vec<NodeId>,
    /// The primary was told to restore its configured `ANY number` (enough standbys stream, or
    /// `dataDurability` is `required` again, or a new primary was promoted with it).
    pub restoring: bool,
    /// Restoring: the primary's WAL position when it first reported `ANY number` in effect.
    /// Every commit before it may lack a quorum, so the mark is cleared only once `number`
    /// synchronous standbys flushed past it.
    pub restored_from: Option<Lsn>,
}

/// The persisted HA state of one PostgreSQL cluster (`crate::state::HaState`).
pub type HaState = crate::state::HaState<RecordDetail, SuspicionDetail, StateDetail>;

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
