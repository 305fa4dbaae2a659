//! The PostgreSQL settings the manager owns, written to `shanraq.conf` in the data dir and
//! included from postgresql.conf. They are re-written before every start because pg_rewind and
//! pg_basebackup copy the source's configuration files over ours. Also: the built-in
//! pg_hba.conf, the libpq password file, and `primary_conninfo` in postgresql.auto.conf.

use std::fmt::Write as _;
use std::path::Path;

use crate::args::Settings;
use crate::error::InstanceError;
use crate::osuser::PgUser;

pub const OWNED_CONF: &str = "shanraq.conf";
const INCLUDE_LINE: &str = "include 'shanraq.conf'";
const AUTO_CONF: &str = "postgresql.auto.conf";

/// Quotes a value for postgresql.conf (and for an SQL string literal): `'` doubled.
pub fn quote_conf(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Quotes a value for a libpq connection string.
pub fn quote_conninfo(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The settings the manager owns, after the operator's fragment so that ours win.
pub fn render_owned(settings: &Settings) -> String {
    let mut text = String::from(
        "# Written by the shanraq instance manager before every start; edits are lost.\n",
    );
    if let Some(fragment) = &settings.config_file {
        let _ = writeln!(
            text,
            "include {}",
            quote_conf(&fragment.display().to_string())
        );
    }
    let hba = match &settings.hba_file {
        Some(path) => path.display().to_string(),
        None => settings.data_dir.join("pg_hba.conf").display().to_string(),
    };
    let owned: Vec<(&str, String)> = vec![
        ("listen_addresses", quote_conf(&settings.pg_listen)),
        ("port", settings.pg_port.to_string()),
        // TCP only, except with backups: a socket in a private dir lets the manager set the
        // new cluster's passwords on a restored primary, whose roles hold the source's.
        (
            "unix_socket_directories",
            quote_conf(
                &settings
                    .backup
                    .as_ref()
                    .map(|backup| backup.lock_dir.display().to_string())
                    .unwrap_or_default(),
            ),
        ),
        ("hba_file", quote_conf(&hba)),
        ("cluster_name", quote_conf(&settings.name)),
        ("wal_level", "replica".to_string()),
        ("hot_standby", "on".to_string()),
        ("hot_standby_feedback", "on".to_string()),
        ("wal_log_hints", "on".to_string()),
        ("max_wal_senders", "10".to_string()),
        ("max_replication_slots", "10".to_string()),
        ("wal_keep_size", quote_conf("512MB")),
        ("recovery_target_timeline", quote_conf("latest")),
        ("password_encryption", quote_conf("scram-sha-256")),
        ("wal_receiver_timeout", quote_conf("5s")),
        ("wal_receiver_status_interval", quote_conf("1s")),
        ("wal_retrieve_retry_interval", quote_conf("200ms")),
        ("wal_sender_timeout", quote_conf("5s")),
        ("logging_collector", "off".to_string()),
        ("log_destination", quote_conf("stderr")),
    ];
    for (key, value) in owned {
        let _ = writeln!(text, "{key} = {value}");
    }
    text
}

/// The built-in pg_hba.conf: scram-sha-256 from loopback for everything and for replication,
/// and the postgres OS user as the postgres role over the unix socket (peer), when there is one.
pub fn render_hba() -> String {
    "# Written by the shanraq instance manager (no --hba-file given).\n\
     local all postgres peer\n\
     host all all 127.0.0.1/32 scram-sha-256\n\
     host replication all 127.0.0.1/32 scram-sha-256\n"
        .to_string()
}

fn escape_pgpass(value: &str) -> String {
    value.replace('\\', "\\\\").replace(':', "\\:")
}

/// The libpq password file: replication user and superuser, any host.
pub fn render_pgpass(settings: &Settings) -> String {
    format!(
        "*:*:*:{}:{}\n*:*:*:postgres:{}\n",
        settings.replication_user,
        escape_pgpass(settings.replication_password.expose()),
        escape_pgpass(settings.superuser_password.expose()),
    )
}

/// `primary_conninfo` towards `host:port`, with the instance's name as `application_name`
/// (which `synchronous_standby_names` and `pg_stat_replication` see) and no password in it.
pub fn primary_conninfo(settings: &Settings, host: &str, port: u16) -> String {
    format!(
        "host={} port={port} user={} passfile={} application_name={} connect_timeout=2 sslmode=prefer",
        quote_conninfo(host),
        quote_conninfo(&settings.replication_user),
        quote_conninfo(&settings.passfile.display().to_string()),
        quote_conninfo(&settings.name),
    )
}

/// Writes the password file (0600, owned by the postgres user).
pub fn write_passfile(settings: &Settings, user: &PgUser) -> Result<(), InstanceError> {
    user.write(&settings.passfile, &render_pgpass(settings), 0o600)
}

/// A dir only the postgres user can enter (pgBackRest's locks, postgres' socket).
pub fn private_dir(dir: &Path, user: &PgUser) -> Result<(), InstanceError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .map_err(|source| InstanceError::io(format!("creating {}", dir.display()), source))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|source| InstanceError::io(format!("chmod {}", dir.display()), source))?;
    user.own(dir)
}

