//! PostgreSQL refuses to run as root. Started as root (a test machine), the manager runs every
//! PostgreSQL program as the `postgres` user from /etc/passwd and gives it the files it writes;
//! started as another user (a pod with a non-root uid), it runs them as itself.

use std::path::Path;

use nix::unistd::{Gid, Uid, User, chown, geteuid};

use crate::error::InstanceError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgUser {
    pub uid: Uid,
    pub gid: Gid,
    switch: bool,
}

impl PgUser {
    pub fn lookup() -> Result<PgUser, InstanceError> {
        if !geteuid().is_root() {
            return Ok(PgUser {
                uid: geteuid(),
                gid: nix::unistd::getegid(),
                switch: false,
            });
        }
        let user = User::from_name("postgres")
            .map_err(|source| InstanceError::Sys {
                what: "looking up user postgres".to_string(),
                source,
            })?
            .ok_or_else(|| {
                InstanceError::Refused(
                    "running as root but there is no `postgres` user in /etc/passwd".to_string(),
                )
            })?;
        Ok(PgUser {
            uid: user.uid,
            gid: user.gid,
            switch: true,
        })
    }

    /// A tokio command running `program` as this user.
    pub fn command(&self, program: &Path) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(program);
        if self.switch {
            command
                .uid(self.uid.as_raw())
                .gid(self.gid.as_raw())
                .env("HOME", "/var/lib/postgresql")
                .env("USER", "postgres");
        }
        command
    }

    /// Gives `path` to this user (no-op when not root).
    pub fn own(&self, path: &Path) -> Result<(), InstanceError> {
        if self.switch {
            chown(path, Some(self.uid), Some(self.gid)).map_err(|source| InstanceError::Sys {
                what: format!("chown {}", path.display()),
                source,
            })?;
        }
        Ok(())
    }

    /// Writes `text` to `path` with `mode`, owned by this user.
    pub fn write(&self, path: &Path, text: &str, mode: u32) -> Result<(), InstanceError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text)
            .map_err(|source| InstanceError::io(format!("writing {}", path.display()), source))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|source| InstanceError::io(format!("chmod {}", path.display()), source))?;
        self.own(path)
    }
}
