//! Recovery and service objectives: what the user must be able to prove to an auditor.
//! The operator measures each one and reports it beside its target in the status.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("double(self.availability) <= 100.0").field_path(".availability").message(
    "objectives.availability is a percentage and must not exceed 100"
))]
#[x_kube(validation = Rule::new("duration(self.rto) > duration('0s')").field_path(".rto").message(
    "objectives.rto must be greater than 0s"
))]
#[x_kube(validation = Rule::new("duration(self.latency.p99) > duration('0s')").field_path(".latency.p99").message(
    "objectives.latency.p99 must be greater than 0s"
))]
pub struct Objectives {
    /// Maximum data loss on an unplanned failover. `0s` requires synchronous replication.
    #[serde(default = "default_rpo")]
    pub rpo: Duration,
    /// Maximum write unavailability after losing a primary.
    #[serde(default = "default_rto")]
    pub rto: Duration,
    /// Critical-path probe latency through HAProxy.
    #[serde(default)]
    pub latency: LatencyObjective,
    /// Target success ratio of write probes, in percent (for example `"99.99"`).
    #[serde(default = "default_availability")]
    #[schemars(regex(pattern = r"^(100|[0-9]{1,2})(\.[0-9]{1,4})?$"), length(max = 8))]
    pub availability: String,
    /// Disaster recovery from the object store (`spec.backup`).
    #[serde(default)]
    pub dr: DrObjectives,
}

/// Disaster-recovery objectives, measured when `spec.backup` is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrObjectives {
    /// The most committed data a restore from the object store may lose: the age of the last
    /// archived WAL segment must stay below it.
    #[serde(default = "default_dr_rpo")]
    pub rpo: Duration,
}

fn default_dr_rpo() -> Duration {
    Duration::from_secs(60)
}

impl Default for DrObjectives {
    fn default() -> Self {
        DrObjectives {
            rpo: default_dr_rpo(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatencyObjective {
    /// 99th percentile of the operator's probes (PostgreSQL read, Redis GET) through HAProxy.
    #[serde(default = "default_p99")]
    pub p99: Duration,
}

fn default_rpo() -> Duration {
    Duration::ZERO
}
fn default_rto() -> Duration {
    Duration::from_secs(30)
}
fn default_p99() -> Duration {
    Duration::from_millis(1)
}
fn default_availability() -> String {
    "99.99".to_owned()
}

impl Default for Objectives {
    fn default() -> Self {
        Objectives {
            rpo: default_rpo(),
            rto: default_rto(),
            latency: LatencyObjective::default(),
            availability: default_availability(),
            dr: DrObjectives::default(),
        }
    }
}

impl Default for LatencyObjective {
    fn default() -> Self {
        LatencyObjective { p99: default_p99() }
    }
}

impl Objectives {
    /// The availability target as a ratio in `0.0..=1.0`, when it parses.
    pub fn availability_ratio(&self) -> Option<f64> {
        let percent: f64 = self.availability.parse().ok()?;
        (0.0..=100.0).contains(&percent).then_some(percent / 100.0)
    }
}
