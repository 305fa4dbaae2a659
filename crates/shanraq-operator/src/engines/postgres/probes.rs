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
//!
//! Probes that cannot run say why (`ProbeTrouble`): while the application Secret cannot be read
//! (retried every `SECRET_RETRY`) or the operator cannot resolve the Service name, no round is
//! recorded (that is the operator's trouble, not the cluster's) and the conditions name the
//! cause; a window where no read succeeded names the last error.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use shanraq_ha::objectives::{AvailabilityLedger, BucketCounts};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::engines::start_error::{StartError, secret_value};
use crate::metrics::ProbeCounter;

/// How often both probes run.
pub const PROBE_PERIOD: Duration = Duration::from_secs(1);
/// The evaluation window.
pub const WINDOW: Duration = Duration::from_secs(300);
/// A probe slower than this counts as failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an unreadable application Secret is read again.
pub const SECRET_RETRY: Duration = Duration::from_secs(10);
/// The longest error text kept for a condition's message.
const ERROR_TEXT_MAX: usize = 200;

/// Why the probes give no figure although their path is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeTrouble {
    /// The probes cannot run from the operator (Secret unreadable, Service name unresolved).
    NotRunning(String),
    /// They run, and no read of the window succeeded: the last error.
    Failing(String),
}

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
    /// Why the probes cannot run now, if they cannot.
    not_running: Mutex<Option<String>>,
    /// The last probe error (connect, read or write), for `ProbeTrouble::Failing`.
    last_error: Mutex<Option<String>>,
    /// The availability SLO's counts: what an earlier process persisted in the status (read
    /// once, when the ledger opens), and this window's own write probes since, in hourly
    /// buckets. Write probes count only once the ledger is open (the cluster was first Ready).
    ledger_base: OnceLock<AvailabilityLedger>,
    ledger_live: Mutex<AvailabilityLedger>,
    ledger_open: AtomicBool,
}

/// The longest availability window the spec allows: the live counts are never kept longer.
const LEDGER_MAX_WINDOW: Duration = Duration::from_secs(2160 * 3600);

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

impl ProbeWindow {
    /// The probes cannot run (`Some(why)`), or run again (`None`).
    pub fn set_not_running(&self, why: Option<String>) {
        if let Ok(mut slot) = self.not_running.lock() {
            *slot = why;
        }
    }

    fn note_error(&self, error: Option<String>) {
        if let (Some(error), Ok(mut slot)) = (error, self.last_error.lock()) {
            *slot = Some(error);
        }
    }

    /// Why there is no figure, when there is a reason: the probes cannot run, or the window
    /// holds rounds and not one successful read.
    pub fn trouble(&self) -> Option<ProbeTrouble> {
        if let Some(why) = self.not_running.lock().ok().and_then(|slot| slot.clone()) {
            return Some(ProbeTrouble::NotRunning(why));
        }
        let samples = self.samples.lock().ok()?;
        if samples.is_empty() || samples.iter().any(|s| s.read.is_some()) {
            return None;
        }
        let last = self
            .last_error
            .lock()
            .ok()
            .and_then(|slot| slot.clone())
            .unwrap_or_else(|| "no read succeeded".to_owned());
        Some(ProbeTrouble::Failing(format!(
            "{} rounds, no read succeeded; last error: {last}",
            samples.len()
        )))
    }

    /// Counts every later round in `counter` too (the first counter attached stays).
    pub fn count_into(&self, counter: ProbeCounter) {
        let _ = self.counter.set(counter);
    }

    /// The availability SLO's counts over `window` ending at `now` (Unix seconds): those
    /// persisted by an earlier process (`persisted`, read on the first call only, so nothing is
    /// counted twice) plus this window's own. The first call opens the ledger: write probes
    /// count from then on.
    pub fn ledger(
        &self,
        persisted: Option<AvailabilityLedger>,
        window: Duration,
        now: u64,
    ) -> AvailabilityLedger {
        let base = self
            .ledger_base
            .get_or_init(|| persisted.unwrap_or_else(|| AvailabilityLedger::new(window)));
        self.ledger_open.store(true, Ordering::Relaxed);
        let Ok(mut live) = self.ledger_live.lock() else {
            return base.clone();
        };
        live.trim(LEDGER_MAX_WINDOW, now);
        base.merged(&live, window, now)
    }

    /// Records one round (`read` is `None` when the read failed).
    pub fn record(&self, read: Option<Duration>, write_ok: bool) {
        self.record_at(read, write_ok, unix_now());
    }

