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

use std::collections::{BTreeMap, BTreeSet};

use super::command::{Command, CommandError, CommandTarget, Event, EventKind, StepOutput};
use super::config::{PostgresHaConfig, ReplicationMode};
use super::election::{Candidate, ElectionRules, elect};
use super::model::{Member, Millis, NodeId, Observation, PodSignal, ProbeOutcome};
use super::state::{FailoverKind, FailoverRecord, HaState, Phase, Suspicion};
use crate::claim::Claimed;
use crate::dispatch::Dispatch;
use crate::wire::{InstanceRole, InstanceStatus, Lsn, REPLY_SLACK};

/// What the engine remembers about one member between steps (not persisted: rebuilt from the
/// next probes after a restart).
#[derive(Clone, Debug, Default)]
pub(super) struct NodeView {
    pub(super) last: Option<Observation>,
    pub(super) consecutive_failures: u32,
    pub(super) first_failure_at: Option<Millis>,
    pub(super) pod_deleted: bool,
    /// When the last command on this node finished: older observations do not show its effect.
    pub(super) last_done_at: Option<Millis>,
    /// A running replica's first report of a stopped WAL receiver in the current streak.
    pub(super) not_streaming_since: Option<Millis>,
    /// Consecutive refused probes: the manager is not running at all.
    pub(super) refused_streak: u32,
}

/// How long a replica on an older timeline may stay without streaming before the engine takes
/// it for diverged (it received WAL past the fork) and rewinds it.
const REJOIN_GRACE_MS: u64 = 5_000;

/// The HA engine of one PostgreSQL cluster.
#[derive(Debug)]
pub struct PostgresHa {
    pub(super) config: PostgresHaConfig,
    pub(super) members: Vec<Member>,
    pub(super) state: HaState,
    pub(super) nodes: BTreeMap<NodeId, NodeView>,
    pub(super) dispatch: Dispatch<Command>,
    /// The primary the router was last confirmed to send writes to, with its epoch.
    pub(super) routed: Option<(NodeId, u64)>,
    /// The primary that confirmed holding the current epoch.
    pub(super) confirmed: Option<(NodeId, u64)>,
    /// The current primary's last reported `pg_current_wal_lsn()`.
    pub(super) primary_lsn: Option<Lsn>,
    pub(super) events: Vec<Event>,
    /// (node, its epoch) pairs already reported as stale or conflicting, to report once.
    pub(super) reported: BTreeSet<(NodeId, u64)>,
    /// This engine's identity: the owner of every epoch it claims.
    pub(super) identity: String,
    /// The newest claim seen on a member that is not this engine's (epoch, owner), until the
    /// driver takes it.
    pub(super) newer_claim: Option<(u64, Option<String>)>,
}

/// The identity of an engine that was given none (tests, single-engine tools).
pub const DEFAULT_IDENTITY: &str = "shanraq";

/// Safety bound on phase transitions within one step.
const MAX_TRANSITIONS_PER_STEP: usize = 10;

impl PostgresHa {
    /// An engine resuming from `state` (use `HaState::default()` for a new cluster).
    pub fn new(config: PostgresHaConfig, members: Vec<Member>, state: HaState) -> PostgresHa {
        let nodes = members
            .iter()
            .map(|member| (member.name.clone(), NodeView::default()))
            .collect();
        let primary_lsn = state
            .in_flight
            .as_ref()
            .and_then(|record| record.primary_lsn);
        PostgresHa {
            config,
            members,
            state,
            nodes,
            dispatch: Dispatch::default(),
            routed: None,
            confirmed: None,
            primary_lsn,
            events: Vec::new(),
            reported: BTreeSet::new(),
            identity: DEFAULT_IDENTITY.to_owned(),
            newer_claim: None,
        }
    }