/// Makes the data dir ready to start: owned settings, hba, include line, ownership.
pub fn apply(settings: &Settings, user: &PgUser) -> Result<(), InstanceError> {
    let data_dir = &settings.data_dir;
    if let Some(backup) = &settings.backup {
        private_dir(&backup.lock_dir, user)?;
    }
    user.write(&data_dir.join(OWNED_CONF), &render_owned(settings), 0o600)?;
    if settings.hba_file.is_none() {
        user.write(&data_dir.join("pg_hba.conf"), &render_hba(), 0o600)?;
    }
    let main_conf = data_dir.join("postgresql.conf");
    let text = std::fs::read_to_string(&main_conf).unwrap_or_default();
    if !text.lines().any(|line| line.trim() == INCLUDE_LINE) {
        let mut text = text;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(INCLUDE_LINE);
        text.push('\n');
        user.write(&main_conf, &text, 0o600)?;
    }
    write_passfile(settings, user)
}

/// Sets (`Some`) or removes (`None`) one key of postgresql.auto.conf while postgres is down,
/// keeping every other line as ALTER SYSTEM wrote it.
pub fn set_auto_conf(
    data_dir: &Path,
    key: &str,
    value: Option<&str>,
    user: &PgUser,
) -> Result<(), InstanceError> {
    let path = data_dir.join(AUTO_CONF);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::from(
            "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n",
        ),
        Err(source) => {
            return Err(InstanceError::io(
                format!("reading {}", path.display()),
                source,
            ));
        }
    };
    let mut lines: Vec<String> = text
        .lines()
        .filter(|line| {
            line.split_once('=')
                .map(|(name, _)| !name.trim().eq_ignore_ascii_case(key))
                .unwrap_or(true)
        })
        .map(str::to_string)
        .collect();
    if let Some(value) = value {
        lines.push(format!("{key} = {}", quote_conf(value)));
    }
    let mut out = lines.join("\n");
    out.push('\n');
    user.write(&path, &out, 0o600)
}

/// Whether postgresql.auto.conf leaves `primary_conninfo` empty (or unset): a replica with it
/// streams from nobody. Read from the file ALTER SYSTEM writes before it returns, so the answer
/// is right at once, while a pooled session's `current_setting` may not have seen the reload.
pub fn primary_conninfo_empty(data_dir: &Path) -> bool {
    let text = std::fs::read_to_string(data_dir.join(AUTO_CONF)).unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split_once('='))
        .rfind(|(name, _)| name.trim().eq_ignore_ascii_case("primary_conninfo"))
        .is_none_or(|(_, value)| matches!(value.trim(), "" | "''"))
}

/// Turns the data dir into a standby of `host:port`.
pub fn make_standby(
    settings: &Settings,
    user: &PgUser,
    host: &str,
    port: u16,
) -> Result<(), InstanceError> {
    let conninfo = primary_conninfo(settings, host, port);
    set_auto_conf(
        &settings.data_dir,
        "primary_conninfo",
        Some(&conninfo),
        user,
    )?;
    user.write(&settings.data_dir.join("standby.signal"), "", 0o600)
}

