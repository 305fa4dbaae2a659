//! A split-brain watch: every period it asks every member, at the same instant, whether it
//! answers `/primary` with 200 (what HAProxy routes by), and the write probe commits one row
//! straight to every member's PostgreSQL (see `write_probe`). Two members answering
//! `/primary` in one sample, or acknowledging a write of one tick, is split brain; the chaos
//! tests assert it never happens while they kill, freeze and restart instances.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use shanraq_ha::adapters::driver::system_clock;
use shanraq_ha::adapters::instance_client::InstanceClient;
use shanraq_ha::postgres::Millis;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::write_probe::{self, ProbedMember, WriteProbe, WriteTick};

/// How long one probe write may be outstanding before its connection is dropped.
const WRITE_BOUND: Duration = Duration::from_secs(2);

/// A member to watch.
#[derive(Clone, Debug)]
pub struct Watched {
    pub name: String,
    pub client: InstanceClient,
    /// Straight to its PostgreSQL (superuser), in the database of the write probe's table.
    pub postgres: PgConnectOptions,
}

/// Members answering `/primary` with 200 in one sample.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub at: Millis,
    pub primaries: Vec<String>,
}

/// Everything the watch saw.
#[derive(Clone, Debug, Default)]
pub struct WatchReport {
    pub samples: usize,
    /// Samples where two or more members answered `/primary` with 200.
    pub two_primaries: Vec<Sample>,
    /// Write-probe ticks where at least one member acknowledged the write: the probe works.
    pub ticks_with_a_writer: usize,
    /// Write-probe ticks where two or more members acknowledged the write.
    pub two_accepting_writes: Vec<WriteTick>,
    /// The largest number of members whose write of one tick was acknowledged.
    pub max_writable_at_once: usize,
}

#[derive(Debug, Default)]
struct Seen {
    samples: usize,
    two_primaries: Vec<Sample>,
    writes: Vec<WriteTick>,
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
    /// Samples `members` every `period` for at most `bound`. The write probe's table must
    /// exist (`write_probe::create_table` on the primary).
    pub fn start(members: Vec<Watched>, period: Duration, bound: Duration) -> PrimaryWatch {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop, mut stopped) = watch::channel(false);
        let shared = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let clock = system_clock();
            let deadline = tokio::time::Instant::now() + bound;
            let mut probe = WriteProbe::new(
                members
                    .iter()
                    .map(|member| ProbedMember {
                        name: member.name.clone(),
                        postgres: member.postgres.clone(),
                    })
                    .collect(),
                WRITE_BOUND,
            );
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while tokio::time::Instant::now() < deadline {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => break,
                }
                let at = clock();
                probe.tick(at);
                let checks = members.iter().map(|member| answers_primary(member, period));
                let answers = futures::future::join_all(checks).await;
                let sample = Sample {
                    at,
                    primaries: members
                        .iter()
                        .zip(answers)
                        .filter(|(_, primary)| *primary)
                        .map(|(member, _)| member.name.clone())
                        .collect(),
                };
                let mut seen = lock(&shared);
                seen.samples += 1;
                if sample.primaries.len() > 1 {
                    seen.two_primaries.push(sample);
                }
            }
            // Writes still outstanding count once they are acknowledged, within their bound.
            let settle = async { while probe.settle_one().await {} };
            let _ = tokio::time::timeout(WRITE_BOUND, settle).await;
            lock(&shared).writes = probe.ticks().to_vec();
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
            let _ = tokio::time::timeout(WRITE_BOUND + Duration::from_secs(5), task).await;
        }
        let seen = lock(&self.seen);
        WatchReport {
            samples: seen.samples,
            two_primaries: seen.two_primaries.clone(),
            ticks_with_a_writer: seen
                .writes
                .iter()
                .filter(|tick| !tick.acknowledged.is_empty())
                .count(),
            two_accepting_writes: seen
                .writes
                .iter()
                .filter(|tick| tick.acknowledged.len() > 1)
                .cloned()
                .collect(),
            max_writable_at_once: write_probe::max_writable_at_once(&seen.writes),
        }
    }
}

/// Whether `member` answers `/primary` with 200 within `timeout`.
async fn answers_primary(member: &Watched, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, member.client.is_primary()).await,
        Ok(Ok(true))
    )
}
