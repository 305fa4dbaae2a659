//! The PostgreSQL HA state machine: observations and pod signals in, commands and events out,
//! the persisted `HaState` in between. No IO and no clock: the caller passes `now`, executes
//! the commands, reports their results with `command_done`, and persists `state()` whenever it
//! changed, before it executes the commands of that step.
//!
//! Safety rules kept here rather than in adapters:
//! - every failover and switchover bumps the epoch before it fences or promotes anyone, and
//!   the epoch is this engine's own (`owner`): a new one exceeds every epoch stored or seen on
//!   any member, and an engine that resumes another's state claims a new one first
//!   (`take_office`); the driver persists it by compare-and-swap before any command carries it;
//! - a member seen holding a newer claim is reported (`newer_claim`) so the driver stops and
//!   reloads instead of acting on a stale view;
//! - nobody is promoted before the old primary is unable to commit, whether or not the engine
//!   can reach it: it confirmed the fence, or enough of its synchronous set is detached that
//!   `ANY n` cannot be met (asynchronous mode: every replica detached and its lease run out);
//! - `Route` only ever names the designated primary after it confirmed the current epoch;
//! - an instance claiming the primary role without the designation is fenced at once;
//! - a persisted failover resumes at its phase and target, never re-elects or reverts.

use super::command::{Command, CommandError, EventKind};
use super::config::{PostgresHaConfig, ReplicationMode};
use super::contract::Outcome;
use super::model::{Member, Millis, NodeId, Observation, PodSignal};
use super::state::{HaState, Phase, RecordDetail, StateDetail, Suspicion, SuspicionDetail};

use crate::machine::{Ha, Probing, Product};
use crate::wire::{InstanceRole, InstanceStatus, Lsn};

/// What PostgreSQL adds to what the engine remembers of a member (`crate::probe::View`).
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub(super) pod_deleted: bool,
    /// A running replica's first report of a stopped WAL receiver in the current streak.
    pub(super) not_streaming_since: Option<Millis>,
}

pub type NodeView = crate::probe::View<InstanceStatus, Seen>;

/// How long a replica on an older timeline may stay without streaming before the engine takes
/// it for diverged (it received WAL past the fork) and rewinds it.
pub(super) const REJOIN_GRACE_MS: u64 = 5_000;

/// PostgreSQL as a product of the one engine (`crate::machine`).
#[derive(Debug)]
pub struct Postgres;

/// The HA engine of one PostgreSQL cluster.
pub type PostgresHa = Ha<Postgres>;

/// What PostgreSQL's engine remembers between steps beyond the shared bookkeeping.
#[derive(Debug)]
pub struct Remembered {
    /// The primary that confirmed holding the current epoch.
    pub(super) confirmed: Option<(NodeId, u64)>,
    /// The current primary's last reported `pg_current_wal_lsn()`.
    pub(super) primary_lsn: Option<Lsn>,
    /// How many standbys the primary last reported streaming, and since when that count
    /// held (`dataDurability: preferred` falls back only after a detection period).
    pub(super) shortfall: Option<(usize, Millis)>,
}

impl Product for Postgres {
    type Config = PostgresHaConfig;
    type Member = Member;
    type Answer = InstanceStatus;
    type Seen = Seen;
    type Command = Command;
    type EventKind = EventKind;
    type RecordDetail = RecordDetail;
    type SuspicionDetail = SuspicionDetail;
    type StateDetail = StateDetail;
    type Memory = Remembered;
    type Signal = PodSignal;
    type Outcome = Outcome;
    /// Its reasons predate the other engines': no prefix.
    const VOICE: crate::events::Voice =
        crate::events::Voice::new(["", "Primary", "", "primary", "WAL"]);

    fn remember(state: &HaState) -> Remembered {
        Remembered {
            confirmed: None,
            primary_lsn: in_flight_lsn(state),
            shortfall: None,
        }
    }
}

/// The old primary's LSN a persisted failover recorded.
fn in_flight_lsn(state: &HaState) -> Option<Lsn> {
    state
        .in_flight
        .as_ref()
        .and_then(|record| record.detail.primary_lsn)
}

/// The identity of an engine that was given none (tests, single-engine tools).
pub const DEFAULT_IDENTITY: &str = "shanraq";

impl PostgresHa {
    /// The current primary's last reported WAL position.
    pub fn primary_lsn(&self) -> Option<Lsn> {
        self.own.primary_lsn
    }

