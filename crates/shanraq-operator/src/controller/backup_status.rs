//! Status of WAL archiving and backups (`spec.backup`), from the primary's instance manager as
//! the HA task last sampled it: the `ContinuousArchiving` condition (pgBackRest's
//! `archive-push` works), the disaster-recovery RPO objective `DRRPOMet` (the age of the last
//! archived WAL segment against `objectives.dr.rpo`, zero when the primary has written nothing
//! since) and `status.backup`. Pure: the time is passed in.

use std::time::Duration;

use shanraq_api::ValidCluster;
use shanraq_api::conditions::{CONTINUOUS_ARCHIVING, DR_RPO_MET, LAST_BACKUP_SUCCEEDED};
use shanraq_api::status::{BackupRecord, BackupStatus, ObjectiveStatus};
use shanraq_ha::wire::{ArchiverStatus, InstanceStatus, Lsn};

use super::status::{Truth, Want};

/// PostgreSQL's default WAL segment size, which the operator never changes.
const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// What the primary said about archiving.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ArchiveObservation {
    pub primary: String,
    pub archiver: Option<ArchiverStatus>,
    pub current_lsn: Option<Lsn>,
    pub last_backup: Option<BackupRecord>,
    pub first_recoverability_point: Option<String>,
}

impl ArchiveObservation {
    /// From the primary's sampled status.
    pub fn of(status: &InstanceStatus) -> ArchiveObservation {
        let repository = status.repository.as_ref();
        ArchiveObservation {
            primary: status.name.clone(),
            archiver: status.archiver.as_deref().cloned(),
            current_lsn: status.current_lsn,
            last_backup: repository
                .and_then(|r| r.backups.last())
                .map(|b| BackupRecord {
                    label: b.label.clone(),
                    type_: b.kind.clone(),
                    started_at: b.started_at.clone(),
                    completed_at: b.completed_at.clone(),
                    instance: b.instance.clone(),
                }),
            first_recoverability_point: repository
                .and_then(|r| r.backups.first())
                .map(|b| b.started_at.clone()),
        }
    }
}

/// The LSN where a segment file ends (`TTTTTTTTXXXXXXXXYYYYYYYY`: timeline, log, segment).
pub fn segment_end(name: &str) -> Option<Lsn> {
    if name.len() != 24 || !name.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let log = u64::from_str_radix(&name[8..16], 16).ok()?;
    let segment = u64::from_str_radix(&name[16..24], 16).ok()?;
    let segments_per_log = 0x1_0000_0000 / SEGMENT_BYTES;
    Some(Lsn((log * segments_per_log + segment + 1) * SEGMENT_BYTES))
}

/// The DR RPO now: zero when the primary wrote nothing past the last archived segment (an
/// idle cluster has nothing to lose), else the age of that segment's archiving.
pub fn dr_rpo(observation: &ArchiveObservation, now: jiff::Timestamp) -> Option<Duration> {
    let archiver = observation.archiver.as_ref()?;
    let wal = archiver.last_archived_wal.as_deref()?;
    let at: jiff::Timestamp = archiver.last_archived_at.as_deref()?.parse().ok()?;
    if let (Some(end), Some(current)) = (segment_end(wal), observation.current_lsn)
        && current.0 <= end.0
    {
        return Some(Duration::ZERO);
    }
    let age = now.duration_since(at);
    Some(Duration::try_from(age).unwrap_or(Duration::ZERO))
}

/// Whole seconds, rounded up to a multiple of 5 in the status: the age moves every second,
/// and a status that changed at every reconcile would be written at every reconcile. The
/// metric keeps the exact value.
fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    format!("{}s", secs.div_ceil(5) * 5)
}

