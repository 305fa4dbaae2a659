//! What the probes of one cluster measured: every round of every path over the last `WINDOW`
//! (latency percentiles, failures), the outages a client of each write path saw, why a
//! component's probes cannot run, and the availability SLO's counts (the write probes of every
//! component, in hourly buckets, on top of what the status persisted).
//!
//! A round is one probe at the regular period. While a write path fails, its prober probes
//! again at a short interval to time the outage's end; those retries end outages but are not
//! rounds (the availability ratio would count one failure many times over).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use shanraq_api::objectives::ObjectiveComponent;
use shanraq_ha::objectives::{AvailabilityLedger, BucketCounts};

use super::plan::ProbePath;
use crate::metrics::ProbeCounter;

/// The latency window.
pub const WINDOW: Duration = Duration::from_secs(300);
/// The longest availability window the spec allows: the live counts are never kept longer.
const LEDGER_MAX_WINDOW: Duration = Duration::from_secs(2160 * 3600);

/// Why a component's probes give no figure although its paths are on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeTrouble {
    /// The probes cannot run from the operator (Secret unreadable, Service name unresolved).
    NotRunning(String),
    /// They run, and no probe of the window succeeded: the last error.
    Failing(String),
}

/// One path's figures over the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathFigures {
    /// Percentiles of the successful probes; `None` when none succeeded.
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    pub samples: u64,
    pub failures: u64,
}

/// An outage a write path's client saw: from the start of the first failed probe to the end
/// of the next successful one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outage {
    pub started: SystemTime,
    pub duration: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    path: ProbePath,
    latency: Option<Duration>,
}

#[derive(Clone, Copy, Debug, Default)]
struct OutageTrack {
    /// The open outage: when its first failed probe started.
    open: Option<(Instant, SystemTime)>,
    last: Option<Outage>,
}

/// The probes of one cluster.
#[derive(Debug, Default)]
pub struct ProbeWindow {
    samples: Mutex<VecDeque<Sample>>,
    counter: OnceLock<ProbeCounter>,
    not_running: Mutex<BTreeMap<ObjectiveComponent, String>>,
    last_error: Mutex<BTreeMap<ObjectiveComponent, String>>,
    outages: Mutex<BTreeMap<ProbePath, OutageTrack>>,
    /// The availability SLO's counts: what an earlier process persisted in the status (read
    /// once, when the ledger opens), and this process's own write probes since, in hourly
    /// buckets. Write probes count only once the ledger is open (the cluster was first Ready).
    ledger_base: OnceLock<AvailabilityLedger>,
    ledger_live: Mutex<AvailabilityLedger>,
    ledger_open: AtomicBool,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

impl ProbeWindow {
    /// `component`'s probes cannot run (`Some(why)`), or run again (`None`).
    pub fn set_not_running(&self, component: ObjectiveComponent, why: Option<String>) {
        if let Ok(mut slots) = self.not_running.lock() {
            match why {
                Some(why) => slots.insert(component, why),
                None => slots.remove(&component),
            };
        }
    }

    /// The last error of `component`'s probes, for `ProbeTrouble::Failing`.
    pub fn note_error(&self, component: ObjectiveComponent, error: String) {
        if let Ok(mut slots) = self.last_error.lock() {
            slots.insert(component, error);
        }
    }