    fn record_at(&self, read: Option<Duration>, write_ok: bool, at: u64) {
        if let Some(counter) = self.counter.get() {
            counter.count("read", read.is_some());
            counter.count("write", write_ok);
        }
        if self.ledger_open.load(Ordering::Relaxed)
            && let Ok(mut live) = self.ledger_live.lock()
        {
            if live.bucket_seconds == 0 {
                *live = AvailabilityLedger::new(Duration::from_secs(3600));
            }
            live.add(
                at,
                BucketCounts {
                    ok: u64::from(write_ok),
                    total: 1,
                },
            );
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

/// An error as a condition may show it: bounded, on one line. (Connection errors name the
/// host, user and database, never the password.)
fn error_text(error: &dyn std::fmt::Display) -> String {
    let text = error.to_string().replace('\n', " ");
    match text.char_indices().nth(ERROR_TEXT_MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

async fn connect(options: &PgConnectOptions) -> Result<PgConnection, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(format!("connect: {}", error_text(&error))),
        Err(_) => Err(format!("connect: no answer within {PROBE_TIMEOUT:?}")),
    }
}

/// One probe round as `run` sees it.
#[derive(Debug)]
enum Round {
    /// The operator cannot resolve the Service name: nothing was probed.
    Unresolved(String),
    Done {
        read: Option<Duration>,
        write_ok: bool,
        error: Option<String>,
    },
}

/// Resolves `host` the way the connection will: an operator that cannot resolve the Service
/// name (outside the cluster's DNS, say) cannot probe, and says so.
async fn resolves(host: &str, port: u16) -> Result<(), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(mut addresses)) => match addresses.next() {
            Some(_) => Ok(()),
            None => Err(format!("the operator resolves {host} to no address")),
        },
        Ok(Err(error)) => Err(format!(
            "the operator cannot resolve {host}: {}",
            error_text(&error)
        )),
        Err(_) => Err(format!(
            "the operator cannot resolve {host}: no answer within {PROBE_TIMEOUT:?}"
        )),
    }
}

/// One round on `connection` (opened, or reopened after a failure, as needed): the read's
/// latency when it succeeded, and whether the write succeeded.
pub async fn probe_once(
    options: &PgConnectOptions,
    connection: &mut Option<PgConnection>,
) -> (Option<Duration>, bool) {
    let (read, write_ok, _) = round(options, connection).await;
    (read, write_ok)
}

async fn round(
    options: &PgConnectOptions,
    connection: &mut Option<PgConnection>,
) -> (Option<Duration>, bool, Option<String>) {
    if connection.is_none() {
        match connect(options).await {
            Ok(opened) => *connection = Some(opened),
            Err(error) => return (None, false, Some(error)),
        }
    }
    let Some(conn) = connection.as_mut() else {
        return (None, false, None);
    };
    let mut error = None;
    let started = Instant::now();
    let read = tokio::time::timeout(
        PROBE_TIMEOUT,
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut *conn),
    )
    .await;
    let read = match read {
        Ok(Ok(1)) => Some(started.elapsed()),
        Ok(Ok(other)) => {
            error = Some(format!("read: SELECT 1 returned {other}"));
            None
        }
        Ok(Err(failure)) => {
            error = Some(format!("read: {}", error_text(&failure)));
            None
        }
        Err(_) => {
            error = Some(format!("read: no answer within {PROBE_TIMEOUT:?}"));
            None
        }
    };
    let write = tokio::time::timeout(
        PROBE_TIMEOUT,
        sqlx::query("SELECT pg_logical_emit_message(true, 'shanraq-probe', '')")
            .execute(&mut *conn),
    )
    .await;
    let write_ok = match write {
        Ok(Ok(_)) => true,
        Ok(Err(failure)) => {
            error.get_or_insert_with(|| format!("write: {}", error_text(&failure)));
            false
        }
        Err(_) => {
            error.get_or_insert_with(|| format!("write: no answer within {PROBE_TIMEOUT:?}"));
            false
        }
    };
    if read.is_none() || !write_ok {
        // A broken or read-only connection (the old primary, say) is not reused.
        *connection = None;
    }
    (read, write_ok, error)
}

async fn probe_round(
    options: &PgConnectOptions,
    connection: &mut Option<PgConnection>,
    target: &ProbeTarget,
) -> Round {
    if connection.is_none()
        && let Err(why) = resolves(&target.host, target.port).await
    {
        return Round::Unresolved(why);
    }
    let (read, write_ok, error) = round(options, connection).await;
    Round::Done {
        read,
        write_ok,
        error,
    }
}

/// The probes' connection options, with the application's credentials from its Secret.
async fn probe_options(
    client: &Client,
    namespace: &str,
    target: &ProbeTarget,
) -> Result<PgConnectOptions, StartError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let username = secret_value(&secrets, &target.secret, "username").await?;
    let password = secret_value(&secrets, &target.secret, "password").await?;
    Ok(PgConnectOptions::new()
        .host(&target.host)
        .port(target.port)
        .database(&target.database)
        .username(&username)
        .password(&password)
        .application_name("shanraq-probe"))
}

