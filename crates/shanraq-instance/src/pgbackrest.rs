//! pgBackRest, run by the manager as the postgres user: the stanza, backups on request, the
//! repository's contents, and the restore of a recovering cluster. Postgres itself runs
//! `archive-push` from the rendered `archive_command` with the same environment, which the
//! manager sets on every process it starts: the rendered pgbackrest.conf, this instance's data
//! dir and port, a lock dir of its own, and how to reach postgres (TCP to the local address,
//! the superuser's password from the libpq password file). The S3 key pair arrives in the
//! manager's own environment (`PGBACKREST_REPO1_S3_KEY`, `_KEY_SECRET`, set by the pod spec)
//! and is inherited; it is scrubbed from every output the manager keeps.

use std::ffi::OsString;

use serde::Deserialize;
use shanraq_ha::wire::{BackupInfo, BackupKind, BackupPeer, RepositoryInfo};

use crate::args::{BackupSettings, Recovery, RecoveryTarget, Settings};
use crate::error::InstanceError;
use crate::osuser::PgUser;

/// pgBackRest's variables that hold secrets: their values never appear in an error.
const SECRET_VARIABLES: &[&str] = &[
    "PGBACKREST_REPO1_S3_KEY",
    "PGBACKREST_REPO1_S3_KEY_SECRET",
    "PGBACKREST_REPO1_S3_TOKEN",
];

/// The variables every pgBackRest run of this instance (and postgres, for `archive_command`
/// and `restore_command`) needs. Empty without `--backup-config`.
pub fn environment(settings: &Settings) -> Vec<(&'static str, OsString)> {
    let Some(backup) = &settings.backup else {
        return Vec::new();
    };
    vec![
        ("PGBACKREST_CONFIG", backup.config.clone().into_os_string()),
        (
            "PGBACKREST_PG1_PATH",
            settings.data_dir.clone().into_os_string(),
        ),
        ("PGBACKREST_PG1_PORT", settings.pg_port.to_string().into()),
        (
            "PGBACKREST_LOCK_PATH",
            backup.lock_dir.clone().into_os_string(),
        ),
        (
            "PGBACKREST_SPOOL_PATH",
            backup.lock_dir.clone().into_os_string(),
        ),
        (
            "PGBACKREST_LOG_PATH",
            backup.lock_dir.clone().into_os_string(),
        ),
        // No pg1-socket-path: libpq then takes the host from PGHOST, and postgres listens on
        // TCP only (the manager turns its unix socket off).
        ("PGHOST", settings.local_host().into()),
        ("PGPASSFILE", settings.passfile.clone().into_os_string()),
        ("PGUSER", "postgres".into()),
    ]
}

/// `text` with the value of every secret variable of this process replaced.
pub fn scrub(text: &str) -> String {
    let values: Vec<String> = SECRET_VARIABLES
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .collect();
    scrub_values(text, &values)
}

fn scrub_values(text: &str, values: &[String]) -> String {
    let mut text = text.to_string();
    for value in values.iter().filter(|value| !value.is_empty()) {
        text = text.replace(value.as_str(), "<redacted>");
    }
    text
}

fn settings_of(settings: &Settings) -> Result<&BackupSettings, InstanceError> {
    settings.backup.as_ref().ok_or_else(|| {
        InstanceError::Refused("backups are not configured (no --backup-config)".to_string())
    })
}

/// pgBackRest's exit code when another of its processes holds the stanza's lock (an
/// `archive-push` of postgres' archiver, typically): retried for up to `LOCK_WAIT`. So is a
/// lock held on a remote host: a backup from a standby right after its `stanza-create` can
/// find the primary's pgBackRest process of that command still holding the lock.
const LOCK_HELD: &str = "exit status: 50";
const REMOTE_LOCK_HELD: &str = "LockAcquireError";
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

