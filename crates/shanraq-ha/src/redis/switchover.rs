//! Planned switchover without loss: pause writes on the master (`CLIENT PAUSE WRITE`: clients
//! block, nothing is refused), wait until the target has the paused master's offset, then
//! promote it through the same Promoting and Routing phases as a failover; the old master is
//! made its replica and only then unpaused, so the writes that were blocked meet a replica and
//! fail (`READONLY`) instead of landing on the old master. On timeout the old master is
//! unpaused and stays master.

use std::cmp::Reverse;

use super::command::{Command, CommandResult};
use super::engine::{Redis, RedisHa};
use super::info::ReplicationInfo;
use super::model::Observation;
use super::model::RedisMember;
use super::state::{Phase, RecordDetail};
use crate::events::Lifecycle;
use crate::machine::Switching;
use crate::postgres::{Millis, NodeId, duration_ms};

pub use crate::switchover::SwitchoverError;

impl RedisHa {
    pub(super) fn pause_done(&mut self, node: &NodeId, result: &CommandResult, now: Millis) {
        if self.state.phase != Phase::SwitchoverFencing {
            return;
        }
        let Some(record) = self.state.in_flight.as_mut() else {
            return;
        };
        if &record.from != node {
            return;
        }
        // Without the node's answer after the pause there is no offset to wait for: the
        // pause is retried at the next step.
        if let Ok(Some(info)) = result {
            record.detail.master_offset = Some(info.offset);
            record.fenced_at = Some(now);
            record.detail.fenced_how = Some("writes paused".to_owned());
            self.state.phase = Phase::SwitchoverDraining;
        }
    }

    fn abort_switchover(&mut self, reason: String, now: Millis, commands: &mut Vec<Command>) {
        let Some(mut record) = self.state.in_flight.take() else {
            return;
        };
        record.aborted = Some(reason.clone());
        record.to = None;
        let from = record.from.clone();
        self.state.last_failover = Some(record);
        self.state.target_primary = None;
        self.state.phase = Phase::Healthy;
        // The epoch moved on: route again so the router holds the current one.
        self.core.routed = None;
        self.core.dispatch.emit(
            Command::Unpause {
                node: from,
                epoch: self.state.epoch,
            },
            now,
            commands,
        );
        self.event(now, Lifecycle::SwitchoverAborted { reason });
    }
}

impl Switching<Redis> for RedisHa {
    fn switchover_ready(&self, master: &NodeId) -> bool {
        self.is_routed(master) && self.answers_as_master(master)
    }

    /// Replicas streaming from the master, the most advanced first.
    fn switchover_candidates(&self, master: &NodeId, _now: Millis) -> Vec<NodeId> {
        let Some(endpoint) = self.member(master).map(RedisMember::endpoint) else {
            return Vec::new();
        };
        let mut streaming: Vec<(u64, NodeId)> = self
            .others(master)
            .into_iter()
            .filter_map(|node| {
                let info = self.last_observation(&node).and_then(Observation::info)?;
                (info.replicates_from(&endpoint.host, endpoint.port) && info.link_up)
                    .then_some((info.offset, node))
            })
            .collect();
        streaming.sort_by_key(|(offset, node)| Reverse((*offset, Reverse(node.clone()))));
        streaming.into_iter().map(|(_, node)| node).collect()
    }

    fn switchover_detail(&self) -> RecordDetail {
        RecordDetail::default()
    }

    /// The old master stays paused until it follows the new one.
    fn switchover_started(&mut self, from: &NodeId) {
        self.own.pending_unpause = Some(from.clone());
    }

    const WAITS_OUT_FAILOVER: bool = true;

    fn switchover_fencing(&mut self, now: Millis, commands: &mut Vec<Command>) {
        let Some(record) = self.in_flight_or_healthy() else {
            return;
        };
        if now >= record.started_at.plus(self.config.switchover_timeout) {
            self.abort_switchover(
                "writes could not be paused in time".to_owned(),
                now,
                commands,
            );
            return;
        }
        let timeout_ms = duration_ms(self.config.switchover_timeout);
        self.core.dispatch.emit(
            Command::PauseWrites {
                node: record.from,
                timeout_ms,
                epoch: self.state.epoch,
            },
            now,
            commands,
        );
    }

    fn switchover_draining(&mut self, now: Millis, commands: &mut Vec<Command>) {
        let Some(record) = self.in_flight_or_healthy() else {
            return;
        };
        let Some(target) = self.state.target_primary.clone() else {
            self.abort_switchover("no target".to_owned(), now, commands);
            return;
        };
        let paused_at = record.fenced_at.unwrap_or(record.started_at);
        // The master's offset can still move while paused (a write already running when the
        // pause began): take its latest answer.
        let master_offset = self
            .info_since(&record.from, paused_at)
            .filter(|info| info.is_master())
            .map(|info| info.offset)
            .max(record.detail.master_offset)
            .unwrap_or(0);
        let caught_up = self
            .info_since(&target, paused_at)
            .is_some_and(|info: &ReplicationInfo| info.offset >= master_offset && info.link_up);
        if caught_up {
            if let Some(record) = self.state.in_flight.as_mut() {
                record.detail.master_offset = Some(master_offset);
                record.detail.elected_offset = Some(master_offset);
                record.lost_bytes = Some(0);
            }
            self.state.phase = Phase::Promoting;
            return;
        }
        if now >= record.started_at.plus(self.config.switchover_timeout) {
            self.abort_switchover(
                format!("{target} did not reach the master's offset {master_offset} in time"),
                now,
                commands,
            );
        }
    }
}
