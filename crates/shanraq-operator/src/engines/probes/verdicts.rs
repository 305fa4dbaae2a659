//! The probe window judged against the objectives: each path's p99 against its component's
//! read or write target, availability over the SLO window from the persisted counts, and why
//! a component's probes give no figure. Pure: the registry hands in the window, the status
//! turns the verdicts into `LatencyMet`, `AvailabilityMet`, `status.objectives.probePaths` and
//! the client-side part of `RTOMet`.

use std::time::{Duration, SystemTime};

use shanraq_api::ValidCluster;
use shanraq_api::objectives::ObjectiveComponent;
use shanraq_api::status::{ProbeOutageStatus, ProbePathStatus};
use shanraq_ha::objectives::{self, AvailabilityLedger, ObjectiveStatus, human};

use super::plan::{ProbePath, ProbePlan};
use super::window::{Outage, PathFigures, ProbeTrouble, ProbeWindow};

/// One path, judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathVerdict {
    pub path: ProbePath,
    pub figures: PathFigures,
    pub target: Duration,
    /// The p99 is within the target (false while no probe of the window succeeded).
    pub met: bool,
    /// The last outage this path's client saw (write paths), from the window or, after an
    /// operator restart, from the status.
    pub last_outage: Option<Outage>,
}

impl PathVerdict {
    /// The p99, or unbounded while no probe succeeded: the larger, the worse.
    pub fn weight(&self) -> Duration {
        self.figures.p99.unwrap_or(Duration::MAX)
    }

    /// `write p99 2.1ms (p50 1.4ms, 300 probes, 1 failed) <= 10ms`.
    pub fn text(&self) -> String {
        let kind = self.path.kind();
        let figures = &self.figures;
        let failed = match figures.failures {
            0 => String::new(),
            n => format!(", {n} failed"),
        };
        match (figures.p99, figures.p50) {
            (Some(p99), Some(p50)) => format!(
                "{kind} p99 {} (p50 {}, {} probes{failed}) {} {}",
                human(p99),
                human(p50),
                figures.samples,
                if self.met { "<=" } else { ">" },
                human(self.target)
            ),
            _ => format!(
                "{kind}: none of {} probes succeeded, target {}",
                figures.samples,
                human(self.target)
            ),
        }
    }
}

/// Latency and availability verdicts from the probe window; empty while not measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeVerdicts {
    /// Every probed path with a round in the window, in `ProbePath::ALL` order.
    pub paths: Vec<PathVerdict>,
    pub availability: Option<ObjectiveStatus>,
    /// Why a component's probes give no figure, when they cannot.
    pub trouble: Vec<(ObjectiveComponent, ProbeTrouble)>,
    /// The availability SLO's counts over `objectives.availabilityWindow`, to persist.
    pub ledger: Option<AvailabilityLedger>,
    /// The share of the error budget left, and the success ratio, over that window.
    pub budget_remaining: Option<f64>,
    pub availability_ratio: Option<f64>,
}

/// What must change for the verdicts to be published before the republish interval: each
/// path's verdict and last outage, availability's verdict, and which components are in
/// trouble.
pub type Verdict = (
    Vec<(ProbePath, bool, Option<SystemTime>)>,
    Option<bool>,
    Vec<ObjectiveComponent>,
);

impl ProbeVerdicts {
    pub fn verdict(&self) -> Verdict {
        (
            self.paths
                .iter()
                .map(|p| (p.path, p.met, p.last_outage.map(|o| o.started)))
                .collect(),
            self.availability.as_ref().map(|v| v.met),
            self.trouble.iter().map(|(c, _)| *c).collect(),
        )
    }

    /// `component`'s judged paths.
    pub fn of(&self, component: ObjectiveComponent) -> impl Iterator<Item = &PathVerdict> {
        self.paths
            .iter()
            .filter(move |p| p.path.component() == component)
    }

