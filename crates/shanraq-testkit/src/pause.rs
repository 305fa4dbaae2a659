//! A Tokio runtime that a test can pause and resume, as SIGSTOP and SIGCONT would pause a
//! process, or as a long stall, a frozen VM or a throttled container would: one thread runs a
//! current-thread runtime, and `pause` parks that thread inside a task, so that nothing on the
//! runtime (timers, sockets, the tasks' own clocks aside) moves until `resume`. What the tasks
//! find on waking is exactly what a paused process finds.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::TestkitError;

#[derive(Debug, Default)]
struct Gate {
    paused: Mutex<bool>,
    changed: Condvar,
}

/// A runtime on a thread of its own that can be paused.
#[derive(Debug)]
pub struct PausableRuntime {
    handle: Handle,
    gate: Arc<Gate>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl PausableRuntime {
    pub fn start(name: &str) -> Result<PausableRuntime, TestkitError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| TestkitError::io("building a pausable runtime", source))?;
        let handle = runtime.handle().clone();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })
            .map_err(|source| TestkitError::io("starting a pausable runtime's thread", source))?;
        Ok(PausableRuntime {
            handle,
            gate: Arc::new(Gate::default()),
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Parks the runtime's thread; returns once it is parked.
    pub fn pause(&self) {
        *self.lock() = true;
        let gate = Arc::clone(&self.gate);
        let (entered, parked) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = entered.send(());
            let mut paused = gate.paused.lock().unwrap_or_else(|p| p.into_inner());
            while *paused {
                paused = gate.changed.wait(paused).unwrap_or_else(|p| p.into_inner());
            }
        });
        let _ = parked.recv();
    }

    /// Lets the runtime run again.
    pub fn resume(&self) {
        *self.lock() = false;
        self.gate.changed.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, bool> {
        self.gate.paused.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for PausableRuntime {
    fn drop(&mut self) {
        self.resume();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    #[test]
    fn nothing_runs_while_paused_and_everything_resumes() {
        let runtime = PausableRuntime::start("pausable-test").expect("starts");
        let ticks = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&ticks);
        runtime.handle().spawn(async move {
            loop {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        while ticks.load(Ordering::SeqCst) < 5 {
            std::thread::yield_now();
        }
        runtime.pause();
        let frozen = ticks.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ticks.load(Ordering::SeqCst), frozen, "a paused runtime ran");
        runtime.resume();
        while ticks.load(Ordering::SeqCst) < frozen + 5 {
            std::thread::yield_now();
        }
    }
}
