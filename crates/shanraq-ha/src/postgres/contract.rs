//! `PostgresHa` under the one engine contract (`crate::engine::Engine`), so that the generic
//! driver runs it: observations are `/status` probes, commands go to instance managers, and a
//! command's outcome carries the status the instance answered with.

use std::time::Duration;

use super::{
    Command, CommandError, Event, HaState, Millis, NodeId, Observation, PodSignal, PostgresHa,
    ProbeOutcome, SwitchoverError,
};
use crate::engine::{Decided, Engine};
use crate::wire::InstanceStatus;

/// How one command to an instance manager ended, with the status it answered with.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub result: Result<(), CommandError>,
    pub status: Option<InstanceStatus>,
}

impl crate::engine::Outcome for Outcome {
    fn not_executed(reason: String) -> Outcome {
        Outcome {
            result: Err(CommandError::NotExecuted(reason)),
            status: None,
        }
    }

    fn failure(&self) -> Option<String> {
        self.result.failure()
    }
}

impl Engine for PostgresHa {
    type State = HaState;
    type Observation = Observation;
    type Command = Command;
    type Outcome = Outcome;
    type Event = Event;
    type Signal = PodSignal;
    type SwitchoverError = SwitchoverError;

    fn state(&self) -> &HaState {
        PostgresHa::state(self)
    }

    fn probe_period(&self) -> Duration {
        self.config().probe_period
    }

    fn take_office(&mut self) -> bool {
        PostgresHa::take_office(self)
    }

    fn resume_from(&mut self, state: HaState) {
        PostgresHa::resume_from(self, state);
    }

    fn take_newer_claim(&mut self) -> Option<(u64, Option<String>)> {
        PostgresHa::take_newer_claim(self)
    }

    fn observe_round(&mut self, round: Vec<Observation>) {
        PostgresHa::observe_round(self, round);
    }

    fn signal(&mut self, signal: PodSignal) {
        self.observe_pod(signal);
    }

    fn step(&mut self, now: Millis) -> Decided<Command, Event> {
        PostgresHa::step(self, now)
    }

    fn command_done(&mut self, command: &Command, outcome: Outcome, now: Millis) {
        PostgresHa::command_done(self, command, outcome.result, now);
        if let Some(status) = outcome.status {
            self.observe(Observation {
                node: command.node().clone(),
                at: now,
                outcome: ProbeOutcome::Reachable(status),
            });
        }
    }

    fn request_switchover(
        &mut self,
        target: Option<NodeId>,
        now: Millis,
    ) -> Result<NodeId, SwitchoverError> {
        PostgresHa::request_switchover(self, target, now)
    }

    /// Right after a start or a failover the engine may not have seen the primary confirm its
    /// epoch, nor a replica stream, yet.
    fn switchover_may_wait(error: &SwitchoverError) -> bool {
        matches!(
            error,
            SwitchoverError::PrimaryNotConfirmed { .. }
                | SwitchoverError::TargetNotReplica { .. }
                | SwitchoverError::NoReplica
        )
    }

    fn switchover_superseded() -> SwitchoverError {
        SwitchoverError::Superseded
    }
}
