//! The contract every sans-IO HA engine implements (PostgreSQL's, Redis's, and whatever comes
//! next), so that one driver loop (`crate::driver`) runs them all: observations and `now` go
//! in, commands and events come out, and a persisted state carries the engine's fencing token.
//! An engine does no IO and reads no clock; its adapter (`crate::driver::Adapter`) probes the
//! members and executes the commands.

use std::time::Duration;

use crate::driver::state_store::Claimed;
use crate::postgres::{Millis, NodeId};

/// How much a person should hear of something an engine decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Importance {
    /// A timeline step: the logs and the drill's timeline, not an Event.
    Log,
    /// A Normal Event (a failover completed, a primary adopted).
    Normal,
    /// A Warning Event (a primary suspected, a failover refused, a conflict).
    Warning,
}

/// Something an engine decided that is worth telling a person (an Event in Kubernetes, a line
/// of the drill's timeline).
pub trait Notable {
    /// A stable CamelCase reason.
    fn reason(&self) -> String;
    /// A one-line message.
    fn message(&self) -> String;
    /// Whether it deserves an Event, and of which type: decided by the engine that knows what
    /// each of its events means.
    fn importance(&self) -> Importance;
}

/// What one `step` decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decided<C, V> {
    pub commands: Vec<C>,
    pub events: Vec<V>,
}

/// One HA engine.
pub trait Engine: Send + 'static {
    /// What is persisted; carries the fencing token (epoch and owner).
    type State: Claimed + std::fmt::Debug;
    /// One probe of one member.
    type Observation: Send + 'static;
    /// What the adapter is asked to do; each carries the epoch it was decided at.
    type Command: Clone + PartialEq + std::fmt::Debug + std::fmt::Display + Send + Sync + 'static;
    /// How a command ended, as the adapter reports it.
    type Outcome: Outcome + Send + 'static;
    type Event: Notable + Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static;
    /// A hint from outside the probes (PostgreSQL: its pods' watch).
    type Signal: Send + std::fmt::Debug + 'static;
    type SwitchoverError: std::error::Error + Send + Sync + 'static;

    /// The state to persist.
    fn state(&self) -> &Self::State;
    /// How often the members are probed.
    fn probe_period(&self) -> Duration;

    /// Takes over the state this engine resumes, before it acts: true when the claim changed
    /// and must be persisted (see `postgres::PostgresHa::take_office`).
    fn take_office(&mut self) -> bool;
    /// Replaces the state with one read back from the store (written under this engine's own
    /// identity by another writer).
    fn resume_from(&mut self, state: Self::State);
    /// A member was seen holding a newer claim than the engine's: (epoch, owner), once. Members
    /// that hold no epoch (Redis) show a newer claim only in the store.
    fn take_newer_claim(&mut self) -> Option<(u64, Option<String>)> {
        None
    }

    /// Feeds one probe round (every member probed at once).
    fn observe_round(&mut self, round: Vec<Self::Observation>);
    fn signal(&mut self, signal: Self::Signal);
    /// Decides what to do at `now`.
    fn step(&mut self, now: Millis) -> Decided<Self::Command, Self::Event>;
    /// Reports how a command ended.
    fn command_done(&mut self, command: &Self::Command, outcome: Self::Outcome, now: Millis);

    /// Starts a planned switchover to `target` (the best replica when `None`).
    fn request_switchover(
        &mut self,
        target: Option<NodeId>,
        now: Millis,
    ) -> Result<NodeId, Self::SwitchoverError>;
    /// Whether a refused switchover may be taken a little later (just after a start or a
    /// failover, before the primary confirmed its epoch): the driver retries it until its
    /// deadline.
    fn switchover_may_wait(error: &Self::SwitchoverError) -> bool;
    /// The answer to a switchover request replaced by a newer one.
    fn switchover_superseded() -> Self::SwitchoverError;
}

/// How a command ended, as an adapter reports it: every engine's outcome says what went wrong,
/// and one can be made for a command that was never sent.
pub trait Outcome {
    /// The outcome of a command that was never sent (its state could not be persisted).
    fn not_executed(reason: String) -> Self;
    /// What went wrong, when the outcome is a failure.
    fn failure(&self) -> Option<String>;
}

/// An outcome that is a result: a failure is its error.
impl<T> Outcome for Result<T, CommandError> {
    fn not_executed(reason: String) -> Self {
        Err(CommandError::NotExecuted(reason))
    }

    fn failure(&self) -> Option<String> {
        self.as_ref().err().map(ToString::to_string)
    }
}

/// Why an executed command did not succeed, as reported back through `command_done` (every
/// engine's; `StaleEpoch` only from members that check the token themselves).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The instance refused the command's token (HTTP 409): it holds a higher epoch, or the
    /// same epoch claimed by another engine. Someone newer acted.
    #[error(
        "instance refused the command: it holds epoch {instance_epoch}{}",
        holder.as_deref().map(|h| format!(" claimed by {h}")).unwrap_or_default()
    )]
    StaleEpoch {
        instance_epoch: u64,
        holder: Option<String>,
    },
    /// The command was not run (for example the state could not be persisted first).
    #[error("command not executed: {0}")]
    NotExecuted(String),
    /// It ran and failed, or no answer came in time.
    #[error("{0}")]
    Failed(String),
}