/// True when the data dir is set up as a standby.
pub fn is_standby(data_dir: &Path) -> bool {
    data_dir.join("standby.signal").exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{BootstrapMode, Secret};
    use std::path::PathBuf;

    pub(crate) fn settings(data_dir: PathBuf) -> Settings {
        Settings {
            name: "pg-1".to_string(),
            passfile: data_dir.with_extension("pgpass"),
            app: None,
            state_file: data_dir.with_extension("state"),
            data_dir,
            bin_dir: PathBuf::from("/usr/lib/postgresql/15/bin"),
            pg_listen: "0.0.0.0".to_string(),
            pg_port: 25432,
            http_addr: "127.0.0.1:8000".parse().expect("addr"),
            bootstrap: BootstrapMode::Replica,
            upstream: None,
            initial_epoch: 1,
            synchronous: String::new(),
            config_file: Some(PathBuf::from("/etc/shanraq/postgresql.conf")),
            hba_file: None,
            token: Secret::new("t"),
            superuser_password: Secret::new("su:pw"),
            replication_user: "replicator".to_string(),
            replication_password: Secret::new("re'p"),
            bootstrap_timeout: std::time::Duration::from_secs(1),
            lease: Some(std::time::Duration::from_millis(1500)),
            backup: None,
            recovery: None,
        }
    }

    #[test]
    fn owned_settings_come_after_the_operator_fragment() {
        let text = render_owned(&settings(PathBuf::from("/data/pg")));
        let include = text
            .find("include '/etc/shanraq/postgresql.conf'")
            .expect("include");
        let port = text.find("port = 25432").expect("port");
        assert!(include < port, "{text}");
        for needle in [
            "wal_log_hints = on",
            "recovery_target_timeline = 'latest'",
            "listen_addresses = '0.0.0.0'",
            "cluster_name = 'pg-1'",
            "hba_file = '/data/pg/pg_hba.conf'",
        ] {
            assert!(text.contains(needle), "missing {needle}: {text}");
        }
    }

    #[test]
    fn conninfo_names_the_instance_and_holds_no_password() {
        let conninfo = primary_conninfo(&settings(PathBuf::from("/data/pg")), "10.0.0.1", 5432);
        assert!(conninfo.contains("application_name='pg-1'"), "{conninfo}");
        assert!(
            conninfo.contains("passfile='/data/pg.pgpass'"),
            "{conninfo}"
        );
        assert!(
            !conninfo.contains("re'p") && !conninfo.contains("re\\'p"),
            "{conninfo}"
        );
    }

    #[test]
    fn pgpass_escapes_colons() {
        let text = render_pgpass(&settings(PathBuf::from("/data/pg")));
        assert!(text.contains("*:*:*:postgres:su\\:pw\n"), "{text}");
    }

    #[test]
    fn auto_conf_keys_are_replaced_not_duplicated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let user = PgUser::lookup().expect("user");
        std::fs::write(
            dir.path().join(AUTO_CONF),
            "# Do not edit this file manually!\nsynchronous_standby_names = 'ANY 1 (*)'\nprimary_conninfo = 'host=old'\n",
        )
        .expect("write");
        set_auto_conf(
            dir.path(),
            "primary_conninfo",
            Some("host='new' it's"),
            &user,
        )
        .expect("set");
        let text = std::fs::read_to_string(dir.path().join(AUTO_CONF)).expect("read");
        assert_eq!(
            text,
            "# Do not edit this file manually!\nsynchronous_standby_names = 'ANY 1 (*)'\nprimary_conninfo = 'host=''new'' it''s'\n"
        );
        set_auto_conf(dir.path(), "primary_conninfo", None, &user).expect("remove");
        let text = std::fs::read_to_string(dir.path().join(AUTO_CONF)).expect("read");
        assert!(!text.contains("primary_conninfo"), "{text}");
        assert!(primary_conninfo_empty(dir.path()), "unset is empty");
        set_auto_conf(dir.path(), "primary_conninfo", Some("host=a port=1"), &user).expect("set");
        assert!(!primary_conninfo_empty(dir.path()));
        set_auto_conf(dir.path(), "primary_conninfo", Some(""), &user).expect("empty");
        assert!(primary_conninfo_empty(dir.path()), "detached");
    }
}
