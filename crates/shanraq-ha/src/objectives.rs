//! The objectives evaluator: declared targets (RPO, RTO, latency P99, availability) against
//! measured values, one verdict per objective with the measured value next to the target, as
//! the `RPOMet`/`RTOMet`/`LatencyMet`/`AvailabilityMet` conditions show them. Pure: the
//! caller gathers the measurements.

use std::time::Duration;

use hdrhistogram::Histogram;

/// `pg_promote()` plus the first write on the new primary, as measured on the project's
/// reference machines (about 120 ms + 20 ms), rounded up.
pub const PROMOTION_ESTIMATE: Duration = Duration::from_millis(300);

/// One objective's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectiveStatus {
    pub met: bool,
    pub measured: String,
    pub target: String,
    pub message: String,
}

fn verdict(
    met: bool,
    name: &str,
    measured: String,
    detail: &str,
    target: String,
) -> ObjectiveStatus {
    let relation = if met { "<=" } else { ">" };
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    };
    let message = format!("{name} {measured}{detail} {relation} target {target}");
    ObjectiveStatus {
        met,
        measured,
        target,
        message,
    }
}

/// A duration as people read it: `0s`, `850ms`, `1.2s`, `0.42ms`.
pub fn human(duration: Duration) -> String {
    let micros = duration.as_micros();
    if micros == 0 {
        "0s".to_owned()
    } else if micros < 1_000_000 {
        format!("{}ms", trim(micros as f64 / 1_000.0))
    } else {
        format!("{}s", trim(micros as f64 / 1_000_000.0))
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// What bounds data loss right now.
#[derive(Clone, Debug, PartialEq)]
pub enum RpoMeasurement {
    /// Synchronous replication: the standbys streaming as `sync`/`quorum`, and how many must
    /// acknowledge each commit.
    Synchronous {
        streaming: Vec<String>,
        required: u32,
    },
    /// Asynchronous: the most advanced promotable replica's lag.
    Asynchronous {
        replica: String,
        lag_bytes: u64,
        lag: Duration,
    },
    /// Synchronous replication with `dataDurability: preferred` fallen back: the primary
    /// commits with `standby_names` (fewer than `required` standbys, or none), so it is
    /// asynchronous towards the `missing` ones, and a failover may lose what the most advanced
    /// streaming replica (`replica`, with its lag) has not received; unbounded when none
    /// streams.
    FellBack {
        standby_names: String,
        required: u32,
        missing: Vec<String>,
        replica: Option<String>,
        lag_bytes: u64,
        lag: Duration,
    },
    /// No replica could be promoted (or a failover refused): loss is unbounded.
    NoPromotableReplica { reason: String },
    /// The last failover lost data no member held any more (Redis: every node came back
    /// without it). Judged, like the last failover's RTO, until another failover or a
    /// switchover replaces it.
    DataLost { reason: String },
}

pub fn rpo(target: Duration, measurement: &RpoMeasurement) -> ObjectiveStatus {
    let target_text = human(target);
    match measurement {
        RpoMeasurement::Synchronous {
            streaming,
            required,
        } => {
            let enough = u32::try_from(streaming.len()).unwrap_or(u32::MAX) >= (*required).max(1);
            if enough {
                let noun = if streaming.len() == 1 {
                    "standby"
                } else {
                    "standbys"
                };
                let detail = format!("synchronous {noun} {} streaming", streaming.join(", "));
                verdict(true, "RPO", "0s".to_owned(), &detail, target_text)
            } else {
                let detail = format!(
                    "{} of {required} required synchronous standbys streaming{}",
                    streaming.len(),
                    if streaming.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", streaming.join(", "))
                    }
                );
                verdict(false, "RPO", "unbounded".to_owned(), &detail, target_text)
            }
        }
        RpoMeasurement::Asynchronous {
            replica,
            lag_bytes,
            lag,
        } => {
            // Asynchronous replication can never promise zero loss, even when caught up.
            let met = !target.is_zero() && *lag <= target;
            let detail = format!("asynchronous replica {replica} {lag_bytes} bytes behind");
            verdict(met, "RPO", human(*lag), &detail, target_text)
        }
        RpoMeasurement::FellBack {
            standby_names,
            required,
            missing,
            replica,
            lag_bytes,
            lag,
        } => {
            let setting = if standby_names.is_empty() {
                "asynchronous".to_owned()
            } else {
                format!("synchronous_standby_names '{standby_names}'")
            };
            let fallen = format!(
                "dataDurability: preferred fell back to {setting}: {} not streaming, {required} required",
                if missing.is_empty() {
                    "standbys".to_owned()
                } else {
                    missing.join(", ")
                }
            );
            match replica {
                // Like asynchronous replication: never zero loss, even when caught up.
                Some(replica) => {
                    let met = !target.is_zero() && *lag <= target;
                    let detail = format!("{fallen}; replica {replica} {lag_bytes} bytes behind");
                    verdict(met, "RPO", human(*lag), &detail, target_text)
                }
                None => {
                    let detail = format!("{fallen}; no replica streams");
                    verdict(false, "RPO", "unbounded".to_owned(), &detail, target_text)
                }
            }
        }
        RpoMeasurement::NoPromotableReplica { reason } => {
            verdict(false, "RPO", "unbounded".to_owned(), reason, target_text)
        }
        RpoMeasurement::DataLost { reason } => {
            verdict(false, "RPO", "data lost".to_owned(), reason, target_text)
        }
    }
}

/// What the RTO projection is made of, plus the last actual unplanned failover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtoInputs {
    pub probe_period: Duration,
    pub failure_threshold: u32,
    pub failover_delay: Duration,
    /// How often the router notices the new primary (HAProxy `inter`).
    pub routing_check_interval: Duration,
    pub last_failover_rto: Option<Duration>,
}

