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

use super::command::{Command, CommandResult, EventKind};
use super::config::RedisHaConfig;
use super::info::ReplicationInfo;
use super::model::{Observation, RedisMember};
use super::state::{FailoverKind, Phase, RecordDetail, RedisHaState, Suspicion};

use crate::events::Lifecycle;
use crate::machine::{Ha, Probing, Product, Steady};
use crate::postgres::{Millis, NodeId};
use crate::record::NoDetail;

/// What Redis adds to what the engine remembers of a member (`crate::probe::View`).
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// The designated master came back with another replication id and a lower offset.
    pub(super) restarted: bool,
    /// The replication id and offset of the member's last answer: one that comes back with
    /// another id and a lower offset lost its data.
    pub(super) history: Option<(String, u64)>,
    /// It came back without its data and has not synced from a master since: it holds none of
    /// the group's history, whatever its offset says.
    pub(super) lost_data: bool,
    /// It came back with the data set of its own append-only file and has not synced from a
    /// master since: it holds the group's history up to about this offset (its last before the
    /// restart), though it reports another replication id and offset 0.
    pub(super) restored: Option<u64>,
    /// The replication id of its last answer in which its append-only file held what it
    /// served (`ReplicationInfo::aof_settled`). Only a node seen so under the history it was
    /// killed in is trusted to come back from its file with that history.
    pub(super) aof_settled_for: Option<String>,
}

pub type NodeView = crate::probe::View<ReplicationInfo, Seen>;

/// The offset of a detached member that holds nothing: a restarted, empty redis-server reports
/// 0 as a master and 1 as a replica of nowhere.
const EMPTY_OFFSET: u64 = 1;

/// Redis (replication mode) as a product of the one engine (`crate::machine`).
#[derive(Debug)]
pub struct Redis;

/// The HA engine of one Redis replication group.
pub type RedisHa = Ha<Redis>;

/// What Redis's engine remembers between steps beyond the shared bookkeeping.
#[derive(Debug)]
pub struct Remembered {
    /// The current master's last reported offset and replication id.
    pub(super) master_offset: Option<u64>,
    pub(super) master_replid: Option<String>,
    /// Seconds since each replica's last acknowledgement, from the master's last report.
    pub(super) replica_lag: BTreeMap<NodeId, u64>,
    /// A switchover's old master, still paused until it follows the new one.
    pub(super) pending_unpause: Option<NodeId>,
}

impl Product for Redis {
    type Config = RedisHaConfig;
    type Member = RedisMember;
    type Answer = ReplicationInfo;
    type Seen = Seen;
    type Command = Command;
    type EventKind = EventKind;
    type RecordDetail = RecordDetail;
    type SuspicionDetail = NoDetail;
    type StateDetail = NoDetail;
    type Memory = Remembered;
    type Signal = NoSignal;
    type Outcome = CommandResult;
    const VOICE: crate::events::Voice =
        crate::events::Voice::new(["Redis", "Master", "Redis ", "master", "offset"]);

    fn remember(state: &RedisHaState) -> Remembered {
        let in_flight = state.in_flight.as_ref();
        Remembered {
            master_offset: in_flight.and_then(|record| record.detail.master_offset),
            master_replid: None,
            replica_lag: BTreeMap::new(),
            pending_unpause: in_flight
                .filter(|record| record.kind == FailoverKind::Switchover)
                .map(|record| record.from.clone()),
        }
    }
}

/// Redis has no signal from outside its probes yet.
#[derive(Debug)]
pub enum NoSignal {}

impl RedisHa {
    /// The current master's last reported offset.
    pub fn master_offset(&self) -> Option<u64> {
        self.own.master_offset
    }

    pub(super) fn learn_from_master(&mut self, info: &ReplicationInfo) {
        self.own.master_offset = Some(info.offset);
        self.own.master_replid = Some(info.replid.clone());
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
        self.own.replica_lag = lags;
    }