    /// The member whose lease the probes renew, and the epoch to renew it for: the designated
    /// primary while the engine stands behind it. Nobody from the moment a failover or
    /// switchover bumps the epoch, so the old primary's lease runs out.
    pub fn lease_holder(&self) -> Option<(&NodeId, u64)> {
        match self.state.phase {
            Phase::Healthy | Phase::Detecting | Phase::Routing => self
                .state
                .current_primary
                .as_ref()
                .map(|primary| (primary, self.state.epoch)),
            _ => None,
        }
    }

    // ---- helpers -------------------------------------------------------------------------

    /// The latest answered status of `node`, if taken at or after `since`.
    pub(super) fn status_since(&self, node: &NodeId, since: Millis) -> Option<&InstanceStatus> {
        let view = self.core.nodes.get(node)?;
        (!view.extra.pod_deleted).then_some(())?;
        view.answer_since(since)
    }

    /// The latest status of `node`, if taken after the last command on it finished.
    pub(super) fn settled_status(&self, node: &NodeId) -> Option<&InstanceStatus> {
        self.core.nodes.get(node)?.settled_answer()
    }

    /// Whether `node` last answered as a running primary.
    pub(super) fn is_alive_primary(&self, node: &NodeId) -> bool {
        let Some(view) = self.core.nodes.get(node) else {
            return false;
        };
        !view.extra.pod_deleted
            && view
                .last
                .as_ref()
                .and_then(Observation::status)
                .is_some_and(is_serving_primary)
    }

    /// Whether `node`'s latest probe found a running primary (even if its pod is being deleted:
    /// it can still take writes until it stops).
    pub(super) fn answers_as_primary(&self, node: &NodeId) -> bool {
        self.last_observation(node)
            .and_then(Observation::status)
            .is_some_and(is_serving_primary)
    }

    /// The member whose reports define the primary's LSN and synchronous set right now.
    pub(super) fn reporting_primary(&self) -> Option<&NodeId> {
        match self.state.phase {
            Phase::Bootstrapping | Phase::Healthy | Phase::Detecting | Phase::Routing => {
                self.state.current_primary.as_ref()
            }
            _ => None,
        }
    }

    /// The member allowed to claim the primary role right now.
    pub(super) fn designated_primary(&self) -> Option<&NodeId> {
        match self.state.phase {
            Phase::Bootstrapping => None,
            Phase::Healthy | Phase::Detecting | Phase::Routing => {
                self.state.current_primary.as_ref()
            }
            Phase::Promoting => self.state.target_primary.as_ref(),
            Phase::Fencing
            | Phase::Electing
            | Phase::SwitchoverFencing
            | Phase::SwitchoverDraining => None,
        }
    }

    pub(super) fn learn_sync_set(&mut self, status: &InstanceStatus) {
        let ReplicationMode::Synchronous { number } = self.config.replication else {
            return;
        };
        if let Some(names) = &status.synchronous_standby_names {
            let quorum = Some(crate::wire::quorum_needed(names).unwrap_or(0));
            if self.state.detail.sync_quorum != quorum {
                self.state.detail.sync_quorum = quorum;
            }
        }
        let mut set: Vec<NodeId> = status
            .replication
            .iter()
            .filter(|peer| {
                peer.state == "streaming"
                    && (peer.sync_state == "sync" || peer.sync_state == "quorum")
            })
            .map(|peer| NodeId::new(peer.application_name.clone()))
            .collect();
        set.sort();
        set.dedup();
        let enough = u32::try_from(set.len()).unwrap_or(u32::MAX) >= number.max(1);
        if enough && set != self.state.detail.sync_set {
            self.state.detail.sync_set = set;
        }
    }
}

/// A running primary, the only answer that counts as a good probe of the primary.
pub(super) fn is_serving_primary(status: &InstanceStatus) -> bool {
    status.role == InstanceRole::Primary && status.running && !status.fenced
}