impl RtoInputs {
    /// probe period x threshold + failover delay + promotion + one routing check.
    pub fn projected(&self) -> Duration {
        self.probe_period.saturating_mul(self.failure_threshold)
            + self.failover_delay
            + PROMOTION_ESTIMATE
            + self.routing_check_interval
    }
}

pub fn rto(target: Duration, inputs: &RtoInputs) -> ObjectiveStatus {
    let projected = inputs.projected();
    let mut met = projected <= target;
    let mut detail = format!(
        "projected: {} x {} probes + {} delay + {} promotion + {} routing",
        human(inputs.probe_period),
        inputs.failure_threshold,
        human(inputs.failover_delay),
        human(PROMOTION_ESTIMATE),
        human(inputs.routing_check_interval)
    );
    let mut measured = projected;
    if let Some(actual) = inputs.last_failover_rto {
        met &= actual <= target;
        measured = measured.max(actual);
        detail.push_str(&format!("; last failover {}", human(actual)));
    }
    verdict(met, "RTO", human(measured), &detail, human(target))
}

/// `window` holds probe latencies in microseconds over the evaluation window.
pub fn latency(target_p99: Duration, window: &Histogram<u64>) -> ObjectiveStatus {
    if window.is_empty() {
        return ObjectiveStatus {
            met: false,
            measured: "none".to_owned(),
            target: human(target_p99),
            message: format!(
                "latency P99 unknown (no probe in the window), target {}",
                human(target_p99)
            ),
        };
    }
    let p99 = Duration::from_micros(window.value_at_quantile(0.99));
    let detail = format!("{} probes", window.len());
    verdict(
        p99 <= target_p99,
        "latency P99",
        human(p99),
        &detail,
        human(target_p99),
    )
}

/// `target_percent` such as 99.99; successes and total are write probes over the window.
pub fn availability(target_percent: f64, successes: u64, total: u64) -> ObjectiveStatus {
    let target = format!("{}%", trim_percent(target_percent));
    if total == 0 {
        return ObjectiveStatus {
            met: false,
            measured: "none".to_owned(),
            target: target.clone(),
            message: format!(
                "availability unknown (no write probe in the window), target {target}"
            ),
        };
    }
    // Rounded down: a window with a failure never reads 100%.
    let percent =
        (successes.min(total) as f64 * 100.0 / total as f64 * 10_000.0).floor() / 10_000.0;
    let met = percent + 1e-9 >= target_percent;
    let detail = format!("{successes} of {total} write probes succeeded");
    let relation = if met { ">=" } else { "<" };
    let measured = format!("{}%", trim_percent(percent));
    let message = format!("availability {measured} ({detail}) {relation} target {target}");
    ObjectiveStatus {
        met,
        measured,
        target,
        message,
    }
}

