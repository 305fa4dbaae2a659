//! Failover drill on request: the annotation `shanraq.org/drill: <request id>` on a
//! ShanraqCluster makes the operator delete the current PostgreSQL primary's Pod with no grace
//! period, the loss of a primary as it happens in production. The HA engine then detects the
//! loss and fails over exactly as it would unasked; this file only starts the drill and reads
//! its result from the failover record the engine writes (`status.postgres.lastFailover`).
//! The drill and its measured RTO go to `status.drill` and to Events (`DrillStarted`, then
//! `DrillCompleted` or `DrillFailed`; `DrillRefused` naming why when it cannot start). The
//! annotation is removed either way, so one request is acted on once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use shanraq_api::names::{ANNOTATION_DRILL, ROLE_REPLICA};
use shanraq_api::status::{DrillStatus, FailoverRecord};
use shanraq_api::{ShanraqCluster, ShanraqClusterStatus, ValidCluster};

use crate::controller::error::DrillError;
use crate::controller::events::Notice;
use crate::engines::request;

pub const DRILL_STARTED: &str = "DrillStarted";
pub const DRILL_COMPLETED: &str = "DrillCompleted";
pub const DRILL_FAILED: &str = "DrillFailed";
pub const DRILL_REFUSED: &str = "DrillRefused";

pub const PHASE_RUNNING: &str = "Running";
pub const PHASE_COMPLETED: &str = "Completed";
pub const PHASE_FAILED: &str = "Failed";
pub const PHASE_REFUSED: &str = "Refused";

/// A drill whose failover has not completed by then is recorded as failed.
pub const DRILL_TIMEOUT: Duration = Duration::from_secs(300);

/// What the running HA engine says about the cluster, when it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineView {
    /// The engine's phase (`Healthy` when no failover or switchover is in progress).
    pub phase: String,
    pub primary: Option<String>,
}

/// What one reconcile does about drills.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The new `status.drill`, when it changes.
    pub drill: Option<DrillStatus>,
    pub notices: Vec<Notice>,
}

impl Outcome {
    /// Whether a drill is waiting for its failover (the reconcile then comes back soon).
    pub fn running(&self, previous: &ShanraqClusterStatus) -> bool {
        self.drill
            .as_ref()
            .or(previous.drill.as_ref())
            .is_some_and(|d| d.phase == PHASE_RUNNING)
    }
}

/// Whether a drill may start now; the primary to take down, or why not. Pure.
pub fn admit(
    cluster: &ValidCluster,
    previous: &ShanraqClusterStatus,
    engine: Option<&EngineView>,
) -> Result<String, String> {
    if !cluster.spec.postgres.enabled {
        return Err("PostgreSQL is not enabled".to_owned());
    }
    if let Some(drill) = previous.drill.as_ref().filter(|d| d.phase == PHASE_RUNNING) {
        return Err(format!(
            "the drill {} is still running (its failover has not completed)",
            drill.request
        ));
    }
    let Some(engine) = engine else {
        return Err(
            "the HA engine of this cluster is not running (HA disabled, or still starting)"
                .to_owned(),
        );
    };
    if engine.phase != "Healthy" {
        return Err(format!(
            "a failover or switchover is in progress (phase {})",
            engine.phase
        ));
    }
    let Some(primary) = engine.primary.clone() else {
        return Err("the cluster has no primary yet".to_owned());
    };
    let instances = previous
        .postgres
        .as_ref()
        .map(|p| p.instances.as_slice())
        .unwrap_or_default();
    let replicas: Vec<&str> = instances
        .iter()
        .filter(|i| i.name != primary && i.role == ROLE_REPLICA && i.ready)
        .map(|i| i.name.as_str())
        .collect();
    if replicas.is_empty() {
        return Err(format!(
            "no ready replica could take over from {primary}: a drill would only cause an outage"
        ));
    }
    Ok(primary)
}

