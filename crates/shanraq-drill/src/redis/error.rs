//! What can go wrong in a Redis drill, named so that the person running it knows what to fix.

use shanraq_ha::adapters::redis::{RedisClientError, RedisDriverError};
use shanraq_testkit::TestkitError;

#[derive(Debug, thiserror::Error)]
pub enum RedisDrillError {
    #[error("a redis-server process failed")]
    Server(#[from] TestkitError),
    #[error("the Redis HA driver failed")]
    Driver(#[from] RedisDriverError),
    #[error("a Redis node did not answer")]
    Client(#[from] RedisClientError),
    #[error("the rendered redis.conf cannot be produced: {0}")]
    Render(String),
    #[error("{what} did not happen within {seconds} s{detail}")]
    Timeout {
        what: String,
        seconds: u64,
        detail: String,
    },
    #[error("redis node index {index} is not a member (the group has {len})")]
    UnknownNode { index: usize, len: usize },
    #[error("{count} writes acknowledged by WAIT are missing on {node} (first ids: {sample:?})")]
    LostWrites {
        count: usize,
        node: String,
        sample: Vec<u64>,
    },
    #[error("redis node {node}: {message}")]
    Node { node: String, message: String },
    #[error("{command} failed: {output}")]
    Tool { command: String, output: String },
    #[error("cannot read the acknowledged writes back from {node}: {message}")]
    ReadBack { node: String, message: String },
}
