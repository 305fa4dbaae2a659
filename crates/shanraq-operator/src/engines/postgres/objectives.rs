//! RPOMet and RTOMet from measurements: the RPO from what the instances report (synchronous
//! standbys streaming on the primary, or the best replica's lag), the RTO from the configured
//! timings and the last unplanned failover's measured duration. Pure: the HA task gathers the
//! statuses, the reconcile turns them into conditions with `shanraq_ha::objectives`.

use std::time::Duration;

use shanraq_api::ValidCluster;
use shanraq_api::conditions::{Desired, RPO_MET, RTO_MET, Truth};
use shanraq_api::status::FailoverRecord;
use shanraq_ha::objectives::{self, ObjectiveStatus, RpoMeasurement, RtoInputs};
use shanraq_ha::postgres::ReplicationMode;
use shanraq_ha::wire::{InstanceRole, InstanceStatus, quorum_needed};

/// A reachable member's last `/status`.
pub type Statuses = [InstanceStatus];

fn is_synchronous_row(state: &str, sync_state: &str) -> bool {
    state == "streaming" && matches!(sync_state, "sync" | "quorum")
}

/// What bounds data loss right now, from the designated primary's and the replicas' reports.
/// `members` are every member's names, so that a standby that does not answer at all is named
/// among the missing ones.
pub fn rpo_measurement(
    mode: ReplicationMode,
    primary: Option<&str>,
    members: &[String],
    statuses: &Statuses,
) -> RpoMeasurement {
    let Some(primary_name) = primary else {
        return RpoMeasurement::NoPromotableReplica {
            reason: "no primary is designated yet".to_owned(),
        };
    };
    let Some(primary) = statuses
        .iter()
        .find(|s| s.name == primary_name && s.role == InstanceRole::Primary)
    else {
        return RpoMeasurement::NoPromotableReplica {
            reason: format!("primary {primary_name} does not report as a running primary"),
        };
    };
    match mode {
        ReplicationMode::Synchronous { number } => {
            // What the primary has in effect, not what the spec asks: under `dataDurability:
            // preferred` the engine may have lowered it. Unknown (an older instance manager)
            // is taken as configured.
            let lowered = primary
                .synchronous_standby_names
                .as_deref()
                .filter(|names| quorum_needed(names).is_none_or(|needed| needed < number))
                .map(str::to_owned);
            if let Some(standby_names) = lowered {
                return fell_back(primary, standby_names, number, members, statuses);
            }
            // Sorted: the rows' order is not stable, and the condition's message must be.
            let mut streaming: Vec<String> = primary
                .replication
                .iter()
                .filter(|row| is_synchronous_row(&row.state, &row.sync_state))
                .map(|row| row.application_name.clone())
                .collect();
            streaming.sort();
            RpoMeasurement::Synchronous {
                streaming,
                required: number,
            }
        }
        ReplicationMode::Asynchronous => match best_replica(primary, statuses) {
            Some((replica, lag_bytes, lag)) => RpoMeasurement::Asynchronous {
                replica,
                lag_bytes,
                lag,
            },
            None => RpoMeasurement::NoPromotableReplica {
                reason: format!("no replica streams from primary {primary_name}"),
            },
        },
    }
}

/// The primary commits with a lowered `standby_names` (`dataDurability: preferred` fell back):
/// asynchronous towards the standbys that do not stream, bounded by the best one that does.
fn fell_back(
    primary: &InstanceStatus,
    standby_names: String,
    required: u32,
    members: &[String],
    statuses: &Statuses,
) -> RpoMeasurement {
    let streaming: Vec<&str> = primary
        .replication
        .iter()
        .filter(|row| row.state == "streaming")
        .map(|row| row.application_name.as_str())
        .collect();
    let missing: Vec<String> = members
        .iter()
        .filter(|name| **name != primary.name && !streaming.contains(&name.as_str()))
        .cloned()
        .collect();
    let best = best_replica(primary, statuses);
    let (replica, lag_bytes, lag) = match best {
        Some((replica, bytes, lag)) => (Some(replica), bytes, lag),
        None => (None, 0, Duration::ZERO),
    };
    RpoMeasurement::FellBack {
        standby_names,
        required,
        missing,
        replica,
        lag_bytes,
        lag,
    }
}

/// The streaming replica that flushed the most of the primary's WAL: its name, the bytes it
/// lacks, and its replay lag.
fn best_replica(primary: &InstanceStatus, statuses: &Statuses) -> Option<(String, u64, Duration)> {
    let current = primary.current_lsn.unwrap_or_default();
    let (replica, lag_bytes) = primary
        .replication
        .iter()
        .filter(|row| row.state == "streaming")
        .filter_map(|row| {
            let flushed = row.flush_lsn?;
            Some((row.application_name.clone(), flushed.bytes_until(current)))
        })
        .min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)))?;
    let lag = statuses
        .iter()
        .find(|s| s.name == replica)
        .and_then(|s| s.replay_lag_seconds)
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::ZERO, Duration::from_secs_f64);
    Some((replica, lag_bytes, lag))
}