    /// Why `component`'s probes give no figure, if they cannot.
    pub fn trouble(&self, component: ObjectiveComponent) -> Option<&ProbeTrouble> {
        self.trouble
            .iter()
            .find(|(c, _)| *c == component)
            .map(|(_, t)| t)
    }

    /// The last outage a client of `component`'s write path saw.
    pub fn last_outage(&self, component: ObjectiveComponent) -> Option<(ProbePath, Outage)> {
        self.of(component)
            .filter(|p| p.path.is_write())
            .find_map(|p| p.last_outage.map(|o| (p.path, o)))
    }

    /// The worst p99 of every judged path, for the latency metric.
    pub fn worst_p99(&self) -> Option<Duration> {
        self.paths.iter().filter_map(|p| p.figures.p99).max()
    }

    /// Whether every judged path is within its target (`None` when none is judged).
    pub fn latency_met(&self) -> Option<bool> {
        (!self.paths.is_empty()).then(|| self.paths.iter().all(|p| p.met))
    }

    /// Outages the status kept from an earlier process, for paths whose window saw none.
    pub fn keep_outages(&mut self, previous: &[ProbePathStatus]) {
        for verdict in &mut self.paths {
            if verdict.last_outage.is_none() {
                verdict.last_outage = previous
                    .iter()
                    .find(|p| p.path == verdict.path.name())
                    .and_then(|p| p.last_outage.as_ref())
                    .and_then(outage_from_status);
            }
        }
    }

    /// `status.objectives.probePaths`.
    pub fn to_status(&self) -> Vec<ProbePathStatus> {
        let signed = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.paths
            .iter()
            .map(|p| ProbePathStatus {
                path: p.path.name().to_owned(),
                component: p.path.component().title().to_owned(),
                p50: p.figures.p50.map(human),
                p99: p.figures.p99.map(human),
                target: human(p.target),
                samples: signed(p.figures.samples),
                failures: signed(p.figures.failures),
                met: p.met,
                last_outage: p.last_outage.map(|o| ProbeOutageStatus {
                    started: jiff::Timestamp::try_from(o.started)
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    duration_ms: i64::try_from(o.duration.as_millis()).unwrap_or(i64::MAX),
                }),
            })
            .collect()
    }
}

fn outage_from_status(status: &ProbeOutageStatus) -> Option<Outage> {
    let started: jiff::Timestamp = status.started.parse().ok()?;
    Some(Outage {
        started: SystemTime::from(started),
        duration: Duration::from_millis(u64::try_from(status.duration_ms).ok()?),
    })
}

/// Judges the window: each path of `plan` against its target, and availability over
/// `ledger`, the SLO window's counts of every component's write probes.
pub fn judge(
    cluster: &ValidCluster,
    plan: &ProbePlan,
    window: &ProbeWindow,
    ledger: Option<AvailabilityLedger>,
) -> ProbeVerdicts {
    let objectives = &cluster.spec.objectives;
    let paths: Vec<PathVerdict> = plan
        .paths()
        .into_iter()
        .filter_map(|path| {
            let figures = window.figures(path)?;
            let target = path.target(cluster);
            Some(PathVerdict {
                path,
                met: figures.p99.is_some_and(|p99| p99 <= target),
                figures,
                target,
                last_outage: window.last_outage(path),
            })
        })
        .collect();
    let slo = ledger.as_ref().and_then(|ledger| {
        let target = objectives.availability.parse::<f64>().ok()?;
        let mut slo =
            objectives::availability_slo(target, objectives.availability_window.as_std(), ledger);
        if !plan.unprobed.is_empty() {
            // Say what the ratio does not cover rather than let it stand for the whole stack.
            let unprobed: Vec<String> = plan
                .unprobed
                .iter()
                .map(|(component, why)| format!("{} is not probed: {why}", component.title()))
                .collect();
            slo.status
                .message
                .push_str(&format!("; {}", unprobed.join("; ")));
        }
        (ledger.totals().1 > 0).then_some(slo)
    });
    let trouble = ObjectiveComponent::ALL
        .into_iter()
        .filter(|component| plan.probes(*component))
        .filter_map(|component| window.trouble(component).map(|t| (component, t)))
        .collect();
    ProbeVerdicts {
        paths,
        availability: slo.as_ref().map(|slo| slo.status.clone()),
        trouble,
        budget_remaining: slo.as_ref().and_then(|slo| slo.budget_remaining),
        availability_ratio: slo.as_ref().and_then(|slo| slo.ratio),
        ledger,
    }
}

