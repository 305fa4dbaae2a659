//! The Redis HA state machine: observations in, commands and events out, the persisted
//! `RedisHaState` in between. No IO and no clock: the caller passes `now`, executes the
//! commands, reports their results with `command_done`, and persists `state()` whenever it
//! changed, before it executes the commands of that step.
//!
//! Safety rules kept here rather than in adapters:
//! - every failover and switchover bumps the epoch before it detaches or promotes anyone;
//! - nobody is promoted before the old master cannot take an acknowledged write: it was made a
//!   replica, or enough replicas are detached that `min-replicas-to-write` cannot be met;
//! - a master that restarted without its data (new replication id, lower offset) is failed over
//!   at once, before its replicas could resync from it and empty themselves;
//! - a node claiming the master role without the designation is made a replica of the master;
//! - a persisted failover resumes at its phase and target, never re-elects or reverts.

use std::collections::BTreeMap;

use super::command::{Command, CommandResult, EventKind, StepOutput};
use super::config::RedisHaConfig;
use super::info::ReplicationInfo;
use super::model::{Observation, RedisMember};
use super::state::{FailoverKind, FailoverRecord, Phase, RecordDetail, RedisHaState, Suspicion};
use crate::claim::Claimed;
use crate::core::Core;
use crate::events::Lifecycle;
use crate::postgres::{Millis, NodeId};
use crate::record::NoDetail;

/// What Redis adds to what the engine remembers of a member (`crate::probe::View`).
#[derive(Clone, Debug, Default)]
pub(super) struct Seen {
    /// The designated master came back with another replication id and a lower offset.
    pub(super) restarted: bool,
}

pub(super) type NodeView = crate::probe::View<ReplicationInfo, Seen>;

/// The HA engine of one Redis replication group.
#[derive(Debug)]
pub struct RedisHa {
    pub(super) config: RedisHaConfig,
    pub(super) members: Vec<RedisMember>,
    pub(super) state: RedisHaState,
    pub(super) core: Core<ReplicationInfo, Seen, Command, EventKind>,
    /// The current master's last reported offset and replication id.
    pub(super) master_offset: Option<u64>,
    pub(super) master_replid: Option<String>,
    /// Seconds since each replica's last acknowledgement, from the master's last report.
    pub(super) replica_lag: BTreeMap<NodeId, u64>,
    /// A switchover's old master, still paused until it follows the new one.
    pub(super) pending_unpause: Option<NodeId>,
}

impl RedisHa {
    /// An engine resuming from `state` (`RedisHaState::default()` for a new group).
    pub fn new(config: RedisHaConfig, members: Vec<RedisMember>, state: RedisHaState) -> RedisHa {
        let core = Core::new(members.iter().map(|member| member.name.clone()));
        let master_offset = state
            .in_flight
            .as_ref()
            .and_then(|r| r.detail.master_offset);
        let pending_unpause = state
            .in_flight
            .as_ref()
            .filter(|record| record.kind == FailoverKind::Switchover)
            .map(|record| record.from.clone());
        RedisHa {
            config,
            members,
            state,
            core,
            master_offset,
            master_replid: None,
            replica_lag: BTreeMap::new(),
            pending_unpause,
        }
    }

    /// The engine acting as `identity` (the owner of the epochs it claims).
    pub fn with_identity(mut self, identity: impl Into<String>) -> RedisHa {
        self.core.identity = identity.into();
        self
    }

    pub fn identity(&self) -> &str {
        &self.core.identity
    }

    /// Takes over the state this engine resumes, before it acts (`Claimed::take_office`). True
    /// when the state changed and must be persisted. Redis nodes cannot check a token
    /// themselves, so what keeps the former owner from acting is the driver's compare-and-swap
    /// and its check of the store (and of its leadership) right before every command.
    pub fn take_office(&mut self) -> bool {
        self.state.take_office(&self.core.identity, 0)
    }

    /// Claims the next epoch for this engine; the driver persists it before any command
    /// carries it.
    pub(super) fn claim_next_epoch(&mut self) -> u64 {
        self.state.claim_next(&self.core.identity, 0)
    }

    /// Replaces the engine's state with `state`, read back from the store after another writer
    /// moved it on (the same owner). What it remembered about commands and routing is dropped.
    pub fn resume_from(&mut self, state: RedisHaState) {
        self.state = state;
        self.core.forget_decisions();
    }

