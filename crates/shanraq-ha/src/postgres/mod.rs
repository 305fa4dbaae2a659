//! PostgreSQL failover and switchover as a sans-IO state machine: probe observations and pod
//! signals go in with the time, commands and events come out, and `HaState` is what the caller
//! persists. No IO, no clock and no async here: the same engine runs under the local driver
//! (`crate::adapters::driver`), under the Kubernetes controller, and in table-driven tests.

pub mod backup_source;
mod command;
mod config;
mod contract;
mod durability;
mod election;
mod engine;
mod failover;
mod model;
mod state;
mod steady;
mod switchover;

#[cfg(test)]
mod tests;

pub use crate::dispatch::CommandTarget;
pub use crate::machine::{Failing, Probing, Steady, Switching};
pub use command::{Command, CommandError, Event, EventKind, StepOutput};
pub use config::{DataDurability, PostgresHaConfig, ReplicationMode};
pub use contract::Outcome;
pub use durability::lowered_standby_names;
pub use election::{Candidate, Elected, ElectionRules, elect};
pub use engine::{DEFAULT_IDENTITY, Postgres, PostgresHa};
pub use model::{Member, Millis, NodeId, Observation, PodSignal, ProbeOutcome, duration_ms};
pub use state::{
    FailoverKind, FailoverRecord, Fallback, HaState, Phase, RecordDetail, Suspicion,
    SuspicionDetail,
};
pub use switchover::SwitchoverError;
