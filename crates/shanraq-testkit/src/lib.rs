//! Real PostgreSQL, Redis, HAProxy, Kafka and instance-manager processes on 127.0.0.1 (or in network
//! namespaces of a `NetLab`, for real partitions) for tests and for the local failover drill. Every process lives in a temp dir and is killed on drop, so a
//! test that panics leaves nothing behind. This crate depends on no other shanraq crate: they
//! all dev-depend on it.

pub mod binaries;
mod delay;
pub mod error;
pub mod haproxy;
pub mod instance;
pub mod kafka;
pub mod lua;
pub mod netns;
pub mod pause;
pub mod podnet;
pub mod ports;
pub mod postgres;
mod process;
pub mod redis;
pub mod s3;
pub mod secrets;
pub mod topology;
pub mod user;

pub use error::TestkitError;
pub use haproxy::{HaproxyProcess, check_config};
pub use instance::InstanceProcess;
pub use kafka::{KafkaCluster, KafkaOptions, KafkaRole, MetricsAgent};
pub use netns::NetLab;
pub use pause::PausableRuntime;
pub use podnet::PodNetwork;
pub use ports::free_port;
pub use postgres::TempPostgres;
pub use redis::RedisServer;
pub use s3::{S3Listen, S3Server};
pub use topology::{
    HaproxyConfigFn, HaproxyLayout, LocalTopology, MemberInfo, Network, TopologyOptions,
};
