//! `RedisHa` under the one engine contract (`crate::engine::Engine`): observations are
//! `INFO replication` probes, commands go to redis-server, and a command's outcome carries the
//! node's `INFO replication` right after it.

use std::time::Duration;

use super::{
    Command, CommandResult, Event, Millis, NodeId, Observation, RedisHa, RedisHaState,
    SwitchoverError,
};
use crate::engine::{Decided, Engine};

/// Redis has no signal from outside its probes yet.
#[derive(Debug)]
pub enum NoSignal {}

impl Engine for RedisHa {
    type State = RedisHaState;
    type Observation = Observation;
    type Command = Command;
    type Outcome = CommandResult;
    type Event = Event;
    type Signal = NoSignal;
    type SwitchoverError = SwitchoverError;

    fn state(&self) -> &RedisHaState {
        RedisHa::state(self)
    }

    fn probe_period(&self) -> Duration {
        self.config().probe_period
    }

    fn take_office(&mut self) -> bool {
        RedisHa::take_office(self)
    }

    fn resume_from(&mut self, state: RedisHaState) {
        RedisHa::resume_from(self, state);
    }

    fn observe_round(&mut self, round: Vec<Observation>) {
        RedisHa::observe_round(self, round);
    }

    fn signal(&mut self, signal: NoSignal) {
        match signal {}
    }

    fn step(&mut self, now: Millis) -> Decided<Command, Event> {
        RedisHa::step(self, now)
    }

    fn command_done(&mut self, command: &Command, outcome: CommandResult, now: Millis) {
        RedisHa::command_done(self, command, outcome, now);
    }

    fn request_switchover(
        &mut self,
        target: Option<NodeId>,
        now: Millis,
    ) -> Result<NodeId, SwitchoverError> {
        RedisHa::request_switchover(self, target, now)
    }

    fn switchover_may_wait(error: &SwitchoverError) -> bool {
        matches!(
            error,
            SwitchoverError::NotHealthy { .. }
                | SwitchoverError::MasterNotReady { .. }
                | SwitchoverError::TargetNotReplica { .. }
                | SwitchoverError::NoReplica
        )
    }

    fn switchover_superseded() -> SwitchoverError {
        SwitchoverError::Superseded
    }
}
