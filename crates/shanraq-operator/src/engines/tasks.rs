//! The running tasks of one engine, one per cluster (`namespace/name`), written once for every
//! engine: each task with the spec it was started from, what it shares with the reconcile, a
//! stop signal and its join handle. A task is started when its cluster wants one, restarted
//! when its spec changed or it ended (the new one waits for its predecessor to stop, so two
//! drivers never run for one cluster), and stopped when its cluster no longer wants one, is
//! deleted, or the operator stops leading.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long `stop_all` waits for the tasks to end.
const STOP_ALL_WAIT: Duration = Duration::from_secs(10);

struct Task<S, H> {
    spec: S,
    shared: H,
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

/// One engine's tasks. `S` is what a task is started from (a changed one restarts it), `H` what
/// it shares with the reconcile (handles, samples).
pub struct Tasks<S, H> {
    /// The engine, as the logs name it.
    engine: &'static str,
    map: Mutex<HashMap<String, Task<S, H>>>,
}

impl<S: PartialEq + Clone, H: Clone> std::fmt::Debug for Tasks<S, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks")
            .field("engine", &self.engine)
            .field("running", &self.running())
            .finish()
    }
}

impl<S, H> Tasks<S, H>
where
    S: PartialEq + Clone,
    H: Clone,
{
    pub fn new(engine: &'static str) -> Tasks<S, H> {
        Tasks {
            engine,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Makes the task of `key` run `wanted`: nothing when it already does, a new task from
    /// `start(spec, shared, stopped)` when it does not (after the previous one ended), and no
    /// task when `wanted` is `None`. `stopped` turns true when the task must end.
    pub fn ensure<F, Fut>(&self, key: &str, wanted: Option<S>, shared: impl FnOnce() -> H, start: F)
    where
        F: FnOnce(S, H, watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Ok(mut tasks) = self.map.lock() else {
            return;
        };
        let Some(wanted) = wanted else {
            if let Some(task) = tasks.remove(key) {
                tracing::info!(cluster = %key, engine = self.engine, "no longer wanted: stopping the task");
                let _ = task.stop.send(true);
            }
            return;
        };
        if let Some(task) = tasks.get(key)
            && task.spec == wanted
            && !task.join.is_finished()
        {
            return;
        }
        let previous = tasks.remove(key).map(|task| {
            tracing::info!(cluster = %key, engine = self.engine, "configuration changed or task ended: restarting it");
            let _ = task.stop.send(true);
            task.join
        });
        let (stop, stopped) = watch::channel(false);
        let shared = shared();
        let run = start(wanted.clone(), shared.clone(), stopped);
        let join = tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            run.await;
        });
        tasks.insert(
            key.to_owned(),
            Task {
                spec: wanted,
                shared,
                stop,
                join,
            },
        );
    }

    /// What the task of `key` shares, while it is known.
    pub fn shared(&self, key: &str) -> Option<H> {
        let tasks = self.map.lock().ok()?;
        tasks.get(key).map(|task| task.shared.clone())
    }

    /// Keys of the tasks still running, sorted.
    pub fn running(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .map
            .lock()
            .map(|tasks| {
                tasks
                    .iter()
                    .filter(|(_, task)| !task.join.is_finished())
                    .map(|(key, _)| key.clone())
                    .collect()
            })
            .unwrap_or_default();
        keys.sort();
        keys
    }

    /// Stops the task of `key`, if any (its cluster is being deleted).
    pub fn stop(&self, key: &str) {
        if let Ok(mut tasks) = self.map.lock()
            && let Some(task) = tasks.remove(key)
        {
            let _ = task.stop.send(true);
        }
    }

    /// Stops every task (leadership lost, shutdown) and waits for them, bounded.
    pub async fn stop_all(&self) {
        let stopping: Vec<Task<S, H>> = match self.map.lock() {
            Ok(mut tasks) => tasks.drain().map(|(_, task)| task).collect(),
            Err(_) => return,
        };
        for task in &stopping {
            let _ = task.stop.send(true);
        }
        let joins = stopping.into_iter().map(|task| task.join);
        let _ = tokio::time::timeout(STOP_ALL_WAIT, futures::future::join_all(joins)).await;
    }
}

/// Runs `work` until it ends or `stopped` turns true, for a task with no stop point of its own
/// (it is dropped at its next await).
pub async fn until_stopped(mut stopped: watch::Receiver<bool>, work: impl Future<Output = ()>) {
    tokio::select! {
        () = work => {}
        _ = stopped.wait_for(|stop| *stop) => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A task that counts its starts and ends when told to stop.
    fn counting(
        starts: &Arc<AtomicUsize>,
    ) -> impl FnOnce(u32, (), watch::Receiver<bool>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
    {
        let starts = Arc::clone(starts);
        move |_spec, (), mut stopped| {
            starts.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
        }
    }

    #[tokio::test]
    async fn a_task_restarts_only_when_its_spec_changes_and_stops_when_unwanted() {
        let tasks: Tasks<u32, ()> = Tasks::new("test");
        let starts = Arc::new(AtomicUsize::new(0));
        tasks.ensure("ns/a", Some(1), || (), counting(&starts));
        tasks.ensure("ns/a", Some(1), || (), counting(&starts));
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        tasks.ensure("ns/a", Some(2), || (), counting(&starts));
        assert_eq!(starts.load(Ordering::SeqCst), 2);
        assert_eq!(tasks.running(), vec!["ns/a".to_owned()]);
        tasks.ensure("ns/a", None, || (), counting(&starts));
        assert!(tasks.shared("ns/a").is_none());
        tasks.ensure("ns/b", Some(1), || (), counting(&starts));
        tasks.stop_all().await;
        assert!(tasks.running().is_empty());
    }
}
