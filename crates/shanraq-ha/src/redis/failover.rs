//! The Redis engine's failover, phase by phase: detaching replicas until the old master can
//! take no acknowledged write (`min-replicas-to-write`), electing the replica with the highest
//! offset within the loss bound, promoting it, routing writes to it, and completing the record.

use super::command::{Command, CommandResult, EventKind};
use super::election::{Candidate, LossBound, elect};
use super::engine::{Redis, RedisHa};
use super::info::ReplicationInfo;
use super::model::Observation;
use super::state::{FailoverRecord, Phase};
use crate::events::join;
use crate::machine::Failing;
use crate::postgres::{Millis, NodeId};

impl RedisHa {
    /// Replicas not yet detached whose latest answer since the failover started was an answer
    /// (or that have not been probed since): the election waits for them, at most
    /// `fence_timeout`. A replica that no longer answers cannot be waited for; the loss bound
    /// then applies to what the others have.
    pub(super) fn replicas_still_attached(
        &self,
        record: &FailoverRecord,
        now: Millis,
    ) -> Vec<NodeId> {
        if now >= record.started_at.plus(self.config.fence_timeout) {
            return Vec::new();
        }
        self.others(&record.from)
            .into_iter()
            .filter(|node| !record.detached.contains(node))
            .filter(|node| {
                self.core
                    .nodes
                    .get(node)
                    .and_then(|view| view.last.as_ref())
                    .is_none_or(|last| last.at < record.started_at || last.info().is_some())
            })
            .collect()
    }

    /// Why the old master can no longer take an acknowledged write, or why that is not shown.
    ///
    /// - It was detached itself: a read-only replica.
    /// - `min-replicas-to-write M` over R replicas: with R - M + 1 of them detached at most
    ///   M - 1 stay attached, so it refuses every write, whatever it can still reach.
    pub(super) fn fenced(&self, record: &FailoverRecord) -> Result<String, String> {
        if record.detached.contains(&record.from) {
            return Ok("it was made a read-only replica".to_owned());
        }
        let replicas: Vec<NodeId> = self.others(&record.from);
        let detached: Vec<NodeId> = replicas
            .iter()
            .filter(|node| record.detached.contains(node))
            .cloned()
            .collect();
        let minimum = usize::try_from(self.config.min_replicas_to_write).unwrap_or(usize::MAX);
        if minimum == 0 {
            return Err(format!(
                "{} is unreachable and min-replicas-to-write is 0, so detaching replicas cannot stop it \
                 taking writes",
                record.from
            ));
        }
        let required = (replicas.len() + 1).saturating_sub(minimum);
        if detached.len() >= required {
            Ok(format!(
                "{} of its replicas [{}] detached ([{}]), so min-replicas-to-write {minimum} cannot be met",
                detached.len(),
                join(&replicas),
                join(&detached)
            ))
        } else {
            Err(format!(
                "{} is not reachable and only {} of its replicas [{}] are detached ([{}]); {required} are needed \
                 before min-replicas-to-write {minimum} is out of its reach",
                record.from,
                detached.len(),
                join(&replicas),
                join(&detached)
            ))
        }
    }

    pub(super) fn detach_done(&mut self, node: &NodeId, result: &CommandResult, now: Millis) {
        if !matches!(self.state.phase, Phase::Fencing | Phase::Electing) {
            return;
        }
        let offset = match result {
            Ok(Some(info)) if info.is_detached() => info.offset,
            _ => return,
        };
        let Some(record) = self.in_flight_mut() else {
            return;
        };
        if !record.note_detached(node) {
            return;
        }
        self.event(
            now,
            EventKind::Detached {
                node: node.clone(),
                offset,
            },
        );
    }

    /// Chooses `elected`. When it does not hold the old master's history, what it lost is the
    /// old master's whole history: the failover says so (`dataLost`, and the lost bytes when
    /// the old master's offset is known), never that nothing was lost.
    pub(super) fn elect_with_loss(
        &mut self,
        record: &FailoverRecord,
        mut elected: super::election::Elected,
        foreign: &[NodeId],
        now: Millis,
    ) {
        let mut offset = elected.offset;
        if foreign.contains(&elected.node) {
            elected.lost_bytes = record.detail.master_offset.filter(|offset| *offset > 0);
            offset = self
                .info_since(&elected.node, record.started_at)
                .map_or(0, |info| info.offset);
            let why = format!(
                "{} does not hold the old master's history: the members came back without their data, and \
                 what the old master held{} is lost",
                elected.node,
                elected
                    .lost_bytes
                    .map(|bytes| format!(" ({bytes} bytes of offset)"))
                    .unwrap_or_default()
            );
            if let Some(record) = self.in_flight_mut() {
                record.detail.data_lost = Some(why);
            }
        }
        self.choose(elected.node.clone(), offset, elected.lost_bytes);
        self.event(
            now,
            EventKind::Elected {
                node: elected.node,
                offset,
                lost_bytes: elected.lost_bytes,
            },
        );
    }