async fn run(
    settings: &Settings,
    user: &PgUser,
    stanza: &str,
    args: &[String],
) -> Result<String, InstanceError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        match run_once(settings, user, stanza, args).await {
            Err(InstanceError::ToolFailed { status, output, .. })
                if (status == LOCK_HELD || output.contains(REMOTE_LOCK_HELD))
                    && std::time::Instant::now() + delay < deadline =>
            {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

async fn run_once(
    settings: &Settings,
    user: &PgUser,
    stanza: &str,
    args: &[String],
) -> Result<String, InstanceError> {
    let backup = settings_of(settings)?;
    crate::config::private_dir(&backup.lock_dir, user)?;
    let mut command = user.command(std::path::Path::new("pgbackrest"));
    command.envs(environment(settings));
    command.arg(format!("--stanza={stanza}")).args(args);
    let what = format!("pgbackrest {}", args.last().map_or("", String::as_str));
    crate::tools::run(command, &what)
        .await
        .map_err(|error| match error {
            InstanceError::ToolFailed {
                program,
                status,
                output,
            } => InstanceError::ToolFailed {
                program,
                status,
                output: scrub(&output),
            },
            other => other,
        })
}

/// `stanza-create` for this cluster's stanza; succeeds when it already exists and matches.
pub async fn stanza_create(settings: &Settings, user: &PgUser) -> Result<(), InstanceError> {
    let stanza = settings_of(settings)?.stanza.clone();
    run(settings, user, &stanza, &["stanza-create".to_string()])
        .await
        .map(|_| ())
}

/// A backup, then what the repository says about it. On the primary (`primary` is `None`)
/// pgBackRest backs this instance up alone. On a replica it backs up with `backup-standby`:
/// pg1 is the primary, reached through its pgBackRest TLS server, which starts and stops the
/// backup; the data files are copied from this standby (pg2) once it has replayed up to the
/// backup's start.
pub async fn backup(
    settings: &Settings,
    user: &PgUser,
    kind: BackupKind,
    primary: Option<&BackupPeer>,
) -> Result<BackupInfo, InstanceError> {
    let backup = settings_of(settings)?;
    let stanza = backup.stanza.clone();
    let mut args = Vec::new();
    if let Some(primary) = primary {
        let tls = backup.tls.as_ref().ok_or_else(|| {
            InstanceError::Refused(
                "a backup from this standby needs the cluster's pgBackRest CA (no --backup-tls-dir)"
                    .to_string(),
            )
        })?;
        args = crate::pgbackrest_server::standby_args(
            settings,
            &crate::pgbackrest_server::files(tls),
            primary,
        );
    }
    let mut create = args.clone();
    create.push("stanza-create".to_string());
    run(settings, user, &stanza, &create).await?;
    if primary.is_some() {
        args.push("--backup-standby".to_string());
    }
    args.push(format!("--type={}", kind.as_str()));
    args.push("backup".to_string());
    let output = run(settings, user, &stanza, &args).await?;
    tracing::debug!(output = %scrub(&output), "pgbackrest backup");
    let repository = info(settings, user, &stanza).await?;
    let mut last = repository.backups.last().cloned().ok_or_else(|| {
        InstanceError::Refused("pgbackrest backup succeeded but lists no backup".to_string())
    })?;
    last.instance = Some(settings.name.clone());
    Ok(last)
}

/// The backups and archive range of `stanza`, oldest backup first.
pub async fn info(
    settings: &Settings,
    user: &PgUser,
    stanza: &str,
) -> Result<RepositoryInfo, InstanceError> {
    let text = run(
        settings,
        user,
        stanza,
        &["--output=json".to_string(), "info".to_string()],
    )
    .await?;
    parse_info(&text, stanza)
}

#[derive(Deserialize)]
struct InfoStanza {
    name: String,
    #[serde(default)]
    backup: Vec<InfoBackup>,
    #[serde(default)]
    archive: Vec<InfoArchive>,
}

#[derive(Deserialize)]
struct InfoBackup {
    label: String,
    #[serde(rename = "type")]
    kind: String,
    timestamp: InfoTimestamp,
}

#[derive(Deserialize)]
struct InfoTimestamp {
    start: i64,
    stop: i64,
}

#[derive(Deserialize)]
struct InfoArchive {
    #[serde(default)]
    min: Option<String>,
    #[serde(default)]
    max: Option<String>,
}

fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|time| time.to_string())
        .unwrap_or_default()
}

/// `pgbackrest info --output=json`, for one stanza.
pub fn parse_info(text: &str, stanza: &str) -> Result<RepositoryInfo, InstanceError> {
    let stanzas: Vec<InfoStanza> = serde_json::from_str(text).map_err(|error| {
        InstanceError::Refused(format!("pgbackrest info printed no stanza list: {error}"))
    })?;
    let Some(found) = stanzas.into_iter().find(|entry| entry.name == stanza) else {
        return Ok(RepositoryInfo::default());
    };
    let backups = found
        .backup
        .into_iter()
        .map(|backup| BackupInfo {
            label: backup.label,
            kind: backup.kind,
            started_at: rfc3339(backup.timestamp.start),
            completed_at: rfc3339(backup.timestamp.stop),
            instance: None,
        })
        .collect();
    let archive = found.archive.into_iter().next();
    Ok(RepositoryInfo {
        backups,
        archive_min: archive.as_ref().and_then(|range| range.min.clone()),
        archive_max: archive.and_then(|range| range.max),
    })
}

