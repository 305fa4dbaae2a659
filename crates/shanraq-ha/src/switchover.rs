//! A planned switchover's request, written once for every engine: the checks that refuse it
//! (with the one error type every engine answers with), the choice of the target, and the
//! record it starts. What a switchover then does (PostgreSQL: a clean shutdown, Redis: a write
//! pause) is each product's `Switching`.

use crate::events::Lifecycle;
use crate::machine::{Ha, Phases, Product, Switching};
use crate::postgres::{Millis, NodeId};
use crate::record::FailoverRecord;
use crate::state::Phase;

/// Why a switchover request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SwitchoverError {
    #[error("switchover refused: the cluster is in phase {phase}, not Healthy")]
    NotHealthy { phase: Phase },
    #[error("switchover refused: no primary is designated")]
    NoPrimary,
    #[error(
        "switchover refused: primary {primary} has not confirmed epoch {epoch}, is not routed or is not answering yet"
    )]
    PrimaryNotReady { primary: NodeId, epoch: u64 },
    #[error("switchover refused: {target} is not a member of the cluster")]
    UnknownMember { target: NodeId },
    #[error("switchover refused: {target} is already the primary")]
    TargetIsPrimary { target: NodeId },
    #[error(
        "switchover refused: target {target} is not a running, streaming replica seen recently"
    )]
    TargetNotReplica { target: NodeId },
    #[error("switchover refused: no running, streaming replica was seen recently")]
    NoReplica,
    #[error("switchover request replaced by a newer one")]
    Superseded,
}

impl SwitchoverError {
    /// Whether the request may be taken a little later: right after a start or a failover the
    /// engine may not have seen the primary confirm its epoch, nor a replica stream, yet.
    /// `while_unhealthy`: whether a failover in flight is waited out too.
    pub fn may_wait(&self, while_unhealthy: bool) -> bool {
        match self {
            SwitchoverError::PrimaryNotReady { .. }
            | SwitchoverError::TargetNotReplica { .. }
            | SwitchoverError::NoReplica => true,
            SwitchoverError::NotHealthy { .. } => while_unhealthy,
            _ => false,
        }
    }
}

impl<P: Product> Ha<P>
where
    Ha<P>: Phases<P>,
{
    /// Starts a planned switchover to `target`, or to the best replica the product ranks first.
    /// Returns the chosen target. Commands follow from the next `step`.
    pub fn request_switchover(
        &mut self,
        target: Option<NodeId>,
        now: Millis,
    ) -> Result<NodeId, SwitchoverError> {
        if self.state.phase != Phase::Healthy {
            return Err(SwitchoverError::NotHealthy {
                phase: self.state.phase,
            });
        }
        let primary = self
            .state
            .current_primary
            .clone()
            .ok_or(SwitchoverError::NoPrimary)?;
        if !self.switchover_ready(&primary) {
            return Err(SwitchoverError::PrimaryNotReady {
                primary,
                epoch: self.state.epoch,
            });
        }
        let candidates = self.switchover_candidates(&primary, now);
        let chosen = match target {
            Some(target) if self.member(&target).is_none() => {
                return Err(SwitchoverError::UnknownMember { target });
            }
            Some(target) if target == primary => {
                return Err(SwitchoverError::TargetIsPrimary { target });
            }
            Some(target) if !candidates.contains(&target) => {
                return Err(SwitchoverError::TargetNotReplica { target });
            }
            Some(target) => target,
            None => candidates
                .into_iter()
                .next()
                .ok_or(SwitchoverError::NoReplica)?,
        };
        self.claim_next_epoch();
        let detail = self.switchover_detail();
        self.state.in_flight = Some(FailoverRecord::switchover(
            self.state.epoch,
            primary.clone(),
            chosen.clone(),
            now,
            detail,
        ));
        self.state.target_primary = Some(chosen.clone());
        self.state.phase = Phase::SwitchoverFencing;
        self.switchover_started(&primary);
        self.event(
            now,
            Lifecycle::SwitchoverStarted {
                from: primary,
                to: chosen.clone(),
            },
        );
        Ok(chosen)
    }
}