    /// The engine acting as `identity` (the owner of the epochs it claims).
    pub fn with_identity(mut self, identity: impl Into<String>) -> PostgresHa {
        self.identity = identity.into();
        self
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Takes over the state this engine resumes, before it acts (`Claimed::take_office`): from
    /// this engine's first command every member refuses the former owner's. True when the state
    /// changed and must be persisted.
    pub fn take_office(&mut self) -> bool {
        let seen = self.highest_epoch_seen();
        self.state.take_office(&self.identity, seen)
    }

    /// Claims the next epoch for this engine: above every epoch it has stored or seen on any
    /// member. The driver persists it before any command carries it.
    pub(super) fn claim_next_epoch(&mut self) -> u64 {
        let seen = self.highest_epoch_seen();
        self.state.claim_next(&self.identity, seen)
    }

    fn highest_epoch_seen(&self) -> u64 {
        self.nodes
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
            .and_then(|record| record.primary_lsn)
            .or(self.primary_lsn);
        self.state = state;
        self.dispatch.clear();
        self.routed = None;
        self.confirmed = None;
        self.newer_claim = None;
    }

    /// The newest claim a member was seen holding that is not this engine's: a higher epoch,
    /// or this epoch from another owner. The driver must stop acting and reload the store.
    pub fn take_newer_claim(&mut self) -> Option<(u64, Option<String>)> {
        self.newer_claim.take()
    }

    fn note_claim(&mut self, epoch: u64, owner: Option<&str>) {
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
        self.dispatch.in_flight()
    }

    /// The latest observation of `node`.
    pub fn last_observation(&self, node: &NodeId) -> Option<&Observation> {
        self.nodes.get(node).and_then(|view| view.last.as_ref())
    }

    /// The member the router was last confirmed to send writes to.
    pub fn routed_primary(&self) -> Option<&NodeId> {
        self.routed.as_ref().map(|(node, _)| node)
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
        let inconclusive = observations.len() > 1
            && observations
                .iter()
                .all(|observation| matches!(observation.outcome, ProbeOutcome::Unreachable(_)));
        if inconclusive {
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
            let Some(view) = self.nodes.get_mut(&observation.node) else {
                return;
            };
            if view
                .last
                .as_ref()
                .is_some_and(|last| last.at > observation.at)
            {
                return;
            }
            match observation.status() {
                Some(status)
                    if status.role == InstanceRole::Replica && status.streaming == Some(false) =>
                {
                    view.not_streaming_since.get_or_insert(observation.at);
                }
                Some(_) => view.not_streaming_since = None,
                None => {}
            }
            if matches!(observation.outcome, ProbeOutcome::Refused(_)) {
                view.refused_streak = view.refused_streak.saturating_add(1);
            } else {
                view.refused_streak = 0;
            }
            if serving {
                view.consecutive_failures = 0;
                view.first_failure_at = None;
            } else {
                view.consecutive_failures = view.consecutive_failures.saturating_add(1);
                view.first_failure_at.get_or_insert(observation.at);
            }
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
        if let Some(view) = self.nodes.get_mut(&observation.node) {
            view.last = Some(observation);
        }
    }

    /// Feeds a pod-level signal from a Kubernetes watch.
    pub fn observe_pod(&mut self, signal: PodSignal) {
        let Some(view) = self.nodes.get_mut(&signal.node) else {
            return;
        };
        if signal.deleted {
            view.pod_deleted = true;
        } else if signal.ready {
            view.pod_deleted = false;
        }
        if signal.deleted || !signal.ready {
            view.consecutive_failures = view.consecutive_failures.saturating_add(1);
            view.first_failure_at.get_or_insert(signal.at);
        }
    }

    /// Reports how an emitted command ended.
    pub fn command_done(
        &mut self,
        command: &Command,
        result: Result<(), CommandError>,
        now: Millis,
    ) {
        self.dispatch.done(
            command,
            result.is_err().then(|| now.plus(self.config.probe_period)),
        );
        if let CommandTarget::Instance(node) = &command.target()
            && let Some(view) = self.nodes.get_mut(node)
        {
            view.last_done_at = Some(now);
        }
        let current = command.epoch() == self.state.epoch;
        if let Err(error) = &result {
            self.event(
                now,
                EventKind::CommandFailed {
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
                    self.routed = Some((primary.clone(), *epoch));
                    if self.state.phase == Phase::Routing {
                        self.complete(now);
                    }
                }
            }
            Command::Detach { node, .. } => {
                if result.is_ok()
                    && let Some(record) = self.state.in_flight.as_mut()
                    && !record.detached.contains(node)
                {
                    record.detached.push(node.clone());
                    record.detached.sort();
                    record.detached_at = Some(now);
                }
            }
            Command::Repoint { .. } | Command::Demote { .. } => {}
        }
    }

    /// Decides what to do at `now`.
    pub fn step(&mut self, now: Millis) -> StepOutput {
        let mut commands = Vec::new();
        for _ in 0..MAX_TRANSITIONS_PER_STEP {
            let before = self.state.phase;
            self.step_phase(now, &mut commands);
            if self.state.phase == before {
                break;
            }
        }
        self.fence_stale_primaries(now, &mut commands);
        StepOutput {
            commands,
            events: std::mem::take(&mut self.events),
        }
    }

    fn step_phase(&mut self, now: Millis, commands: &mut Vec<Command>) {
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

    pub(super) fn event(&mut self, at: Millis, kind: EventKind) {
        self.events.push(Event {
            at,
            epoch: self.state.epoch,
            kind,
        });
    }

    /// Queues `command` unless its target is still busy or backing off after a failure; true
    /// when queued.
    pub(super) fn emit(
        &mut self,
        command: Command,
        now: Millis,
        commands: &mut Vec<Command>,
    ) -> bool {
        self.dispatch.emit(command, now, commands)
    }

    pub(super) fn member(&self, node: &NodeId) -> Option<&Member> {
        self.members.iter().find(|member| &member.name == node)
    }

    /// The latest answered status of `node`, if taken at or after `since`.
    pub(super) fn status_since(&self, node: &NodeId, since: Millis) -> Option<&InstanceStatus> {
        let view = self.nodes.get(node)?;
        let last = view.last.as_ref()?;
        if last.at < since || view.pod_deleted {
            return None;
        }
        last.status()
    }

    /// The latest status of `node`, if taken after the last command on it finished.
    fn settled_status(&self, node: &NodeId) -> Option<&InstanceStatus> {
        let view = self.nodes.get(node)?;
        let last = view.last.as_ref()?;
        if view.last_done_at.is_some_and(|done| last.at < done) {
            return None;
        }
        last.status()
    }

    /// Whether `node` last answered as a running primary.
    pub(super) fn is_alive_primary(&self, node: &NodeId) -> bool {
        let Some(view) = self.nodes.get(node) else {
            return false;
        };
        !view.pod_deleted
            && view
                .last
                .as_ref()
                .and_then(Observation::status)
                .is_some_and(is_serving_primary)
    }

    /// Whether `node`'s latest probe found a running primary (even if its pod is being deleted:
    /// it can still take writes until it stops).
    fn answers_as_primary(&self, node: &NodeId) -> bool {
        self.last_observation(node)
            .and_then(Observation::status)
            .is_some_and(is_serving_primary)
    }

    /// The member whose reports define the primary's LSN and synchronous set right now.
    fn reporting_primary(&self) -> Option<&NodeId> {
        match self.state.phase {
            Phase::Bootstrapping | Phase::Healthy | Phase::Detecting | Phase::Routing => {
                self.state.current_primary.as_ref()
            }
            _ => None,
        }
    }

    /// The member allowed to claim the primary role right now.
    fn designated_primary(&self) -> Option<&NodeId> {
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

    fn learn_sync_set(&mut self, status: &InstanceStatus) {
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
        if enough && set != self.state.sync_set {
            self.state.sync_set = set;
        }
    }

    fn in_flight_mut(&mut self) -> Option<&mut FailoverRecord> {
        self.state.in_flight.as_mut()
    }

    // ---- bootstrap and steady state --------------------------------------------------------

    fn step_bootstrapping(&mut self, now: Millis) {
        if self.state.current_primary.is_some() {
            self.state.phase = Phase::Healthy;
            return;
        }
        let claims: Vec<(&NodeId, u64)> = self
            .nodes
            .iter()
            .filter(|(_, view)| !view.pod_deleted)
            .filter_map(|(node, view)| {
                let status = view.last.as_ref()?.status()?;
                is_serving_primary(status).then_some((node, status.epoch))
            })
            .collect();
        let Some(highest) = claims.iter().map(|(_, epoch)| *epoch).max() else {
            return;
        };
        let mut at_highest = claims.iter().filter(|(_, epoch)| *epoch == highest);
        let (Some((adopted, _)), None) = (at_highest.next(), at_highest.next()) else {
            // Several primaries with the same epoch: adopting one could discard another's writes.
            return;
        };
        let adopted = (*adopted).clone();
        self.claim_next_epoch();
        self.state.current_primary = Some(adopted.clone());
        self.state.phase = Phase::Healthy;
        self.state.sync_set.clear();
        if let Some(status) = self
            .last_observation(&adopted)
            .and_then(Observation::status)
        {
            self.primary_lsn = status.current_lsn;
        }
        self.event(now, EventKind::PrimaryAdopted { node: adopted });
    }

    fn step_detection(&mut self, now: Millis) {
        let Some(primary) = self.state.current_primary.clone() else {
            self.state.phase = Phase::Bootstrapping;
            return;
        };
        let Some(view) = self.nodes.get(&primary) else {
            return;
        };
        // A refused connection is a definite answer (no manager listens), not a slow one, so
        // one probe fewer confirms it; a busy or cut-off node only ever times out.
        let threshold = self.config.failure_threshold.max(1);
        let failing = view.pod_deleted
            || view.consecutive_failures >= threshold
            || (view.refused_streak > 0
                && view.refused_streak >= threshold.saturating_sub(1).max(1));
        match self.state.phase {
            Phase::Healthy if failing => {
                let reason = failure_reason(view);
                let first_failure_at = view.first_failure_at.unwrap_or(now);
                self.state.suspect = Some(Suspicion {
                    node: primary.clone(),
                    first_failure_at,
                    confirmed_at: now,
                    reason: reason.clone(),
                    primary_lsn: self.primary_lsn,
                });
                self.state.phase = Phase::Detecting;
                self.event(
                    now,
                    EventKind::PrimarySuspected {
                        node: primary,
                        reason,
                    },
                );
            }
            Phase::Detecting => {
                if self.is_alive_primary(&primary) {
                    self.state.suspect = None;
                    self.state.phase = Phase::Healthy;
                    self.event(now, EventKind::PrimaryRecovered { node: primary });
                    return;
                }
                let due = self.state.suspect.as_ref().is_none_or(|suspect| {
                    now >= suspect.confirmed_at.plus(self.config.failover_delay)
                });
                if due {
                    self.start_failover(primary, now);
                }
            }
            _ => {}
        }
    }

    fn start_failover(&mut self, from: NodeId, now: Millis) {
        let suspect = self.state.suspect.take();
        let reason = suspect
            .as_ref()
            .map_or_else(|| "primary failing".to_owned(), |s| s.reason.clone());
        self.claim_next_epoch();
        self.state.in_flight = Some(FailoverRecord {
            kind: FailoverKind::Failover,
            epoch: self.state.epoch,
            from: from.clone(),
            to: None,
            detected_at: suspect.as_ref().map_or(now, |s| s.first_failure_at),
            started_at: now,
            fenced_at: None,
            promoted_at: None,
            routed_at: None,
            rto_ms: None,
            lost_bytes: None,
            primary_lsn: suspect
                .as_ref()
                .and_then(|s| s.primary_lsn)
                .or(self.primary_lsn),
            final_lsn: None,
            fence_error: None,
            detached: Vec::new(),
            detached_at: None,
            quorum_fenced_at: None,
            refusal: None,
            aborted: None,
        });
        self.state.target_primary = None;
        self.state.phase = Phase::Fencing;
        self.event(now, EventKind::FailoverStarted { from, reason });
    }

    /// Healthy: grant the designated primary its epoch, route to it, and bring everyone else
    /// back under it (fenced members are demoted, replicas of an older epoch re-pointed).
    fn converge(&mut self, now: Millis, commands: &mut Vec<Command>) {
        let Some(primary) = self.state.current_primary.clone() else {
            return;
        };
        let epoch = self.state.epoch;
        if let Some(status) = self.settled_status(&primary).cloned() {
            match status.role {
                InstanceRole::Primary if status.running && status.epoch == epoch => {
                    self.confirmed = Some((primary.clone(), epoch));
                }
                InstanceRole::Primary | InstanceRole::Fenced if status.epoch > epoch => {
                    if self.reported.insert((primary.clone(), status.epoch)) {
                        self.event(
                            now,
                            EventKind::EpochConflict {
                                node: primary.clone(),
                                instance_epoch: status.epoch,
                            },
                        );
                    }
                }
                InstanceRole::Primary | InstanceRole::Fenced => {
                    self.emit(
                        Command::Promote {
                            node: primary.clone(),
                            epoch,
                        },
                        now,
                        commands,
                    );
                }
                InstanceRole::Replica | InstanceRole::Starting | InstanceRole::Stopped => {}
            }
        }
        if self.confirmed.as_ref() != Some(&(primary.clone(), epoch)) {
            return;
        }
        if self.routed.as_ref() != Some(&(primary.clone(), epoch)) {
            self.emit(
                Command::Route {
                    primary: primary.clone(),
                    epoch,
                },
                now,
                commands,
            );
        }
        self.bring_under(&primary, None, true, now, commands);
    }

    /// Points every other member at `leader`: replicas of an older epoch, or detached by a
    /// failover, are re-pointed. With `settle`, fenced members are demoted (rewound when they
    /// diverged) and a replica stuck on an older timeline is rewound too.
    fn bring_under(
        &mut self,
        leader: &NodeId,
        exclude: Option<&NodeId>,
        settle: bool,
        now: Millis,
        commands: &mut Vec<Command>,
    ) {
        let epoch = self.state.epoch;
        let Some(upstream) = self.member(leader).map(Member::upstream) else {
            return;
        };
        let leader_timeline = self
            .settled_status(leader)
            .filter(|status| is_serving_primary(status))
            .and_then(|status| status.timeline);
        let others: Vec<NodeId> = self
            .members
            .iter()
            .map(|m| m.name.clone())
            .filter(|n| n != leader && Some(n) != exclude)
            .collect();
        for node in others {
            let Some(status) = self.settled_status(&node).cloned() else {
                continue;
            };
            let command = match status.role {
                InstanceRole::Fenced if settle && status.epoch <= epoch => Command::Demote {
                    node,
                    upstream: upstream.clone(),
                    epoch,
                },
                InstanceRole::Replica if status.epoch < epoch || status.detached => {
                    Command::Repoint {
                        node,
                        upstream: upstream.clone(),
                        epoch,
                    }
                }
                InstanceRole::Replica
                    if settle && self.diverged(&node, &status, leader_timeline, now) =>
                {
                    let demote = Command::Demote {
                        node: node.clone(),
                        upstream: upstream.clone(),
                        epoch,
                    };
                    if self.emit(demote, now, commands) {
                        self.event(now, EventKind::Diverged { node });
                    }
                    continue;
                }
                _ => continue,
            };
            self.emit(command, now, commands);
        }
    }

    /// A replica that stays without streaming on an older timeline than the primary's, for
    /// longer than the grace after its last command: it received WAL the new primary never
    /// had (it streamed from the old primary past the fork) and cannot follow until rewound.
    fn diverged(
        &self,
        node: &NodeId,
        status: &InstanceStatus,
        leader_timeline: Option<u32>,
        now: Millis,
    ) -> bool {
        let (Some(leader), Some(own)) = (leader_timeline, status.timeline) else {
            return false;
        };
        let Some(view) = self.nodes.get(node) else {
            return false;
        };
        let quiet_since = view.not_streaming_since.max(view.last_done_at);
        own < leader
            && status.running
            && status.streaming == Some(false)
            && view.not_streaming_since.is_some()
            && quiet_since.is_some_and(|since| now.since(since) >= REJOIN_GRACE_MS)
    }

    /// Any phase: an instance that claims the primary role without the designation is fenced
    /// at once, and reported once.
    fn fence_stale_primaries(&mut self, now: Millis, commands: &mut Vec<Command>) {
        if self.state.phase == Phase::Bootstrapping {
            return;
        }
        let designated = self.designated_primary().cloned();
        let being_fenced = match self.state.phase {
            Phase::Fencing | Phase::SwitchoverFencing => {
                self.state.in_flight.as_ref().map(|r| r.from.clone())
            }
            _ => None,
        };
        let epoch = self.state.epoch;
        let claimants: Vec<(NodeId, u64)> = self
            .nodes
            .keys()
            .filter(|node| {
                Some(*node) != designated.as_ref() && Some(*node) != being_fenced.as_ref()
            })
            .filter_map(|node| {
                let status = self.settled_status(node)?;
                is_serving_primary(status).then(|| (node.clone(), status.epoch))
            })
            .collect();
        for (node, instance_epoch) in claimants {
            if instance_epoch > epoch {
                if self.reported.insert((node.clone(), instance_epoch)) {
                    self.event(
                        now,
                        EventKind::EpochConflict {
                            node,
                            instance_epoch,
                        },
                    );
                }
                continue;
            }
            if self.emit(
                Command::Fence {
                    node: node.clone(),
                    epoch,
                },
                now,
                commands,
            ) && self.reported.insert((node.clone(), instance_epoch))
            {
                self.event(
                    now,
                    EventKind::StalePrimaryFenced {
                        node,
                        instance_epoch,
                    },
                );
            }
        }
    }

    // ---- failover --------------------------------------------------------------------------

    /// Fencing: ask the old primary to stop (never waited on) and, at the same time, detach
    /// every other member from it. The election starts only once the old primary cannot
    /// complete a commit, whatever it can still reach (see `cannot_commit`).
    fn step_fencing(&mut self, now: Millis, commands: &mut Vec<Command>) {
        let Some(record) = self.state.in_flight.clone() else {
            self.state.phase = Phase::Healthy;
            return;
        };
        if record.quorum_fenced_at.is_some() {
            self.state.phase = Phase::Electing;
            return;
        }
        let epoch = self.state.epoch;
        let blocked = match self.cannot_commit(&record, now) {
            Ok(how) => {
                self.quorum_fenced(&record, how, now);
                return;
            }
            Err(reason) => reason,
        };
        {
            self.emit(
                Command::Fence {
                    node: record.from.clone(),
                    epoch,
                },
                now,
                commands,
            );
        }
        let others: Vec<NodeId> = self
            .members
            .iter()
            .map(|member| member.name.clone())
            .filter(|node| node != &record.from && !record.detached.contains(node))
            .collect();
        for node in others {
            // A member claiming the primary role is fenced instead (`fence_stale_primaries`).
            if self.answers_as_primary(&node) {
                continue;
            }
            self.emit(Command::Detach { node, epoch }, now, commands);
        }
        if record.fence_error.is_none() && !self.answers_as_primary(&record.from) {
            let why = self
                .nodes
                .get(&record.from)
                .map_or_else(|| "unknown member".to_owned(), failure_reason);
            let error = format!(
                "{} is not serving ({why}); fencing it through its replicas",
                record.from
            );
            if let Some(record) = self.in_flight_mut() {
                record.fence_error = Some(error.clone());
            }
            self.event(
                now,
                EventKind::Fenced {
                    node: record.from.clone(),
                    error: Some(error),
                },
            );
        }
        // Said once the fence and detach commands had a fair chance to answer.
        let patient = now >= record.started_at.plus(self.config.fence_timeout);
        if patient && record.refusal.as_deref() != Some(blocked.as_str()) {
            if let Some(record) = self.in_flight_mut() {
                record.refusal = Some(blocked.clone());
            }
            self.event(now, EventKind::FencingBlocked { reason: blocked });
        }
    }

    fn quorum_fenced(&mut self, record: &FailoverRecord, how: String, now: Millis) {
        if let Some(record) = self.in_flight_mut() {
            record.quorum_fenced_at = Some(now);
            record.refusal = None;
        }
        self.event(
            now,
            EventKind::QuorumFenced {
                from: record.from.clone(),
                how,
            },
        );
        self.state.phase = Phase::Electing;
    }

    /// Why the old primary can no longer complete a commit, or why that is not shown yet.
    ///
    /// - It confirmed the fence: postgres is stopped.
    /// - Synchronous `ANY n` over a set of S standbys: a commit returns once n of them flushed
    ///   it. With S - n + 1 of them detached, at most n - 1 remain, so no commit can complete
    ///   any more, whatever the old primary can still reach.
    /// - Asynchronous: commits wait for nobody, so the lease the old primary held must have
    ///   run out, and the replicas the engine reached are detached: it then has neither the
    ///   engine nor a replica and fences itself. Renewals stopped when the epoch was bumped.
    ///   (A replica the engine cannot reach but the old primary can keeps it writable: in
    ///   asynchronous mode that one case is not covered.)
    fn cannot_commit(&self, record: &FailoverRecord, now: Millis) -> Result<String, String> {
        if record.fenced_at.is_some() {
            return Ok("it confirmed the fence".to_owned());
        }
        if self
            .status_since(&record.from, record.started_at)
            .is_some_and(|status| status.role == InstanceRole::Fenced && !status.running)
        {
            return Ok("it reports itself fenced and stopped".to_owned());
        }
        match self.config.replication {
            ReplicationMode::Synchronous { number } => {
                let set = &self.state.sync_set;
                if set.is_empty() {
                    return Err(format!(
                        "{} did not confirm the fence and its synchronous set is unknown",
                        record.from
                    ));
                }
                let number = usize::try_from(number).unwrap_or(usize::MAX).max(1);
                let required = set.len().saturating_sub(number) + 1;
                let done: Vec<&str> = set
                    .iter()
                    .filter(|node| record.detached.contains(node))
                    .map(NodeId::as_str)
                    .collect();
                if done.len() >= required {
                    Ok(format!(
                        "{} of its synchronous set [{}] detached ([{}]), so ANY {number} cannot be met",
                        done.len(),
                        join(set),
                        done.join(", ")
                    ))
                } else {
                    Err(format!(
                        "{} did not confirm the fence and only {} of its synchronous set [{}] are detached \
                         ([{}]); {required} are needed before ANY {number} is out of its reach",
                        record.from,
                        done.len(),
                        join(set),
                        done.join(", ")
                    ))
                }
            }
            ReplicationMode::Asynchronous => {
                // Commits wait for nobody: the old primary's lease must have run out. It was
                // last renewed before the epoch was bumped; the last reply of a replica it
                // could have kept writing with came before that replica's detach.
                let lease = self.config.lease_duration;
                let since = record
                    .started_at
                    .max(record.detached_at.unwrap_or_default());
                let expires = since.plus(lease + REPLY_SLACK + self.config.probe_period);
                if now < expires {
                    return Err(format!(
                        "waiting until the lease of {} has run out ({} ms)",
                        record.from,
                        expires.since(now)
                    ));
                }
                Ok(format!(
                    "its lease of {} ms ran out and [{}] are detached",
                    lease.as_millis(),
                    join(&record.detached)
                ))
            }
        }
    }

    fn fence_done(&mut self, node: &NodeId, result: Result<(), CommandError>, now: Millis) {
        let phase = self.state.phase;
        let Some(record) = self.state.in_flight.as_mut() else {
            return;
        };
        if &record.from != node || record.fenced_at.is_some() {
            return;
        }
        match (phase, result) {
            (Phase::Fencing | Phase::SwitchoverFencing, Ok(())) => {
                record.fenced_at = Some(now);
                record.fence_error = None;
                self.event(
                    now,
                    EventKind::Fenced {
                        node: node.clone(),
                        error: None,
                    },
                );
            }
            (Phase::Fencing | Phase::SwitchoverFencing, Err(error))
                if record.fence_error.is_none() =>
            {
                record.fence_error = Some(error.to_string());
                self.event(
                    now,
                    EventKind::Fenced {
                        node: node.clone(),
                        error: Some(error.to_string()),
                    },
                );
            }
            _ => {}
        }
    }

    fn step_electing(&mut self, now: Millis) {
        let Some(record) = self.state.in_flight.clone() else {
            self.state.phase = Phase::Healthy;
            return;
        };
        let cutoff = record.fenced_at.unwrap_or(record.detected_at);
        let others: Vec<NodeId> = self
            .members
            .iter()
            .map(|m| m.name.clone())
            .filter(|n| n != &record.from)
            .collect();
        // Synchronous mode, unless the old primary confirmed its fence: only members detached
        // from it are candidates (their received LSN is final, and they are the quorum the
        // safety argument counts on). Asynchronous mode rests on the lease instead, and bounds
        // the loss by the old primary's last reported LSN, so any reachable replica may run.
        let fenced = matches!(self.config.replication, ReplicationMode::Asynchronous)
            || record.fenced_at.is_some()
            || self
                .status_since(&record.from, record.started_at)
                .is_some_and(|status| status.role == InstanceRole::Fenced && !status.running);
        let candidates: Vec<Candidate<'_>> = others
            .iter()
            .filter(|node| fenced || record.detached.contains(node))
            .filter_map(|node| {
                let status = self.status_since(node, cutoff)?;
                (status.role == InstanceRole::Replica
                    && status.running
                    && !status.fenced
                    && (fenced || status.detached))
                    .then_some(Candidate { node, status })
            })
            .collect();
        let rules = ElectionRules {
            replication: self.config.replication,
            maximum_lag_on_failover: self.config.maximum_lag_on_failover,
            sync_set: &self.state.sync_set,
            primary_lsn: record.primary_lsn,
        };
        let outcome = elect(&rules, &candidates);
        drop(candidates);
        let reason = match outcome {
            Ok(elected) => {
                let lsn = elected.received.to_string();
                self.choose(elected.node.clone(), elected.lost_bytes, now);
                self.event(
                    now,
                    EventKind::Elected {
                        node: elected.node,
                        received_lsn: lsn,
                    },
                );
                return;
            }
            Err(reason) => reason,
        };
        // Refuse only once every other member was probed after the cutoff, so that a restarted
        // engine does not refuse before its first probes arrive.
        let all_probed = others.iter().all(|node| {
            self.nodes
                .get(node)
                .and_then(|view| view.last.as_ref())
                .is_some_and(|last| last.at >= cutoff)
        });
        if !all_probed {
            return;
        }
        // The old primary, back and not promoted elsewhere, loses nothing: take it back.
        let old_is_back = self
            .status_since(&record.from, cutoff)
            .is_some_and(|status| {
                matches!(status.role, InstanceRole::Fenced | InstanceRole::Primary)
                    && status.epoch <= self.state.epoch
            });
        if old_is_back {
            self.choose(record.from.clone(), Some(0), now);
            self.event(
                now,
                EventKind::Elected {
                    node: record.from,
                    received_lsn: "all (former primary)".to_owned(),
                },
            );
            return;
        }
        if record.refusal.as_deref() != Some(reason.as_str()) {
            if let Some(record) = self.in_flight_mut() {
                record.refusal = Some(reason.clone());
            }
            self.event(now, EventKind::FailoverRefused { reason });
        }
    }

    fn choose(&mut self, node: NodeId, lost_bytes: Option<u64>, _now: Millis) {
        if let Some(record) = self.in_flight_mut() {
            record.to = Some(node.clone());
            record.lost_bytes = lost_bytes;
            record.refusal = None;
        }
        self.state.target_primary = Some(node);
        self.state.phase = Phase::Promoting;
    }

    fn step_promoting(&mut self, now: Millis, commands: &mut Vec<Command>) {
        let Some(target) = self.state.target_primary.clone() else {
            self.state.phase = Phase::Electing;
            return;
        };
        let epoch = self.state.epoch;
        let started = self
            .state
            .in_flight
            .as_ref()
            .map_or(Millis(0), |record| record.started_at);
        let already = self
            .status_since(&target, started)
            .is_some_and(|status| is_serving_primary(status) && status.epoch == epoch);
        if already {
            self.promoted(target, now);
            return;
        }
        self.emit(
            Command::Promote {
                node: target.clone(),
                epoch,
            },
            now,
            commands,
        );
        // The other standbys follow the target while it promotes, so its synchronous quorum
        // is there the moment it can take writes (a standby may stream from a standby and
        // follows it onto the new timeline).
        let exclude = self
            .state
            .in_flight
            .as_ref()
            .map(|record| record.from.clone());
        self.bring_under(&target, exclude.as_ref(), false, now, commands);
    }

    fn promote_done(&mut self, node: &NodeId, result: Result<(), CommandError>, now: Millis) {
        match self.state.phase {
            Phase::Promoting if self.state.target_primary.as_ref() == Some(node) => match result {
                Ok(()) => self.promoted(node.clone(), now),
                Err(_) => {
                    self.state.target_primary = None;
                    if let Some(record) = self.in_flight_mut() {
                        record.to = None;
                    }
                    self.state.phase = Phase::Electing;
                }
            },
            Phase::Healthy
                if self.state.current_primary.as_ref() == Some(node) && result.is_ok() =>
            {
                self.confirmed = Some((node.clone(), self.state.epoch));
            }
            _ => {}
        }
    }

    fn promoted(&mut self, node: NodeId, now: Millis) {
        let epoch = self.state.epoch;
        let known_lsn = self
            .last_observation(&node)
            .and_then(Observation::status)
            .and_then(|status| {
                status
                    .current_lsn
                    .or(status.received_lsn)
                    .or(status.replayed_lsn)
            });
        if let Some(record) = self.in_flight_mut() {
            record.promoted_at = Some(now);
            record.to = Some(node.clone());
        }
        if let Some(view) = self.nodes.get_mut(&node) {
            view.consecutive_failures = 0;
            view.first_failure_at = None;
        }
        self.state.current_primary = Some(node.clone());
        self.state.target_primary = None;
        self.state.sync_set.clear();
        self.primary_lsn = known_lsn;
        self.confirmed = Some((node.clone(), epoch));
        self.state.phase = Phase::Routing;
        self.event(now, EventKind::Promoted { node });
    }

    fn step_routing(&mut self, now: Millis, commands: &mut Vec<Command>) {
        let Some(primary) = self.state.current_primary.clone() else {
            self.state.phase = Phase::Electing;
            return;
        };
        let epoch = self.state.epoch;
        if self.routed.as_ref() == Some(&(primary.clone(), epoch)) {
            self.complete(now);
            return;
        }
        self.emit(
            Command::Route {
                primary: primary.clone(),
                epoch,
            },
            now,
            commands,
        );
        // Routing waits for the new primary to be able to commit (its synchronous quorum):
        // members that come back meanwhile are brought under it at once.
        self.bring_under(&primary, None, true, now, commands);
    }

    fn complete(&mut self, now: Millis) {
        let Some(mut record) = self.state.in_flight.take() else {
            self.state.phase = Phase::Healthy;
            return;
        };
        record.routed_at = Some(now);
        record.rto_ms = Some(now.since(record.detected_at));
        let node = record.to.clone().unwrap_or_else(|| record.from.clone());
        self.state.phase = Phase::Healthy;
        self.state.target_primary = None;
        self.state.suspect = None;
        self.state.last_failover = Some(record.clone());
        self.event(now, EventKind::Routed { node });
        let kind = match record.kind {
            FailoverKind::Failover => EventKind::FailoverCompleted { record },
            FailoverKind::Switchover => EventKind::SwitchoverCompleted { record },
        };
        self.event(now, kind);
    }
}

fn join(nodes: &[NodeId]) -> String {
    nodes
        .iter()
        .map(NodeId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A running primary, the only answer that counts as a good probe of the primary.
pub(super) fn is_serving_primary(status: &InstanceStatus) -> bool {
    status.role == InstanceRole::Primary && status.running && !status.fenced
}

fn failure_reason(view: &NodeView) -> String {
    if view.pod_deleted {
        return "pod deleted".to_owned();
    }
    let streak = view.consecutive_failures;
    match view.last.as_ref().map(|last| &last.outcome) {
        Some(ProbeOutcome::Unreachable(why) | ProbeOutcome::Refused(why)) => {
            format!("{streak} failed probes, last: {why}")
        }
        Some(ProbeOutcome::Reachable(status)) => {
            let role = format!("{:?}", status.role).to_lowercase();
            let detail = status
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            format!("{streak} probes without a running primary, reports {role}{detail}")
        }
        None => format!("{streak} failed probes or pod signals"),
    }
}