    /// Remembers where `node`'s data stands. A member that answers, without a link to a master,
    /// with another replication id and an offset that went back (or an empty one) restarted.
    /// With the keys of its own append-only file it came back with its data, up to where it
    /// stood before (`Seen::restored`); without any, it came back without its data: it
    /// restarted empty, or from a history that is not the group's. That is said at once, and it
    /// counts as holding none of the group's history until it syncs from a master again.
    pub(super) fn note_history(&mut self, node: &NodeId, info: &ReplicationInfo, at: Millis) {
        let Some(view) = self.core.nodes.get_mut(node) else {
            return;
        };
        // A node still reading its append-only file reports a part of its keys: nothing can
        // be said of its data until it is done.
        if info.loading {
            return;
        }
        let before = view
            .extra
            .history
            .replace((info.replid.clone(), info.offset));
        let settled_before = if info.aof_settled() {
            view.extra.aof_settled_for.replace(info.replid.clone())
        } else {
            view.extra.aof_settled_for.clone()
        };
        // Synced from a master, or just promoted by this engine (`REPLICAOF NO ONE` on a node
        // detached at offset 1 answers with a new id and offset 0): either way its data is the
        // group's history from now on, and the new id is no restart.
        let promoted = info.is_master() && self.state.target_primary.as_ref() == Some(node);
        if info.link_up || promoted {
            view.extra.lost_data = false;
            view.extra.restored = None;
            return;
        }
        let Some((replid, offset)) = before else {
            return;
        };
        // A new replication id alone proves nothing: a master takes one on promotion and when
        // its first replica attaches, and its replicas take it when they sync, which the engine
        // may not have seen before their link dropped. What a restart leaves is a new id with
        // the offset gone back: below what the member held, or empty (a detached member at the
        // start of a history).
        let empty = !info.is_master() && info.offset <= EMPTY_OFFSET;
        let restarted = replid != info.replid && (info.offset < offset || empty);
        let own_file = settled_before.as_ref() == Some(&replid);
        if restarted && info.restored_from_disk() && own_file && !view.extra.lost_data {
            // Restarted again before it synced: it still holds what it held the first time.
            let position = view.extra.restored.map_or(offset, |held| held.max(offset));
            view.extra.restored = Some(position);
            self.event(
                at,
                EventKind::DatasetRestored {
                    node: node.clone(),
                    offset_before: position,
                    keys: info.keys.unwrap_or_default(),
                },
            );
        } else if restarted {
            view.extra.lost_data = true;
            view.extra.restored = None;
            self.event(
                at,
                EventKind::DatasetLost {
                    node: node.clone(),
                    offset_before: offset,
                    offset_now: info.offset,
                    keys: info.keys.unwrap_or_default(),
                },
            );
        }
    }

    /// Where the data set `node` read from its append-only file stands in the group's
    /// history, while it has not synced from a master since (`Seen::restored`).
    pub(super) fn restored_at(&self, node: &NodeId) -> Option<u64> {
        self.core.nodes.get(node)?.extra.restored
    }

    /// Whether `node` may hold the group's history (it was not seen coming back without it).
    pub(super) fn holds_history(&self, node: &NodeId) -> bool {
        self.core
            .nodes
            .get(node)
            .is_none_or(|view| !view.extra.lost_data)
    }

    // ---- helpers -------------------------------------------------------------------------

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

    // ---- bootstrap and steady state --------------------------------------------------------

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
                if self.own.pending_unpause.as_ref() == Some(&node) {
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

impl Steady<Redis> for RedisHa {
    fn bootstrapping(&mut self, now: Millis) {
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

    /// Healthy: route to the master and bring every other member under it.
    fn converge(&mut self, now: Millis, commands: &mut Vec<Command>) {
        let Some(master) = self.state.current_primary.clone() else {
            return;
        };
        let epoch = self.state.epoch;
        if !self.answers_as_master(&master) {
            return;
        }
        if !self.is_routed(&master) {
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
}

impl Probing<Redis> for RedisHa {
    /// Feeds one probe result. Unknown members and results older than the latest are ignored.
    fn observe(&mut self, observation: Observation) {
        let reporting = self.reporting_master().cloned();
        let is_reporting = reporting.as_ref() == Some(&observation.node);
        let restarted = is_reporting
            && observation.info().is_some_and(|info| {
                self.own
                    .master_replid
                    .as_ref()
                    .is_some_and(|known| known != &info.replid)
                    && info.offset < self.own.master_offset.unwrap_or(0)
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
        if let Some(info) = observation.info() {
            self.note_history(&observation.node, info, observation.at);
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

    /// Reports how an emitted command ended, with the node's `INFO replication` after it.
    fn command_done(&mut self, command: &Command, result: CommandResult, now: Millis) {
        self.note_done(command, result.as_ref().err().map(ToString::to_string), now);
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
            Command::Route { master, epoch } if ok => self.routed(master, *epoch, now),
            Command::PauseWrites { node, .. } => self.pause_done(node, &result, now),
            Command::Unpause { node, .. }
                if ok && self.own.pending_unpause.as_ref() == Some(node) =>
            {
                self.own.pending_unpause = None;
            }
            _ => {}
        }
    }

    fn signal(&mut self, signal: NoSignal) {
        match signal {}
    }

    fn failing(&self, view: &NodeView) -> bool {
        view.extra.restarted || view.failing(self.config.failure_threshold)
    }

    fn failure_reason(view: &NodeView) -> String {
        if view.extra.restarted && view.extra.restored.is_some() {
            return "it restarted from its append-only file (new replication id, offset 0): it is a replica of \
                    nowhere until it is promoted again or follows another master"
                .to_owned();
        }
        if view.extra.restarted {
            return "it restarted without its data (new replication id, lower offset): its replicas must not \
                    resync from it"
                .to_owned();
        }
        view.failure_reason(|info| {
            format!("without a master, reports {:?}", info.role).to_lowercase()
        })
    }

    /// Its replicas would resync from it and empty themselves: no delay.
    fn urgent(view: &NodeView) -> bool {
        view.extra.restarted
    }

    fn recovered(&self, node: &NodeId) -> bool {
        self.answers_as_master(node)
    }

    fn suspicion_detail(&self) -> NoDetail {
        NoDetail {}
    }

    fn failover_detail(&self, _suspect: Option<&Suspicion>) -> RecordDetail {
        RecordDetail {
            master_offset: self.own.master_offset,
            ..RecordDetail::default()
        }
    }
}
