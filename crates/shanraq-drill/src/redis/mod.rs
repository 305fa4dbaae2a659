//! The Redis side of the local drill: a replication group of real redis-server processes
//! started from the rendered redis.conf (on 127.0.0.1, or one network namespace per node in a
//! `NetLab`), driven by the same Redis engine and redis-rs driver as in Kubernetes; writers
//! that `SET` then `WAIT 1` and follow the engine's routing; a watch that tells whether two
//! nodes ever take an acknowledged write at once; and the faults, the benchmark and the demo.

pub mod bench;
pub mod cluster;
pub mod cluster_mode;
pub mod demo;
pub mod error;
pub mod persistence_bench;
pub mod writer;

pub use cluster::{LocalRedis, RedisLab, RedisOptions};
pub use error::RedisDrillError;
pub use writer::{RedisAck, SplitBrainReport, SplitBrainWatch, WaitWriter, WriterReport};
