//! Latency and availability measured the way a client sees them: through HAProxy's `pg-rw`
//! port with the application's credentials. Every probe period one `SELECT 1` (timed, on a
//! kept connection, so the connection set-up is not counted) and one write probe,
//! `SELECT pg_logical_emit_message(true, 'shanraq-probe', '')`: a transactional WAL record of a
//! few bytes, so its commit waits for the synchronous standbys like any application commit, and
//! it fails on anything but a writable primary. (Merely assigning a transaction id writes no
//! WAL and would not wait.) No table is created in the application's database.
//! Results are kept over a sliding window for the `LatencyMet` and `AvailabilityMet`
//! conditions, and counted in `shanraq_probe_total` once the reconcile has attached the
//! cluster's counter (`count_into`) for the burn-rate alerts.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::metrics::ProbeCounter;

/// How often both probes run.
pub const PROBE_PERIOD: Duration = Duration::from_secs(1);
/// The evaluation window.
pub const WINDOW: Duration = Duration::from_secs(300);
/// A probe slower than this counts as failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the probes connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTarget {
    /// `<name>-haproxy.<namespace>.svc.<domain>`.
    pub host: String,
    pub port: u16,
    pub database: String,
    /// Secret with keys `username` and `password`.
    pub secret: String,
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    read: Option<Duration>,
    write_ok: bool,
}

/// The probes of the last `WINDOW`.
#[derive(Debug, Default)]
pub struct ProbeWindow {
    samples: Mutex<VecDeque<Sample>>,
    counter: OnceLock<ProbeCounter>,
}

impl ProbeWindow {
    /// Counts every later round in `counter` too (the first counter attached stays).
    pub fn count_into(&self, counter: ProbeCounter) {
        let _ = self.counter.set(counter);
    }

    /// Records one round (`read` is `None` when the read failed).
    pub fn record(&self, read: Option<Duration>, write_ok: bool) {
        if let Some(counter) = self.counter.get() {
            counter.count("read", read.is_some());
            counter.count("write", write_ok);
        }
        let now = Instant::now();
        if let Ok(mut samples) = self.samples.lock() {
            samples.push_back(Sample {
                at: now,
                read,
                write_ok,
            });
            while samples
                .front()
                .is_some_and(|s| now.duration_since(s.at) > WINDOW)
            {
                samples.pop_front();
            }
        }
    }

    /// Successful read latencies in microseconds; `None` when the window holds no round.
    pub fn latencies(&self) -> Option<Histogram<u64>> {
        let samples = self.samples.lock().ok()?;
        if samples.is_empty() {
            return None;
        }
        let mut histogram = Histogram::<u64>::new(3).ok()?;
        for read in samples.iter().filter_map(|s| s.read) {
            let micros = u64::try_from(read.as_micros()).unwrap_or(u64::MAX).max(1);
            let _ = histogram.record(micros);
        }
        Some(histogram)
    }

    /// `(successes, total)` of the write probes in the window.
    pub fn writes(&self) -> (u64, u64) {
        self.samples
            .lock()
            .map(|samples| {
                let total = u64::try_from(samples.len()).unwrap_or(u64::MAX);
                let ok = samples.iter().filter(|s| s.write_ok).count();
                (u64::try_from(ok).unwrap_or(u64::MAX), total)
            })
            .unwrap_or((0, 0))
    }
}

async fn connect(options: &PgConnectOptions) -> Option<PgConnection> {
    tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(options))
        .await
        .ok()?
        .ok()
}

/// One round on `connection` (opened, or reopened after a failure, as needed): the read's
/// latency when it succeeded, and whether the write succeeded.
pub async fn probe_once(
    options: &PgConnectOptions,
    connection: &mut Option<PgConnection>,
) -> (Option<Duration>, bool) {
    if connection.is_none() {
        *connection = connect(options).await;
    }
    let Some(conn) = connection.as_mut() else {
        return (None, false);
    };
    let started = Instant::now();
    let read = tokio::time::timeout(
        PROBE_TIMEOUT,
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut *conn),
    )
    .await;
    let read = matches!(read, Ok(Ok(1))).then(|| started.elapsed());
    let write = tokio::time::timeout(
        PROBE_TIMEOUT,
        sqlx::query("SELECT pg_logical_emit_message(true, 'shanraq-probe', '')")
            .execute(&mut *conn),
    )
    .await;
    let write_ok = matches!(write, Ok(Ok(_)));
    if read.is_none() || !write_ok {
        // A broken or read-only connection (the old primary, say) is not reused.
        *connection = None;
    }
    (read, write_ok)
}

/// Probes every `PROBE_PERIOD` until the task is aborted.
pub async fn run(options: PgConnectOptions, window: Arc<ProbeWindow>) {
    let mut connection = None;
    let mut ticker = tokio::time::interval(PROBE_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (read, write_ok) = probe_once(&options, &mut connection).await;
        window.record(read, write_ok);
    }
}