/// `ContinuousArchiving` and `DRRPOMet`, with the DR RPO beside its target; nothing when the
/// cluster has no `spec.backup`.
pub fn conditions(
    cluster: &ValidCluster,
    observation: Option<&ArchiveObservation>,
    now: jiff::Timestamp,
) -> (Vec<Want>, Option<ObjectiveStatus>) {
    if cluster.spec.backup.is_none() || !cluster.spec.postgres.enabled {
        return (Vec::new(), None);
    }
    let target = cluster.spec.objectives.dr.rpo;
    let Some(observation) = observation else {
        return (
            vec![
                Want::new(
                    CONTINUOUS_ARCHIVING,
                    Truth::Unknown,
                    "NotMeasured",
                    "the primary's archiver has not been sampled yet",
                ),
                Want::new(
                    DR_RPO_MET,
                    Truth::Unknown,
                    "NotMeasured",
                    format!("DR RPO not measured yet; target {target}"),
                ),
            ],
            None,
        );
    };
    let archiving = match &observation.archiver {
        None => Want::new(
            CONTINUOUS_ARCHIVING,
            Truth::Unknown,
            "NotMeasured",
            format!("{} did not report pg_stat_archiver", observation.primary),
        ),
        Some(archiver) if archiver.healthy() => Want::new(
            CONTINUOUS_ARCHIVING,
            Truth::True,
            "Archiving",
            match (&archiver.last_archived_wal, &archiver.last_archived_at) {
                (Some(wal), Some(at)) => format!(
                    "{} archived {wal} at {at} ({} segments)",
                    observation.primary, archiver.archived_count
                ),
                _ => format!("{} has archived nothing yet", observation.primary),
            },
        ),
        Some(archiver) => Want::new(
            CONTINUOUS_ARCHIVING,
            Truth::False,
            "ArchiveFailing",
            format!(
                "{} failed to archive {} at {} ({} failures); pgBackRest's error is in its log",
                observation.primary,
                archiver.last_failed_wal.as_deref().unwrap_or("a segment"),
                archiver
                    .last_failed_at
                    .as_deref()
                    .unwrap_or("an unknown time"),
                archiver.failed_count
            ),
        ),
    };
    let (rpo, objective) = match dr_rpo(observation, now) {
        Some(measured) => {
            let met = measured <= target.as_std();
            (
                Want::new(
                    DR_RPO_MET,
                    Truth::of(met),
                    if met { "Met" } else { "Exceeded" },
                    format!(
                        "DR RPO {} (last archived WAL on {}) {} target {target}",
                        seconds(measured),
                        observation.primary,
                        if met { "<=" } else { ">" }
                    ),
                ),
                Some(ObjectiveStatus {
                    target: target.to_string(),
                    measured: seconds(measured),
                    met,
                    component: Some("PostgreSQL".to_owned()),
                }),
            )
        }
        None => (
            Want::new(
                DR_RPO_MET,
                Truth::Unknown,
                "NotMeasured",
                format!(
                    "{} has archived no WAL yet; target {target}",
                    observation.primary
                ),
            ),
            None,
        ),
    };
    (vec![archiving, rpo], objective)
}

/// `LastBackupSucceeded` from the newest finished ShanraqBackup: True with its label, False
/// with pgBackRest's error; nothing without `spec.backup`.
pub fn last_backup_condition(
    cluster: &ValidCluster,
    last: Option<&(String, shanraq_api::backup_request::ShanraqBackupStatus)>,
) -> Option<Want> {
    cluster.spec.backup.as_ref()?;
    Some(match last {
        None => Want::new(
            LAST_BACKUP_SUCCEEDED,
            Truth::Unknown,
            "NoBackupYet",
            "no ShanraqBackup of this cluster has finished yet",
        ),
        Some((name, status)) if super::backup_schedule::succeeded(status) => Want::new(
            LAST_BACKUP_SUCCEEDED,
            Truth::True,
            "BackupCompleted",
            format!(
                "ShanraqBackup {name} completed{}",
                status
                    .label
                    .as_ref()
                    .map(|label| format!(": {label}"))
                    .unwrap_or_default()
            ),
        ),
        Some((name, status)) => Want::new(
            LAST_BACKUP_SUCCEEDED,
            Truth::False,
            "BackupFailed",
            format!(
                "ShanraqBackup {name} failed: {}",
                status.message.as_deref().unwrap_or("no message")
            ),
        ),
    })
}

