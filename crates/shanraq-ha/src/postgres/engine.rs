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

use super::command::{Command, CommandError, EventKind, StepOutput};
use super::config::{PostgresHaConfig, ReplicationMode};
use super::model::{Member, Millis, NodeId, Observation, PodSignal};
use super::state::{FailoverRecord, HaState, Phase};
use crate::claim::Claimed;
use crate::core::Core;
use crate::events::Lifecycle;
use crate::wire::{InstanceRole, InstanceStatus, Lsn};

/// What PostgreSQL adds to what the engine remembers of a member (`crate::probe::View`).
#[derive(Clone, Debug, Default)]
pub(super) struct Seen {
    pub(super) pod_deleted: bool,
    /// A running replica's first report of a stopped WAL receiver in the current streak.
    pub(super) not_streaming_since: Option<Millis>,
}

pub(super) type NodeView = crate::probe::View<InstanceStatus, Seen>;

/// How long a replica on an older timeline may stay without streaming before the engine takes
/// it for diverged (it received WAL past the fork) and rewinds it.
pub(super) const REJOIN_GRACE_MS: u64 = 5_000;

/// The HA engine of one PostgreSQL cluster.
#[derive(Debug)]
pub struct PostgresHa {
    pub(super) config: PostgresHaConfig,
    pub(super) members: Vec<Member>,
    pub(super) state: HaState,
    pub(super) core: Core<InstanceStatus, Seen, Command, EventKind>,
    /// The primary that confirmed holding the current epoch.
    pub(super) confirmed: Option<(NodeId, u64)>,
    /// The current primary's last reported `pg_current_wal_lsn()`.
    pub(super) primary_lsn: Option<Lsn>,
    /// The newest claim seen on a member that is not this engine's (epoch, owner), until the
    /// driver takes it.
    pub(super) newer_claim: Option<(u64, Option<String>)>,
}

/// The identity of an engine that was given none (tests, single-engine tools).
pub const DEFAULT_IDENTITY: &str = "shanraq";

impl PostgresHa {
    /// An engine resuming from `state` (use `HaState::default()` for a new cluster).
    pub fn new(config: PostgresHaConfig, members: Vec<Member>, state: HaState) -> PostgresHa {
        let core = Core::new(members.iter().map(|member| member.name.clone()));
        let primary_lsn = state
            .in_flight
            .as_ref()
            .and_then(|record| record.detail.primary_lsn);
        PostgresHa {
            config,
            members,
            state,
            core,
            confirmed: None,
            primary_lsn,
            newer_claim: None,
        }
    }

    /// The engine acting as `identity` (the owner of the epochs it claims).
    pub fn with_identity(mut self, identity: impl Into<String>) -> PostgresHa {
        self.core.identity = identity.into();
        self
    }

    pub fn identity(&self) -> &str {
        &self.core.identity
    }

    /// Takes over the state this engine resumes, before it acts (`Claimed::take_office`): from
    /// this engine's first command every member refuses the former owner's. True when the state
    /// changed and must be persisted.
    pub fn take_office(&mut self) -> bool {
        let seen = self.highest_epoch_seen();
        self.state.take_office(&self.core.identity, seen)
    }

    /// Claims the next epoch for this engine: above every epoch it has stored or seen on any
    /// member. The driver persists it before any command carries it.
    pub(super) fn claim_next_epoch(&mut self) -> u64 {
        let seen = self.highest_epoch_seen();
        self.state.claim_next(&self.core.identity, seen)
    }

    pub(super) fn highest_epoch_seen(&self) -> u64 {
        self.core
            .nodes
            .values()
            .filter_map(|view| view.last.as_ref()?.status().map(|status| status.epoch))
            .max()
            .unwrap_or(0)
    }

    /// Replaces the engine's state with `state`, read back from the store after another writer
    /// moved it on (the same owner: a restarted task, say). What the engine remembered about
    /// commands and routing is dropped: it was decided from the older state.
    pub fn resume_from(&mut self, state: HaState) {
        self.primary_lsn = state
            .in_flight
            .as_ref()
            .and_then(|record| record.detail.primary_lsn)
            .or(self.primary_lsn);
        self.state = state;
        self.core.forget_decisions();
        self.confirmed = None;
        self.newer_claim = None;
    }

    /// The newest claim a member was seen holding that is not this engine's: a higher epoch,
    /// or this epoch from another owner. The driver must stop acting and reload the store.
    pub fn take_newer_claim(&mut self) -> Option<(u64, Option<String>)> {
        self.newer_claim.take()
    }

    pub(super) fn note_claim(&mut self, epoch: u64, owner: Option<&str>) {
        // An engine that holds no claim yet (a new cluster's first adoption) has nothing to
        // lose to a newer one: it claims above whatever it sees.
        let Some(mine) = self.state.owner.as_deref() else {
            return;
        };
        let mine = Some(mine);
        let newer = epoch > self.state.epoch
            || (epoch == self.state.epoch && owner.is_some() && owner != mine);
        if newer
            && self
                .newer_claim
                .as_ref()
                .is_none_or(|(seen, _)| epoch >= *seen)
        {
            self.newer_claim = Some((epoch, owner.map(str::to_owned)));
        }
    }