/// The persisted ledger in the status, as the evaluator reads it (`None` when it holds none or
/// is malformed: negative or zero figures are not counts).
pub fn ledger_from_status(
    status: Option<&shanraq_api::status::AvailabilityLedgerStatus>,
) -> Option<AvailabilityLedger> {
    let status = status?;
    let bucket_seconds = u64::try_from(status.bucket_seconds)
        .ok()
        .filter(|s| *s > 0)?;
    let mut ledger = AvailabilityLedger {
        bucket_seconds,
        buckets: std::collections::BTreeMap::new(),
    };
    for bucket in &status.buckets {
        let (Ok(start), Ok(ok), Ok(total)) = (
            u64::try_from(bucket.start),
            u64::try_from(bucket.ok),
            u64::try_from(bucket.total),
        ) else {
            continue;
        };
        ledger.add(start, objectives::BucketCounts { ok, total });
    }
    Some(ledger)
}

/// The ledger as the status keeps it.
pub fn ledger_to_status(
    ledger: &AvailabilityLedger,
) -> shanraq_api::status::AvailabilityLedgerStatus {
    let signed = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    shanraq_api::status::AvailabilityLedgerStatus {
        bucket_seconds: signed(ledger.bucket_seconds),
        buckets: ledger
            .buckets
            .iter()
            .map(|(start, counts)| shanraq_api::status::AvailabilityBucket {
                start: signed(*start),
                ok: signed(counts.ok),
                total: signed(counts.total),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::plan::tests::cluster;
    use super::*;

    /// Reads are judged against `latency.p99`, writes against `latency.writeP99`, each
    /// component's own override first.
    #[test]
    fn each_path_is_judged_against_its_own_target() {
        let cluster = cluster(
            "objectives: {latency: {p99: 1ms, writeP99: 5ms}}\nkafka: {objectives: {latency: {writeP99: 20ms}}}",
        );
        let plan = super::super::plan::plan(&cluster, "cluster.local");
        let window = ProbeWindow::default();
        let ms = Duration::from_millis;
        window.record(
            ProbePath::PostgresRead,
            Instant::now(),
            Some(Duration::from_micros(600)),
        );
        window.record(ProbePath::PostgresWrite, Instant::now(), Some(ms(4)));
        window.record(ProbePath::RedisGet, Instant::now(), Some(ms(2)));
        window.record(ProbePath::KafkaProduce, Instant::now(), Some(ms(15)));
        let verdicts = judge(&cluster, &plan, &window, None);
        let met: Vec<(&str, bool, Duration)> = verdicts
            .paths
            .iter()
            .map(|p| (p.path.name(), p.met, p.target))
            .collect();
        assert_eq!(
            met,
            vec![
                ("postgres-read", true, ms(1)),
                ("postgres-write", true, ms(5)),
                ("redis-get", false, ms(1)),
                ("kafka-produce", true, ms(20)),
            ],
            "a path with no round in the window (redis-set) is not judged"
        );
        assert_eq!(verdicts.latency_met(), Some(false));
        // HDR histograms keep three significant digits: 15ms reads back within 0.1%.
        assert_eq!(verdicts.worst_p99().map(|p99| p99.as_millis()), Some(15));
        assert_eq!(
            verdicts.paths[2].text(),
            "read p99 2ms (p50 2ms, 1 probes) > 1ms"
        );
    }

    /// An outage seen before an operator restart is read back from the status, and written
    /// as it was read.
    #[test]
    fn outages_outlive_a_restart_through_the_status() {
        let cluster = cluster("{}");
        let plan = super::super::plan::plan(&cluster, "cluster.local");
        let window = ProbeWindow::default();
        window.record(
            ProbePath::PostgresWrite,
            Instant::now(),
            Some(Duration::from_millis(2)),
        );
        let previous = vec![ProbePathStatus {
            path: "postgres-write".into(),
            last_outage: Some(ProbeOutageStatus {
                started: "2026-12-08T01:00:00Z".into(),
                duration_ms: 1234,
            }),
            ..ProbePathStatus::default()
        }];
        let mut verdicts = judge(&cluster, &plan, &window, None);
        assert_eq!(verdicts.last_outage(ObjectiveComponent::Postgres), None);
        verdicts.keep_outages(&previous);
        let (path, outage) = verdicts
            .last_outage(ObjectiveComponent::Postgres)
            .expect("kept");
        assert_eq!(
            (path, outage.duration),
            (ProbePath::PostgresWrite, Duration::from_millis(1234))
        );
        assert_eq!(verdicts.to_status()[0].last_outage, previous[0].last_outage);
    }

    /// Availability is the success ratio of every component's write probes over the SLO
    /// window, with the budget left; nothing is made up before a probe ran or before the
    /// ledger opened.
    #[test]
    fn availability_counts_the_write_probes_of_every_component() {
        let cluster = cluster(
            "objectives: {availability: \"99\"}\nhaproxy: {enabled: false}\nredis: {enabled: false}",
        );
        let plan = super::super::plan::plan(&cluster, "cluster.local");
        let slo_window = cluster.spec.objectives.availability_window.as_std();
        let now = || {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .expect("after 1970")
                .as_secs()
        };
        let window = ProbeWindow::default();
        let ledger = |window: &ProbeWindow| Some(window.ledger(None, slo_window, now()));
        let empty = judge(&cluster, &plan, &window, ledger(&window));
        assert_eq!(
            (
                empty.paths.len(),
                empty.availability,
                empty.budget_remaining
            ),
            (0, None, None),
            "nothing probed: not measured, never a made-up verdict"
        );
        let ok = Some(Duration::from_micros(800));
        for i in 0..99 {
            let path = if i % 2 == 0 {
                ProbePath::PostgresWrite
            } else {
                ProbePath::KafkaProduce
            };
            window.record(path, Instant::now(), ok);
            window.record(ProbePath::PostgresRead, Instant::now(), None);
        }
        let verdicts = judge(&cluster, &plan, &window, ledger(&window));
        assert!(
            verdicts.availability.expect("measured").met,
            "failed reads do not count"
        );
        assert_eq!(verdicts.budget_remaining, Some(1.0));

        // One failed write in a hundred is exactly 99%: still met, the budget spent; two are not.
        window.record(ProbePath::KafkaProduce, Instant::now(), None);
        let verdicts = judge(&cluster, &plan, &window, ledger(&window));
        assert!(verdicts.availability.expect("measured").met);
        assert!(verdicts.budget_remaining.expect("budget").abs() < 1e-9);
        window.record(ProbePath::PostgresWrite, Instant::now(), None);
        let verdicts = judge(&cluster, &plan, &window, ledger(&window));
        let availability = verdicts.availability.expect("measured");
        assert!(!availability.met, "{}", availability.message);
        assert!(
            availability
                .message
                .contains("over the 720h window (99 of 101 write probes succeeded"),
            "{}",
            availability.message
        );
        assert!(
            availability.message.contains(
                "; PostgreSQL is not probed: its probes go through HAProxy, which is disabled"
            ),
            "what the ratio does not cover is said: {}",
            availability.message
        );
        assert!(verdicts.budget_remaining.expect("budget") < 0.0);
        // Without the ledger (the cluster not yet Ready), no availability verdict.
        assert_eq!(judge(&cluster, &plan, &window, None).availability, None);
    }
}