    pub(super) fn choose(&mut self, node: NodeId, offset: u64, lost_bytes: Option<u64>) {
        if let Some(record) = self.in_flight_mut() {
            record.elect(node.clone(), lost_bytes);
            record.detail.elected_offset = Some(offset);
        }
        self.state.target_primary = Some(node);
        self.state.phase = Phase::Promoting;
    }

    pub(super) fn promote_done(&mut self, node: &NodeId, ok: bool, now: Millis) {
        if self.state.phase != Phase::Promoting || self.state.target_primary.as_ref() != Some(node)
        {
            return;
        }
        if ok {
            self.promoted(node.clone(), now);
        } else if self.state.in_flight.is_some() {
            self.state.target_primary = None;
            if let Some(record) = self.in_flight_mut() {
                record.to = None;
            }
            self.state.phase = Phase::Electing;
        }
    }

    pub(super) fn promoted(&mut self, node: NodeId, now: Millis) {
        let info = self
            .last_observation(&node)
            .and_then(Observation::info)
            .cloned();
        self.own.master_offset = info.as_ref().map(|info| info.offset);
        self.own.master_replid = info.map(|info| info.replid);
        self.own.replica_lag.clear();
        if let Some(view) = self.core.nodes.get_mut(&node) {
            view.refused_streak = 0;
            view.extra.restarted = false;
            view.extra.restored = None;
        }
        self.mark_promoted(node, now);
    }
}

impl Failing<Redis> for RedisHa {
    /// Fencing: every other member is detached from the old master (the old master too,
    /// when it answers: a read-only replica of nothing takes no write). The election starts once
    /// the old master cannot take an acknowledged write (see `fenced`).
    fn fencing(&mut self, now: Millis, commands: &mut Vec<Command>) {
        let Some(record) = self.in_flight_or_healthy() else {
            return;
        };
        let epoch = self.state.epoch;
        // The election also waits for every replica that answers to be detached: a write
        // acknowledged by `WAIT 1` may be on any one of them, and only their final offsets
        // show which one is the most advanced.
        let waiting = self.replicas_still_attached(&record, now);
        let fenced = match self.fenced(&record) {
            Ok(how) if waiting.is_empty() => Ok(how),
            Ok(_) => Err(format!(
                "waiting for [{}] to be detached: they answer, and may hold acknowledged writes the others lack",
                join(&waiting)
            )),
            Err(blocked) => Err(blocked),
        };
        match fenced {
            Ok(how) => {
                if let Some(record) = self.in_flight_mut() {
                    record.fenced_at = Some(now);
                    record.detail.fenced_how = Some(how.clone());
                }
                self.quorum_fenced(record.from.clone(), how, now);
            }
            Err(blocked) => {
                let pending: Vec<NodeId> = self
                    .members
                    .iter()
                    .map(|m| m.name.clone())
                    .filter(|node| !record.detached.contains(node))
                    .collect();
                for node in pending {
                    self.core
                        .dispatch
                        .emit(Command::Detach { node, epoch }, now, commands);
                }
                self.fencing_blocked(record.started_at, blocked, now);
            }
        }
    }

