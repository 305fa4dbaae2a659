//! The ShanraqBackup controller: each ShanraqBackup is carried out once, by asking an
//! instance manager of its cluster to back up (`POST /backup`, the same bearer token and
//! pod-IP client as the HA engine). Where: `backup_source::plan` over the HA task's last
//! `/status` sample, so a streaming replica takes it with pgBackRest's `backup-standby` (the
//! primary's pgBackRest, reached over TLS, only starts and stops it), and the primary takes it
//! alone when no replica qualifies. The status goes `Running`, then `Completed` with
//! pgBackRest's label or `Failed` with pgBackRest's error (which the instance manager has
//! already scrubbed of credentials); a finished backup is never run again.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use shanraq_api::ShanraqCluster;
use shanraq_api::backup_request::{
    BackupType, PHASE_COMPLETED, PHASE_FAILED, PHASE_RUNNING, SUCCEEDED, ShanraqBackup,
    ShanraqBackupStatus,
};
use shanraq_api::conditions::{Desired, Truth, merge};
use shanraq_api::names::FIELD_MANAGER;
use shanraq_ha::postgres::backup_source::{self, BackupPlan};
use shanraq_ha::wire::{BackupKind, BackupRequest, InstanceStatus};

use super::Context;

/// The longest one backup may take before it is failed.
pub const BACKUP_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// How soon a backup that cannot start yet (no primary, HA task starting) is tried again.
const NOT_YET: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("reading ShanraqBackup {name}: {source}")]
    Read {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status of ShanraqBackup {name}: {source}")]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// What to do with a ShanraqBackup, from what is known about its cluster. Pure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Completed or failed already: nothing.
    Done,
    /// It cannot be carried out: fail it with this message.
    Fail(String),
    /// Not yet (no primary known, the HA task not running): retry later, saying why.
    Wait(String),
    /// Back up as planned (on a replica with the primary's help, or on the primary).
    Run { plan: BackupPlan },
}

/// `sample` is the HA task's last `/status` of every instance, when it runs.
pub fn step(
    backup: &ShanraqBackup,
    cluster: Option<&ShanraqCluster>,
    sample: Option<&[InstanceStatus]>,
    client_known: impl Fn(&str) -> bool,
) -> Step {
    if backup
        .status
        .as_ref()
        .is_some_and(ShanraqBackupStatus::is_finished)
    {
        return Step::Done;
    }
    let Some(cluster) = cluster else {
        return Step::Fail(format!(
            "no ShanraqCluster {} in namespace {}",
            backup.spec.cluster,
            backup.namespace().unwrap_or_default()
        ));
    };
    if cluster.spec.backup.is_none() {
        return Step::Fail(format!(
            "ShanraqCluster {} has no spec.backup",
            backup.spec.cluster
        ));
    }
    let Some(primary) = cluster
        .status
        .as_ref()
        .and_then(|status| status.postgres.as_ref())
        .and_then(|postgres| postgres.current_primary.clone())
    else {
        return Step::Wait(format!(
            "ShanraqCluster {} has no primary yet",
            backup.spec.cluster
        ));
    };
    let kind = kind(backup.spec.kind);
    let planned = sample
        .and_then(|sample| backup_source::plan(sample, &primary, kind))
        .filter(|plan| client_known(&plan.instance));
    if let Some(plan) = planned {
        return Step::Run { plan };
    }
    if !client_known(&primary) {
        return Step::Wait(format!(
            "the HA task of ShanraqCluster {} does not reach {primary} yet",
            backup.spec.cluster
        ));
    }
    Step::Run {
        plan: BackupPlan {
            instance: primary,
            request: BackupRequest {
                kind,
                primary: None,
            },
        },
    }
}

/// What the `Running` status says about where the backup runs.
fn where_it_runs(plan: &BackupPlan) -> String {
    match &plan.request.primary {
        Some(primary) => format!(
            "on the replica {} (backup-standby, with the primary at {})",
            plan.instance, primary.host
        ),
        None => format!("on the primary {}", plan.instance),
    }
}

fn kind(kind: BackupType) -> BackupKind {
    match kind {
        BackupType::Full => BackupKind::Full,
        BackupType::Diff => BackupKind::Diff,
        BackupType::Incr => BackupKind::Incr,
    }
}

