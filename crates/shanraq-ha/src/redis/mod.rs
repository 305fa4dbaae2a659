//! Redis failover and switchover (replication mode) as a sans-IO state machine, shaped like the
//! PostgreSQL engine beside it: `INFO replication` observations go in with the time, commands
//! (`REPLICAOF`, `CLIENT PAUSE`, routing) and events come out, and `RedisHaState` (with its
//! fencing epoch) is what the caller persists. No IO, no clock and no async: the same engine runs
//! under the redis-rs driver (`crate::adapters::redis`), in the local drill and in tests.
//!
//! Redis has no epoch of its own and no instance manager, so the safety rule is enforced
//! through the replicas: every replica is detached from the old master (pointed at an address
//! that refuses, `127.0.0.1:0`, so it keeps its data and its replication id for a partial
//! resync later) before anyone is promoted. With `min-replicas-to-write` rendered, a master
//! without enough attached replicas refuses writes, and a detached replica acknowledges no
//! `WAIT`, so the old master cannot take an acknowledged write once the replicas are detached,
//! whether or not the engine can reach it.

pub mod cluster;
mod command;
mod config;
mod election;
mod engine;
mod failover;
mod info;
mod model;
mod state;
mod switchover;

#[cfg(test)]
mod tests;

pub use crate::dispatch::CommandTarget;
pub use command::{Command, CommandError, CommandResult, Endpoint, Event, EventKind, StepOutput};
pub use config::RedisHaConfig;
pub use election::{Candidate, Elected, LossBound, elect};
pub use engine::{NoSignal, Redis, RedisHa};
pub use info::{InfoError, ReplicaLink, ReplicationInfo, Role, parse_replication_info};
pub use model::{DETACHED_HOST, DETACHED_PORT, Observation, ProbeOutcome, RedisMember};
pub use state::{FailoverKind, FailoverRecord, Phase, RecordDetail, RedisHaState, Suspicion};
pub use switchover::SwitchoverError;

pub use crate::postgres::{Millis, NodeId};