/// `status.backup` from the observation; `None` without `spec.backup`.
pub fn status(
    cluster: &ValidCluster,
    previous: Option<&BackupStatus>,
    observation: Option<&ArchiveObservation>,
) -> Option<BackupStatus> {
    cluster.spec.backup.as_ref()?;
    let mut next = previous.cloned().unwrap_or_default();
    if let Some(observation) = observation {
        if let Some(archiver) = &observation.archiver
            && archiver.last_archived_wal.is_some()
        {
            next.last_archived_wal = archiver.last_archived_wal.clone();
            next.last_archived_at = archiver.last_archived_at.clone();
        }
        if observation.last_backup.is_some() {
            next.last_backup = observation.last_backup.clone();
            next.first_recoverability_point = observation.first_recoverability_point.clone();
        }
    }
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shanraq_api::backup::BackupSpec;
    use shanraq_api::cluster::{ShanraqCluster, ShanraqClusterSpec};

    fn cluster() -> ValidCluster {
        let spec = ShanraqClusterSpec {
            backup: Some(BackupSpec::new(
                "https://s3.example.com",
                "backups",
                "creds",
            )),
            ..ShanraqClusterSpec::default()
        };
        let mut object = ShanraqCluster::new("payments", spec);
        object.metadata.namespace = Some("fintech".to_owned());
        shanraq_api::validate(&object, &shanraq_api::LiveState::default()).expect("valid")
    }

    fn observed(wal: &str, at: &str, current: u64) -> ArchiveObservation {
        ArchiveObservation {
            primary: "payments-pg-0".to_owned(),
            archiver: Some(ArchiverStatus {
                archived_count: 7,
                last_archived_wal: Some(wal.to_owned()),
                last_archived_at: Some(at.to_owned()),
                ..ArchiverStatus::default()
            }),
            current_lsn: Some(Lsn(current)),
            ..ArchiveObservation::default()
        }
    }

    fn now() -> jiff::Timestamp {
        "2026-12-02T04:00:00Z".parse().expect("time")
    }

    #[test]
    fn segment_names_give_their_end() {
        assert_eq!(
            segment_end("000000020000000000000006"),
            Some(Lsn(7 * SEGMENT_BYTES))
        );
        assert_eq!(
            segment_end("0000000100000001000000FF"),
            Some(Lsn(0x2_0000_0000))
        );
        assert_eq!(segment_end("00000002.history"), None);
    }

    #[test]
    fn the_dr_rpo_is_the_age_of_the_last_archive_while_wal_waits() {
        let observation = observed(
            "000000010000000000000006",
            "2026-12-02T03:59:00Z",
            7 * SEGMENT_BYTES + 100,
        );
        assert_eq!(dr_rpo(&observation, now()), Some(Duration::from_secs(60)));
        let (wants, objective) = conditions(&cluster(), Some(&observation), now());
        assert_eq!(wants[0].truth, Truth::True, "{wants:?}");
        assert_eq!(wants[1].truth, Truth::True, "60s <= 60s: {wants:?}");
        assert_eq!(objective.expect("measured").measured, "60s");

        let late = observed(
            "000000010000000000000006",
            "2026-12-02T03:58:00Z",
            7 * SEGMENT_BYTES + 100,
        );
        let (wants, objective) = conditions(&cluster(), Some(&late), now());
        assert_eq!(wants[1].truth, Truth::False, "{wants:?}");
        assert!(wants[1].message.contains("120s"), "{wants:?}");
        assert!(!objective.expect("measured").met);
    }

    #[test]
    fn an_idle_primary_has_nothing_to_lose() {
        let observation = observed(
            "000000010000000000000006",
            "2026-12-02T03:00:00Z",
            7 * SEGMENT_BYTES,
        );
        assert_eq!(dr_rpo(&observation, now()), Some(Duration::ZERO));
    }

    #[test]
    fn a_failing_archive_command_is_a_false_condition() {
        let mut observation = observed(
            "000000010000000000000006",
            "2026-12-02T03:59:00Z",
            7 * SEGMENT_BYTES,
        );
        if let Some(archiver) = observation.archiver.as_mut() {
            archiver.failed_count = 3;
            archiver.last_failed_wal = Some("000000010000000000000007".to_owned());
            archiver.last_failed_at = Some("2026-12-02T03:59:30Z".to_owned());
        }
        let (wants, _) = conditions(&cluster(), Some(&observation), now());
        assert_eq!(wants[0].truth, Truth::False);
        assert_eq!(wants[0].reason, "ArchiveFailing");
        assert!(wants[0].message.contains("000000010000000000000007"));
    }

    #[test]
    fn no_backup_spec_means_no_backup_conditions() {
        let mut valid = cluster();
        valid.spec.backup = None;
        assert!(conditions(&valid, None, now()).0.is_empty());
        assert_eq!(status(&valid, None, None), None);
    }
}
