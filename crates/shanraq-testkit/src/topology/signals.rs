//! Crashing, freezing, stopping and restarting a member: signals to its manager's process
//! group and to its postgres processes, and the kill of everything on drop.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::LocalTopology;
use super::postmaster::signal_postgres_of;
use crate::TestkitError;
use crate::process::{kill_and_reap, signal_group, tail};

impl LocalTopology {
    /// Signals postgres of member `index`: each postmaster's group first (so it forks nothing
    /// new), then each of its children, which PostgreSQL makes leaders of groups of their own
    /// (`setsid` in `InitPostmasterChild`); signalling the postmaster's group alone would
    /// leave backends and WAL senders running. Postmasters are found through `postmaster.pid`
    /// and, for one started so recently that it has not written it yet, through their
    /// command line. False when none was found.
    fn signal_postgres(&self, index: usize, signal: Signal) -> bool {
        let Some(member) = self.members.get(index) else {
            return false;
        };
        signal_postgres_of(&member.info.data_dir, signal)
    }

    /// SIGKILL the whole instance: its manager's group, then the postmaster and every child.
    pub fn kill(&mut self, index: usize) -> Result<(), TestkitError> {
        let len = self.members.len();
        if index >= len {
            return Err(TestkitError::NoSuchMember { index, len });
        }
        // The manager first, so that it cannot react to postgres dying or start another; then
        // postgres with every child, as a host crash would. A second pass catches a postmaster
        // the manager spawned just before it died.
        if let Some(mut child) = self.members[index].child.take() {
            kill_and_reap(&mut child);
        }
        self.signal_postgres(index, Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(20));
        self.signal_postgres(index, Signal::SIGKILL);
        Ok(())
    }

    /// SIGKILL only postgres of member `index` (its whole group), leaving the manager alive;
    /// false when no running postmaster was found.
    pub fn kill_postgres(&self, index: usize) -> Result<bool, TestkitError> {
        self.member(index)?;
        Ok(self.signal_postgres(index, Signal::SIGKILL))
    }

    /// SIGTERM the manager (it stops postgres with a fast shutdown) and wait for it to exit.
    pub async fn shutdown(&mut self, index: usize) -> Result<(), TestkitError> {
        let len = self.members.len();
        let member = self
            .members
            .get_mut(index)
            .ok_or(TestkitError::NoSuchMember { index, len })?;
        let Some(mut child) = member.child.take() else {
            return Ok(());
        };
        signal_group(child.id(), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                kill_and_reap(&mut child);
                return Err(TestkitError::NotReady {
                    what: format!("shutdown of {}", member.info.name),
                    seconds: 60,
                    detail: tail(&member.info.log_path, 30),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGSTOP the whole instance (a frozen host: sockets stay open, nothing answers).
    pub fn stop(&self, index: usize) -> Result<(), TestkitError> {
        self.member(index)?;
        if let Some(child) = self.members[index].child.as_ref() {
            signal_group(child.id(), Signal::SIGSTOP);
        }
        self.signal_postgres(index, Signal::SIGSTOP);
        Ok(())
    }

    /// SIGSTOP of member `index`'s instance manager alone: its postgres keeps running and
    /// keeps serving the clients and standbys connected to it (a hung manager).
    pub fn freeze_manager(&self, index: usize) -> Result<(), TestkitError> {
        self.member(index)?;
        if let Some(child) = self.members[index].child.as_ref() {
            signal_group(child.id(), Signal::SIGSTOP);
        }
        Ok(())
    }

    /// SIGCONT after `freeze_manager`.
    pub fn thaw_manager(&self, index: usize) -> Result<(), TestkitError> {
        self.member(index)?;
        if let Some(child) = self.members[index].child.as_ref() {
            signal_group(child.id(), Signal::SIGCONT);
        }
        Ok(())
    }

    /// SIGCONT after `stop`.
    pub fn cont(&self, index: usize) -> Result<(), TestkitError> {
        self.member(index)?;
        self.signal_postgres(index, Signal::SIGCONT);
        if let Some(child) = self.members[index].child.as_ref() {
            signal_group(child.id(), Signal::SIGCONT);
        }
        Ok(())
    }

    /// Starts the manager of member `index` again on the same data dir (after `kill` or
    /// `shutdown`; a running manager is killed first).
    pub fn restart(&mut self, index: usize) -> Result<(), TestkitError> {
        if self
            .members
            .get(index)
            .is_some_and(|member| member.child.is_some())
        {
            self.kill(index)?;
        }
        self.spawn(index)
    }

    /// True while the manager process of member `index` runs.
    pub fn is_running(&mut self, index: usize) -> bool {
        self.members
            .get_mut(index)
            .and_then(|member| member.child.as_mut())
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

impl Drop for LocalTopology {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            let _ = self.cont(index);
            let _ = self.kill(index);
        }
    }
}
