//! Failover timings shared by the PostgreSQL and Redis HA engines. The defaults are what make a
//! one-second unplanned failover possible: the operator probes instances directly instead of
//! waiting for kubelet readiness probes.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.probePeriod) >= duration('100ms')").field_path(".probePeriod").message(
    "failover.probePeriod must be at least 100ms"
))]
#[x_kube(validation = Rule::new("duration(self.switchoverTimeout) >= duration('1s')").field_path(".switchoverTimeout").message(
    "failover.switchoverTimeout must be at least 1s"
))]
pub struct FailoverSpec {
    /// How often the operator probes every instance.
    #[serde(default = "default_probe_period")]
    pub probe_period: Duration,
    /// Consecutive failed probes of a primary before it is declared lost.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: i32,
    /// Extra wait after detection before failing over (0s = fail over at once).
    #[serde(default = "default_failover_delay")]
    pub failover_delay: Duration,
    /// Asynchronous replication only: the most WAL, in bytes, a replica may lag behind the lost
    /// primary and still be promoted. A replica further behind is never promoted.
    #[serde(default = "default_maximum_lag")]
    #[schemars(range(min = 0))]
    pub maximum_lag_on_failover: i64,
    /// How long a planned switchover may wait for the target to catch up before it is aborted.
    #[serde(default = "default_switchover_timeout")]
    pub switchover_timeout: Duration,
}

fn default_probe_period() -> Duration {
    Duration::from_millis(250)
}
fn default_failure_threshold() -> i32 {
    3
}
fn default_failover_delay() -> Duration {
    Duration::ZERO
}
fn default_maximum_lag() -> i64 {
    1024 * 1024
}
fn default_switchover_timeout() -> Duration {
    Duration::from_secs(30)
}

impl FailoverSpec {
    /// The primary's lease: twice the detection time (probe period x failure threshold), and at
    /// least a second, so a primary whose probes are merely slow keeps it. The operator's probes
    /// renew it; a primary that has lost both it and its synchronous replicas fences itself.
    pub fn lease(&self) -> std::time::Duration {
        let threshold = u32::try_from(self.failure_threshold.max(1)).unwrap_or(1);
        (self.probe_period.as_std() * threshold * 2).max(std::time::Duration::from_secs(1))
    }
}

impl Default for FailoverSpec {
    fn default() -> Self {
        FailoverSpec {
            probe_period: default_probe_period(),
            failure_threshold: default_failure_threshold(),
            failover_delay: default_failover_delay(),
            maximum_lag_on_failover: default_maximum_lag(),
            switchover_timeout: default_switchover_timeout(),
        }
    }
}
