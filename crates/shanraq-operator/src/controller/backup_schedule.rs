//! Scheduled backups (`spec.backup.schedules`, cron in UTC): when a schedule's latest slot is
//! newer than the one last acted on (`status.backup.lastScheduledFull` /
//! `lastScheduledDifferential`), the cluster's reconcile creates a ShanraqBackup for it, owned
//! by the cluster, which the ShanraqBackup controller carries out. A failed backup is that
//! object's `Failed` phase and the cluster's `LastBackupSucceeded=False`; the next slot still
//! creates the next one. The first slot a schedule sees is only recorded, so turning backups
//! on does not start one for a slot already past. Slots missed while the operator was down
//! collapse into one backup.

use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use shanraq_api::backup::BackupSpec;
use shanraq_api::backup_request::{
    BackupType, PHASE_COMPLETED, ShanraqBackup, ShanraqBackupSpec, ShanraqBackupStatus,
};
use shanraq_api::backup_validate::{ScheduleError, parse_schedule};
use shanraq_api::names::LABEL_CLUSTER;
use shanraq_api::status::BackupStatus;
use shanraq_api::{ShanraqCluster, ValidCluster};

/// What one schedule asks for now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Nothing new since the last slot acted on (or no slot yet).
    Nothing,
    /// The schedule's first slot: remember it, start nothing.
    Record(jiff::Timestamp),
    /// A new slot: back up, then remember it.
    Fire(jiff::Timestamp),
}

/// The latest slot of `schedule` at or before `now`, against the last one acted on. Pure.
pub fn slot(
    schedule: &str,
    last: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Result<Slot, ScheduleError> {
    if schedule.is_empty() {
        return Ok(Slot::Nothing);
    }
    let cron = parse_schedule(schedule)?;
    let now = now.to_zoned(jiff::tz::TimeZone::UTC);
    let Ok(latest) = cron.find_previous_occurrence(&now, true) else {
        return Ok(Slot::Nothing);
    };
    let latest = latest.timestamp();
    Ok(match last {
        None => Slot::Record(latest),
        Some(last) if latest > last => Slot::Fire(latest),
        Some(_) => Slot::Nothing,
    })
}

fn parse(time: Option<&String>) -> Option<jiff::Timestamp> {
    time.and_then(|text| text.parse().ok())
}

/// The ShanraqBackup of one slot: named after the cluster, the type and the slot, so a second
/// reconcile of the same slot finds it instead of creating another.
pub fn scheduled_backup(
    cluster: &ValidCluster,
    kind: BackupType,
    slot: jiff::Timestamp,
) -> ShanraqBackup {
    let stamp = slot
        .to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%Y%m%d%H%M")
        .to_string();
    let name = format!("{}-{}-{stamp}", cluster.name, kind.as_str());
    let mut backup = ShanraqBackup::new(
        &name,
        ShanraqBackupSpec {
            cluster: cluster.name.clone(),
            kind,
        },
    );
    backup.metadata.namespace = Some(cluster.namespace.clone());
    backup.metadata.labels = Some(
        [(LABEL_CLUSTER.to_owned(), cluster.name.clone())]
            .into_iter()
            .collect(),
    );
    backup.metadata.owner_references = Some(vec![shanraq_render::meta::owner_reference(cluster)]);
    backup
}

/// Runs both schedules: creates the ShanraqBackups now due and returns `status.backup` with
/// the slots acted on. Errors are logged and leave the slot to the next reconcile.
pub async fn run(
    client: &kube::Client,
    cluster: &ValidCluster,
    backup: &BackupSpec,
    status: &mut BackupStatus,
    now: jiff::Timestamp,
) {
    let api: Api<ShanraqBackup> = Api::namespaced(client.clone(), &cluster.namespace);
    let schedules = [
        (
            BackupType::Full,
            backup.schedules.full.as_str(),
            &mut status.last_scheduled_full,
        ),
        (
            BackupType::Diff,
            backup.schedules.differential.as_str(),
            &mut status.last_scheduled_differential,
        ),
    ];
    for (kind, schedule, last) in schedules {
        match slot(schedule, parse(last.as_ref()), now) {
            Ok(Slot::Nothing) => {}
            Ok(Slot::Record(at)) => *last = Some(at.to_string()),
            Ok(Slot::Fire(at)) => {
                let object = scheduled_backup(cluster, kind, at);
                match api.create(&PostParams::default(), &object).await {
                    Ok(_) => {
                        tracing::info!(cluster = %cluster.name, backup = %object.name_any(), "scheduled backup created");
                        *last = Some(at.to_string());
                    }
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        *last = Some(at.to_string());
                    }
                    Err(error) => {
                        tracing::warn!(cluster = %cluster.name, %error, "creating the scheduled backup");
                    }
                }
            }
            Err(error) => tracing::warn!(cluster = %cluster.name, %error, "backup schedule"),
        }
    }
}

/// The newest finished ShanraqBackup of `cluster` (by completion time), if any.
pub async fn last_finished(
    client: &kube::Client,
    cluster: &ShanraqCluster,
) -> Option<(String, ShanraqBackupStatus)> {
    let namespace = cluster.namespace()?;
    let api: Api<ShanraqBackup> = Api::namespaced(client.clone(), &namespace);
    let list = api.list(&ListParams::default()).await.ok()?;
    newest_finished(&cluster.name_any(), &list.items)
}

/// Pure part of `last_finished`.
pub fn newest_finished(
    cluster: &str,
    backups: &[ShanraqBackup],
) -> Option<(String, ShanraqBackupStatus)> {
    backups
        .iter()
        .filter(|backup| backup.spec.cluster == cluster)
        .filter_map(|backup| {
            let status = backup.status.as_ref()?;
            status
                .is_finished()
                .then(|| (backup.name_any(), status.clone()))
        })
        .max_by(|a, b| a.1.completed_at.cmp(&b.1.completed_at))
}