fn trim_percent(value: f64) -> String {
    let text = format!("{value:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

impl RpoMeasurement {
    /// How much it may lose, for picking the worst: unbounded first, then the larger
    /// asynchronous lag, synchronous last.
    fn exposure(&self) -> (u8, Duration, u64) {
        match self {
            RpoMeasurement::DataLost { .. } => (3, Duration::MAX, u64::MAX),
            RpoMeasurement::NoPromotableReplica { .. } => (2, Duration::MAX, u64::MAX),
            RpoMeasurement::Synchronous {
                streaming,
                required,
            } => {
                let enough =
                    u32::try_from(streaming.len()).unwrap_or(u32::MAX) >= (*required).max(1);
                if enough {
                    (0, Duration::ZERO, 0)
                } else {
                    (2, Duration::MAX, u64::MAX)
                }
            }
            RpoMeasurement::Asynchronous { lag_bytes, lag, .. } => (1, *lag, *lag_bytes),
            RpoMeasurement::FellBack {
                replica: Some(_),
                lag_bytes,
                lag,
                ..
            } => (1, *lag, *lag_bytes),
            RpoMeasurement::FellBack { replica: None, .. } => (2, Duration::MAX, u64::MAX),
        }
    }
}

/// At most this many buckets of write-probe counts are kept for the availability SLO (and
/// persisted in the status): the bucket grows with the window, never below an hour.
pub const MAX_LEDGER_BUCKETS: u64 = 240;
const HOUR: u64 = 3600;

/// Successful and total write probes in one bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketCounts {
    pub ok: u64,
    pub total: u64,
}

/// Write-probe counts of the availability SLO, in buckets of `bucket_seconds` keyed by their
/// start (Unix seconds, a multiple of the bucket). Small and bounded, so that it can be kept
/// in the status and outlive the operator process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AvailabilityLedger {
    pub bucket_seconds: u64,
    pub buckets: std::collections::BTreeMap<u64, BucketCounts>,
}

/// The bucket length for `window`: a whole number of hours, so that at most
/// `MAX_LEDGER_BUCKETS` cover it (720h gives 3h buckets).
pub fn bucket_seconds(window: Duration) -> u64 {
    let hours = window.as_secs().div_ceil(HOUR);
    hours.div_ceil(MAX_LEDGER_BUCKETS).max(1) * HOUR
}

impl AvailabilityLedger {
    pub fn new(window: Duration) -> Self {
        AvailabilityLedger {
            bucket_seconds: bucket_seconds(window),
            buckets: std::collections::BTreeMap::new(),
        }
    }

    /// Adds `counts` at `at` (Unix seconds) into its bucket.
    pub fn add(&mut self, at: u64, counts: BucketCounts) {
        let bucket = self.bucket_seconds.max(1);
        let slot = self.buckets.entry(at - at % bucket).or_default();
        slot.ok += counts.ok.min(counts.total);
        slot.total += counts.total;
    }

    /// `self` re-bucketed for `window` (a changed window changes the bucket), with `other`'s
    /// counts added, and only the buckets that still overlap the window ending at `now`.
    pub fn merged(&self, other: &AvailabilityLedger, window: Duration, now: u64) -> Self {
        let mut merged = AvailabilityLedger::new(window);
        for ledger in [self, other] {
            for (start, counts) in &ledger.buckets {
                merged.add(*start, *counts);
            }
        }
        merged.trim(window, now);
        merged
    }

    /// Drops the buckets that end before the window ending at `now` begins, and any beyond
    /// the bound (the oldest first).
    pub fn trim(&mut self, window: Duration, now: u64) {
        let start = now.saturating_sub(window.as_secs());
        let bucket = self.bucket_seconds;
        self.buckets.retain(|at, _| at + bucket > start);
        while u64::try_from(self.buckets.len()).unwrap_or(u64::MAX) > MAX_LEDGER_BUCKETS + 1 {
            self.buckets.pop_first();
        }
    }

    /// `(successes, total)` over every bucket.
    pub fn totals(&self) -> (u64, u64) {
        self.buckets.values().fold((0, 0), |(ok, total), counts| {
            (ok + counts.ok, total + counts.total)
        })
    }
}

/// The availability SLO over its window: the verdict, and the share of the error budget left
/// (1 untouched, 0 spent, below 0 overspent; `None` without a probe).
#[derive(Clone, Debug, PartialEq)]
pub struct AvailabilitySlo {
    pub status: ObjectiveStatus,
    pub budget_remaining: Option<f64>,
    pub ratio: Option<f64>,
}

