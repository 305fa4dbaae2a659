//! Real PostgreSQL, Redis, HAProxy and instance-manager processes on 127.0.0.1 for tests and
//! for the local failover drill. Every process lives in a temp dir and is killed on drop, so a
//! test that panics leaves nothing behind. This crate depends on no other shanraq crate: they
//! all dev-depend on it.

pub mod binaries;
pub mod error;
pub mod haproxy;
pub mod ports;
pub mod postgres;
mod process;
pub mod redis;
pub mod secrets;
pub mod topology;
pub mod user;

pub use error::TestkitError;
pub use haproxy::{HaproxyProcess, check_config};
pub use ports::free_port;
pub use postgres::TempPostgres;
pub use redis::RedisServer;
pub use topology::{HaproxyConfigFn, HaproxyLayout, LocalTopology, MemberInfo, TopologyOptions};
