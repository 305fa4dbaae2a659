//! The engine's timings and durability rules, decided once by the caller (from the cluster's
//! spec, or a local topology) and never read from the environment by the engine itself.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How commits are acknowledged, which decides who may be elected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "mode")]
pub enum ReplicationMode {
    /// `synchronous_standby_names = 'ANY number (...)'` with data durability "required": a
    /// commit returns only once `number` standbys of the synchronous set flushed it.
    Synchronous { number: u32 },
    /// Asynchronous streaming: a failover may lose up to `maximum_lag_on_failover` bytes.
    Asynchronous,
}

/// What the engine does when fewer than `number` standbys stream (synchronous mode only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DataDurability {
    /// Commits wait for `number` standbys, even if that stops writes: RPO 0 in every failure.
    #[default]
    Required,
    /// Once fewer than `number` standbys have streamed for a detection period (probe period x
    /// failure threshold), the engine records the fallback in its persisted state and lowers
    /// the primary to the standbys that stream (`''` when none), so writes go on; it restores
    /// `ANY number` once enough stream again. A failover while fallen back waits out the old
    /// primary's lease and may lose the commits made since the fallback.
    Preferred,
}

/// Engine settings. `Default` gives the fast profile the project aims at (about a second to
/// detect and promote).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostgresHaConfig {
    /// How often the caller probes every instance.
    pub probe_period: Duration,
    /// Consecutive failed probes of the primary before detection is confirmed.
    pub failure_threshold: u32,
    /// Extra wait after detection before the failover starts (cancelled by a good probe).
    pub failover_delay: Duration,
    /// Async mode: the most WAL bytes a failover may lose.
    pub maximum_lag_on_failover: u64,
    pub replication: ReplicationMode,
    /// Synchronous mode: whether writes may go on without the quorum (`Preferred`).
    #[serde(default)]
    pub data_durability: DataDurability,
    /// Switchover: the longest wait for the target to replay the old primary's final LSN.
    pub switchover_timeout: Duration,
    /// Fence: how long the old primary gets to stop (sent to the instance). The engine never
    /// waits on the answer when it can detach enough of the synchronous set instead.
    pub fence_timeout: Duration,
    /// The primary's lease, renewed by every probe of it: a primary that lost the lease and
    /// its (synchronous) replicas fences itself. Asynchronous mode promotes nobody before the
    /// old primary's lease has run out.
    #[serde(default = "default_lease")]
    pub lease_duration: Duration,
}

/// The lease `spec.failover` gives with its defaults (250 ms x 3 x 2).
fn default_lease() -> Duration {
    Duration::from_millis(1500)
}

impl PostgresHaConfig {
    /// How long a shortfall of synchronous standbys must last before `Preferred` falls back:
    /// the same period that confirms a failing primary, so one missed reply changes nothing.
    pub fn detection_period(&self) -> Duration {
        self.probe_period
            .saturating_mul(self.failure_threshold.max(1))
    }
}

impl Default for PostgresHaConfig {
    fn default() -> Self {
        PostgresHaConfig {
            probe_period: Duration::from_millis(250),
            failure_threshold: 3,
            failover_delay: Duration::ZERO,
            maximum_lag_on_failover: 1024 * 1024,
            replication: ReplicationMode::Synchronous { number: 1 },
            data_durability: DataDurability::Required,
            switchover_timeout: Duration::from_secs(30),
            fence_timeout: Duration::from_secs(5),
            lease_duration: default_lease(),
        }
    }
}
crate::machine::timed!(PostgresHaConfig);
