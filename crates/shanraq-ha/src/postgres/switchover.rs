//! Planned switchover without loss: fence the old primary (clean shutdown, it reports its final
//! LSN), wait until the target replayed that LSN, then promote through the same Promoting and
//! Routing phases as a failover. On timeout or a failed fence the old primary is promoted back
//! with the new epoch, so the switchover never leaves the cluster without a primary.

use crate::events::Lifecycle;
use crate::machine::Switching;
use std::cmp::Reverse;

use super::command::{Command, EventKind};
use super::engine::{Postgres, PostgresHa, is_serving_primary};
use super::model::{Millis, NodeId};
use super::state::{FailoverRecord, Phase, RecordDetail};
use crate::wire::{InstanceRole, InstanceStatus};

pub use crate::switchover::SwitchoverError;

impl PostgresHa {
    /// Aborts when the switchover ran past its timeout; true when it did.
    fn switchover_timed_out(&mut self, record: &FailoverRecord, now: Millis) -> bool {
        if now < record.started_at.plus(self.config.switchover_timeout) {
            return false;
        }
        let target = record
            .to
            .as_ref()
            .map_or_else(|| "the target".to_owned(), ToString::to_string);
        let reason = match (record.fenced_at, record.detail.final_lsn) {
            (None, _) => format!(
                "{} did not stop within {:?}",
                record.from, self.config.switchover_timeout
            ),
            (Some(_), None) => format!(
                "{} did not report its final LSN within {:?}",
                record.from, self.config.switchover_timeout
            ),
            (Some(_), Some(lsn)) => {
                format!(
                    "{target} did not replay {lsn} within {:?}",
                    self.config.switchover_timeout
                )
            }
        };
        self.abort_switchover(reason, now);
        true
    }

    /// Resumes the old primary with the new epoch; the switchover's target stays a replica.
    fn abort_switchover(&mut self, reason: String, now: Millis) {
        let Some(record) = self.state.in_flight.as_mut() else {
            return;
        };
        record.aborted = Some(reason.clone());
        record.to = Some(record.from.clone());
        record.lost_bytes = Some(0);
        self.state.target_primary = Some(record.from.clone());
        self.state.phase = Phase::Promoting;
        self.event(now, Lifecycle::SwitchoverAborted { reason });
    }
}

fn is_switchover_target(status: &InstanceStatus) -> bool {
    status.role == InstanceRole::Replica
        && status.running
        && !status.fenced
        && status.streaming != Some(false)
}

impl Switching<Postgres> for PostgresHa {
    fn switchover_ready(&self, primary: &NodeId) -> bool {
        self.own.confirmed.as_ref() == Some(&(primary.clone(), self.state.epoch))
            && self.is_alive_primary(primary)
    }

    /// Running, streaming replicas seen recently: synchronous standbys first, then the most
    /// advanced.
    fn switchover_candidates(&self, primary: &NodeId, now: Millis) -> Vec<NodeId> {
        let recent = Millis(
            now.0
                .saturating_sub(3 * super::model::duration_ms(self.config.probe_period)),
        );
        let mut replicas: Vec<(&NodeId, &InstanceStatus)> = self
            .members
            .iter()
            .map(|member| &member.name)
            .filter(|node| *node != primary)
            .filter_map(|node| Some((node, self.status_since(node, recent)?)))
            .filter(|(_, status)| is_switchover_target(status))
            .collect();
        replicas.sort_by_key(|(node, status)| {
            Reverse((
                self.state.detail.sync_set.contains(node),
                status
                    .received_lsn
                    .or(status.replayed_lsn)
                    .unwrap_or_default(),
                status.replayed_lsn.unwrap_or_default(),
                Reverse(*node),
            ))
        });
        replicas.into_iter().map(|(node, _)| node.clone()).collect()
    }

    fn switchover_detail(&self) -> RecordDetail {
        RecordDetail {
            primary_lsn: self.own.primary_lsn,
            ..RecordDetail::default()
        }
    }

    fn switchover_fencing(&mut self, now: Millis, commands: &mut Vec<Command>) {
        let Some(record) = self.in_flight_or_healthy() else {
            return;
        };
        if record.fenced_at.is_some() {
            self.state.phase = Phase::SwitchoverDraining;
            return;
        }
        if let Some(error) = &record.detail.fence_error {
            self.abort_switchover(format!("fencing {} failed: {error}", record.from), now);
            return;
        }
        if self.switchover_timed_out(&record, now) {
            return;
        }
        // A restarted engine may have lost the fence's answer: the instance's own report of the
        // new epoch, fenced, is as good.
        let fenced = self
            .status_since(&record.from, record.started_at)
            .is_some_and(|status| {
                status.fenced && !status.running && status.epoch == self.state.epoch
            });
        if fenced {
            if let Some(record) = self.state.in_flight.as_mut() {
                record.fenced_at = Some(now);
            }
            self.event(
                now,
                EventKind::Fenced {
                    node: record.from,
                    error: None,
                },
            );
            self.state.phase = Phase::SwitchoverDraining;
            return;
        }
        self.core.dispatch.emit(
            Command::Fence {
                node: record.from,
                epoch: self.state.epoch,
            },
            now,
            commands,
        );
    }

    fn switchover_draining(&mut self, now: Millis, _commands: &mut Vec<Command>) {
        let Some(record) = self.in_flight_or_healthy() else {
            return;
        };
        if self.switchover_timed_out(&record, now) {
            return;
        }
        let (Some(target), Some(fenced_at)) = (record.to.clone(), record.fenced_at) else {
            self.abort_switchover("switchover record lost its target".to_owned(), now);
            return;
        };
        let final_lsn = match record.detail.final_lsn {
            Some(lsn) => lsn,
            None => {
                let reported = self
                    .status_since(&record.from, fenced_at)
                    .and_then(|status| {
                        (!status.running && !is_serving_primary(status))
                            .then_some(status.final_lsn)
                            .flatten()
                    });
                let Some(lsn) = reported else {
                    return;
                };
                if let Some(record) = self.state.in_flight.as_mut() {
                    record.detail.final_lsn = Some(lsn);
                }
                lsn
            }
        };
        let caught_up = self.status_since(&target, fenced_at).is_some_and(|status| {
            status.role == InstanceRole::Replica
                && status
                    .replayed_lsn
                    .is_some_and(|replayed| replayed >= final_lsn)
        });
        if caught_up {
            if let Some(record) = self.state.in_flight.as_mut() {
                record.lost_bytes = Some(0);
            }
            self.state.target_primary = Some(target);
            self.state.phase = Phase::Promoting;
        }
    }
}
