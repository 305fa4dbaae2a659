//! One postgres postmaster under the manager: spawned as the leader of its own process group
//! (so a terminal's Ctrl-C or a signal to the manager's group does not reach it behind the
//! manager's back, and SIGKILL of the group leaves no backend behind), its exit published on a
//! watch channel, and the escalating stop: fast, then immediate, then SIGKILL.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::args::Settings;
use crate::error::InstanceError;
use crate::osuser::PgUser;

/// How a stop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Fast shutdown (SIGINT) completed: a shutdown checkpoint was written.
    Fast,
    /// Immediate shutdown (SIGQUIT): crash recovery on next start.
    Immediate,
    /// SIGKILL of the whole process group.
    Killed,
    /// It had already exited.
    AlreadyGone,
}

#[derive(Clone, Debug)]
pub struct Postmaster {
    pid: Pid,
    exited: watch::Receiver<Option<String>>,
}

impl Postmaster {
    pub fn spawn(settings: &Settings, user: &PgUser) -> Result<Postmaster, InstanceError> {
        let mut command = user.command(&settings.tool("postgres"));
        command
            .arg("-D")
            .arg(&settings.data_dir)
            // archive_command and restore_command run pgBackRest with this environment.
            .envs(crate::pgbackrest::environment(settings))
            .process_group(0)
            .stdin(Stdio::null())
            .kill_on_drop(false);
        let mut child = command
            .spawn()
            .map_err(|source| InstanceError::io("spawning postgres", source))?;
        let raw = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| InstanceError::Refused("postgres exited before it had a pid".into()))?;
        let (sender, exited) = watch::channel(None);
        tokio::spawn(async move {
            let description = match child.wait().await {
                Ok(status) => status.to_string(),
                Err(error) => format!("wait failed: {error}"),
            };
            let _ = sender.send(Some(description));
        });
        tracing::info!(pid = raw, "postgres started");
        Ok(Postmaster {
            pid: Pid::from_raw(raw),
            exited,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    pub fn has_exited(&self) -> bool {
        self.exited.borrow().is_some()
    }

    /// Waits until the postmaster exits; returns how it exited.
    pub async fn wait(&self) -> String {
        let mut exited = self.exited.clone();
        match exited.wait_for(Option::is_some).await {
            Ok(value) => value.clone().unwrap_or_default(),
            Err(_) => "exit watcher gone".to_string(),
        }
    }

    async fn wait_for(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.wait()).await.is_ok()
    }

    /// Kills whatever is left in the process group (backends of a dead postmaster).
    pub fn kill_group(&self) {
        let _ = killpg(self.pid, Signal::SIGKILL);
    }

    /// Fast shutdown; immediate after `fast_timeout`; SIGKILL of the group as a last resort.
    pub async fn stop(&self, fast_timeout: Duration) -> StopMode {
        if self.has_exited() {
            self.kill_group();
            return StopMode::AlreadyGone;
        }
        let _ = kill(self.pid, Signal::SIGINT);
        if self.wait_for(fast_timeout).await {
            return StopMode::Fast;
        }
        tracing::warn!(
            pid = self.pid.as_raw(),
            "fast shutdown timed out; immediate shutdown"
        );
        let _ = kill(self.pid, Signal::SIGQUIT);
        if self.wait_for(Duration::from_secs(3)).await {
            self.kill_group();
            return StopMode::Immediate;
        }
        tracing::warn!(
            pid = self.pid.as_raw(),
            "immediate shutdown timed out; SIGKILL"
        );
        self.kill_group();
        let _ = self.wait_for(Duration::from_secs(5)).await;
        StopMode::Killed
    }
}