/// How long an unchanged verdict keeps the measurement last published in the status: lag
/// moves with every sample, and every status write triggers another reconcile, so without
/// this an asynchronous cluster would rewrite its status every sample.
pub const REPUBLISH_AFTER: Duration = Duration::from_secs(60);

/// The measurement to publish: `fresh` when the verdict flipped or the last one is older than
/// `REPUBLISH_AFTER`, else the last one.
#[derive(Debug)]
pub struct Published<V, T> {
    last: std::sync::Mutex<Option<(std::time::Instant, V, T)>>,
}

impl<V, T> Default for Published<V, T> {
    fn default() -> Self {
        Published {
            last: std::sync::Mutex::new(None),
        }
    }
}

impl<V: PartialEq, T: Clone> Published<V, T> {
    pub fn choose(&self, verdict: V, fresh: T) -> T {
        let Ok(mut last) = self.last.lock() else {
            return fresh;
        };
        if let Some((at, last_verdict, measurement)) = last.as_ref()
            && *last_verdict == verdict
            && at.elapsed() < REPUBLISH_AFTER
        {
            return measurement.clone();
        }
        *last = Some((std::time::Instant::now(), verdict, fresh.clone()));
        fresh
    }
}

/// `status.postgres.instances[]` from the last sample: each member's role as it reports it
/// (`unreachable` when it did not answer), whether it serves (a primary out of recovery and not
/// fenced, or a streaming replica), its timeline, and whether the designated primary counts it
/// as a synchronous standby. Lag is left out: it moves with every sample, and the status only
/// changes when something did.
pub fn instances(
    members: &[String],
    primary: Option<&str>,
    statuses: &Statuses,
) -> Vec<shanraq_api::status::PostgresInstanceStatus> {
    let synchronous: Vec<&str> = statuses
        .iter()
        .filter(|s| Some(s.name.as_str()) == primary && s.role == InstanceRole::Primary)
        .flat_map(|s| s.replication.iter())
        .filter(|row| is_synchronous_row(&row.state, &row.sync_state))
        .map(|row| row.application_name.as_str())
        .collect();
    members
        .iter()
        .map(|name| match statuses.iter().find(|s| &s.name == name) {
            Some(status) => shanraq_api::status::PostgresInstanceStatus {
                name: name.clone(),
                role: serde_json::to_value(status.role)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "unknown".to_owned()),
                ready: status.running
                    && match status.role {
                        InstanceRole::Primary => !status.fenced,
                        InstanceRole::Replica => status.streaming == Some(true),
                        _ => false,
                    },
                timeline: status.timeline.map(i64::from),
                lag_bytes: None,
                synchronous: synchronous.contains(&name.as_str()),
            },
            None => shanraq_api::status::PostgresInstanceStatus {
                name: name.clone(),
                role: "unreachable".to_owned(),
                ..Default::default()
            },
        })
        .collect()
}

fn want(type_: &'static str, status: &ObjectiveStatus) -> Desired {
    Desired::new(
        type_,
        Truth::of(status.met),
        if status.met { "Measured" } else { "OverTarget" },
        status.message.clone(),
    )
}

/// `RPOMet` from a measurement.
pub fn rpo_condition(
    cluster: &ValidCluster,
    measurement: &RpoMeasurement,
) -> (Desired, ObjectiveStatus) {
    let target = cluster
        .spec
        .objective_targets(shanraq_api::objectives::ObjectiveComponent::Postgres)
        .rpo;
    let status = objectives::rpo(target.as_std(), measurement);
    (want(RPO_MET, &status), status)
}

/// The last unplanned failover's measured RTO, if any.
pub fn last_failover_rto(last: Option<&FailoverRecord>) -> Option<Duration> {
    let last = last.filter(|r| r.kind == "failover")?;
    let ms = u64::try_from(last.rto_ms?).ok()?;
    Some(Duration::from_millis(ms))
}

/// `RTOMet` from the projection and the last actual failover (False when either exceeds the
/// target).
pub fn rto_condition(cluster: &ValidCluster, actual: Duration) -> (Desired, ObjectiveStatus) {
    let failover = &cluster.spec.failover;
    let probe = failover.probe_period.as_std();
    let inputs = RtoInputs {
        probe_period: probe,
        failure_threshold: u32::try_from(failover.failure_threshold.max(0)).unwrap_or(0),
        failover_delay: failover.failover_delay.as_std(),
        routing_check_interval: probe,
        last_failover_rto: Some(actual),
    };
    let status = objectives::rto(cluster.spec.objectives.rto.as_std(), &inputs);
    (want(RTO_MET, &status), status)
}