/// Judges `ledger` against `target_percent` over `window`: the success ratio of every write
/// probe it holds, and how much of the error budget (`100 - target` percent of the probes)
/// the failures left.
pub fn availability_slo(
    target_percent: f64,
    window: Duration,
    ledger: &AvailabilityLedger,
) -> AvailabilitySlo {
    let (successes, total) = ledger.totals();
    let window_text = window_text(window);
    let mut slo = availability(target_percent, successes, total);
    if total == 0 {
        slo.message = format!(
            "availability unknown (no write probe in the {window_text} window), target {}",
            slo.target
        );
        return AvailabilitySlo {
            status: slo,
            budget_remaining: None,
            ratio: None,
        };
    }
    let failures = total - successes.min(total);
    let allowed = total as f64 * (100.0 - target_percent).max(0.0) / 100.0;
    let remaining = if allowed > 0.0 {
        1.0 - failures as f64 / allowed
    } else if failures == 0 {
        1.0
    } else {
        // A 100% target has no budget: one failure spends it all.
        0.0
    };
    let relation = if slo.met { ">=" } else { "<" };
    slo.message = format!(
        "availability {} over the {window_text} window ({successes} of {total} write probes succeeded; {} of the error budget left) {relation} target {}",
        slo.measured,
        percent_text(remaining),
        slo.target
    );
    AvailabilitySlo {
        ratio: Some(successes as f64 / total as f64),
        status: slo,
        budget_remaining: Some(remaining),
    }
}

/// A window as the spec writes it: whole hours as `720h`, else as `human` does.
fn window_text(window: Duration) -> String {
    let seconds = window.as_secs();
    if seconds >= HOUR && seconds.is_multiple_of(HOUR) && window.subsec_nanos() == 0 {
        format!("{}h", seconds / HOUR)
    } else {
        human(window)
    }
}

/// A share as a percentage with up to one decimal: `100%`, `62.5%`, `-40%`.
pub fn percent_text(share: f64) -> String {
    format!("{}%", trim_one(share * 100.0))
}

