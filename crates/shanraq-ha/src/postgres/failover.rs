//! The PostgreSQL engine's failover, phase by phase: fencing the old primary (or showing it
//! unable to commit through its synchronous set), electing the most advanced eligible replica,
//! promoting it, routing writes to it, and completing the record.

use super::command::{Command, CommandError, EventKind};
use super::config::ReplicationMode;
use super::election::{Candidate, ElectionRules, elect};
use super::engine::{Postgres, PostgresHa, is_serving_primary};
use super::model::{Millis, NodeId, Observation};
use super::state::{FailoverRecord, Phase};
use crate::events::join;
use crate::machine::Failing;
use crate::wire::{InstanceRole, REPLY_SLACK};

impl PostgresHa {
    /// Why the old primary can no longer complete a commit, or why that is not shown yet.
    ///
    /// - It confirmed the fence: postgres is stopped.
    /// - Synchronous `ANY n` over a set of S standbys: a commit returns once n of them flushed
    ///   it. With S - n + 1 of them detached, at most n - 1 remain, so no commit can complete
    ///   any more, whatever the old primary can still reach.
    /// - Asynchronous: commits wait for nobody, so the lease the old primary held must have
    ///   run out, and the replicas the engine reached are detached: it then has neither the
    ///   engine nor a replica and fences itself. Renewals stopped when the epoch was bumped.
    ///   (A replica the old primary still streams to and the engine has not detached keeps
    ///   it writable: in asynchronous mode that case is not covered. A replica whose WAL
    ///   receiver hangs can be neither detached nor a reason to wait, and the engine cannot
    ///   tell the two apart from its reports.) The same holds for a primary whose last report
    ///   showed no quorum in effect.
    /// - Fallen back (`dataDurability: preferred`, recorded in the failover record when it
    ///   started): as asynchronous, and every replica the engine reaches detached first.
    pub(super) fn cannot_commit(
        &self,
        record: &FailoverRecord,
        now: Millis,
    ) -> Result<String, String> {
        if record.fenced_at.is_some() {
            return Ok("it confirmed the fence".to_owned());
        }
        if self
            .status_since(&record.from, record.started_at)
            .is_some_and(|status| status.role == InstanceRole::Fenced && !status.running)
        {
            return Ok("it reports itself fenced and stopped".to_owned());
        }
        // A primary whose last report showed no quorum in effect commits alone, whatever
        // the configuration says (a pod not yet restarted with it, say).
        if record.detail.fallback_since.is_some() {
            // Fallen back (`dataDurability: preferred`): the old primary may commit with fewer
            // standbys than its synchronous set, or none, so detaching the set proves nothing.
            // Its lease must have run out, and no replica the engine reaches may still stream
            // from it: with a lowered `ANY k (...)` a streaming standby keeps it writable
            // whatever the lease says, and with `''` a streaming replica does.
            let attached: Vec<&str> = self
                .members
                .iter()
                .map(|member| &member.name)
                .filter(|node| **node != record.from && !record.detached.contains(node))
                .filter(|node| {
                    self.status_since(node, record.started_at)
                        .is_some_and(|status| status.role == InstanceRole::Replica)
                })
                .map(NodeId::as_str)
                .collect();
            if !attached.is_empty() {
                return Err(format!(
                    "{} may still commit with [{}], which are not detached yet",
                    record.from,
                    attached.join(", ")
                ));
            }
            return self.lease_ran_out(record, now);
        }
        if self.state.detail.sync_quorum == Some(0) {
            return self.lease_ran_out(record, now);
        }
        match self.config.replication {
            ReplicationMode::Synchronous { number } => {
                let set = &self.state.detail.sync_set;
                if set.is_empty() {
                    return Err(format!(
                        "{} did not confirm the fence and its synchronous set is unknown",
                        record.from
                    ));
                }
                // The quorum in effect on the old primary when it last reported, when lower than
                // the configured one: a raised `number` reaches the primary only with its pod's
                // restart, and until then its commits need fewer standbys than configured.
                let number = self
                    .state
                    .detail
                    .sync_quorum
                    .map_or(number, |effective| effective.min(number));
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
            ReplicationMode::Asynchronous => self.lease_ran_out(record, now),
        }
    }

    /// Commits wait for nobody (asynchronous mode, or `dataDurability: preferred` fallen
    /// back): the old primary's lease must have run out. It was last renewed before the epoch
    /// was bumped; the last reply of a replica it could have kept writing with came before that
    /// replica's detach.
    fn lease_ran_out(&self, record: &FailoverRecord, now: Millis) -> Result<String, String> {
        let lease = self.config.lease_duration;
        let since = record
            .started_at
            .max(record.detail.detached_at.unwrap_or_default());
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

    pub(super) fn fence_done(
        &mut self,
        node: &NodeId,
        result: Result<(), CommandError>,
        now: Millis,
    ) {
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
                record.detail.fence_error = None;
                self.event(
                    now,
                    EventKind::Fenced {
                        node: node.clone(),
                        error: None,
                    },
                );
            }
            (Phase::Fencing | Phase::SwitchoverFencing, Err(error))
                if record.detail.fence_error.is_none() =>
            {
                record.detail.fence_error = Some(error.to_string());
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

    pub(super) fn choose(&mut self, node: NodeId, lost_bytes: Option<u64>, _now: Millis) {
        if let Some(record) = self.in_flight_mut() {
            record.elect(node.clone(), lost_bytes);
        }
        self.state.target_primary = Some(node);
        self.state.phase = Phase::Promoting;
    }

    pub(super) fn promote_done(
        &mut self,
        node: &NodeId,
        result: Result<(), CommandError>,
        now: Millis,
    ) {
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
                self.own.confirmed = Some((node.clone(), self.state.epoch));
            }
            _ => {}
        }
    }

    pub(super) fn promoted(&mut self, node: NodeId, now: Millis) {
        let epoch = self.state.epoch;
        self.own.primary_lsn = self
            .last_observation(&node)
            .and_then(Observation::status)
            .and_then(|status| {
                status
                    .current_lsn
                    .or(status.received_lsn)
                    .or(status.replayed_lsn)
            });
        self.state.detail.sync_set.clear();
        self.state.detail.sync_quorum = None;
        self.own.confirmed = Some((node.clone(), epoch));
        self.mark_promoted(node, now);
    }
}

impl Failing<Postgres> for PostgresHa {
    /// Fencing: ask the old primary to stop (never waited on) and, at the same time, detach
    /// every other member from it. The election starts only once the old primary cannot
    /// complete a commit, whatever it can still reach (see `cannot_commit`).
    fn fencing(&mut self, now: Millis, commands: &mut Vec<Command>) {
        let Some(record) = self.in_flight_or_healthy() else {
            return;
        };
        if record.detail.quorum_fenced_at.is_some() {
            self.state.phase = Phase::Electing;
            return;
        }
        let epoch = self.state.epoch;
        let blocked = match self.cannot_commit(&record, now) {
            Ok(how) => {
                if let Some(record) = self.in_flight_mut() {
                    record.detail.quorum_fenced_at = Some(now);
                }
                self.quorum_fenced(record.from.clone(), how, now);
                return;
            }
            Err(reason) => reason,
        };
        {
            self.core.dispatch.emit(
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
            self.core
                .dispatch
                .emit(Command::Detach { node, epoch }, now, commands);
        }
        if record.detail.fence_error.is_none() && !self.answers_as_primary(&record.from) {
            let why = self.core.nodes.get(&record.from).map_or_else(
                || "unknown member".to_owned(),
                <PostgresHa as crate::machine::Probing<Postgres>>::failure_reason,
            );
            let error = format!(
                "{} is not serving ({why}); fencing it through its replicas",
                record.from
            );
            if let Some(record) = self.in_flight_mut() {
                record.detail.fence_error = Some(error.clone());
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
        self.fencing_blocked(record.started_at, blocked, now);
    }

    fn electing(&mut self, now: Millis) {
        let Some(record) = self.in_flight_or_healthy() else {
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
            || record.detail.fallback_since.is_some()
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
            sync_set: &self.state.detail.sync_set,
            primary_lsn: record.detail.primary_lsn,
            fallen_back: record.detail.fallback_since.is_some(),
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
            self.core
                .nodes
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
        self.refuse_failover(reason, now);
    }

    fn promoting(&mut self, now: Millis, commands: &mut Vec<Command>) {
        let Some(target) = self.state.target_primary.clone() else {
            self.state.phase = Phase::Electing;
            return;
        };
        let epoch = self.state.epoch;
        let started = self.in_flight_started();
        // Promoted at this epoch: a former primary restarted at it (fenced, then started again)
        // answers as a primary out of recovery too, but took office at its old epoch and
        // cannot be routed to until it is promoted at the new one.
        let already = self.status_since(&target, started).is_some_and(|status| {
            is_serving_primary(status)
                && status.epoch == epoch
                && status.primary_epoch == Some(epoch)
        });
        if already {
            self.promoted(target, now);
            return;
        }
        self.core.dispatch.emit(
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

    fn routing(&mut self, now: Millis, commands: &mut Vec<Command>) {
        let Some(primary) = self.route_pending(now) else {
            return;
        };
        // Routing waits for the new primary to be able to commit (its synchronous quorum):
        // members that come back meanwhile are brought under it at once.
        self.route_to(&primary, now, commands);
        // Under `preferred` a new primary short of standbys can only be routed once lowered:
        // `/primary` says it cannot commit until then.
        self.keep_durability(&primary, now, commands);
    }
}
