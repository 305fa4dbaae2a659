//! Condition types and the one rule for changing them: `lastTransitionTime` moves only when a
//! condition's status flips, so a reconcile that changes nothing writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const POSTGRES_READY: &str = "PostgresReady";
pub const REDIS_READY: &str = "RedisReady";
pub const KAFKA_READY: &str = "KafkaReady";
pub const HAPROXY_READY: &str = "HAProxyReady";
pub const MONITORING_READY: &str = "MonitoringReady";
pub const RPO_MET: &str = "RPOMet";
pub const RTO_MET: &str = "RTOMet";
pub const LATENCY_MET: &str = "LatencyMet";
pub const AVAILABILITY_MET: &str = "AvailabilityMet";
pub const CONTINUOUS_ARCHIVING: &str = "ContinuousArchiving";
pub const LAST_BACKUP_SUCCEEDED: &str = "LastBackupSucceeded";
pub const DR_RPO_MET: &str = "DRRPOMet";

/// Reason of `Stalled=True` when the spec cannot be acted on.
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";

/// A condition's status. `Unknown` is for what nothing has measured yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    pub fn text(self) -> &'static str {
        match self {
            Truth::True => "True",
            Truth::False => "False",
            Truth::Unknown => "Unknown",
        }
    }

    pub fn of(value: bool) -> Truth {
        if value { Truth::True } else { Truth::False }
    }
}

/// A condition as the operator computes it, before timestamps are attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub truth: Truth,
    pub reason: String,
    pub message: String,
}

impl Desired {
    pub fn new(
        type_: &'static str,
        truth: Truth,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Desired {
            type_,
            truth,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Merges `desired` into `previous`: keeps `lastTransitionTime` unless the status flipped, stamps
/// `observedGeneration`, and keeps conditions of other types untouched. The result is ordered
/// like `desired`, then any previous types not mentioned.
pub fn merge(
    previous: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut merged: Vec<Condition> = desired
        .iter()
        .map(|want| {
            let status = want.truth.text().to_owned();
            let last_transition_time = previous
                .iter()
                .find(|old| old.type_ == want.type_ && old.status == status)
                .map(|old| old.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: want.type_.to_owned(),
                status,
                reason: want.reason.clone(),
                message: want.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect();
    for old in previous {
        if !desired.iter().any(|want| want.type_ == old.type_) {
            merged.push(old.clone());
        }
    }
    merged
}

/// The status of a condition type, if present.
pub fn is_true(conditions: &[Condition], type_: &str) -> Option<bool> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid timestamp"))
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let first = merge(
            &[],
            &[Desired::new(READY, Truth::False, "Reconciling", "creating")],
            Some(1),
            &at(10),
        );
        assert_eq!(first[0].last_transition_time, at(10));

        let same = merge(
            &first,
            &[Desired::new(
                READY,
                Truth::False,
                "Waiting",
                "still creating",
            )],
            Some(2),
            &at(20),
        );
        assert_eq!(same[0].last_transition_time, at(10), "no flip: time kept");
        assert_eq!(same[0].observed_generation, Some(2));
        assert_eq!(same[0].message, "still creating");

        let flipped = merge(
            &same,
            &[Desired::new(READY, Truth::True, "Ready", "all ready")],
            Some(2),
            &at(30),
        );
        assert_eq!(flipped[0].last_transition_time, at(30));
        assert_eq!(flipped[0].status, "True");
    }

    #[test]
    fn unmentioned_conditions_are_kept() {
        let first = merge(
            &[],
            &[Desired::new(RPO_MET, Truth::True, "Met", "0s")],
            Some(1),
            &at(1),
        );
        let next = merge(
            &first,
            &[Desired::new(READY, Truth::True, "Ready", "ok")],
            Some(1),
            &at(2),
        );
        assert_eq!(next.len(), 2);
        assert_eq!(is_true(&next, RPO_MET), Some(true));
    }
}