/// After a promotion onto timeline `new_timeline`: pushes every completed segment of older
/// timelines still in pg_wal. A primary that crashed may not have archived its last completed
/// segments; the promoted standby streamed the same WAL. A segment already in the archive is
/// skipped by pgBackRest when its checksum is the same; when it differs (the primary's copy
/// of a switched segment carries other bytes past the switch, which recovery never reads) the
/// archive keeps the primary's and the push is refused, which is logged and harmless. Returns
/// how many segments were pushed or found already archived.
pub async fn push_previous_timeline(
    settings: &Settings,
    user: &PgUser,
    new_timeline: u32,
) -> Result<usize, InstanceError> {
    let stanza = settings_of(settings)?.stanza.clone();
    let wal_dir = settings.data_dir.join("pg_wal");
    let entries = std::fs::read_dir(&wal_dir)
        .map_err(|source| InstanceError::io(format!("reading {}", wal_dir.display()), source))?;
    let mut segments: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| is_segment_before(name, new_timeline))
        .collect();
    segments.sort();
    let mut archived = 0;
    for segment in segments {
        let path = wal_dir.join(&segment);
        match run(
            settings,
            user,
            &stanza,
            &["archive-push".to_string(), path.display().to_string()],
        )
        .await
        {
            Ok(_) => archived += 1,
            Err(error) => {
                tracing::info!(%segment, %error, "segment of the previous timeline not pushed")
            }
        }
    }
    Ok(archived)
}

/// A WAL segment file name (24 hex digits) of a timeline older than `timeline`.
fn is_segment_before(name: &str, timeline: u32) -> bool {
    name.len() == 24
        && name.chars().all(|c| c.is_ascii_hexdigit())
        && u32::from_str_radix(&name[..8], 16).is_ok_and(|tli| tli < timeline)
}

/// `pgbackrest restore` of `recovery.source` into the (empty) data dir. pgBackRest writes the
/// recovery settings (`restore_command` from the source stanza, the target) into
/// postgresql.auto.conf and creates recovery.signal; postgres then replays the archive up to
/// the target, following timeline switches (`recovery_target_timeline = latest`), and
/// promotes itself onto a new timeline.
pub async fn restore(
    settings: &Settings,
    user: &PgUser,
    recovery: &Recovery,
) -> Result<String, InstanceError> {
    let mut args = Vec::new();
    match &recovery.target {
        RecoveryTarget::Latest => args.push("--type=default".to_string()),
        RecoveryTarget::Time(time) => {
            args.push("--type=time".to_string());
            args.push(format!("--target={}", target_time(time)?));
            args.push("--target-action=promote".to_string());
        }
        RecoveryTarget::Lsn(lsn) => {
            args.push("--type=lsn".to_string());
            args.push(format!("--target={lsn}"));
            args.push("--target-action=promote".to_string());
        }
    }
    args.push("restore".to_string());
    run(settings, user, &recovery.source, &args).await
}

/// An RFC 3339 time as pgBackRest takes a target (`YYYY-MM-DD HH:MM:SS.ffffff+00`, UTC).
fn target_time(time: &str) -> Result<String, InstanceError> {
    let timestamp: jiff::Timestamp = time.parse().map_err(|error| InstanceError::InvalidArg {
        flag: "--recovery-target-time",
        reason: format!("{time:?} is not an RFC 3339 time: {error}"),
    })?;
    Ok(format!(
        "{}+00",
        timestamp
            .to_zoned(jiff::tz::TimeZone::UTC)
            .strftime("%Y-%m-%d %H:%M:%S%.6f")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_times_are_given_in_utc() {
        assert_eq!(
            target_time("2026-12-02T05:35:24.888153+02:00").expect("parses"),
            "2026-12-02 03:35:24.888153+00"
        );
        assert!(target_time("yesterday").is_err());
    }

    #[test]
    fn info_lists_backups_oldest_first() {
        let text = r#"[{"name":"payments","backup":[
            {"label":"20261202-031515F","type":"full","timestamp":{"start":1796181315,"stop":1796181320}},
            {"label":"20261202-031515F_20261202-041500D","type":"diff","timestamp":{"start":1796184900,"stop":1796184903}}],
            "archive":[{"id":"15-1","min":"000000010000000000000001","max":"000000020000000000000009"}]}]"#;
        let info = parse_info(text, "payments").expect("parses");
        assert_eq!(info.backups.len(), 2);
        assert_eq!(info.backups[0].kind, "full");
        assert_eq!(info.backups[0].started_at, "2026-12-02T03:15:15Z");
        assert_eq!(
            info.archive_max.as_deref(),
            Some("000000020000000000000009")
        );
        assert_eq!(parse_info(text, "other").expect("parses").backups.len(), 0);
    }

    #[test]
    fn only_completed_segments_of_older_timelines_are_pushed() {
        assert!(is_segment_before("000000010000000000000005", 2));
        assert!(!is_segment_before("000000020000000000000005", 2));
        assert!(!is_segment_before("000000010000000000000005.partial", 2));
        assert!(!is_segment_before("00000002.history", 3));
        assert!(!is_segment_before("archive_status", 2));
    }

    #[test]
    fn secret_values_are_scrubbed() {
        let values = [
            "AKIATESTSCRUBVALUE".to_string(),
            "s3cr3t/with+chars".to_string(),
        ];
        let text =
            "key AKIATESTSCRUBVALUE refused, secret s3cr3t/with+chars, again AKIATESTSCRUBVALUE";
        let scrubbed = scrub_values(text, &values);
        assert_eq!(
            scrubbed,
            "key <redacted> refused, secret <redacted>, again <redacted>"
        );
    }
}
