//! `dataDurability: preferred`: the engine, never the primary alone, lowers the primary's
//! `synchronous_standby_names` when too few standbys stream, and restores it when they are
//! back.
//!
//! Why the engine decides: quorum fencing (`cannot_commit`) proves that an old primary cannot
//! commit once enough of its synchronous set is detached. A primary that lowered its own quorum
//! whenever its standbys went away would do so in a partition too (the standbys detached by a
//! failover look exactly like standbys that died), and then commit next to the new primary.
//! Here the primary is lowered only on a command of the engine that reaches it, and the
//! fallback is in the persisted state (`StateDetail::fallback`) before that command leaves: a
//! failover started while it is set knows it cannot count on the quorum and waits out the old
//! primary's lease instead.

use super::command::{Command, EventKind};
use super::config::{DataDurability, ReplicationMode};
use super::engine::{PostgresHa, is_serving_primary};
use super::model::{Millis, NodeId, duration_ms};
use super::state::Fallback;
use crate::wire::{InstanceStatus, quorum_needed};

/// `synchronous_standby_names` waiting for every standby in `streaming` (`''` for none).
/// Names are quoted: members' names carry dashes.
pub fn lowered_standby_names(streaming: &[NodeId]) -> String {
    if streaming.is_empty() {
        return String::new();
    }
    let names: Vec<String> = streaming
        .iter()
        .map(|node| format!("\"{}\"", node.as_str().replace('"', "\"\"")))
        .collect();
    format!("ANY {} ({})", streaming.len(), names.join(", "))
}

impl PostgresHa {
    /// The fallback in effect, if any (`StateDetail::fallback`).
    pub fn fallback(&self) -> Option<&Fallback> {
        self.state.detail.fallback.as_ref()
    }

    /// The standbys streaming from `status` (a primary's report), members only, sorted.
    fn streaming_standbys(&self, status: &InstanceStatus) -> Vec<NodeId> {
        let mut streaming: Vec<NodeId> = status
            .replication
            .iter()
            .filter(|row| row.state == "streaming")
            .map(|row| NodeId::new(row.application_name.clone()))
            .filter(|node| self.member(node).is_some())
            .collect();
        streaming.sort();
        streaming.dedup();
        streaming
    }

    /// Healthy with the primary confirmed, or Routing to a new primary: keeps its synchronous
    /// setting where `dataDurability` wants it. Acts only on a report the primary itself just
    /// gave: an engine that cannot reach the primary (a partition) never lowers anything.
    pub(super) fn keep_durability(
        &mut self,
        primary: &NodeId,
        now: Millis,
        commands: &mut Vec<Command>,
    ) {
        let ReplicationMode::Synchronous { number } = self.config.replication else {
            // Nothing to fall back from: the failover waits out the lease anyway.
            self.state.detail.fallback = None;
            self.own.shortfall = None;
            return;
        };
        let Some(status) = self
            .last_observation(primary)
            .and_then(|observation| observation.status())
            .filter(|status| is_serving_primary(status))
            .cloned()
        else {
            return;
        };
        let streaming = self.streaming_standbys(&status);
        let enough = u32::try_from(streaming.len()).unwrap_or(u32::MAX) >= number;
        let preferred = self.config.data_durability == DataDurability::Preferred;
        // How long the current count of streaming standbys has held.
        let held = match self.own.shortfall {
            Some((count, since)) if count == streaming.len() => now.since(since),
            _ => {
                self.own.shortfall = Some((streaming.len(), now));
                0
            }
        };
        let patient = held >= duration_ms(self.config.detection_period());
        let in_effect = status.synchronous_standby_names.clone().unwrap_or_default();
        let lowered_without_mark = status.synchronous_standby_names.is_some()
            && quorum_needed(&in_effect).is_none_or(|needed| needed < number.max(1));
        match self.state.detail.fallback.clone() {
            None if preferred && lowered_without_mark => {
                // Only this engine lowers a primary, and it marks the fallback first; a
                // lowered primary without the mark can only be a late command of an earlier
                // incarnation of it. Mark it, so that a failover waits out the lease, and let
                // the next steps restore or keep it.
                self.state.detail.fallback = Some(Fallback {
                    since: now,
                    primary: primary.clone(),
                    standby_names: in_effect,
                    missing: Vec::new(),
                    restoring: false,
                    restored_from: None,
                });
            }
            None if preferred && !enough && patient => {
                self.lower(primary, &streaming, now, commands);
            }
            None => {}
            Some(fallback) if fallback.primary != *primary => {
                // A new primary was promoted with its configured setting: what was lowered
                // was the old one's. The mark stays until the new one shows its quorum.
                self.state.detail.fallback = Some(Fallback {
                    primary: primary.clone(),
                    standby_names: String::new(),
                    restoring: true,
                    restored_from: None,
                    ..fallback
                });
            }
            Some(fallback) if enough || !preferred => {
                self.restore(primary, &status, number, fallback, now, commands);
            }
            Some(fallback) => {
                let wanted = lowered_standby_names(&streaming);
                let stricter = quorum_needed(&wanted) > quorum_needed(&fallback.standby_names);
                if fallback.restoring || wanted != fallback.standby_names {
                    // Waiting for more standbys is always safe; waiting for fewer only once
                    // the shortfall held a detection period.
                    if stricter || patient {
                        self.lower(primary, &streaming, now, commands);
                    }
                } else if status.synchronous_standby_names.as_deref() != Some(wanted.as_str()) {
                    // The command failed, or the instance restarted with another setting.
                    self.command_synchronous(primary, Some(wanted), now, commands);
                }
            }
        }
    }