/// The status after `phase`, with the `Succeeded` condition when finished.
pub fn next_status(
    previous: Option<&ShanraqBackupStatus>,
    generation: Option<i64>,
    phase: &str,
    message: String,
    now: &Time,
) -> ShanraqBackupStatus {
    let mut next = previous.cloned().unwrap_or_default();
    next.observed_generation = generation;
    next.phase = Some(phase.to_owned());
    let truth = match phase {
        PHASE_COMPLETED => Truth::True,
        PHASE_FAILED => Truth::False,
        _ => Truth::Unknown,
    };
    let reason = match phase {
        PHASE_COMPLETED => "BackupCompleted",
        PHASE_FAILED => "BackupFailed",
        _ => "BackupRunning",
    };
    next.conditions = merge(
        &next.conditions,
        &[Desired::new(SUCCEEDED, truth, reason, message.clone())],
        generation,
        now,
    );
    next.message = Some(message);
    next
}

async fn write_status(
    api: &Api<ShanraqBackup>,
    name: &str,
    status: &ShanraqBackupStatus,
) -> Result<(), BackupError> {
    let patch = json!({
        "apiVersion": "shanraq.org/v1alpha1",
        "kind": "ShanraqBackup",
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|source| BackupError::Status {
        name: name.to_owned(),
        source,
    })
}

/// True when ShanraqBackup `name`, read from the API server rather than the watch cache, is
/// still there and not finished. The cache can lag this controller's own last write: the
/// reconcile queued by the `Running` status write may see that version after the backup has
/// completed, and would otherwise take the backup a second time.
async fn unfinished_now(api: &Api<ShanraqBackup>, name: &str) -> Result<bool, BackupError> {
    let fresh = api
        .get_opt(name)
        .await
        .map_err(|source| BackupError::Read {
            name: name.to_owned(),
            source,
        })?;
    Ok(fresh.is_some_and(|backup| {
        !backup
            .status
            .as_ref()
            .is_some_and(ShanraqBackupStatus::is_finished)
    }))
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

pub async fn reconcile(
    backup: Arc<ShanraqBackup>,
    ctx: Arc<Context>,
) -> Result<Action, BackupError> {
    let name = backup.name_any();
    let namespace = backup.namespace().unwrap_or_default();
    let backups: Api<ShanraqBackup> = Api::namespaced(ctx.client.clone(), &namespace);
    let clusters: Api<ShanraqCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let cluster = clusters.get_opt(&backup.spec.cluster).await.ok().flatten();
    let key = format!("{namespace}/{}", backup.spec.cluster);
    let generation = backup.metadata.generation;
    let previous = backup.status.as_ref();
    let sample = ctx.engines.postgres.sample(&key);
    match step(&backup, cluster.as_ref(), sample.as_deref(), |node| {
        ctx.engines.postgres.instance_client(&key, node).is_some()
    }) {
        Step::Done => Ok(Action::await_change()),
        Step::Fail(message) => {
            tracing::warn!(backup = %name, %message, "backup refused");
            let status = next_status(previous, generation, PHASE_FAILED, message, &now());
            write_status(&backups, &name, &status).await?;
            Ok(Action::await_change())
        }
        Step::Wait(message) => {
            let status = next_status(previous, generation, PHASE_RUNNING, message, &now());
            if Some(&status) != previous {
                write_status(&backups, &name, &status).await?;
            }
            Ok(Action::requeue(NOT_YET))
        }
        Step::Run { plan } => {
            let Some(client) = ctx.engines.postgres.instance_client(&key, &plan.instance) else {
                return Ok(Action::requeue(NOT_YET));
            };
            if !unfinished_now(&backups, &name).await? {
                return Ok(Action::await_change());
            }
            let mut running = next_status(
                previous,
                generation,
                PHASE_RUNNING,
                format!(
                    "pgBackRest {} backup running {}",
                    backup.spec.kind.as_str(),
                    where_it_runs(&plan)
                ),
                &now(),
            );
            running.instance = Some(plan.instance.clone());
            running.started_at = Some(jiff::Timestamp::now().to_string());
            write_status(&backups, &name, &running).await?;
            let outcome = client.backup(&plan.request, BACKUP_TIMEOUT).await;
            let mut finished = match outcome {
                Ok(reply) if reply.ok => {
                    let mut status = next_status(
                        Some(&running),
                        generation,
                        PHASE_COMPLETED,
                        reply.message.clone(),
                        &now(),
                    );
                    if let Some(taken) = reply.backup {
                        status.label = Some(taken.label);
                    }
                    status
                }
                Ok(reply) if reply.message.contains("already running") => {
                    // Another request of this object (an operator restart) is still running.
                    return Ok(Action::requeue(NOT_YET));
                }
                Ok(reply) => next_status(
                    Some(&running),
                    generation,
                    PHASE_FAILED,
                    reply.message,
                    &now(),
                ),
                Err(error) => next_status(
                    Some(&running),
                    generation,
                    PHASE_FAILED,
                    error.to_string(),
                    &now(),
                ),
            };
            finished.completed_at = Some(jiff::Timestamp::now().to_string());
            tracing::info!(backup = %name, phase = ?finished.phase, "backup finished");
            write_status(&backups, &name, &finished).await?;
            Ok(Action::await_change())
        }
    }
}

pub fn error_policy(backup: Arc<ShanraqBackup>, error: &BackupError, _ctx: Arc<Context>) -> Action {
    tracing::warn!(backup = %backup.name_any(), %error, "ShanraqBackup reconcile failed");
    Action::requeue(Duration::from_secs(15))
}

/// Runs one ShanraqBackup controller per scope until `stop`, when the ShanraqBackup CRD is
/// installed (a cluster without it simply has no on-demand backups).
pub async fn run(
    client: Client,
    ctx: Arc<Context>,
    scopes: Vec<Option<String>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let probe: Api<ShanraqBackup> = match scopes.first().cloned().flatten() {
        Some(namespace) => Api::namespaced(client.clone(), &namespace),
        None => Api::all(client.clone()),
    };
    if let Err(error) = probe.list_metadata(&ListParams::default().limit(1)).await {
        tracing::warn!(%error, "ShanraqBackups cannot be listed (CRD not installed?): on-demand and scheduled backups are off");
        return;
    }
    let loops = scopes.into_iter().map(|scope| {
        let api: Api<ShanraqBackup> = match &scope {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        };
        let mut stop = stop.clone();
        Controller::new(api, watcher::Config::default().any_semantic())
            .graceful_shutdown_on(async move {
                let _ = stop.wait_for(|stop| *stop).await;
            })
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|result| async move {
                if let Err(error) = result {
                    tracing::debug!(%error, "ShanraqBackup controller event");
                }
            })
    });
    futures::future::join_all(loops).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use shanraq_api::backup::BackupSpec;
    use shanraq_api::backup_request::ShanraqBackupSpec;
    use shanraq_api::cluster::ShanraqClusterSpec;
    use shanraq_api::status::{PostgresStatus, ShanraqClusterStatus};
    use shanraq_ha::wire::{BackupPeer, InstanceRole};

    fn backup() -> ShanraqBackup {
        let mut backup = ShanraqBackup::new(
            "nightly",
            ShanraqBackupSpec {
                cluster: "payments".to_owned(),
                kind: BackupType::Full,
            },
        );
        backup.metadata.namespace = Some("fintech".to_owned());
        backup
    }

    fn cluster(with_backup: bool, primary: Option<&str>) -> ShanraqCluster {
        let spec = ShanraqClusterSpec {
            backup: with_backup
                .then(|| BackupSpec::new("https://s3.example.com", "backups", "creds")),
            ..ShanraqClusterSpec::default()
        };
        let mut cluster = ShanraqCluster::new("payments", spec);
        cluster.status = Some(ShanraqClusterStatus {
            postgres: Some(PostgresStatus {
                current_primary: primary.map(str::to_owned),
                ..PostgresStatus::default()
            }),
            ..ShanraqClusterStatus::default()
        });
        cluster
    }

    fn instance(name: &str, role: InstanceRole) -> InstanceStatus {
        InstanceStatus {
            name: name.to_owned(),
            role,
            running: true,
            in_recovery: Some(role == InstanceRole::Replica),
            streaming: (role == InstanceRole::Replica).then_some(true),
            backup_peer: Some(Box::new(BackupPeer {
                host: format!("10.78.0.{}", name.len()),
                tls_port: 8432,
                data_dir: "/var/lib/postgresql/data/pgdata".to_owned(),
                pg_port: 5432,
            })),
            ..InstanceStatus::default()
        }
    }

    fn planned(found: Step) -> (String, bool) {
        match found {
            Step::Run { plan } => (plan.instance.clone(), plan.from_standby()),
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn a_backup_runs_on_a_streaming_replica_else_on_the_primary() {
        let primary_only = cluster(true, Some("payments-pg-1"));
        let sample = [
            instance("payments-pg-1", InstanceRole::Primary),
            instance("payments-pg-0", InstanceRole::Replica),
        ];
        let found = step(&backup(), Some(&primary_only), Some(&sample), |_| true);
        assert_eq!(planned(found), ("payments-pg-0".to_owned(), true));
        // The replica's client not known yet: the primary, alone.
        let found = step(&backup(), Some(&primary_only), Some(&sample), |node| {
            node == "payments-pg-1"
        });
        assert_eq!(planned(found), ("payments-pg-1".to_owned(), false));
        // No sample yet: the primary, alone.
        let found = step(&backup(), Some(&primary_only), None, |_| true);
        assert_eq!(planned(found), ("payments-pg-1".to_owned(), false));
    }

    #[test]
    fn what_cannot_be_backed_up_fails_and_what_is_not_ready_waits() {
        assert!(
            matches!(step(&backup(), None, None, |_| true), Step::Fail(m) if m.contains("no ShanraqCluster payments"))
        );
        assert!(
            matches!(step(&backup(), Some(&cluster(false, Some("p"))), None, |_| true), Step::Fail(m) if m.contains("no spec.backup"))
        );
        assert!(matches!(
            step(&backup(), Some(&cluster(true, None)), None, |_| true),
            Step::Wait(_)
        ));
        assert!(matches!(
            step(&backup(), Some(&cluster(true, Some("p"))), None, |_| false),
            Step::Wait(_)
        ));
    }

    /// Against the mocked API server: a backup of a cluster that does not exist fails, with
    /// the reason in its status, and is not retried.
    #[tokio::test]
    async fn a_backup_of_a_missing_cluster_fails_in_its_status() {
        use crate::fixtures::{Scenario, context, finish, status_body};
        use http::{Method, StatusCode};
        let (ctx, handle) = context(Some(false));
        let scenario = Scenario::new("fintech")
            .expect(
                "GET the cluster",
                Method::GET,
                "/apis/shanraq.org/v1alpha1/namespaces/fintech/shanraqclusters/payments",
                |_| {
                    (
                        StatusCode::NOT_FOUND,
                        status_body(404, "NotFound", "shanraqclusters payments not found"),
                    )
                },
            )
            .expect(
                "PATCH the backup's status",
                Method::PATCH,
                "/apis/shanraq.org/v1alpha1/namespaces/fintech/shanraqbackups/nightly/status",
                |request| {
                    let mut object = serde_json::to_value(backup()).expect("json");
                    object["status"] = request
                        .body
                        .as_ref()
                        .and_then(|body| body.get("status").cloned())
                        .unwrap_or_default();
                    (StatusCode::OK, object)
                },
            );
        let server = scenario.serve(handle);
        let action = reconcile(Arc::new(backup()), ctx).await.expect("reconcile");
        let report = finish(server).await;
        assert_eq!(action, Action::await_change());
        let patch = report.requests[1].body.clone().expect("status patch");
        assert_eq!(patch["status"]["phase"], PHASE_FAILED);
        assert_eq!(patch["status"]["conditions"][0]["type"], SUCCEEDED);
        assert_eq!(patch["status"]["conditions"][0]["status"], "False");
        let message = patch["status"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("no ShanraqCluster payments"), "{message}");
    }

    /// A cluster without a primary yet: the backup waits (Running, with the reason) and is
    /// retried, instead of failing.
    #[tokio::test]
    async fn a_backup_waits_for_a_primary() {
        use crate::fixtures::{Scenario, context, finish};
        use http::{Method, StatusCode};
        let (ctx, handle) = context(Some(false));
        let waiting = cluster(true, None);
        let scenario = Scenario::new("fintech")
            .expect(
                "GET the cluster",
                Method::GET,
                "/apis/shanraq.org/v1alpha1/namespaces/fintech/shanraqclusters/payments",
                move |_| {
                    (
                        StatusCode::OK,
                        serde_json::to_value(&waiting).expect("json"),
                    )
                },
            )
            .expect(
                "PATCH the backup's status",
                Method::PATCH,
                "/apis/shanraq.org/v1alpha1/namespaces/fintech/shanraqbackups/nightly/status",
                |_| {
                    (
                        StatusCode::OK,
                        serde_json::to_value(backup()).expect("json"),
                    )
                },
            );
        let server = scenario.serve(handle);
        let action = reconcile(Arc::new(backup()), ctx).await.expect("reconcile");
        let report = finish(server).await;
        assert_eq!(action, Action::requeue(NOT_YET));
        let patch = report.requests[1].body.clone().expect("status patch");
        assert_eq!(patch["status"]["phase"], PHASE_RUNNING);
        assert!(
            patch["status"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("no primary yet"))
        );
    }

    #[test]
    fn a_finished_backup_is_never_run_again() {
        let mut done = backup();
        done.status = Some(next_status(
            None,
            Some(1),
            PHASE_FAILED,
            "ERROR: [039]: HTTP request failed".to_owned(),
            &Time(jiff::Timestamp::UNIX_EPOCH),
        ));
        assert_eq!(
            step(&done, Some(&cluster(true, Some("p"))), None, |_| true),
            Step::Done
        );
        let status = done.status.expect("status");
        let condition = &status.conditions[0];
        assert_eq!(
            (condition.type_.as_str(), condition.status.as_str()),
            (SUCCEEDED, "False")
        );
        assert!(condition.message.contains("[039]"));
    }
}
