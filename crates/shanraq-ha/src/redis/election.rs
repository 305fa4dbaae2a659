//! Who may become master after an unplanned failure. Pure: the engine passes the detached
//! replicas with their final offsets, and gets the winner or the reason nobody may be promoted
//! (shown to users as an Event, the RPOMet condition and RedisReady).
//!
//! All replicas stream from one master, so offsets are positions in one history: the replica
//! with the highest offset holds everything any replica acknowledged, and a write acknowledged
//! by `WAIT 1` is on at least one replica. The winner therefore loses no acknowledged write
//! when every replica was detached; the loss bound caps what it may lose of the rest.

use std::cmp::Reverse;

use crate::postgres::NodeId;

/// A detached replica and where it stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub node: NodeId,
    pub offset: u64,
    /// Seconds since its last acknowledgement, as the old master last reported it.
    pub lag_seconds: Option<u64>,
}

/// The most a promotion may lose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LossBound {
    pub max_lag_bytes: u64,
    pub max_lag_seconds: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elected {
    pub node: NodeId,
    pub offset: u64,
    /// Offset bytes behind the old master's last report, when it is known.
    pub lost_bytes: Option<u64>,
}

/// The candidate with the highest offset (ties: the smallest name), if its lag is within
/// `bound` against the old master's last reported offset; otherwise why not.
pub fn elect(
    candidates: &[Candidate],
    master_offset: Option<u64>,
    bound: LossBound,
) -> Result<Elected, String> {
    let winner = candidates
        .iter()
        .max_by_key(|candidate| (candidate.offset, Reverse(&candidate.node)))
        .ok_or_else(|| "no detached replica is reachable".to_owned())?;
    let lost_bytes = master_offset.map(|master| master.saturating_sub(winner.offset));
    if let Some(lost) = lost_bytes
        && lost > bound.max_lag_bytes
    {
        return Err(format!(
            "the most advanced replica {} is {lost} bytes behind the old master (offset {} < {}), over the \
             loss bound of {} bytes",
            winner.node,
            winner.offset,
            master_offset.unwrap_or_default(),
            bound.max_lag_bytes
        ));
    }
    if let Some(lag) = winner.lag_seconds
        && lag > bound.max_lag_seconds
    {
        return Err(format!(
            "the most advanced replica {} had not acknowledged for {lag} s when the old master last answered, \
             over the loss bound of {} s",
            winner.node, bound.max_lag_seconds
        ));
    }
    Ok(Elected {
        node: winner.node.clone(),
        offset: winner.offset,
        lost_bytes,
    })
}