/// Parses an RFC 3339 time of the status.
fn parse(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

/// How much earlier than the Pod's deletion the engine may date the loss: it dates it by the
/// first failed probe, whose round may have begun just before the deletion (and it counts
/// whole milliseconds). No earlier failover can pass for the drill's: one away from the same
/// primary would have made another instance the primary the drill took down.
const DETECTION_SLACK: Duration = Duration::from_secs(5);

/// The failover `record` is the one the running `drill` caused: away from the drilled primary,
/// detected once its Pod was deleted, and routed.
fn caused_by(drill: &DrillStatus, record: &FailoverRecord) -> bool {
    let (Some(started), Some(detected)) = (
        drill.started_at.as_deref().and_then(parse),
        parse(&record.detected_at),
    ) else {
        return false;
    };
    let Ok(slack) = jiff::SignedDuration::try_from(DETECTION_SLACK) else {
        return false;
    };
    record.kind == "failover"
        && drill.from.as_deref() == Some(record.from.as_str())
        && detected.duration_since(started) >= -slack
        && record.routed_at.is_some()
}

/// How a running drill stands at `now`: the finished record and its Event, or `None` while its
/// failover is still to come. Pure.
pub fn progress(
    drill: &DrillStatus,
    last_failover: Option<&FailoverRecord>,
    rto_target: Duration,
    now: Timestamp,
) -> Option<(DrillStatus, Notice)> {
    let from = drill.from.clone().unwrap_or_default();
    if let Some(record) = last_failover.filter(|r| caused_by(drill, r)) {
        let rto = record.rto_ms.and_then(|ms| u64::try_from(ms).ok());
        let verdict = match rto {
            Some(ms) if Duration::from_millis(ms) <= rto_target => {
                format!("within the RTO target {}", seconds(rto_target))
            }
            Some(_) => format!("over the RTO target {}", seconds(rto_target)),
            None => "RTO not measured".to_owned(),
        };
        let achieved = rto.map_or_else(|| "unmeasured".to_owned(), |ms| format!("{ms}ms"));
        let message = format!(
            "failover drill: primary {from} lost (Pod deleted), {} promoted and routed; RTO {achieved}, {verdict}",
            record.to
        );
        let met = rto.is_some_and(|ms| Duration::from_millis(ms) <= rto_target);
        let notice = if met {
            Notice::normal(DRILL_COMPLETED, message.clone())
        } else {
            Notice::warning(DRILL_COMPLETED, message.clone())
        };
        let done = DrillStatus {
            phase: PHASE_COMPLETED.to_owned(),
            to: Some(record.to.clone()),
            rto_ms: record.rto_ms,
            message,
            ..drill.clone()
        };
        return Some((done, notice));
    }
    let started = drill.started_at.as_deref().and_then(parse)?;
    let elapsed = now.duration_since(started);
    let timeout = jiff::SignedDuration::try_from(DRILL_TIMEOUT).ok()?;
    if elapsed < timeout {
        return None;
    }
    let message = format!(
        "failover drill: no failover away from {from} completed within {}",
        seconds(DRILL_TIMEOUT)
    );
    let failed = DrillStatus {
        phase: PHASE_FAILED.to_owned(),
        message: message.clone(),
        ..drill.clone()
    };
    Some((failed, Notice::warning(DRILL_FAILED, message)))
}

fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs())
}

