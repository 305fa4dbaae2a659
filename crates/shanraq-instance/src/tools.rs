//! The PostgreSQL programs the manager runs besides postgres itself: initdb, pg_basebackup,
//! pg_rewind and pg_controldata, each as the postgres user, with its output kept for errors.
//! Passwords reach them only through the password file, never on a command line.

use std::path::Path;
use std::process::Stdio;

use shanraq_ha::wire::Lsn;

use crate::args::Settings;
use crate::config::quote_conninfo;
use crate::error::InstanceError;
use crate::osuser::PgUser;

pub(crate) async fn run(
    mut command: tokio::process::Command,
    program: &str,
) -> Result<String, InstanceError> {
    let output = command
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| InstanceError::io(format!("running {program}"), source))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(InstanceError::ToolFailed {
            program: program.to_string(),
            status: output.status.to_string(),
            output: text.trim().to_string(),
        })
    }
}

/// `initdb` with data checksums and scram-sha-256; the superuser password goes through a
/// password file beside the data dir that is removed right after.
pub async fn initdb(settings: &Settings, user: &PgUser) -> Result<(), InstanceError> {
    let pwfile = settings.passfile.with_extension("initdb-pw");
    user.write(
        &pwfile,
        &format!("{}\n", settings.superuser_password.expose()),
        0o600,
    )?;
    let mut command = user.command(&settings.tool("initdb"));
    command
        .arg("--pgdata")
        .arg(&settings.data_dir)
        .args([
            "--username=postgres",
            "--auth=scram-sha-256",
            "--data-checksums",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ])
        .arg(format!("--pwfile={}", pwfile.display()));
    let result = run(command, "initdb").await;
    let _ = std::fs::remove_file(&pwfile);
    result.map(|_| ())
}

/// `pg_basebackup -R` of `host:port` into the (empty) data dir, streaming WAL.
pub async fn basebackup(
    settings: &Settings,
    user: &PgUser,
    host: &str,
    port: u16,
) -> Result<(), InstanceError> {
    let conninfo = format!(
        "host={} port={port} user={} application_name={} connect_timeout=5",
        quote_conninfo(host),
        quote_conninfo(&settings.replication_user),
        quote_conninfo(&settings.name),
    );
    let mut command = user.command(&settings.tool("pg_basebackup"));
    command
        .env("PGPASSFILE", &settings.passfile)
        .arg("--pgdata")
        .arg(&settings.data_dir)
        .arg(format!("--dbname={conninfo}"))
        .args([
            "--write-recovery-conf",
            "--wal-method=stream",
            "--checkpoint=fast",
            "--no-password",
        ]);
    run(command, "pg_basebackup").await.map(|_| ())
}

/// `pg_rewind` of the (stopped) data dir onto `host:port`. pg_rewind runs crash recovery
/// first when the target was not shut down cleanly.
pub async fn rewind(
    settings: &Settings,
    user: &PgUser,
    host: &str,
    port: u16,
) -> Result<String, InstanceError> {
    let source = format!(
        "host={} port={port} user=postgres dbname=postgres connect_timeout=5",
        quote_conninfo(host),
    );
    let mut command = user.command(&settings.tool("pg_rewind"));
    command
        .env("PGPASSFILE", &settings.passfile)
        .arg(format!("--target-pgdata={}", settings.data_dir.display()))
        .arg(format!("--source-server={source}"));
    run(command, "pg_rewind").await
}

/// What pg_controldata says about a stopped data dir.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlData {
    /// `Database cluster state`, e.g. `shut down`, `shut down in recovery`, `in production`.
    pub state: String,
    pub checkpoint_lsn: Option<Lsn>,
    pub timeline: Option<u32>,
}

impl ControlData {
    /// True after a clean shutdown, when the checkpoint location is the last LSN written.
    pub fn clean(&self) -> bool {
        self.state == "shut down" || self.state == "shut down in recovery"
    }

    pub fn parse(text: &str) -> ControlData {
        let mut data = ControlData::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "Database cluster state" => data.state = value.to_string(),
                "Latest checkpoint location" => data.checkpoint_lsn = Lsn::parse(value),
                "Latest checkpoint's TimeLineID" => data.timeline = value.parse().ok(),
                _ => {}
            }
        }
        data
    }
}

pub async fn controldata(settings: &Settings, user: &PgUser) -> Result<ControlData, InstanceError> {
    let mut command = user.command(&settings.tool("pg_controldata"));
    command.env("LC_ALL", "C").arg("-D").arg(&settings.data_dir);
    run(command, "pg_controldata")
        .await
        .map(|text| ControlData::parse(&text))
}

/// True when `dir` holds nothing (or does not exist).
pub fn is_empty_dir(dir: &Path) -> Result<bool, InstanceError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(source) => Err(InstanceError::io(
            format!("reading {}", dir.display()),
            source,
        )),
    }
}

/// Empties `dir` (keeping the directory itself, which may be a mount point).
pub fn empty_dir(dir: &Path) -> Result<(), InstanceError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(InstanceError::io(
                format!("reading {}", dir.display()),
                source,
            ));
        }
    };
    for entry in entries {
        let entry = entry
            .map_err(|source| InstanceError::io(format!("reading {}", dir.display()), source))?;
        let path = entry.path();
        let result = if entry.file_type().map(|kind| kind.is_dir()).unwrap_or(false) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        result
            .map_err(|source| InstanceError::io(format!("removing {}", path.display()), source))?;
    }
    Ok(())
}

/// Creates the data dir if needed: mode 0700, owned by the postgres user.
pub fn prepare_data_dir(dir: &Path, user: &PgUser) -> Result<(), InstanceError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .map_err(|source| InstanceError::io(format!("creating {}", dir.display()), source))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|source| InstanceError::io(format!("chmod {}", dir.display()), source))?;
    user.own(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controldata_of_a_clean_shutdown() {
        let data = ControlData::parse(
            "pg_control version number:            1300\n\
             Database cluster state:               shut down\n\
             Latest checkpoint location:           0/3000028\n\
             Latest checkpoint's REDO location:    0/3000028\n\
             Latest checkpoint's TimeLineID:       2\n",
        );
        assert!(data.clean());
        assert_eq!(data.checkpoint_lsn, Some(Lsn(0x300_0028)));
        assert_eq!(data.timeline, Some(2));
    }

    #[test]
    fn controldata_of_a_crash_is_not_clean() {
        let data = ControlData::parse("Database cluster state:               in production\n");
        assert!(!data.clean());
    }
}
