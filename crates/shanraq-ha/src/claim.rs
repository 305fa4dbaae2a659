//! The fencing token every engine's persisted state carries (the epoch and the engine that
//! claimed it), and the two ways an engine claims one: the next epoch, for every failover and
//! switchover, and taking office over a state it resumes. Written once so every engine claims
//! by the same rule.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A persisted engine state that carries its fencing token.
pub trait Claimed:
    Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    fn epoch(&self) -> u64;
    fn owner(&self) -> Option<&str>;
    /// Records `epoch` as claimed by `owner`.
    fn set_claim(&mut self, epoch: u64, owner: &str);
    /// The epoch of the failover or switchover in flight, if any: it goes on at a new claim.
    fn in_flight_epoch(&mut self) -> Option<&mut u64>;

    /// Claims the next epoch for `identity`: above the stored one and above `seen`, the highest
    /// any member was seen holding. The driver persists it before any command carries it.
    fn claim_next(&mut self, identity: &str, seen: u64) -> u64 {
        let epoch = self.epoch().max(seen) + 1;
        self.set_claim(epoch, identity);
        epoch
    }

    /// Takes over a resumed state before acting. A state claimed by another engine is claimed
    /// anew with the next epoch (an in-flight failover or switchover goes on at it), so that
    /// from this engine's first command every member refuses the former owner's; a state that
    /// names no owner (written before owners were recorded) is claimed at its epoch; a new
    /// cluster's (epoch 0) is left for its first failover or adoption to claim. True when the
    /// state changed and must be persisted.
    fn take_office(&mut self, identity: &str, seen: u64) -> bool {
        match self.owner() {
            Some(owner) if owner == identity => false,
            Some(_) => {
                let epoch = self.claim_next(identity, seen);
                if let Some(in_flight) = self.in_flight_epoch() {
                    *in_flight = epoch;
                }
                true
            }
            None if self.epoch() == 0 => false,
            None => {
                let epoch = self.epoch();
                self.set_claim(epoch, identity);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::{Millis, NodeId};
    use crate::record::{FailoverRecord, NoDetail};

    /// Every engine's persisted state (`crate::state::HaState`), with nothing of its own.
    type State = crate::state::HaState<NoDetail, NoDetail, NoDetail>;

    fn state(epoch: u64, owner: Option<&str>, in_flight: Option<u64>) -> State {
        State {
            epoch,
            owner: owner.map(str::to_owned),
            in_flight: in_flight.map(|epoch| {
                FailoverRecord::failover::<NoDetail>(
                    epoch,
                    NodeId::new("a"),
                    None,
                    Millis(1),
                    NoDetail {},
                )
            }),
            ..State::default()
        }
    }

    #[test]
    fn the_next_epoch_is_above_the_stored_one_and_every_one_seen() {
        let mut stored = state(3, Some("a"), None);
        assert_eq!(stored.claim_next("b", 0), 4);
        assert_eq!(stored.claim_next("b", 9), 10);
        assert_eq!(stored, state(10, Some("b"), None));
    }

    #[test]
    fn office_over_another_engines_state_is_a_new_epoch_that_the_failover_goes_on_at() {
        let mut stored = state(5, Some("a"), Some(5));
        assert!(stored.take_office("b", 6));
        assert_eq!(stored, state(7, Some("b"), Some(7)));
        assert!(!stored.take_office("b", 0), "already ours");
    }

    #[test]
    fn an_ownerless_state_is_claimed_at_its_epoch_and_a_new_one_is_left_alone() {
        let mut old = state(4, None, None);
        assert!(old.take_office("b", 0));
        assert_eq!(old, state(4, Some("b"), None));
        let mut new = State::default();
        assert!(!new.take_office("b", 0));
        assert_eq!(new, State::default());
    }
}