/// Acts on the annotation and follows a running drill. `engine` is the running HA engine's
/// view of the cluster (`None` when it does not run); `acted` remembers the requests this
/// operator already started.
pub async fn handle(
    client: &kube::Client,
    acted: &Requests,
    object: &ShanraqCluster,
    cluster: &ValidCluster,
    previous: &ShanraqClusterStatus,
    engine: Option<&EngineView>,
    now: Timestamp,
) -> Result<Outcome, DrillError> {
    let mut outcome = Outcome::default();
    if let Some(drill) = previous.drill.as_ref().filter(|d| d.phase == PHASE_RUNNING) {
        let last = previous
            .postgres
            .as_ref()
            .and_then(|p| p.last_failover.as_ref());
        if let Some((done, notice)) =
            progress(drill, last, cluster.spec.objectives.rto.as_std(), now)
        {
            outcome.drill = Some(done);
            outcome.notices.push(notice);
        }
    }
    let Some(request) = object.annotations().get(ANNOTATION_DRILL).cloned() else {
        return Ok(outcome);
    };
    let key = cluster.key();
    // A request already acted on (recorded in the status, or by this operator while its own
    // status write or the annotation's removal has not reached the cache yet) is only
    // cleared: one request never takes down two primaries.
    let recorded = previous
        .drill
        .as_ref()
        .is_some_and(|d| d.request == request);
    if recorded || acted.contains(&key, &request) {
        request::remove(client, object, ANNOTATION_DRILL).await?;
        return Ok(outcome);
    }
    // A drill that just finished is no longer running, whatever the previous status said.
    let mut current = previous.clone();
    if let Some(done) = &outcome.drill {
        current.drill = Some(done.clone());
    }
    match admit(cluster, &current, engine) {
        Ok(primary) => {
            // The annotation goes first, so that a failure below cannot repeat the drill.
            request::remove(client, object, ANNOTATION_DRILL).await?;
            acted.remember(&key, &request);
            let started_at = now.to_string();
            match delete_primary(client, &cluster.namespace, &primary).await {
                Ok(()) => {
                    let message = format!(
                        "failover drill: deleted the Pod of primary {primary} (grace period 0s); waiting for the failover"
                    );
                    tracing::info!(cluster = %key, %request, %primary, "failover drill started");
                    outcome
                        .notices
                        .push(Notice::warning(DRILL_STARTED, message.clone()));
                    outcome.drill = Some(DrillStatus {
                        request,
                        phase: PHASE_RUNNING.to_owned(),
                        from: Some(primary),
                        to: None,
                        started_at: Some(started_at),
                        rto_ms: None,
                        message,
                    });
                }
                Err(error) => {
                    let message = format!("failover drill {request} failed: {error}");
                    tracing::warn!(cluster = %key, %message, "failover drill failed");
                    outcome
                        .notices
                        .push(Notice::warning(DRILL_FAILED, message.clone()));
                    outcome.drill = Some(DrillStatus {
                        request,
                        phase: PHASE_FAILED.to_owned(),
                        from: Some(primary),
                        message,
                        ..DrillStatus::default()
                    });
                }
            }
        }
        Err(why) => {
            let message = format!("failover drill {request} refused: {why}");
            tracing::info!(cluster = %key, %message, "failover drill refused");
            outcome
                .notices
                .push(Notice::warning(DRILL_REFUSED, message.clone()));
            // A refusal keeps the record of a drill still running or just finished.
            if outcome.drill.is_none() && !outcome.running(previous) {
                outcome.drill = Some(DrillStatus {
                    request,
                    phase: PHASE_REFUSED.to_owned(),
                    message,
                    ..DrillStatus::default()
                });
            }
            request::remove(client, object, ANNOTATION_DRILL).await?;
        }
    }
    Ok(outcome)
}

/// The drill requests this operator acted on, per cluster (`namespace/name`): the last one of
/// each, which is all a repeated request can be.
#[derive(Debug, Default)]
pub struct Requests {
    acted: Mutex<HashMap<String, String>>,
}

impl Requests {
    fn contains(&self, key: &str, request: &str) -> bool {
        self.acted
            .lock()
            .is_ok_and(|acted| acted.get(key).is_some_and(|last| last == request))
    }

    fn remember(&self, key: &str, request: &str) {
        if let Ok(mut acted) = self.acted.lock() {
            acted.insert(key.to_owned(), request.to_owned());
        }
    }
}

