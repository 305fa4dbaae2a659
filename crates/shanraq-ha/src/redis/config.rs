//! The engine's timings and loss bound, decided once by the caller (from the cluster's spec and
//! RPO objective, or a local topology) and never read from the environment by the engine.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Engine settings. `Default` is the fast profile (about a second from the master's failure to
/// writes on the new one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedisHaConfig {
    /// How often the caller probes every member with `INFO replication`.
    pub probe_period: Duration,
    /// Consecutive failed probes of the master before detection is confirmed.
    pub failure_threshold: u32,
    /// Extra wait after detection before the failover starts (cancelled by a good probe).
    pub failover_delay: Duration,
    /// `min-replicas-to-write` as rendered: a master with fewer attached replicas refuses
    /// writes. Detaching `replicas - this + 1` of them fences an old master nobody can reach.
    pub min_replicas_to_write: u32,
    /// The most replication offset (bytes) the elected replica may lag behind the old master's
    /// last reported offset.
    pub max_lag_bytes: u64,
    /// The most seconds since the elected replica's last acknowledgement, as the old master last
    /// reported it (`min-replicas-max-lag` bounds the same thing on the master's side).
    pub max_lag_seconds: u64,
    /// Switchover: the longest wait for the target to reach the paused master's offset.
    pub switchover_timeout: Duration,
    /// How long the engine gives the detach commands before it says that fencing is blocked.
    pub fence_timeout: Duration,
    /// The nodes run `appendonly yes` with `appendfsync always`: a node back from its
    /// append-only file holds every write it acknowledged, so taking an old master back from
    /// it after a full outage loses nothing it acknowledged.
    #[serde(default)]
    pub fsync_always: bool,
}

impl Default for RedisHaConfig {
    fn default() -> Self {
        RedisHaConfig {
            probe_period: Duration::from_millis(250),
            failure_threshold: 3,
            failover_delay: Duration::ZERO,
            min_replicas_to_write: 1,
            max_lag_bytes: 1024 * 1024,
            max_lag_seconds: 10,
            switchover_timeout: Duration::from_secs(30),
            fence_timeout: Duration::from_secs(5),
            fsync_always: false,
        }
    }
}
crate::machine::timed!(RedisHaConfig);