    /// The state to persist.
    pub fn state(&self) -> &HaState {
        &self.state
    }

    pub fn config(&self) -> &PostgresHaConfig {
        &self.config
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Commands issued and not yet reported done.
    pub fn outstanding(&self) -> impl Iterator<Item = &Command> {
        self.core.dispatch.in_flight()
    }

    /// The latest observation of `node`.
    pub fn last_observation(&self, node: &NodeId) -> Option<&Observation> {
        self.core.last(node)
    }

    /// The member the router was last confirmed to send writes to.
    pub fn routed_primary(&self) -> Option<&NodeId> {
        self.core.routed_to()
    }

    /// The current primary's last reported WAL position.
    pub fn primary_lsn(&self) -> Option<Lsn> {
        self.primary_lsn
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

    /// Feeds one probe round (every member probed at once). A round in which no member
    /// answered and none refused (every probe timed out) is inconclusive and counts for
    /// nobody: the fault is then on the engine's side (its own node starved or cut off), and
    /// failing over would only move the primary away from where writes still work.
    pub fn observe_round(&mut self, observations: Vec<Observation>) {
        if !crate::probe::conclusive(&observations) {
            return;
        }
        for observation in observations {
            self.observe(observation);
        }
    }

    /// Feeds one probe result. Unknown members and results older than the latest are ignored.
    pub fn observe(&mut self, observation: Observation) {
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
            self.primary_lsn = status.current_lsn.or(self.primary_lsn);
            self.learn_sync_set(status);
        }
        if let Some(view) = self.core.nodes.get_mut(&observation.node) {
            view.last = Some(observation);
        }
    }

    /// Feeds a pod-level signal from a Kubernetes watch.
    pub fn observe_pod(&mut self, signal: PodSignal) {
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

    /// Reports how an emitted command ended.
    pub fn command_done(
        &mut self,
        command: &Command,
        result: Result<(), CommandError>,
        now: Millis,
    ) {
        self.core
            .finished(command, result.is_err(), now, self.config.probe_period);
        let current = command.epoch() == self.state.epoch;
        if let Err(error) = &result {
            self.event(
                now,
                Lifecycle::CommandFailed {
                    command: command.to_string(),
                    error: error.to_string(),
                },
            );
            if let CommandError::StaleEpoch {
                instance_epoch,
                holder,
            } = error
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
        }
        if !current {
            return;
        }
        match command {
            Command::Fence { node, .. } => self.fence_done(node, result, now),
            Command::Promote { node, .. } => self.promote_done(node, result, now),
            Command::Route { primary, epoch } => {
                if result.is_ok() && self.state.current_primary.as_ref() == Some(primary) {
                    self.core.routed = Some((primary.clone(), *epoch));
                    if self.state.phase == Phase::Routing {
                        self.complete(now);
                    }
                }
            }
            Command::Detach { node, .. } => {
                if result.is_ok()
                    && let Some(record) = self.state.in_flight.as_mut()
                    && record.note_detached(node)
                {
                    record.detail.detached_at = Some(now);
                }
            }
            Command::Repoint { .. } | Command::Demote { .. } => {}
        }
    }

    /// Decides what to do at `now`.
    pub fn step(&mut self, now: Millis) -> StepOutput {
        let mut commands = crate::core::settle(
            self,
            |engine| engine.state.phase,
            |engine, commands| engine.step_phase(now, commands),
        );
        self.fence_stale_primaries(now, &mut commands);
        StepOutput {
            commands,
            events: std::mem::take(&mut self.core.events),
        }
    }

    pub(super) fn step_phase(&mut self, now: Millis, commands: &mut Vec<Command>) {
        match self.state.phase {
            Phase::Bootstrapping => self.step_bootstrapping(now),
            Phase::Healthy | Phase::Detecting => {
                self.step_detection(now);
                if self.state.phase == Phase::Healthy {
                    self.converge(now, commands);
                }
            }
            Phase::Fencing => self.step_fencing(now, commands),
            Phase::Electing => self.step_electing(now),
            Phase::Promoting => self.step_promoting(now, commands),
            Phase::Routing => self.step_routing(now, commands),
            Phase::SwitchoverFencing => self.step_switchover_fencing(now, commands),
            Phase::SwitchoverDraining => self.step_switchover_draining(now),
        }
    }

    // ---- helpers -------------------------------------------------------------------------

    pub(super) fn event(&mut self, at: Millis, kind: impl Into<EventKind>) {
        self.core.event(at, self.state.epoch, kind.into());
    }

    pub(super) fn member(&self, node: &NodeId) -> Option<&Member> {
        self.members.iter().find(|member| &member.name == node)
    }

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

    pub(super) fn in_flight_mut(&mut self) -> Option<&mut FailoverRecord> {
        self.state.in_flight.as_mut()
    }
}

/// A running primary, the only answer that counts as a good probe of the primary.
pub(super) fn is_serving_primary(status: &InstanceStatus) -> bool {
    status.role == InstanceRole::Primary && status.running && !status.fenced
}

pub(super) fn failure_reason(view: &NodeView) -> String {
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
