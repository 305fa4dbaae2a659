//! The Redis engine's edge: a redis-rs client per node (`INFO replication`, `REPLICAOF`,
//! `CLIENT PAUSE`), the store that persists `RedisHaState`, and the async driver that probes
//! every node each probe period, feeds the engine and executes its commands.

pub mod client;
pub mod driver;
pub mod store;

pub use client::{NodeClient, RedisClientError, RedisPassword};
pub use driver::{
    RedisDriver, RedisDriverConfig, RedisDriverError, RedisDriverEvent, RedisDriverHandle,
    RedisRouter,
};
pub use store::{FileRedisStateStore, MemoryRedisStateStore, RedisStateStore};