    pub fn state(&self) -> &RedisHaState {
        &self.state
    }

    pub fn config(&self) -> &RedisHaConfig {
        &self.config
    }

    pub fn members(&self) -> &[RedisMember] {
        &self.members
    }

    pub fn outstanding(&self) -> impl Iterator<Item = &Command> {
        self.core.dispatch.in_flight()
    }

    pub fn last_observation(&self, node: &NodeId) -> Option<&Observation> {
        self.core.last(node)
    }

    pub fn routed_master(&self) -> Option<&NodeId> {
        self.core.routed_to()
    }

    /// The current master's last reported offset.
    pub fn master_offset(&self) -> Option<u64> {
        self.master_offset
    }

    /// Feeds one probe round. A round in which every probe timed out is inconclusive and counts
    /// for nobody: the fault is then on the engine's side, and failing over would only move the
    /// master away from where writes still work.
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
        let reporting = self.reporting_master().cloned();
        let is_reporting = reporting.as_ref() == Some(&observation.node);
        let restarted = is_reporting
            && observation.info().is_some_and(|info| {
                self.master_replid
                    .as_ref()
                    .is_some_and(|known| known != &info.replid)
                    && info.offset < self.master_offset.unwrap_or(0)
            });
        let serving = observation
            .info()
            .is_some_and(|info| info.is_master() && !restarted);
        {
            let Some(view) = self.core.nodes.get_mut(&observation.node) else {
                return;
            };
            if view.is_older(&observation) {
                return;
            }
            if restarted {
                view.extra.restarted = true;
            }
            let good = serving && !view.extra.restarted;
            view.count(&observation, good);
        }
        if is_reporting
            && serving
            && let Some(info) = observation.info()
        {
            let info = info.clone();
            self.learn_from_master(&info);
        }
        if let Some(view) = self.core.nodes.get_mut(&observation.node) {
            view.last = Some(observation);
        }
    }

    pub(super) fn learn_from_master(&mut self, info: &ReplicationInfo) {
        self.master_offset = Some(info.offset);
        self.master_replid = Some(info.replid.clone());
        let mut lags = BTreeMap::new();
        for link in &info.replicas {
            if let Some(member) = self
                .members
                .iter()
                .find(|m| m.port == link.port && (m.host == link.ip || m.host == "localhost"))
            {
                lags.insert(member.name.clone(), link.lag_seconds);
            }
        }
        self.replica_lag = lags;
    }

    /// Reports how an emitted command ended, with the node's `INFO replication` after it.
    pub fn command_done(&mut self, command: &Command, result: CommandResult, now: Millis) {
        self.core
            .finished(command, result.is_err(), now, self.config.probe_period);
        match &result {
            Ok(_) => {}
            Err(error) => {
                self.event(
                    now,
                    Lifecycle::CommandFailed {
                        command: command.to_string(),
                        error: error.to_string(),
                    },
                );
            }
        }
        if let Ok(Some(info)) = &result {
            self.observe(Observation::reachable(
                command.node().clone(),
                now,
                info.clone(),
            ));
        }
        if command.epoch() != self.state.epoch {
            return;
        }
        let ok = result.is_ok();
        match command {
            Command::Detach { node, .. } if ok => self.detach_done(node, &result, now),
            Command::Promote { node, .. } => self.promote_done(node, ok, now),
            Command::Route { master, epoch }
                if ok && self.state.current_primary.as_ref() == Some(master) =>
            {
                self.core.routed = Some((master.clone(), *epoch));
                if self.state.phase == Phase::Routing {
                    self.complete(now);
                }
            }
            Command::PauseWrites { node, .. } => self.pause_done(node, &result, now),
            Command::Unpause { node, .. } if ok && self.pending_unpause.as_ref() == Some(node) => {
                self.pending_unpause = None;
            }
            _ => {}
        }
    }

    /// Decides what to do at `now`.
    pub fn step(&mut self, now: Millis) -> StepOutput {
        let commands = crate::core::settle(
            self,
            |engine| engine.state.phase,
            |engine, commands| engine.step_phase(now, commands),
        );
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
            Phase::Fencing => self.step_detaching(now, commands),
            Phase::Electing => self.step_electing(now),
            Phase::Promoting => self.step_promoting(now, commands),
            Phase::Routing => self.step_routing(now, commands),
            Phase::SwitchoverFencing => self.step_switchover_pausing(now, commands),
            Phase::SwitchoverDraining => self.step_switchover_draining(now, commands),
        }
    }

    // ---- helpers -------------------------------------------------------------------------

    pub(super) fn event(&mut self, at: Millis, kind: impl Into<EventKind>) {
        self.core.event(at, self.state.epoch, kind.into());
    }

    pub(super) fn member(&self, node: &NodeId) -> Option<&RedisMember> {
        self.members.iter().find(|member| &member.name == node)
    }

    /// The latest answer of `node`, if taken at or after `since`.
    pub(super) fn info_since(&self, node: &NodeId, since: Millis) -> Option<&ReplicationInfo> {
        self.core.nodes.get(node)?.answer_since(since)
    }

    /// The latest answer of `node`, if taken after the last command on it finished.
    pub(super) fn settled_info(&self, node: &NodeId) -> Option<&ReplicationInfo> {
        self.core.nodes.get(node)?.settled_answer()
    }

    pub(super) fn answers_as_master(&self, node: &NodeId) -> bool {
        self.core.nodes.get(node).is_some_and(|view| {
            !view.extra.restarted
                && view
                    .last
                    .as_ref()
                    .and_then(Observation::info)
                    .is_some_and(ReplicationInfo::is_master)
        })
    }

    pub(super) fn reporting_master(&self) -> Option<&NodeId> {
        match self.state.phase {
            Phase::Healthy | Phase::Detecting | Phase::Routing => {
                self.state.current_primary.as_ref()
            }
            _ => None,
        }
    }

    pub(super) fn others(&self, node: &NodeId) -> Vec<NodeId> {
        self.members
            .iter()
            .map(|m| m.name.clone())
            .filter(|n| n != node)
            .collect()
    }

    pub(super) fn in_flight_mut(&mut self) -> Option<&mut FailoverRecord> {
        self.state.in_flight.as_mut()
    }

    // ---- bootstrap and steady state --------------------------------------------------------

    pub(super) fn step_bootstrapping(&mut self, now: Millis) {
        if self.state.current_primary.is_some() {
            self.state.phase = Phase::Healthy;
            return;
        }
        let masters: Vec<NodeId> = self
            .core
            .nodes
            .iter()
            .filter(|(_, view)| {
                view.last
                    .as_ref()
                    .and_then(Observation::info)
                    .is_some_and(ReplicationInfo::is_master)
            })
            .map(|(node, _)| node.clone())
            .collect();
        match masters.as_slice() {
            [one] => {
                let node = one.clone();
                self.claim_next_epoch();
                self.state.current_primary = Some(node.clone());
                self.state.phase = Phase::Healthy;
                if let Some(info) = self.last_observation(&node).and_then(Observation::info) {
                    let info = info.clone();
                    self.learn_from_master(&info);
                }
                self.event(now, Lifecycle::Adopted { node });
            }
            [] => {
                // Every pod starts detached: promote the most advanced once all answered and
                // none follows a live master.
                let mut best: Option<(u64, NodeId)> = None;
                for member in &self.members {
                    let Some(info) = self
                        .core
                        .nodes
                        .get(&member.name)
                        .and_then(|v| v.last.as_ref())
                        .and_then(Observation::info)
                    else {
                        return;
                    };
                    if info.link_up {
                        return;
                    }
                    let better = best.as_ref().is_none_or(|(offset, name)| {
                        info.offset > *offset || (info.offset == *offset && &member.name < name)
                    });
                    if better {
                        best = Some((info.offset, member.name.clone()));
                    }
                }
                let Some((offset, node)) = best else {
                    return;
                };
                self.claim_next_epoch();
                self.state.target_primary = Some(node.clone());
                self.state.phase = Phase::Promoting;
                self.event(now, EventKind::MasterBootstrapped { node, offset });
            }
            several => {
                let nodes = several.to_vec();
                if self
                    .core
                    .reported
                    .insert((NodeId::new("several-masters"), self.state.epoch))
                {
                    self.event(now, EventKind::SeveralMasters { nodes });
                }
            }
        }
    }

    pub(super) fn step_detection(&mut self, now: Millis) {
        let Some(master) = self.state.current_primary.clone() else {
            self.state.phase = Phase::Bootstrapping;
            return;
        };
        let Some(view) = self.core.nodes.get(&master) else {
            return;
        };
        let failing = view.extra.restarted || view.failing(self.config.failure_threshold);
        match self.state.phase {
            Phase::Healthy if failing => {
                let reason = failure_reason(view);
                let first_failure_at = view.first_failure_at.unwrap_or(now);
                let restarted = view.extra.restarted;
                self.state.suspect = Some(Suspicion {
                    node: master.clone(),
                    first_failure_at,
                    confirmed_at: now,
                    reason: reason.clone(),
                    detail: NoDetail {},
                });
                self.state.phase = Phase::Detecting;
                self.event(
                    now,
                    Lifecycle::Suspected {
                        node: master.clone(),
                        reason,
                    },
                );
                // Its replicas would resync from it and empty themselves: no delay.
                if restarted {
                    self.start_failover(master, now);
                }
            }
            Phase::Detecting => {
                if !failing && self.answers_as_master(&master) {
                    self.state.suspect = None;
                    self.state.phase = Phase::Healthy;
                    self.event(now, Lifecycle::Recovered { node: master });
                    return;
                }
                let due = self.state.suspect.as_ref().is_none_or(|suspect| {
                    now >= suspect.confirmed_at.plus(self.config.failover_delay)
                });
                if due {
                    self.start_failover(master, now);
                }
            }
            _ => {}
        }
    }

    pub(super) fn start_failover(&mut self, from: NodeId, now: Millis) {
        let suspect = self.state.suspect.take();
        let reason = suspect
            .as_ref()
            .map_or_else(|| "master failing".to_owned(), |s| s.reason.clone());
        self.claim_next_epoch();
        self.state.in_flight = Some(FailoverRecord::failover(
            self.state.epoch,
            from.clone(),
            suspect.as_ref(),
            now,
            RecordDetail {
                master_offset: self.master_offset,
                ..RecordDetail::default()
            },
        ));
        self.state.target_primary = None;
        self.state.phase = Phase::Fencing;
        self.event(now, Lifecycle::FailoverStarted { from, reason });
    }

    /// Healthy: route to the master and bring every other member under it.
    pub(super) fn converge(&mut self, now: Millis, commands: &mut Vec<Command>) {
        let Some(master) = self.state.current_primary.clone() else {
            return;
        };
        let epoch = self.state.epoch;
        if !self.answers_as_master(&master) {
            return;
        }
        if self.core.routed.as_ref() != Some(&(master.clone(), epoch)) {
            self.core.dispatch.emit(
                Command::Route {
                    master: master.clone(),
                    epoch,
                },
                now,
                commands,
            );
        }
        self.bring_under(&master, now, commands);
    }

    /// Points every other member that answers at `master`: stale masters are demoted (made
    /// replicas), replicas of anyone else or detached ones re-pointed, and a switchover's old
    /// master unpaused once it follows.
    pub(super) fn bring_under(
        &mut self,
        master: &NodeId,
        now: Millis,
        commands: &mut Vec<Command>,
    ) {
        let epoch = self.state.epoch;
        let Some(endpoint) = self.member(master).map(RedisMember::endpoint) else {
            return;
        };
        for node in self.others(master) {
            let Some(info) = self.settled_info(&node).cloned() else {
                continue;
            };
            let follows = info.replicates_from(&endpoint.host, endpoint.port);
            if follows {
                if self.pending_unpause.as_ref() == Some(&node) {
                    self.core
                        .dispatch
                        .emit(Command::Unpause { node, epoch }, now, commands);
                }
                continue;
            }
            let replicate = Command::Replicate {
                node: node.clone(),
                master: endpoint.clone(),
                epoch,
            };
            if self.core.dispatch.emit(replicate, now, commands)
                && info.is_master()
                && self.core.reported.insert((node.clone(), epoch))
            {
                self.event(now, EventKind::StaleMasterDemoted { node });
            }
        }
    }
}

pub(super) fn failure_reason(view: &NodeView) -> String {
    if view.extra.restarted {
        return "it restarted without its data (new replication id, lower offset): its replicas must not \
                resync from it"
            .to_owned();
    }
    view.failure_reason(|info| format!("without a master, reports {:?}", info.role).to_lowercase())
}