/// True when the newest finished backup completed.
pub fn succeeded(status: &ShanraqBackupStatus) -> bool {
    status.phase.as_deref() == Some(PHASE_COMPLETED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().expect("time")
    }

    #[test]
    fn the_first_slot_is_recorded_then_each_new_one_fires_once() {
        let now = at("2026-12-02T04:20:00Z");
        assert_eq!(
            slot("0 * * * *", None, now).ok(),
            Some(Slot::Record(at("2026-12-02T04:00:00Z")))
        );
        assert_eq!(
            slot("0 * * * *", Some(at("2026-12-02T04:00:00Z")), now).ok(),
            Some(Slot::Nothing)
        );
        assert_eq!(
            slot(
                "0 * * * *",
                Some(at("2026-12-02T04:00:00Z")),
                at("2026-12-02T05:00:30Z")
            )
            .ok(),
            Some(Slot::Fire(at("2026-12-02T05:00:00Z")))
        );
        // Missed slots collapse into the latest one.
        assert_eq!(
            slot(
                "0 * * * *",
                Some(at("2026-12-02T01:00:00Z")),
                at("2026-12-02T05:10:00Z")
            )
            .ok(),
            Some(Slot::Fire(at("2026-12-02T05:00:00Z")))
        );
        assert_eq!(slot("", None, now).ok(), Some(Slot::Nothing));
        assert!(slot("every hour", None, now).is_err());
    }

    #[test]
    fn a_slot_names_its_backup() {
        let spec = shanraq_api::cluster::ShanraqClusterSpec::default();
        let mut object = ShanraqCluster::new("payments", spec);
        object.metadata.namespace = Some("fintech".to_owned());
        object.metadata.uid = Some("uid".to_owned());
        let valid =
            shanraq_api::validate(&object, &shanraq_api::LiveState::default()).expect("valid");
        let backup = scheduled_backup(&valid, BackupType::Diff, at("2026-12-02T05:00:00Z"));
        assert_eq!(backup.name_any(), "payments-diff-202612020500");
        assert_eq!(backup.spec.cluster, "payments");
        assert_eq!(
            backup.metadata.owner_references.expect("owner")[0].name,
            "payments"
        );
    }

    /// Against the mocked API server: a due slot creates its ShanraqBackup, owned by the
    /// cluster, and is recorded; an empty differential schedule creates nothing.
    #[tokio::test]
    async fn a_due_slot_creates_its_backup_and_is_recorded() {
        use crate::fixtures::{Scenario, context, finish};
        use http::{Method, StatusCode};
        let mut spec = shanraq_api::cluster::ShanraqClusterSpec {
            backup: Some(BackupSpec::new(
                "https://s3.example.com",
                "backups",
                "creds",
            )),
            ..shanraq_api::cluster::ShanraqClusterSpec::default()
        };
        if let Some(backup) = spec.backup.as_mut() {
            backup.schedules.full = "0 * * * *".to_owned();
            backup.schedules.differential = String::new();
        }
        let mut object = ShanraqCluster::new("payments", spec);
        object.metadata.namespace = Some("fintech".to_owned());
        object.metadata.uid = Some("uid".to_owned());
        let valid =
            shanraq_api::validate(&object, &shanraq_api::LiveState::default()).expect("valid");
        let (ctx, handle) = context(Some(false));
        let server = Scenario::new("fintech")
            .expect(
                "POST the scheduled ShanraqBackup",
                Method::POST,
                "/apis/shanraq.org/v1alpha1/namespaces/fintech/shanraqbackups",
                |request| {
                    (
                        StatusCode::CREATED,
                        request.body.clone().unwrap_or_default(),
                    )
                },
            )
            .serve(handle);
        let mut status = BackupStatus {
            last_scheduled_full: Some("2026-12-02T03:00:00Z".to_owned()),
            ..BackupStatus::default()
        };
        let spec = valid.spec.backup.clone().expect("backup");
        run(
            &ctx.client,
            &valid,
            &spec,
            &mut status,
            at("2026-12-02T04:00:10Z"),
        )
        .await;
        drop(ctx);
        let report = finish(server).await;
        let created = report.requests[0].body.clone().expect("body");
        assert_eq!(created["metadata"]["name"], "payments-full-202612020400");
        assert_eq!(created["spec"]["cluster"], "payments");
        assert_eq!(created["metadata"]["ownerReferences"][0]["uid"], "uid");
        assert_eq!(
            status.last_scheduled_full.as_deref(),
            Some("2026-12-02T04:00:00Z")
        );
        assert_eq!(status.last_scheduled_differential, None);
    }

    #[test]
    fn the_newest_finished_backup_decides() {
        let backup = |name: &str, phase: &str, completed: &str| {
            let mut backup = ShanraqBackup::new(
                name,
                ShanraqBackupSpec {
                    cluster: "payments".to_owned(),
                    kind: BackupType::Full,
                },
            );
            backup.status = Some(ShanraqBackupStatus {
                phase: Some(phase.to_owned()),
                completed_at: Some(completed.to_owned()),
                ..ShanraqBackupStatus::default()
            });
            backup
        };
        let backups = vec![
            backup("a", "Completed", "2026-12-02T03:00:00Z"),
            backup("b", "Failed", "2026-12-02T04:00:00Z"),
            backup("c", "Running", "2026-12-02T05:00:00Z"),
        ];
        let (name, status) = newest_finished("payments", &backups).expect("one");
        assert_eq!(name, "b");
        assert!(!succeeded(&status));
        assert_eq!(newest_finished("other", &backups), None);
    }
}
