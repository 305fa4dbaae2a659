//! The PostgreSQL engine's bootstrap and steady state: adopting or bootstrapping a primary,
//! detecting that it fails (and starting the failover), bringing every other member under it,
//! rewinding diverged replicas, and fencing an instance that claims the primary role without
//! the designation.

use super::command::{Command, EventKind};
use super::engine::{Postgres, PostgresHa, REJOIN_GRACE_MS, is_serving_primary};
use super::model::{Member, Millis, NodeId, Observation};
use super::state::Phase;
use crate::events::Lifecycle;
use crate::machine::Steady;
use crate::wire::{InstanceRole, InstanceStatus};

impl PostgresHa {
    /// Sends writes to `primary` (unless they already go there) and brings every other member
    /// under it.
    pub(super) fn route_to(&mut self, primary: &NodeId, now: Millis, commands: &mut Vec<Command>) {
        if !self.is_routed(primary) {
            let route = Command::Route {
                primary: primary.clone(),
                epoch: self.state.epoch,
            };
            self.core.dispatch.emit(route, now, commands);
        }
        self.bring_under(primary, None, true, now, commands);
    }

    /// Points every other member at `leader`: replicas of an older epoch, or detached by a
    /// failover, are re-pointed. With `settle`, fenced members are demoted (rewound when they
    /// diverged) and a replica stuck on an older timeline is rewound too.
    pub(super) fn bring_under(
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
                    if self.core.dispatch.emit(demote, now, commands) {
                        self.event(now, EventKind::Diverged { node });
                    }
                    continue;
                }
                _ => continue,
            };
            self.core.dispatch.emit(command, now, commands);
        }
    }

    /// A replica that stays without streaming on an older timeline than the primary's, for
    /// longer than the grace after its last command: it received WAL the new primary never
    /// had (it streamed from the old primary past the fork) and cannot follow until rewound.
    pub(super) fn diverged(
        &self,
        node: &NodeId,
        status: &InstanceStatus,
        leader_timeline: Option<u32>,
        now: Millis,
    ) -> bool {
        let (Some(leader), Some(own)) = (leader_timeline, status.timeline) else {
            return false;
        };
        let Some(view) = self.core.nodes.get(node) else {
            return false;
        };
        let quiet_since = view.extra.not_streaming_since.max(view.last_done_at);
        own < leader
            && status.running
            && status.streaming == Some(false)
            && view.extra.not_streaming_since.is_some()
            && quiet_since.is_some_and(|since| now.since(since) >= REJOIN_GRACE_MS)
    }
}

impl Steady<Postgres> for PostgresHa {
    fn bootstrapping(&mut self, now: Millis) {
        if self.state.current_primary.is_some() {
            self.state.phase = Phase::Healthy;
            return;
        }
        let claims: Vec<(&NodeId, u64)> = self
            .core
            .nodes
            .iter()
            .filter(|(_, view)| !view.extra.pod_deleted)
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
        self.state.detail.sync_set.clear();
        self.state.detail.sync_quorum = None;
        if let Some(status) = self
            .last_observation(&adopted)
            .and_then(Observation::status)
        {
            self.own.primary_lsn = status.current_lsn;
        }
        self.event(now, Lifecycle::Adopted { node: adopted });
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
                    self.own.confirmed = Some((primary.clone(), epoch));
                }
                InstanceRole::Primary | InstanceRole::Fenced if status.epoch > epoch => {
                    if self.core.reported.insert((primary.clone(), status.epoch)) {
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
                    self.core.dispatch.emit(
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
        if self.own.confirmed.as_ref() != Some(&(primary.clone(), epoch)) {
            return;
        }
        self.route_to(&primary, now, commands);
        self.keep_durability(&primary, now, commands);
    }

    /// Any phase: an instance that claims the primary role without the designation is fenced
    /// at once, and reported once.
    fn after_step(&mut self, now: Millis, commands: &mut Vec<Command>) {
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
            .core
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
                if self.core.reported.insert((node.clone(), instance_epoch)) {
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
            if self.core.dispatch.emit(
                Command::Fence {
                    node: node.clone(),
                    epoch,
                },
                now,
                commands,
            ) && self.core.reported.insert((node.clone(), instance_epoch))
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
}
