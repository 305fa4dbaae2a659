//! The Redis engine's edge: a redis-rs client per node (`INFO replication`, `REPLICAOF`,
//! `CLIENT PAUSE`) and the async driver that probes every node each probe period, feeds the
//! engine and executes its commands. `RedisHaState` is persisted by the generic
//! `driver::state_store`.

pub mod client;
pub mod cluster_rpo;
pub mod driver;

pub use client::{NodeClient, RedisClientError, RedisPassword};
pub use cluster_rpo::sample_cluster_rpo;
pub use driver::{
    RedisAdapter, RedisDriver, RedisDriverConfig, RedisDriverError, RedisDriverEvent,
    RedisDriverHandle, RedisRouter, start,
};
