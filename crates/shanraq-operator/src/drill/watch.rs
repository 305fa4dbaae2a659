//! A split-brain watch: every period it asks every member, at the same instant, whether it
//! answers `/primary` with 200 (what HAProxy routes by) and whether its PostgreSQL is out of
//! recovery (would take writes), and remembers the worst sample. Two at once is split brain;
//! the chaos tests assert it never happens while they kill, freeze and restart instances.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use shanraq_ha::adapters::driver::system_clock;
use shanraq_ha::adapters::instance_client::InstanceClient;
use shanraq_ha::postgres::Millis;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A member to watch.
#[derive(Clone, Debug)]
pub struct Watched {
    pub name: String,
    pub client: InstanceClient,
    /// Straight to its PostgreSQL (superuser).
    pub postgres: PgConnectOptions,
}

/// What one sample saw at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub at: Millis,
    /// Members answering `/primary` with 200.
    pub primaries: Vec<String>,
    /// Members whose PostgreSQL answered `pg_is_in_recovery() = false`.
    pub writable: Vec<String>,
}

/// Everything the watch saw.
#[derive(Clone, Debug, Default)]
pub struct WatchReport {
    pub samples: usize,
    /// Samples where two or more members answered `/primary` with 200.
    pub two_primaries: Vec<Sample>,
    /// Samples where two or more members were out of recovery.
    pub two_writable: Vec<Sample>,
}

#[derive(Debug, Default)]
struct Seen {
    samples: usize,
    two_primaries: Vec<Sample>,
    two_writable: Vec<Sample>,
}

/// A running watch; `stop` returns its report.
#[derive(Debug)]
pub struct PrimaryWatch {
    seen: Arc<Mutex<Seen>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Drop for PrimaryWatch {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn lock(seen: &Mutex<Seen>) -> MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PrimaryWatch {
    /// Samples `members` every `period` for at most `bound`.
    pub fn start(members: Vec<Watched>, period: Duration, bound: Duration) -> PrimaryWatch {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop, mut stopped) = watch::channel(false);
        let shared = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let clock = system_clock();
            let deadline = tokio::time::Instant::now() + bound;
            let mut connections: Vec<Option<PgConnection>> = members.iter().map(|_| None).collect();
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while tokio::time::Instant::now() < deadline {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => return,
                }
                let at = clock();
                let checks = members
                    .iter()
                    .zip(connections.iter_mut())
                    .map(|(member, connection)| sample_member(member, connection, period));
                let answers = futures::future::join_all(checks).await;
                let mut sample = Sample {
                    at,
                    ..Sample::default()
                };
                for (member, (primary, writable)) in members.iter().zip(answers) {
                    if primary {
                        sample.primaries.push(member.name.clone());
                    }
                    if writable {
                        sample.writable.push(member.name.clone());
                    }
                }
                let mut seen = lock(&shared);
                seen.samples += 1;
                if sample.primaries.len() > 1 {
                    seen.two_primaries.push(sample.clone());
                }
                if sample.writable.len() > 1 {
                    seen.two_writable.push(sample);
                }
            }
        });
        PrimaryWatch {
            seen,
            stop,
            task: Some(task),
        }
    }

    pub async fn stop(mut self) -> WatchReport {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let seen = lock(&self.seen);
        WatchReport {
            samples: seen.samples,
            two_primaries: seen.two_primaries.clone(),
            two_writable: seen.two_writable.clone(),
        }
    }
}

/// (answers `/primary` 200, out of recovery), each bounded by `timeout`.
async fn sample_member(
    member: &Watched,
    connection: &mut Option<PgConnection>,
    timeout: Duration,
) -> (bool, bool) {
    let primary = async {
        matches!(
            tokio::time::timeout(timeout, member.client.is_primary()).await,
            Ok(Ok(true))
        )
    };
    let writable = async {
        let ask = async {
            if connection.is_none() {
                *connection = Some(PgConnection::connect_with(&member.postgres).await.ok()?);
            }
            let open = connection.as_mut()?;
            sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()")
                .fetch_one(open)
                .await
                .ok()
        };
        match tokio::time::timeout(timeout, ask).await {
            Ok(Some(in_recovery)) => !in_recovery,
            _ => {
                // A failed or slow answer: start from a fresh connection next time.
                *connection = None;
                false
            }
        }
    };
    futures::future::join(primary, writable).await
}