impl Probing<Postgres> for PostgresHa {
    /// Feeds one probe result. Unknown members and results older than the latest are ignored.
    fn observe(&mut self, observation: Observation) {
        let designated = self.reporting_primary().cloned();
        let serving = observation.status().is_some_and(is_serving_primary);
        {
            let Some(view) = self.core.nodes.get_mut(&observation.node) else {
                return;
            };
            if view.is_older(&observation) {
                return;
            }
            match observation.status() {
                Some(status)
                    if status.role == InstanceRole::Replica && status.streaming == Some(false) =>
                {
                    view.extra.not_streaming_since.get_or_insert(observation.at);
                }
                Some(_) => view.extra.not_streaming_since = None,
                None => {}
            }
            view.count(&observation, serving);
        }
        if let Some(status) = observation.status() {
            let (epoch, owner) = (status.epoch, status.epoch_owner.clone());
            self.note_claim(epoch, owner.as_deref());
        }
        if let Some(status) = observation
            .status()
            .filter(|_| serving && designated.as_ref() == Some(&observation.node))
        {
            self.own.primary_lsn = status.current_lsn.or(self.own.primary_lsn);
            self.learn_sync_set(status);
        }
        if let Some(view) = self.core.nodes.get_mut(&observation.node) {
            view.last = Some(observation);
        }
    }

    /// Feeds a pod-level signal from a Kubernetes watch.
    fn signal(&mut self, signal: PodSignal) {
        let Some(view) = self.core.nodes.get_mut(&signal.node) else {
            return;
        };
        if signal.deleted {
            view.extra.pod_deleted = true;
        } else if signal.ready {
            view.extra.pod_deleted = false;
        }
        if signal.deleted || !signal.ready {
            view.count_failure(signal.at);
        }
    }

    /// Reports how an emitted command ended, with the status the instance answered with.
    fn command_done(&mut self, command: &Command, outcome: Outcome, now: Millis) {
        let Outcome { result, status } = outcome;
        self.note_done(command, result.as_ref().err().map(ToString::to_string), now);
        if let Err(CommandError::StaleEpoch {
            instance_epoch,
            holder,
        }) = &result
        {
            self.note_claim(*instance_epoch, holder.as_deref());
            if *instance_epoch >= self.state.epoch {
                let node = command.node().clone();
                self.event(
                    now,
                    EventKind::EpochConflict {
                        node,
                        instance_epoch: *instance_epoch,
                    },
                );
            }
        }
        if command.epoch() == self.state.epoch {
            match command {
                Command::Fence { node, .. } => self.fence_done(node, result, now),
                Command::Promote { node, .. } => self.promote_done(node, result, now),
                Command::Route { primary, epoch } if result.is_ok() => {
                    self.routed(primary, *epoch, now);
                }
                Command::Detach { node, .. } if result.is_ok() => {
                    if let Some(record) = self.state.in_flight.as_mut()
                        && record.note_detached(node)
                    {
                        record.detail.detached_at = Some(now);
                    }
                }
                _ => {}
            }
        }
        if let Some(status) = status {
            self.observe(Observation::answered(command.node().clone(), now, status));
        }
    }

    fn highest_epoch_seen(&self) -> u64 {
        self.core
            .nodes
            .values()
            .filter_map(|view| view.last.as_ref()?.status().map(|status| status.epoch))
            .max()
            .unwrap_or(0)
    }

    fn forget(&mut self) {
        self.own.primary_lsn = in_flight_lsn(&self.state).or(self.own.primary_lsn);
        self.own.confirmed = None;
        self.own.shortfall = None;
    }

    fn failing(&self, view: &NodeView) -> bool {
        view.extra.pod_deleted || view.failing(self.config.failure_threshold)
    }

    fn failure_reason(view: &NodeView) -> String {
        if view.extra.pod_deleted {
            return "pod deleted".to_owned();
        }
        view.failure_reason(|status| {
            let role = format!("{:?}", status.role).to_lowercase();
            let detail = status
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            format!("without a running primary, reports {role}{detail}")
        })
    }

    fn recovered(&self, node: &NodeId) -> bool {
        self.is_alive_primary(node)
    }

    fn suspicion_detail(&self) -> SuspicionDetail {
        SuspicionDetail {
            primary_lsn: self.own.primary_lsn,
        }
    }

    fn failover_detail(&self, suspect: Option<&Suspicion>) -> RecordDetail {
        RecordDetail {
            primary_lsn: suspect
                .and_then(|s| s.detail.primary_lsn)
                .or(self.own.primary_lsn),
            fallback_since: self.state.detail.fallback.as_ref().map(|f| f.since),
            ..RecordDetail::default()
        }
    }
}