    /// Why `component` has no figure, when there is a reason: its probes cannot run, or the
    /// window holds its rounds and not one succeeded.
    pub fn trouble(&self, component: ObjectiveComponent) -> Option<ProbeTrouble> {
        if let Some(why) = self
            .not_running
            .lock()
            .ok()
            .and_then(|slots| slots.get(&component).cloned())
        {
            return Some(ProbeTrouble::NotRunning(why));
        }
        let samples = self.samples.lock().ok()?;
        let rounds = samples
            .iter()
            .filter(|s| s.path.component() == component)
            .count();
        if rounds == 0
            || samples
                .iter()
                .any(|s| s.path.component() == component && s.latency.is_some())
        {
            return None;
        }
        let last = self
            .last_error
            .lock()
            .ok()
            .and_then(|slots| slots.get(&component).cloned())
            .unwrap_or_else(|| "no probe succeeded".to_owned());
        Some(ProbeTrouble::Failing(format!(
            "{rounds} probes, none succeeded; last error: {last}"
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

    /// Records one round of `path` that started at `started`: its latency, or `None` when it
    /// failed.
    pub fn record(&self, path: ProbePath, started: Instant, latency: Option<Duration>) {
        self.record_at(path, started, latency, unix_now());
    }

    fn record_at(&self, path: ProbePath, started: Instant, latency: Option<Duration>, at: u64) {
        let ok = latency.is_some();
        if let Some(counter) = self.counter.get() {
            counter.count(path.name(), path.kind(), ok);
        }
        if path.is_write() {
            if self.ledger_open.load(Ordering::Relaxed)
                && let Ok(mut live) = self.ledger_live.lock()
            {
                if live.bucket_seconds == 0 {
                    *live = AvailabilityLedger::new(Duration::from_secs(3600));
                }
                live.add(
                    at,
                    BucketCounts {
                        ok: u64::from(ok),
                        total: 1,
                    },
                );
            }
            self.track_outage(path, started, ok);
        }
        let now = Instant::now();
        if let Ok(mut samples) = self.samples.lock() {
            samples.push_back(Sample {
                at: now,
                path,
                latency,
            });
            while samples
                .front()
                .is_some_and(|s| now.duration_since(s.at) > WINDOW)
            {
                samples.pop_front();
            }
        }
    }

    /// A retry of a failing write path (not a round): a success ends its outage.
    pub fn retried(&self, path: ProbePath, started: Instant, ok: bool) {
        if path.is_write() {
            self.track_outage(path, started, ok);
        }
    }

    fn track_outage(&self, path: ProbePath, started: Instant, ok: bool) {
        let Ok(mut tracks) = self.outages.lock() else {
            return;
        };
        let track = tracks.entry(path).or_default();
        match (ok, track.open) {
            (false, None) => {
                let wall = SystemTime::now()
                    .checked_sub(started.elapsed())
                    .unwrap_or_else(SystemTime::now);
                track.open = Some((started, wall));
            }
            (true, Some((first, wall))) => {
                track.open = None;
                track.last = Some(Outage {
                    started: wall,
                    duration: first.elapsed(),
                });
            }
            _ => {}
        }
    }

    /// Whether `path`'s last probe failed (its prober retries at a short interval then).
    pub fn failing(&self, path: ProbePath) -> bool {
        self.outages
            .lock()
            .ok()
            .and_then(|tracks| tracks.get(&path).map(|t| t.open.is_some()))
            .unwrap_or(false)
    }

    /// The last outage `path`'s client saw and that has ended.
    pub fn last_outage(&self, path: ProbePath) -> Option<Outage> {
        self.outages.lock().ok()?.get(&path)?.last
    }

    /// `path`'s figures over the window; `None` when it holds no round of it.
    pub fn figures(&self, path: ProbePath) -> Option<PathFigures> {
        let samples = self.samples.lock().ok()?;
        let mut histogram = Histogram::<u64>::new(3).ok()?;
        let (mut total, mut failures) = (0_u64, 0_u64);
        for sample in samples.iter().filter(|s| s.path == path) {
            total += 1;
            match sample.latency {
                Some(latency) => {
                    let micros = u64::try_from(latency.as_micros())
                        .unwrap_or(u64::MAX)
                        .max(1);
                    let _ = histogram.record(micros);
                }
                None => failures += 1,
            }
        }
        if total == 0 {
            return None;
        }
        let at = |quantile: f64| {
            (!histogram.is_empty())
                .then(|| Duration::from_micros(histogram.value_at_quantile(quantile)))
        };
        Some(PathFigures {
            p50: at(0.50),
            p99: at(0.99),
            samples: total,
            failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn trouble_names_the_cause_per_component_or_nothing() {
        let window = ProbeWindow::default();
        let redis = ObjectiveComponent::Redis;
        assert_eq!(
            window.trouble(redis),
            None,
            "an empty window is not a failure"
        );
        window.set_not_running(redis, Some("the Redis Secret cannot be read".into()));
        assert_eq!(
            window.trouble(redis),
            Some(ProbeTrouble::NotRunning(
                "the Redis Secret cannot be read".into()
            ))
        );
        assert_eq!(window.trouble(ObjectiveComponent::Postgres), None);
        window.set_not_running(redis, None);
        window.note_error(redis, "connect: connection refused".into());
        window.record(ProbePath::RedisGet, Instant::now(), None);
        window.record(ProbePath::RedisSet, Instant::now(), None);
        window.record(ProbePath::PostgresRead, Instant::now(), Some(MS));
        assert_eq!(
            window.trouble(redis),
            Some(ProbeTrouble::Failing(
                "2 probes, none succeeded; last error: connect: connection refused".into()
            ))
        );
        window.record(ProbePath::RedisGet, Instant::now(), Some(MS));
        assert_eq!(window.trouble(redis), None, "one probe succeeded");
    }

    #[test]
    fn figures_are_per_path() {
        let window = ProbeWindow::default();
        for micros in 1..=100 {
            window.record(
                ProbePath::PostgresRead,
                Instant::now(),
                Some(Duration::from_micros(micros * 10)),
            );
        }
        window.record(ProbePath::PostgresRead, Instant::now(), None);
        window.record(
            ProbePath::KafkaProduce,
            Instant::now(),
            Some(Duration::from_micros(1500)),
        );
        let read = window.figures(ProbePath::PostgresRead).expect("rounds");
        assert_eq!((read.samples, read.failures), (101, 1));
        assert_eq!(read.p50, Some(Duration::from_micros(500)));
        assert_eq!(read.p99, Some(Duration::from_micros(990)));
        let produce = window.figures(ProbePath::KafkaProduce).expect("rounds");
        assert_eq!(produce.p99, Some(Duration::from_micros(1500)));
        assert_eq!(window.figures(ProbePath::RedisSet), None);
    }

    /// An outage runs from the first failed probe to the next success, retries included, and
    /// only write paths have outages.
    #[test]
    fn an_outage_is_timed_from_the_first_failure_to_the_next_success() {
        let window = ProbeWindow::default();
        let first = Instant::now();
        window.record(ProbePath::PostgresWrite, first, None);
        assert!(window.failing(ProbePath::PostgresWrite));
        window.retried(ProbePath::PostgresWrite, Instant::now(), false);
        assert_eq!(window.last_outage(ProbePath::PostgresWrite), None);
        std::thread::sleep(5 * MS);
        window.retried(ProbePath::PostgresWrite, Instant::now(), true);
        assert!(!window.failing(ProbePath::PostgresWrite));
        let outage = window
            .last_outage(ProbePath::PostgresWrite)
            .expect("an outage ended");
        assert!(outage.duration >= 5 * MS, "{outage:?}");
        window.record(ProbePath::PostgresRead, Instant::now(), None);
        assert!(
            !window.failing(ProbePath::PostgresRead),
            "reads have no outage"
        );
    }

    /// The SLO's counts survive a restart through the status: a new window adds its own
    /// write probes to what was persisted, never counting either twice, and counts nothing
    /// before the ledger opened nor any read.
    #[test]
    fn the_ledger_adds_its_own_write_probes_to_the_persisted_ones_once() {
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
        let write = |probes: &ProbeWindow, path, ok: bool, at| {
            probes.record_at(path, Instant::now(), ok.then_some(MS), at);
        };
        write(&probes, ProbePath::PostgresWrite, false, now - 10);
        let opened = probes.ledger(Some(persisted.clone()), window, now);
        assert_eq!(
            opened.totals(),
            (3599, 3600),
            "nothing before the ledger opened"
        );
        write(&probes, ProbePath::PostgresWrite, true, now);
        write(&probes, ProbePath::KafkaProduce, false, now + 1);
        write(&probes, ProbePath::RedisGet, false, now + 1);
        // A later status (holding what this window published) is not read again.
        let published = probes.ledger(None, window, now + 2);
        let again = probes.ledger(Some(published.clone()), window, now + 2);
        assert_eq!(again.totals(), (3600, 3602));
        assert_eq!(again, published);
        // A new process starts from the published counts.
        let restarted = ProbeWindow::default();
        restarted.ledger(Some(published), window, now + 3);
        write(&restarted, ProbePath::RedisSet, true, now + 4);
        assert_eq!(
            restarted.ledger(None, window, now + 5).totals(),
            (3601, 3603)
        );
    }
}