    fn electing(&mut self, now: Millis) {
        let Some(record) = self.in_flight_or_healthy() else {
            return;
        };
        let mut foreign = Vec::new();
        let mut restored = Vec::new();
        let candidates: Vec<Candidate> = self
            .others(&record.from)
            .into_iter()
            .filter(|node| record.detached.contains(node))
            .filter_map(|node| {
                let info = self.info_since(&node, record.started_at)?;
                if !info.is_detached() || info.loading {
                    return None;
                }
                // Offsets are positions in the group's history: a member that came back
                // without its data holds none of it, whatever its offset says; one that came
                // back from its append-only file holds it up to where it stood before.
                let offset = if let Some(position) = self.restored_at(&node) {
                    restored.push(node.clone());
                    position
                } else if self.holds_history(&node) {
                    info.offset
                } else {
                    foreign.push(node.clone());
                    0
                };
                Some(Candidate {
                    offset,
                    lag_seconds: self.own.replica_lag.get(&node).copied(),
                    node,
                })
            })
            .collect();
        let bound = LossBound {
            max_lag_bytes: self.config.max_lag_bytes,
            max_lag_seconds: self.config.max_lag_seconds,
        };
        let old_master = self
            .info_since(&record.from, record.started_at)
            .filter(|info| {
                record.detached.contains(&record.from) && info.is_detached() && !info.loading
            })
            .cloned();
        // A full outage with persistence: every candidate came back from its own append-only
        // file, with a new replication id and offset 0, so where each stands is known only as
        // the offset the engine last saw before the outage, which cannot rank them: a write
        // `WAIT 1` acknowledged after that probe may be on either. The old master wrote each
        // command to its file before it sent it to any replica, so its file holds at least what
        // any replica's holds, and with `appendfsync always` every write it acknowledged: take
        // it back. It may still be starting: wait for it for `fence_timeout` after the fencing,
        // unless it already answered without its data.
        let full_outage = !restored.is_empty()
            && candidates.iter().all(|candidate| {
                restored.contains(&candidate.node) || foreign.contains(&candidate.node)
            });
        if full_outage {
            let old_master_answer = self
                .info_since(&record.from, record.started_at)
                .filter(|info| !info.loading);
            let restored_old_master = old_master_answer
                .filter(|info| info.is_detached())
                .and(self.restored_at(&record.from));
            if let Some(position) = restored_old_master {
                let lost_bytes = self.config.fsync_always.then_some(0);
                self.choose(record.from.clone(), position, lost_bytes);
                self.event(
                    now,
                    EventKind::Elected {
                        node: record.from,
                        offset: position,
                        lost_bytes,
                    },
                );
                return;
            }
            let waited_since = record.fenced_at.unwrap_or(record.started_at);
            if old_master_answer.is_none() && now < waited_since.plus(self.config.fence_timeout) {
                return;
            }
        }
        // The old master, detached and answering with its history, loses nothing when it is at
        // least as far as the best candidate: take it back, rather than a candidate that came
        // back without its data.
        let best = candidates.iter().map(|c| c.offset).max().unwrap_or(0);
        let old_master_back = old_master
            .as_ref()
            .map(|info| self.restored_at(&record.from).unwrap_or(info.offset))
            .filter(|offset| {
                self.holds_history(&record.from)
                    && *offset >= best
                    && *offset >= record.detail.master_offset.unwrap_or(0)
            });
        let reason = match elect(&candidates, record.detail.master_offset, bound) {
            Ok(mut elected) if !(foreign.contains(&elected.node) && old_master_back.is_some()) => {
                // Its offset is an estimate from before its restart: what it lacks is not known.
                if restored.contains(&elected.node) {
                    elected.lost_bytes = None;
                }
                self.elect_with_loss(&record, elected, &foreign, now);
                return;
            }
            Ok(elected) => format!("{} came back without its data", elected.node),
            Err(reason) => reason,
        };
        if let Some(offset) = old_master_back {
            // Back from its append-only file, it holds every write it acknowledged only when
            // it fsynced each one.
            let lost_bytes =
                (self.restored_at(&record.from).is_none() || self.config.fsync_always).then_some(0);
            self.choose(record.from.clone(), offset, lost_bytes);
            self.event(
                now,
                EventKind::Elected {
                    node: record.from,
                    offset,
                    lost_bytes,
                },
            );
            return;
        }
        // Every member answered and none holds the old master's history: nobody can come back
        // with more, so waiting would keep Redis down without saving a write. The most
        // advanced is promoted and the loss is said.
        let everyone = candidates.len() == self.members.len() - 1 && old_master.is_some();
        let none_in_history = foreign.len() == candidates.len()
            && old_master.is_some()
            && !self.holds_history(&record.from);
        if everyone
            && none_in_history
            && let Some(winner) = candidates
                .iter()
                .max_by_key(|c| (c.offset, std::cmp::Reverse(c.node.clone())))
        {
            let elected = super::election::Elected {
                node: winner.node.clone(),
                offset: winner.offset,
                lost_bytes: None,
            };
            self.elect_with_loss(&record, elected, &foreign, now);
            return;
        }
        self.refuse_failover(reason, now);
    }

    fn promoting(&mut self, now: Millis, commands: &mut Vec<Command>) {
        let Some(target) = self.state.target_primary.clone() else {
            self.state.phase = if self.state.in_flight.is_some() {
                Phase::Electing
            } else {
                Phase::Bootstrapping
            };
            return;
        };
        let epoch = self.state.epoch;
        let started = self.in_flight_started();
        let already = self
            .info_since(&target, started)
            .is_some_and(ReplicationInfo::is_master);
        if already {
            self.promoted(target, now);
            return;
        }
        self.core.dispatch.emit(
            Command::Promote {
                node: target,
                epoch,
            },
            now,
            commands,
        );
    }

    fn routing(&mut self, now: Millis, commands: &mut Vec<Command>) {
        let Some(master) = self.route_pending(now) else {
            return;
        };
        let epoch = self.state.epoch;
        // Replicas first: the new master takes writes only once min-replicas-to-write of them
        // are attached.
        self.bring_under(&master, now, commands);
        self.core
            .dispatch
            .emit(Command::Route { master, epoch }, now, commands);
    }
}