fn trim_one(value: f64) -> String {
    let text = format!("{value:.1}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// One component's share of an objective condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Measured (or projected) and judged against the component's target. `weight` orders the
    /// judged parts so that the worst decides (the larger, the worse).
    Judged {
        component: &'static str,
        status: ObjectiveStatus,
        weight: Duration,
    },
    /// The settings cannot meet the target whatever is measured: False at once, naming the
    /// field to change (`reason` says which).
    Unattainable {
        component: &'static str,
        target: String,
        reason: String,
    },
    /// Will be measured, is not yet.
    Pending {
        component: &'static str,
        why: String,
    },
    /// Not measured for this component at all (the message says why); named, never deciding.
    Uncovered {
        component: &'static str,
        why: String,
    },
}

/// Reasons of the objective conditions, stable for alerts and scripts.
pub const REASON_MEASURED: &str = "Measured";
pub const REASON_OVER_TARGET: &str = "OverTarget";
pub const REASON_UNATTAINABLE: &str = "Unattainable";
pub const REASON_NOT_MEASURED_YET: &str = "NotMeasuredYet";
pub const REASON_NOT_MEASURABLE: &str = "NotMeasurable";

/// The condition made of every component's part: False when one cannot be met or is over its
/// target, else Unknown while one is still to be measured, else True when at least one was
/// judged (and all met), else Unknown (nothing measures it). The deciding part comes first in
/// the message, then the others in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Combined {
    /// `None` is Unknown.
    pub met: Option<bool>,
    pub reason: &'static str,
    pub message: String,
    /// The judged part that decides (the worst), for the status's measured figure.
    pub decisive: Option<(&'static str, ObjectiveStatus)>,
    /// Its weight (the measured duration), for the metric; `None` when unbounded or when no
    /// judged part decides.
    pub measured: Option<Duration>,
}

pub fn combine(parts: &[Part]) -> Combined {
    let worst_judged = |only_failed: bool| {
        parts
            .iter()
            .enumerate()
            .filter_map(|(i, part)| match part {
                Part::Judged { status, weight, .. } if !only_failed || !status.met => {
                    Some((i, *weight))
                }
                _ => None,
            })
            // The first of equals: max_by_key keeps the last, so compare on reversed index.
            .max_by_key(|(i, weight)| (*weight, std::cmp::Reverse(*i)))
            .map(|(i, _)| i)
    };
    let first = |wanted: fn(&Part) -> bool| parts.iter().position(wanted);
    let (met, reason, lead) = if let Some(i) = first(|p| matches!(p, Part::Unattainable { .. })) {
        (Some(false), REASON_UNATTAINABLE, Some(i))
    } else if let Some(i) = worst_judged(true) {
        (Some(false), REASON_OVER_TARGET, Some(i))
    } else if let Some(i) = first(|p| matches!(p, Part::Pending { .. })) {
        (None, REASON_NOT_MEASURED_YET, Some(i))
    } else if let Some(i) = worst_judged(false) {
        (Some(true), REASON_MEASURED, Some(i))
    } else {
        (None, REASON_NOT_MEASURABLE, None)
    };
    let mut order: Vec<usize> = lead.into_iter().collect();
    order.extend((0..parts.len()).filter(|i| Some(*i) != lead));
    let message = order
        .iter()
        .map(|i| match &parts[*i] {
            Part::Judged {
                component, status, ..
            } => format!("{component}: {}", status.message),
            Part::Unattainable {
                component, reason, ..
            } => format!("{component}: cannot be met: {reason}"),
            Part::Pending { component, why } => format!("{component}: not measured yet ({why})"),
            Part::Uncovered { component, why } => format!("{component}: not measured ({why})"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let decisive_index = match lead.map(|i| &parts[i]) {
        Some(Part::Unattainable { .. }) => None,
        _ => worst_judged(met == Some(false)).or_else(|| worst_judged(false)),
    };
    let measured = decisive_index.and_then(|i| match &parts[i] {
        Part::Judged { weight, .. } if *weight != Duration::MAX => Some(*weight),
        _ => None,
    });
    let decisive = match lead.map(|i| &parts[i]) {
        Some(Part::Unattainable {
            component,
            target,
            reason,
        }) => Some((
            *component,
            ObjectiveStatus {
                met: false,
                measured: "unattainable".to_owned(),
                target: target.clone(),
                message: reason.clone(),
            },
        )),
        _ => decisive_index.and_then(|i| match &parts[i] {
            Part::Judged {
                component, status, ..
            } => Some((*component, status.clone())),
            _ => None,
        }),
    };
    Combined {
        met,
        reason,
        message,
        decisive,
        measured,
    }
}

impl RpoMeasurement {
    /// How much it may lose, as one duration for `Part::Judged`'s weight: unbounded is the
    /// most, synchronous with its quorum nothing.
    pub fn weight(&self) -> Duration {
        match self.exposure() {
            (2.., ..) => Duration::MAX,
            (_, lag, _) => lag,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpo_verdicts() {
        let cases = [
            (
                Duration::ZERO,
                RpoMeasurement::Synchronous {
                    streaming: vec!["payments-pg-2".into()],
                    required: 1,
                },
                true,
                "RPO 0s (synchronous standby payments-pg-2 streaming) <= target 0s",
            ),
            (
                Duration::ZERO,
                RpoMeasurement::Synchronous {
                    streaming: vec![],
                    required: 1,
                },
                false,
                "RPO unbounded (0 of 1 required synchronous standbys streaming) > target 0s",
            ),
            (
                Duration::from_secs(60),
                RpoMeasurement::Asynchronous {
                    replica: "pg-1".into(),
                    lag_bytes: 4096,
                    lag: Duration::from_millis(400),
                },
                true,
                "RPO 400ms (asynchronous replica pg-1 4096 bytes behind) <= target 60s",
            ),
            (
                Duration::ZERO,
                RpoMeasurement::Asynchronous {
                    replica: "pg-1".into(),
                    lag_bytes: 0,
                    lag: Duration::ZERO,
                },
                false,
                "RPO 0s (asynchronous replica pg-1 0 bytes behind) > target 0s",
            ),
            (
                Duration::ZERO,
                RpoMeasurement::FellBack {
                    standby_names: "ANY 1 (\"pg-1\")".into(),
                    required: 2,
                    missing: vec!["pg-2".into()],
                    replica: Some("pg-1".into()),
                    lag_bytes: 0,
                    lag: Duration::ZERO,
                },
                false,
                "RPO 0s (dataDurability: preferred fell back to synchronous_standby_names 'ANY 1 (\"pg-1\")': pg-2 not streaming, 2 required; replica pg-1 0 bytes behind) > target 0s",
            ),
            (
                Duration::from_secs(60),
                RpoMeasurement::FellBack {
                    standby_names: String::new(),
                    required: 1,
                    missing: vec!["pg-1".into(), "pg-2".into()],
                    replica: None,
                    lag_bytes: 0,
                    lag: Duration::ZERO,
                },
                false,
                "RPO unbounded (dataDurability: preferred fell back to asynchronous: pg-1, pg-2 not streaming, 1 required; no replica streams) > target 60s",
            ),
            (
                Duration::from_secs(60),
                RpoMeasurement::NoPromotableReplica {
                    reason: "failover refused: quorum unreachable".into(),
                },
                false,
                "RPO unbounded (failover refused: quorum unreachable) > target 60s",
            ),
            (
                Duration::from_secs(10),
                RpoMeasurement::DataLost {
                    reason: "every node came back empty".into(),
                },
                false,
                "RPO data lost (every node came back empty) > target 10s",
            ),
        ];
        for (target, measurement, met, message) in cases {
            let status = rpo(target, &measurement);
            assert_eq!(status.met, met, "{measurement:?}");
            // `human` prints whole minutes in seconds; compare with what it renders.
            assert_eq!(
                status.message,
                message.replace("1m", &human(Duration::from_secs(60)))
            );
        }
    }

    #[test]
    fn rto_uses_projection_and_last_failover() {
        let inputs = RtoInputs {
            probe_period: Duration::from_millis(250),
            failure_threshold: 3,
            failover_delay: Duration::ZERO,
            routing_check_interval: Duration::from_millis(200),
            last_failover_rto: None,
        };
        assert_eq!(inputs.projected(), Duration::from_millis(1250));
        let ok = rto(Duration::from_secs(30), &inputs);
        assert!(ok.met, "{}", ok.message);
        assert_eq!(ok.measured, "1.25s");
        assert!(
            !rto(Duration::from_secs(1), &inputs).met,
            "projection beyond the target"
        );
        let slow = RtoInputs {
            last_failover_rto: Some(Duration::from_secs(45)),
            ..inputs
        };
        let status = rto(Duration::from_secs(30), &slow);
        assert!(!status.met, "a slow actual failover fails the objective");
        assert!(
            status.message.contains("last failover 45s"),
            "{}",
            status.message
        );
    }

    #[test]
    fn latency_p99_over_the_window() {
        let mut window = Histogram::<u64>::new(3).expect("histogram");
        for _ in 0..990 {
            window.record(400).expect("record");
        }
        for _ in 0..10 {
            window.record(5_000).expect("record");
        }
        let status = latency(Duration::from_millis(1), &window);
        assert!(status.met, "{}", status.message);
        assert_eq!(status.measured, "0.4ms");
        for _ in 0..20 {
            window.record(5_000).expect("record");
        }
        assert!(!latency(Duration::from_millis(1), &window).met);
        let empty = Histogram::<u64>::new(3).expect("histogram");
        assert!(
            !latency(Duration::from_millis(1), &empty).met,
            "no data is not a pass"
        );
    }

    #[test]
    fn availability_from_write_probes() {
        let status = availability(99.99, 99_995, 100_000);
        assert!(status.met);
        assert_eq!(
            status.message,
            "availability 99.995% (99995 of 100000 write probes succeeded) >= target 99.99%"
        );
        assert!(!availability(99.99, 9_998, 10_000).met);
        assert!(!availability(99.99, 0, 0).met);
    }
}

#[cfg(test)]
mod combine_tests {
    use super::*;

    fn judged(component: &'static str, met: bool, ms: u64) -> Part {
        Part::Judged {
            component,
            status: ObjectiveStatus {
                met,
                measured: human(Duration::from_millis(ms)),
                target: "1s".to_owned(),
                message: format!(
                    "RPO {} {} target 1s",
                    human(Duration::from_millis(ms)),
                    if met { "<=" } else { ">" }
                ),
            },
            weight: Duration::from_millis(ms),
        }
    }

    #[test]
    fn the_worst_component_decides_and_every_one_is_named() {
        let all_met = combine(&[
            judged("PostgreSQL", true, 0),
            judged("Redis", true, 400),
            judged("Kafka", true, 0),
        ]);
        assert_eq!(all_met.met, Some(true));
        assert_eq!(all_met.reason, REASON_MEASURED);
        assert_eq!(
            all_met.message,
            "Redis: RPO 400ms <= target 1s; PostgreSQL: RPO 0s <= target 1s; Kafka: RPO 0s <= target 1s"
        );
        assert_eq!(all_met.decisive.map(|(c, _)| c), Some("Redis"));

        let one_over = combine(&[
            judged("PostgreSQL", false, 2000),
            judged("Redis", true, 5000),
        ]);
        assert_eq!(
            one_over.met,
            Some(false),
            "a smaller failure beats a larger pass"
        );
        assert_eq!(one_over.reason, REASON_OVER_TARGET);
        assert!(
            one_over
                .message
                .starts_with("PostgreSQL: RPO 2s > target 1s; Redis")
        );
        assert_eq!(one_over.decisive.map(|(c, _)| c), Some("PostgreSQL"));
    }

    #[test]
    fn rpo_weight_orders_unbounded_before_lag_before_synchronous() {
        let sync = RpoMeasurement::Synchronous {
            streaming: vec!["pg-1".to_owned()],
            required: 1,
        };
        let short = RpoMeasurement::Synchronous {
            streaming: vec![],
            required: 1,
        };
        let lagging = RpoMeasurement::Asynchronous {
            replica: "redis 10.0.0.5:6379".to_owned(),
            lag_bytes: 14,
            lag: Duration::from_secs(1),
        };
        let none = RpoMeasurement::NoPromotableReplica {
            reason: "no Redis replica".to_owned(),
        };
        assert_eq!(sync.weight(), Duration::ZERO);
        assert_eq!(lagging.weight(), Duration::from_secs(1));
        assert_eq!(
            short.weight(),
            Duration::MAX,
            "a missing quorum is unbounded"
        );
        assert_eq!(none.weight(), Duration::MAX);
    }

    #[test]
    fn unattainable_beats_pending_beats_met_and_uncovered_never_decides() {
        let unattainable = combine(&[
            judged("PostgreSQL", true, 0),
            Part::Unattainable {
                component: "Redis",
                target: "0s".to_owned(),
                reason: "set spec.redis.objectives.rpo".to_owned(),
            },
        ]);
        assert_eq!(
            (unattainable.met, unattainable.reason),
            (Some(false), REASON_UNATTAINABLE)
        );
        assert!(
            unattainable
                .message
                .starts_with("Redis: cannot be met: set spec.redis.objectives.rpo; PostgreSQL")
        );
        let (component, figure) = unattainable.decisive.expect("a figure");
        assert_eq!(
            (component, figure.measured.as_str(), figure.met),
            ("Redis", "unattainable", false),
            "the status figure agrees with the condition"
        );
        let pending = combine(&[
            judged("PostgreSQL", true, 0),
            Part::Pending {
                component: "Redis",
                why: "no master yet".to_owned(),
            },
        ]);
        assert_eq!(
            (pending.met, pending.reason),
            (None, REASON_NOT_MEASURED_YET)
        );
        let covered = combine(&[
            judged("PostgreSQL", true, 0),
            Part::Uncovered {
                component: "Kafka",
                why: "no probe".to_owned(),
            },
        ]);
        assert_eq!((covered.met, covered.reason), (Some(true), REASON_MEASURED));
        assert!(covered.message.ends_with("Kafka: not measured (no probe)"));
        let nothing = combine(&[Part::Uncovered {
            component: "Kafka",
            why: "no probe".to_owned(),
        }]);
        assert_eq!((nothing.met, nothing.reason), (None, REASON_NOT_MEASURABLE));
        assert_eq!(nothing.decisive, None);
    }
}

#[cfg(test)]
mod slo_tests {
    use super::*;

    const DAY: u64 = 24 * HOUR;

    fn counts(ok: u64, total: u64) -> BucketCounts {
        BucketCounts { ok, total }
    }

    #[test]
    fn buckets_are_whole_hours_and_bounded() {
        assert_eq!(bucket_seconds(Duration::from_secs(HOUR)), HOUR);
        assert_eq!(bucket_seconds(Duration::from_secs(240 * HOUR)), HOUR);
        assert_eq!(bucket_seconds(Duration::from_secs(30 * DAY)), 3 * HOUR);
        assert_eq!(bucket_seconds(Duration::from_secs(90 * DAY)), 9 * HOUR);
        let window = Duration::from_secs(30 * DAY);
        let mut ledger = AvailabilityLedger::new(window);
        for hour in 0..(60 * 24) {
            ledger.add(hour * HOUR, counts(3600, 3600));
        }
        ledger.trim(window, 60 * DAY);
        assert!(
            ledger.buckets.len() <= usize::try_from(MAX_LEDGER_BUCKETS + 1).expect("small"),
            "{}",
            ledger.buckets.len()
        );
        assert_eq!(
            ledger.buckets.keys().next(),
            Some(&(30 * DAY - 3 * HOUR + 3 * HOUR)),
            "the oldest bucket still overlapping the window"
        );
    }

    #[test]
    fn persisted_and_live_counts_add_up_and_age_out() {
        let window = Duration::from_secs(DAY);
        let mut persisted = AvailabilityLedger::new(window);
        persisted.add(HOUR, counts(3599, 3600));
        persisted.add(2 * HOUR, counts(3600, 3600));
        let mut live = AvailabilityLedger::new(window);
        live.add(2 * HOUR + 10, counts(100, 100));
        let now = 3 * HOUR;
        let merged = persisted.merged(&live, window, now);
        assert_eq!(merged.totals(), (3599 + 3600 + 100, 7300));
        // A day later the first hours are out of the window.
        let later = merged.merged(&AvailabilityLedger::new(window), window, DAY + 3 * HOUR);
        assert_eq!(later.totals(), (0, 0));
        let edge = merged.merged(&AvailabilityLedger::new(window), window, DAY + 2 * HOUR);
        assert_eq!(
            edge.totals(),
            (3700, 3700),
            "the bucket ending at the edge is gone"
        );
        // A longer window re-buckets the same counts.
        let longer = merged.merged(
            &AvailabilityLedger::new(window),
            Duration::from_secs(90 * DAY),
            now,
        );
        assert_eq!(longer.bucket_seconds, 9 * HOUR);
        assert_eq!(longer.totals(), merged.totals());
    }

    #[test]
    fn one_failure_is_not_an_outage_over_thirty_days() {
        let window = Duration::from_secs(30 * DAY);
        let mut ledger = AvailabilityLedger::new(window);
        // A week of one probe a second, one failure.
        for hour in 0..(7 * 24) {
            ledger.add(hour * HOUR, counts(3600, 3600));
        }
        ledger.add(5 * HOUR, counts(0, 1));
        let slo = availability_slo(99.99, window, &ledger);
        assert!(slo.status.met, "{}", slo.status.message);
        let total = 7 * 24 * 3600 + 1;
        let allowed = total as f64 * 0.0001;
        let left = slo.budget_remaining.expect("budget");
        assert!((left - (1.0 - 1.0 / allowed)).abs() < 1e-9, "{left}");
        assert_eq!(
            slo.status.message,
            format!(
                "availability 99.9998% over the 720h window ({} of {total} write probes succeeded; 98.3% of the error budget left) >= target 99.99%",
                total - 1
            )
        );
        // An hour down spends the budget and more.
        ledger.add(6 * HOUR, counts(0, 3600));
        let slo = availability_slo(99.99, window, &ledger);
        assert!(!slo.status.met);
        assert!(slo.budget_remaining.expect("budget") < 0.0);
        assert!(
            slo.status
                .message
                .contains("of the error budget left) < target 99.99%"),
            "{}",
            slo.status.message
        );
    }

    #[test]
    fn no_probe_is_no_verdict_and_a_full_target_has_no_budget() {
        let window = Duration::from_secs(DAY);
        let empty = availability_slo(99.9, window, &AvailabilityLedger::new(window));
        assert!(!empty.status.met);
        assert_eq!(empty.budget_remaining, None);
        let mut ledger = AvailabilityLedger::new(window);
        ledger.add(0, counts(10, 10));
        assert_eq!(
            availability_slo(100.0, window, &ledger).budget_remaining,
            Some(1.0)
        );
        ledger.add(0, counts(0, 1));
        assert_eq!(
            availability_slo(100.0, window, &ledger).budget_remaining,
            Some(0.0)
        );
    }
}
