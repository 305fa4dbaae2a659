//! Who may become primary after an unplanned failure. Pure: the engine passes the reachable
//! replicas it saw after the old primary stopped, and gets a winner or the reason it must not
//! promote anyone (shown to users as RPOMet=False).
//!
//! Synchronous mode follows quorum reasoning (as CloudNativePG's quorum failover): with
//! `ANY n` over a synchronous set of S standbys every acknowledged commit is on at least n of
//! them, so any S - n + 1 of them include one that has it; the most advanced of those has every
//! acknowledged commit. With fewer reachable, refusing is the only way to never lose one.

use std::cmp::Reverse;

use super::config::ReplicationMode;
use super::model::NodeId;
use crate::wire::{InstanceStatus, Lsn};

/// A reachable replica as seen after the failure.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    pub node: &'a NodeId,
    pub status: &'a InstanceStatus,
}

impl Candidate<'_> {
    /// The WAL the replica has on disk (received), falling back to what it replayed when the
    /// WAL receiver is not running.
    pub fn received(&self) -> Lsn {
        self.status
            .received_lsn
            .or(self.status.replayed_lsn)
            .unwrap_or_default()
    }

    pub fn replayed(&self) -> Lsn {
        self.status.replayed_lsn.unwrap_or_default()
    }

    fn rank(&self) -> (Lsn, Lsn, Reverse<&NodeId>) {
        (self.received(), self.replayed(), Reverse(self.node))
    }
}

/// The election's winner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elected {
    pub node: NodeId,
    pub received: Lsn,
    /// WAL bytes the winner never received, when the old primary's position is known.
    pub lost_bytes: Option<u64>,
}

/// The rules an election applies.
#[derive(Clone, Copy, Debug)]
pub struct ElectionRules<'a> {
    pub replication: ReplicationMode,
    pub maximum_lag_on_failover: u64,
    /// The last known synchronous set of the failed primary.
    pub sync_set: &'a [NodeId],
    /// The failed primary's last reported current LSN.
    pub primary_lsn: Option<Lsn>,
    /// The failover started while `dataDurability: preferred` had fallen back: no replica is
    /// known to hold every acknowledged commit, and refusing would stop writes for good, which
    /// is what `preferred` asked to avoid. The most advanced replica wins, and the loss is left
    /// unknown (the old primary may have committed past its last report).
    pub fallen_back: bool,
}

/// The most advanced of `candidates` (highest received LSN, then replayed LSN, then the
/// smallest name), if the rules allow promoting it without losing acknowledged data; otherwise
/// the reason why not.
pub fn elect(rules: &ElectionRules<'_>, candidates: &[Candidate<'_>]) -> Result<Elected, String> {
    if candidates.is_empty() {
        return Err("no replica is reachable".to_owned());
    }
    if rules.fallen_back {
        let winner =
            most_advanced(candidates.iter()).ok_or_else(|| "no replica is reachable".to_owned())?;
        return Ok(Elected {
            node: winner.node.clone(),
            received: winner.received(),
            lost_bytes: None,
        });
    }
    let winner = match rules.replication {
        ReplicationMode::Synchronous { number } => elect_synchronous(rules, number, candidates)?,
        ReplicationMode::Asynchronous => elect_asynchronous(rules, candidates)?,
    };
    Ok(Elected {
        node: winner.node.clone(),
        received: winner.received(),
        lost_bytes: rules
            .primary_lsn
            .map(|primary| winner.received().bytes_until(primary)),
    })
}

fn most_advanced<'a, 'b>(
    candidates: impl Iterator<Item = &'b Candidate<'a>>,
) -> Option<&'b Candidate<'a>> {
    candidates.max_by(|a, b| a.rank().cmp(&b.rank()))
}

fn elect_synchronous<'a, 'b>(
    rules: &ElectionRules<'_>,
    number: u32,
    candidates: &'b [Candidate<'a>],
) -> Result<&'b Candidate<'a>, String> {
    if rules.sync_set.is_empty() {
        return Err("no synchronous standby of the failed primary is known (none reported streaming as sync or \
                    quorum), so no replica is proven to hold every acknowledged commit"
            .to_owned());
    }
    let set_size = rules.sync_set.len();
    let number = usize::try_from(number).unwrap_or(usize::MAX).max(1);
    let required = set_size.saturating_sub(number) + 1;
    let reachable: Vec<&Candidate<'a>> = candidates
        .iter()
        .filter(|candidate| rules.sync_set.contains(candidate.node))
        .collect();
    if reachable.len() < required {
        let reachable_names: Vec<&str> = reachable.iter().map(|c| c.node.as_str()).collect();
        let set_names: Vec<&str> = rules.sync_set.iter().map(NodeId::as_str).collect();
        return Err(format!(
            "only {} of the synchronous set [{}] reachable ([{}]); ANY {number} needs {required} to be sure the \
             winner has every acknowledged commit",
            reachable.len(),
            set_names.join(", "),
            reachable_names.join(", "),
        ));
    }
    most_advanced(reachable.into_iter())
        .ok_or_else(|| "no synchronous standby is reachable".to_owned())
}

fn elect_asynchronous<'a, 'b>(
    rules: &ElectionRules<'_>,
    candidates: &'b [Candidate<'a>],
) -> Result<&'b Candidate<'a>, String> {
    let winner =
        most_advanced(candidates.iter()).ok_or_else(|| "no replica is reachable".to_owned())?;
    let Some(primary_lsn) = rules.primary_lsn else {
        return Err(format!(
            "the failed primary's last WAL position is unknown, so the loss of promoting {} cannot be bounded",
            winner.node
        ));
    };
    let lag = winner.received().bytes_until(primary_lsn);
    if lag > rules.maximum_lag_on_failover {
        return Err(format!(
            "the most advanced replica {} is {lag} bytes behind the failed primary ({} < {primary_lsn}), over \
             maximumLagOnFailover {} bytes",
            winner.node,
            winner.received(),
            rules.maximum_lag_on_failover
        ));
    }
    Ok(winner)
}
