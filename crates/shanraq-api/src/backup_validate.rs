//! The `spec.backup` and `spec.bootstrap.recovery` rules no CEL expression can state: cron
//! schedules that parse, a recovery time that is a real instant, an endpoint port in range,
//! and a recovery source other than the cluster itself (two clusters archiving into one
//! stanza would corrupt it). Each error names its field.

use std::str::FromStr;

use crate::admission::FieldError;
use crate::cluster::ShanraqClusterSpec;

/// Why a backup schedule is refused, or its next run cannot be found; the text is the
/// message of the schedule's field.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "{schedule:?} has {fields} fields; a schedule has five (minute hour day-of-month month day-of-week)"
    )]
    FieldCount { schedule: String, fields: usize },
    #[error("{schedule:?}: {error}")]
    Syntax {
        schedule: String,
        error: croner::errors::CronError,
    },
    #[error("{error}")]
    NextRun {
        schedule: String,
        error: croner::errors::CronError,
    },
}

/// The schedule's next run after `after`, in UTC; `None` when it never runs again.
pub fn next_run(schedule: &str, after: &jiff::Zoned) -> Result<Option<jiff::Zoned>, ScheduleError> {
    let cron = parse_schedule(schedule)?;
    match cron.find_next_occurrence(after, false) {
        Ok(next) => Ok(Some(next)),
        Err(croner::errors::CronError::TimeSearchLimitExceeded) => Ok(None),
        Err(error) => Err(ScheduleError::NextRun {
            schedule: schedule.to_owned(),
            error,
        }),
    }
}

/// A five-field cron expression (minute hour day-of-month month day-of-week).
pub fn parse_schedule(schedule: &str) -> Result<croner::Cron, ScheduleError> {
    let fields = schedule.split_whitespace().count();
    if fields != 5 {
        return Err(ScheduleError::FieldCount {
            schedule: schedule.to_owned(),
            fields,
        });
    }
    croner::Cron::from_str(schedule).map_err(|error| ScheduleError::Syntax {
        schedule: schedule.to_owned(),
        error,
    })
}

pub fn check(name: &str, spec: &ShanraqClusterSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut error = |field: &str, message: String| {
        errors.push(FieldError {
            field: field.to_owned(),
            message,
        })
    };
    if let Some(backup) = &spec.backup {
        if let Err(refused) = parse_schedule(&backup.schedules.full) {
            error("spec.backup.schedules.full", refused.to_string());
        }
        if !backup.schedules.differential.is_empty()
            && let Err(refused) = parse_schedule(&backup.schedules.differential)
        {
            error("spec.backup.schedules.differential", refused.to_string());
        }
        let rest = backup
            .endpoint
            .strip_prefix("https://")
            .unwrap_or(&backup.endpoint);
        if let Some((_, port)) = rest.rsplit_once(':')
            && !port.parse::<u16>().is_ok_and(|port| port > 0)
        {
            error(
                "spec.backup.endpoint",
                format!("port {port} is not in 1-65535"),
            );
        }
    }
    if let Some(recovery) = &spec.bootstrap.recovery {
        if recovery.source == name {
            error(
                "spec.bootstrap.recovery.source",
                format!(
                    "{name} cannot recover from its own backups: the new cluster archives into the stanza named after it; give it another name"
                ),
            );
        }
        if let Some(time) = &recovery.target_time
            && time.parse::<jiff::Timestamp>().is_err()
        {
            error(
                "spec.bootstrap.recovery.targetTime",
                format!("{time:?} is not an RFC 3339 time"),
            );
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::{BackupSpec, RecoverySpec};

    fn spec() -> ShanraqClusterSpec {
        ShanraqClusterSpec {
            backup: Some(BackupSpec::new(
                "https://s3.example.com:9000",
                "bucket",
                "creds",
            )),
            ..ShanraqClusterSpec::default()
        }
    }

    #[test]
    fn default_schedules_parse() {
        assert!(check("payments", &spec()).is_empty());
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut spec = spec();
        let backup = spec.backup.as_mut().expect("backup");
        backup.schedules.full = "every day".to_owned();
        backup.schedules.differential = "61 * * * *".to_owned();
        backup.endpoint = "https://s3.example.com:99999".to_owned();
        spec.bootstrap.recovery = Some(RecoverySpec {
            source: "payments".to_owned(),
            target_time: Some("2026-13-40T00:00:00Z".to_owned()),
            target_lsn: None,
            latest: None,
        });
        let fields: Vec<String> = check("payments", &spec)
            .into_iter()
            .map(|error| error.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.backup.schedules.full",
                "spec.backup.schedules.differential",
                "spec.backup.endpoint",
                "spec.bootstrap.recovery.source",
                "spec.bootstrap.recovery.targetTime",
            ]
        );
    }

    #[test]
    fn next_run_of_an_hourly_schedule() {
        let after: jiff::Zoned = "2026-12-02T03:20:00+00:00[UTC]".parse().expect("time");
        let next = next_run("0 * * * *", &after)
            .expect("parses")
            .expect("runs");
        assert_eq!(next.timestamp().to_string(), "2026-12-02T04:00:00Z");
    }
}