/// Deletes the primary's Pod at once, as a crash or a lost node would take it.
async fn delete_primary(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
) -> Result<(), DrillError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    api.delete(pod, &params)
        .await
        .map(|_| ())
        .map_err(|source| DrillError::DeletePrimary {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shanraq_api::status::{PostgresInstanceStatus, PostgresStatus};
    use shanraq_api::{LiveState, ShanraqClusterSpec};

    fn valid() -> ValidCluster {
        let mut object = ShanraqCluster::new("payments", ShanraqClusterSpec::default());
        object.metadata.namespace = Some("fintech".into());
        shanraq_api::validate(&object, &LiveState::default()).expect("valid")
    }

    fn instance(name: &str, role: &str, ready: bool) -> PostgresInstanceStatus {
        PostgresInstanceStatus {
            name: name.into(),
            role: role.into(),
            ready,
            ..PostgresInstanceStatus::default()
        }
    }

    fn healthy_status() -> ShanraqClusterStatus {
        ShanraqClusterStatus {
            postgres: Some(PostgresStatus {
                current_primary: Some("payments-pg-0".into()),
                instances: vec![
                    instance("payments-pg-0", "primary", true),
                    instance("payments-pg-1", "replica", true),
                    instance("payments-pg-2", "replica", false),
                ],
                ..PostgresStatus::default()
            }),
            ..ShanraqClusterStatus::default()
        }
    }

    fn engine(phase: &str) -> EngineView {
        EngineView {
            phase: phase.into(),
            primary: Some("payments-pg-0".into()),
        }
    }

    fn running(started: &str) -> DrillStatus {
        DrillStatus {
            request: "r1".into(),
            phase: PHASE_RUNNING.into(),
            from: Some("payments-pg-0".into()),
            started_at: Some(started.into()),
            ..DrillStatus::default()
        }
    }

    fn failover(from: &str, detected: &str, rto_ms: i64) -> FailoverRecord {
        FailoverRecord {
            kind: "failover".into(),
            from: from.into(),
            to: "payments-pg-1".into(),
            detected_at: detected.into(),
            promoted_at: Some(detected.into()),
            routed_at: Some(detected.into()),
            rto_ms: Some(rto_ms),
            lost_bytes: Some(0),
            data_lost: None,
            possible_loss: None,
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn a_drill_starts_only_on_a_healthy_cluster_with_a_ready_replica() {
        let cluster = valid();
        let status = healthy_status();
        assert_eq!(
            admit(&cluster, &status, Some(&engine("Healthy"))),
            Ok("payments-pg-0".to_owned())
        );
        let refused = |status: &ShanraqClusterStatus, engine: Option<&EngineView>| {
            admit(&cluster, status, engine).expect_err("refused")
        };
        assert!(refused(&status, None).contains("HA engine"));
        assert!(refused(&status, Some(&engine("Promoting"))).contains("phase Promoting"));
        let mut lonely = status.clone();
        if let Some(p) = lonely.postgres.as_mut() {
            p.instances[1].ready = false;
        }
        assert!(
            refused(&lonely, Some(&engine("Healthy"))).contains("no ready replica"),
            "an unready replica cannot take over"
        );
        let mut busy = status.clone();
        busy.drill = Some(running("2026-12-01T10:00:00Z"));
        assert!(refused(&busy, Some(&engine("Healthy"))).contains("still running"));
        let no_primary = EngineView {
            phase: "Healthy".into(),
            primary: None,
        };
        assert!(refused(&status, Some(&no_primary)).contains("no primary"));
    }

    #[test]
    fn the_drill_records_the_rto_of_the_failover_it_caused() {
        let drill = running("2026-12-01T10:00:00Z");
        let target = Duration::from_secs(30);
        let now = at("2026-12-01T10:00:05Z");
        // An older failover, or one away from another primary, is not this drill's.
        let older = failover("payments-pg-0", "2026-12-01T09:00:00Z", 700);
        assert!(progress(&drill, Some(&older), target, now).is_none());
        let other = failover("payments-pg-2", "2026-12-01T10:00:01Z", 700);
        assert!(progress(&drill, Some(&other), target, now).is_none());
        assert!(progress(&drill, None, target, now).is_none());

        // Dated by a probe round that began just before the Pod was deleted: still this one.
        let just_before = failover("payments-pg-0", "2026-12-01T09:59:59.900Z", 640);
        let (early, _) = progress(&drill, Some(&just_before), target, now).expect("finished");
        assert_eq!(early.rto_ms, Some(640));
        let caused = failover("payments-pg-0", "2026-12-01T10:00:00.300Z", 812);
        let (done, notice) = progress(&drill, Some(&caused), target, now).expect("finished");
        assert_eq!(done.phase, PHASE_COMPLETED);
        assert_eq!(done.rto_ms, Some(812));
        assert_eq!(done.to.as_deref(), Some("payments-pg-1"));
        assert_eq!(notice.reason, DRILL_COMPLETED);
        assert!(!notice.warning);
        assert!(
            notice.note.contains("RTO 812ms, within the RTO target 30s"),
            "{}",
            notice.note
        );

        let (_, slow) =
            progress(&drill, Some(&caused), Duration::from_millis(500), now).expect("finished");
        assert!(slow.warning, "an RTO over target is a warning");
        assert!(slow.note.contains("over the RTO target"), "{}", slow.note);
    }

    #[test]
    fn a_drill_without_a_failover_fails_after_the_timeout() {
        let drill = running("2026-12-01T10:00:00Z");
        let target = Duration::from_secs(30);
        assert!(progress(&drill, None, target, at("2026-12-01T10:04:59Z")).is_none());
        let (failed, notice) =
            progress(&drill, None, target, at("2026-12-01T10:05:00Z")).expect("timed out");
        assert_eq!(failed.phase, PHASE_FAILED);
        assert_eq!(notice.reason, DRILL_FAILED);
        assert!(notice.note.contains("payments-pg-0"), "{}", notice.note);
    }
}
