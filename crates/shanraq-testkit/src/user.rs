//! PostgreSQL refuses to run as root. When the tests run as root, its programs run as the
//! `postgres` user (uid/gid from /etc/passwd) and the directories they write are chowned to it;
//! when the tests run as another user, everything runs as that user.

use std::path::Path;
use std::process::Command;

use nix::unistd::{Gid, Uid, User, chown, geteuid};

use crate::TestkitError;

/// The OS user PostgreSQL's programs run as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostgresUser {
    pub uid: Uid,
    pub gid: Gid,
    /// False when the tests already run as a non-root user: no switch, no chown.
    switch: bool,
}

impl PostgresUser {
    pub fn lookup() -> Result<PostgresUser, TestkitError> {
        if !geteuid().is_root() {
            return Ok(PostgresUser {
                uid: geteuid(),
                gid: nix::unistd::getegid(),
                switch: false,
            });
        }
        let user = User::from_name("postgres")
            .map_err(|source| TestkitError::sys("looking up user postgres", source))?
            .ok_or(TestkitError::NoPostgresUser)?;
        Ok(PostgresUser {
            uid: user.uid,
            gid: user.gid,
            switch: true,
        })
    }

    /// A command that runs `program` as this user.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        if self.switch {
            use std::os::unix::process::CommandExt;
            command
                .uid(self.uid.as_raw())
                .gid(self.gid.as_raw())
                .env("HOME", "/var/lib/postgresql")
                .env("USER", "postgres");
        }
        command
    }

    /// Gives `path` to this user (no-op when not running as root).
    pub fn own(&self, path: &Path) -> Result<(), TestkitError> {
        if self.switch {
            chown(path, Some(self.uid), Some(self.gid))
                .map_err(|source| TestkitError::sys(format!("chown {}", path.display()), source))?;
        }
        Ok(())
    }
}
