//! Redis Cluster mode on real processes: six redis-server processes started from the rendered
//! cluster-mode redis.conf, formed as the rendered Job does it (`redis-cli --cluster create`
//! with one replica per master), observed through `CLUSTER INFO`/`CLUSTER NODES` (state, slots
//! covered, masters, failovers Redis Cluster performed), and a writer that `SET`s keys of one
//! hash slot then `WAIT 1`s, following `MOVED` redirections. Failover in cluster mode is Redis
//! Cluster's own; this is what the operator observes and reports.

//!
//! The parts: `start` (nodes from the rendered config, formed by `redis-cli --cluster create`
//! or left for the rendered Job), `job` (running that Job's script), `observe` (the cluster's
//! view and its failovers), `scale` (adding and removing a master with its replica), `keys`
//! (`GET`/`SET` following `MOVED`) and `writer` (the slot writer and its read-back).

mod job;
mod keys;
mod observe;
mod scale;
mod start;
mod writer;

use std::time::Duration;

use shanraq_ha::redis::cluster::FailoverTracker;
use shanraq_ha::redis::{NodeId, RedisMember};
use shanraq_testkit::RedisServer;

pub use keys::{cluster_get, cluster_set};
pub use writer::{SlotWriter, missing_in_cluster};

/// Every writer key is in this hash slot's shard: `{shanraq}:<id>`.
pub const HASH_TAG: &str = "{shanraq}";
const POLL: Duration = Duration::from_millis(50);
const WRITE_TIMEOUT: Duration = Duration::from_millis(500);
const MAX_RUN: Duration = Duration::from_secs(600);

/// Six (or more) nodes in cluster mode.
#[derive(Debug)]
pub struct LocalRedisCluster {
    pub servers: Vec<RedisServer>,
    pub members: Vec<RedisMember>,
    password: String,
    tracker: FailoverTracker,
}

/// Names used in reports.
pub fn node_of(members: &[RedisMember], index: usize) -> NodeId {
    members
        .get(index)
        .map_or_else(|| NodeId::new("unknown"), |m| m.name.clone())
}

fn address(member: &RedisMember) -> String {
    format!("{}:{}", member.host, member.port)
}
