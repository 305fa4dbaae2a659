//! `InstanceProcess`: one running instance manager (`shanraq instance postgres`) started from
//! a command the caller built (for example the rendered pod's own script, inside a pod network
//! namespace), with the PostgreSQL it supervises. Killing it kills both, as a node crash would;
//! dropping it does the same, so a failed test leaves no postgres behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use nix::sys::signal::Signal;

use crate::TestkitError;
use crate::process::{kill_and_reap, signal_group, spawn_logged, tail};
use crate::topology::signal_postgres_of;

#[derive(Debug)]
pub struct InstanceProcess {
    name: String,
    child: Option<Child>,
    data_dir: PathBuf,
    log: PathBuf,
}

impl InstanceProcess {
    /// Spawns `command` as the leader of a new process group, its output appended to `log`;
    /// `data_dir` is the PostgreSQL data directory the manager will run postgres in.
    pub fn spawn(
        name: &str,
        command: &mut Command,
        data_dir: &Path,
        log: &Path,
    ) -> Result<InstanceProcess, TestkitError> {
        let child = spawn_logged(command, log, name)?;
        Ok(InstanceProcess {
            name: name.to_string(),
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            log: log.to_path_buf(),
        })
    }

    /// The manager's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the manager runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// SIGKILL of the manager's group, then of postgres and every child of it; a second pass
    /// catches a postmaster the manager started just before it died.
    pub fn kill(&mut self) {
        self.thaw();
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
        signal_postgres_of(&self.data_dir, Signal::SIGKILL);
        std::thread::sleep(std::time::Duration::from_millis(20));
        signal_postgres_of(&self.data_dir, Signal::SIGKILL);
    }

    /// SIGSTOP of the manager's group alone (a hung manager): postgres keeps serving, nothing
    /// answers the operator.
    pub fn freeze(&self) {
        if let Some(child) = &self.child {
            signal_group(child.id(), Signal::SIGSTOP);
        }
    }

    /// SIGCONT after `freeze`.
    pub fn thaw(&self) {
        if let Some(child) = &self.child {
            signal_group(child.id(), Signal::SIGCONT);
        }
    }

    /// The last `lines` lines of the manager's log.
    pub fn log_tail(&self, lines: usize) -> String {
        format!(
            "{} ({}):\n{}",
            self.name,
            self.log.display(),
            tail(&self.log, lines)
        )
    }
}

impl Drop for InstanceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