    /// Records the fallback to the standbys in `streaming` (persisted by the driver before
    /// any command of this step is sent), then commands the primary.
    fn lower(
        &mut self,
        primary: &NodeId,
        streaming: &[NodeId],
        now: Millis,
        commands: &mut Vec<Command>,
    ) {
        let standby_names = lowered_standby_names(streaming);
        let missing: Vec<NodeId> = self
            .others(primary)
            .into_iter()
            .filter(|node| !streaming.contains(node))
            .collect();
        let since = self
            .state
            .detail
            .fallback
            .as_ref()
            .map_or(now, |fallback| fallback.since);
        self.state.detail.fallback = Some(Fallback {
            since,
            primary: primary.clone(),
            standby_names: standby_names.clone(),
            missing: missing.clone(),
            restoring: false,
            restored_from: None,
        });
        self.event(
            now,
            EventKind::SynchronousFallback {
                node: primary.clone(),
                standby_names: standby_names.clone(),
                missing,
            },
        );
        self.command_synchronous(primary, Some(standby_names), now, commands);
    }

    /// Brings the primary back to its configured `ANY number`, and clears the fallback once it
    /// reports that setting with `number` synchronous standbys that flushed every commit made
    /// before it took effect (so the quorum argument holds for all of them again).
    fn restore(
        &mut self,
        primary: &NodeId,
        status: &InstanceStatus,
        number: u32,
        mut fallback: Fallback,
        now: Millis,
        commands: &mut Vec<Command>,
    ) {
        let in_effect = status
            .synchronous_standby_names
            .as_deref()
            .and_then(quorum_needed)
            .is_some_and(|needed| needed >= number.max(1));
        if !in_effect {
            fallback.restoring = true;
            fallback.restored_from = None;
            self.state.detail.fallback = Some(fallback);
            self.command_synchronous(primary, None, now, commands);
            return;
        }
        if !fallback.restoring || fallback.restored_from.is_none() {
            // The first report with `ANY number` in effect (restored by this engine's
            // command, or by a new primary's promotion): commits before this position may
            // lack a quorum.
            fallback.restoring = true;
            fallback.restored_from = status.current_lsn;
            self.state.detail.fallback = Some(fallback.clone());
        }
        let Some(from) = fallback.restored_from else {
            return;
        };
        let mut quorum: Vec<NodeId> = status
            .replication
            .iter()
            .filter(|row| {
                row.state == "streaming"
                    && (row.sync_state == "sync" || row.sync_state == "quorum")
                    && row.flush_lsn.is_some_and(|flushed| flushed >= from)
            })
            .map(|row| NodeId::new(row.application_name.clone()))
            .collect();
        quorum.sort();
        quorum.dedup();
        if u32::try_from(quorum.len()).unwrap_or(u32::MAX) < number.max(1) {
            return;
        }
        self.state.detail.fallback = None;
        self.state.detail.sync_set = quorum;
        self.event(
            now,
            EventKind::SynchronousRestored {
                node: primary.clone(),
            },
        );
    }

    fn command_synchronous(
        &mut self,
        primary: &NodeId,
        standby_names: Option<String>,
        now: Millis,
        commands: &mut Vec<Command>,
    ) {
        let command = Command::Synchronous {
            node: primary.clone(),
            standby_names,
            epoch: self.state.epoch,
        };
        self.core.dispatch.emit(command, now, commands);
    }
}