/// Reads the application's credentials (again every `SECRET_RETRY` while they cannot be read,
/// saying why in the window, and while connections fail), then probes every `PROBE_PERIOD`
/// until the task is aborted.
pub async fn run(client: Client, namespace: String, target: ProbeTarget, window: Arc<ProbeWindow>) {
    let mut warned = false;
    let options = loop {
        match probe_options(&client, &namespace, &target).await {
            Ok(options) => break options,
            Err(error) => {
                if !warned {
                    tracing::warn!(%namespace, secret = %target.secret, %error, "no latency/availability probes until the application Secret can be read");
                    warned = true;
                }
                window.set_not_running(Some(format!(
                    "the application Secret cannot be read: {error}"
                )));
                tokio::time::sleep(SECRET_RETRY).await;
            }
        }
    };
    window.set_not_running(None);
    let mut options = options;
    let mut options_read = Instant::now();
    let mut failing = false;
    let mut connection = None;
    let mut ticker = tokio::time::interval(PROBE_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // Credentials rotated in the Secret would fail every connection from then on, and
        // count as an outage: while connections fail, the Secret is read again (at most every
        // `SECRET_RETRY`).
        if connection.is_none() && failing && options_read.elapsed() >= SECRET_RETRY {
            options_read = Instant::now();
            if let Ok(fresh) = probe_options(&client, &namespace, &target).await {
                options = fresh;
            }
        }
        match probe_round(&options, &mut connection, &target).await {
            Round::Unresolved(why) => window.set_not_running(Some(why)),
            Round::Done {
                read,
                write_ok,
                error,
            } => {
                failing = read.is_none();
                window.set_not_running(None);
                window.note_error(error);
                window.record(read, write_ok);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unresolvable_service_name_says_so() {
        let why = resolves("shanraq-probe-test.invalid", 5432)
            .await
            .expect_err("the .invalid top-level domain never resolves");
        assert!(
            why.starts_with("the operator cannot resolve shanraq-probe-test.invalid"),
            "{why}"
        );
        assert!(resolves("127.0.0.1", 5432).await.is_ok());
    }

    #[test]
    fn trouble_names_the_cause_or_nothing() {
        let window = ProbeWindow::default();
        assert_eq!(window.trouble(), None, "an empty window is not a failure");
        window.set_not_running(Some("the application Secret cannot be read".into()));
        assert_eq!(
            window.trouble(),
            Some(ProbeTrouble::NotRunning(
                "the application Secret cannot be read".into()
            ))
        );
        window.set_not_running(None);
        window.note_error(Some("connect: connection refused".into()));
        window.record(None, false);
        window.record(None, false);
        assert_eq!(
            window.trouble(),
            Some(ProbeTrouble::Failing(
                "2 rounds, no read succeeded; last error: connect: connection refused".into()
            ))
        );
        window.record(Some(Duration::from_millis(1)), true);
        assert_eq!(
            window.trouble(),
            None,
            "one read succeeded: a latency exists"
        );
    }

    /// The SLO's counts survive a restart through the status: a new window adds its own
    /// probes to what was persisted, never counting either twice, and counts nothing before the
    /// ledger opened.
    #[test]
    fn the_ledger_adds_its_own_probes_to_the_persisted_ones_once() {
        let window = Duration::from_secs(720 * 3600);
        let now = 100 * 24 * 3600;
        let mut persisted = AvailabilityLedger::new(window);
        persisted.add(
            now - 3600,
            BucketCounts {
                ok: 3599,
                total: 3600,
            },
        );
        let probes = ProbeWindow::default();
        probes.record_at(None, false, now - 10);
        let opened = probes.ledger(Some(persisted.clone()), window, now);
        assert_eq!(
            opened.totals(),
            (3599, 3600),
            "nothing before the ledger opened"
        );
        probes.record_at(Some(Duration::from_millis(1)), true, now);
        probes.record_at(Some(Duration::from_millis(1)), false, now + 1);
        // A later status (holding what this window published) is not read again.
        let published = probes.ledger(None, window, now + 2);
        let again = probes.ledger(Some(published.clone()), window, now + 2);
        assert_eq!(again.totals(), (3600, 3602));
        assert_eq!(again, published);
        // A new process starts from the published counts.
        let restarted = ProbeWindow::default();
        restarted.ledger(Some(published), window, now + 3);
        restarted.record_at(Some(Duration::from_millis(1)), true, now + 4);
        assert_eq!(
            restarted.ledger(None, window, now + 5).totals(),
            (3601, 3603)
        );
    }

    #[test]
    fn error_text_is_one_bounded_line() {
        let long = "x".repeat(500);
        let text = error_text(&format!("first\n{long}"));
        assert!(!text.contains('\n'));
        assert_eq!(text.chars().count(), ERROR_TEXT_MAX + 3);
    }
}
