//! Engine tests: `INFO replication` parsing on captured replies, and table-driven failover and
//! switchover runs with an injected clock (fixtures in `fixtures.rs`).

mod fixtures;

mod cluster;
mod failover;
mod info;
mod switchover;
