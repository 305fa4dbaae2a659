//! What a person reads: each run on one line while the benchmark goes, the table of a
//! scenario, and on stderr what bounds the RTO, phase by phase.

use super::figures::Millis;
use super::{RunFigures, ScenarioReport};
use crate::error::DrillError;
use crate::local::ClusterOptions;
use crate::timeline::FailoverTimeline;

/// The error and its sources, on one line.
pub(super) fn error_chain(error: &DrillError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub(super) fn describe_run(figure: &RunFigures) -> String {
    let mut text = format!("{} -> {}", figure.from, figure.to);
    if let Some(rto) = figure.timeline.as_ref().and_then(FailoverTimeline::rto_ms) {
        text.push_str(&format!(" RTO {rto} ms"));
    }
    text.push_str(&format!(
        ", lost {}, at most {} writable at once, {} failovers ({} false)",
        figure.lost_commits,
        figure.max_writable_at_once,
        figure.unplanned_failovers,
        figure.false_failovers
    ));
    if let Some(during) = figure.writes_acknowledged_during_fault {
        text.push_str(&format!(", {during} writes acknowledged during the fault"));
    }
    if let Some(switchover) = &figure.switchover {
        text.push_str(&format!(
            "; switchover {} -> {} pause {} ms, lost {}",
            switchover.from,
            switchover.to,
            switchover.pause_ms.unwrap_or_default(),
            switchover.lost_commits
        ));
    }
    text
}

/// The readable table of one scenario of `shanraq bench failover` without `--json`.
pub fn table(report: &ScenarioReport, figures: &[RunFigures]) -> String {
    let mut out = format!("scenario {}\n", report.scenario);
    out.push_str(
        "run  failover        RTO ms  detect  promote  route  1st write  lost  max-w  fo  false | switchover      pause ms  lost\n",
    );
    let cell = |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |v| v.to_string());
    for (index, figure) in figures.iter().enumerate() {
        let t = figure.timeline.as_ref();
        let switchover = figure.switchover.as_ref();
        out.push_str(&format!(
            "{:>3}  {:<14} {:>7} {:>7} {:>8} {:>6} {:>10} {:>5} {:>6} {:>3} {:>6} | {:<14} {:>9} {:>5}\n",
            index + 1,
            format!("{} -> {}", figure.from, figure.to),
            cell(t.and_then(FailoverTimeline::rto_ms)),
            cell(t.and_then(FailoverTimeline::detection_ms)),
            cell(t.and_then(FailoverTimeline::promotion_ms)),
            cell(t.and_then(FailoverTimeline::routing_ms)),
            cell(t.and_then(FailoverTimeline::first_write_ms)),
            figure.lost_commits,
            figure.max_writable_at_once,
            figure.unplanned_failovers,
            figure.false_failovers,
            switchover.map_or_else(|| "-".to_owned(), |s| format!("{} -> {}", s.from, s.to)),
            cell(switchover.and_then(|s| s.pause_ms)),
            cell(switchover.map(|s| u64::try_from(s.lost_commits).unwrap_or(u64::MAX))),
        ));
    }
    out.push('\n');
    match &report.rto_ms {
        Some(rto) => out.push_str(&format!(
            "RTO (fault -> first acknowledged commit on the new primary): p50 {} ms, p99 {} ms, max {} ms over {} runs\n",
            rto.p50, rto.p99, rto.max, report.runs,
        )),
        None => out.push_str(&format!("RTO: no failover in {} runs\n", report.runs)),
    }
    if let Some(pause) = &report.switchover_pause_ms {
        out.push_str(&format!(
            "switchover write pause: p50 {} ms, p99 {} ms\n",
            pause.p50, pause.p99
        ));
    }
    if let Some(during) = report.writes_acknowledged_during_fault {
        out.push_str(&format!(
            "commits acknowledged while the fault held: {during}\n"
        ));
    }
    out.push_str(&format!(
        "lost acknowledged commits: {}; most members acknowledging one write-probe tick: {}; failovers: {}, false: {}\n",
        report.lost_commits, report.max_writable_at_once, report.failovers, report.false_failovers,
    ));
    out
}

/// What bounds the RTO, measured from the driver's events, on stderr. A held fault's
/// failover is timed from the engine's first failed probe, not from the injection.
pub(super) fn print_bounds(options: &ClusterOptions, held: bool, figures: &[RunFigures]) {
    let origin = if held { "probe failed" } else { "fault" };
    let timelines: Vec<&FailoverTimeline> = figures
        .iter()
        .filter_map(|figure| figure.timeline.as_ref())
        .collect();
    if timelines.is_empty() {
        return;
    }
    let mut detection = Millis::new();
    let mut fencing = Millis::new();
    let mut promotion = Millis::new();
    let mut routing = Millis::new();
    let mut first_write = Millis::new();
    let mut total = Millis::new();
    let mut promote_command = Millis::new();
    for t in &timelines {
        let pairs = [
            (&mut detection, t.detection_ms()),
            (&mut fencing, t.fencing_ms()),
            (&mut promotion, t.promotion_ms()),
            (&mut routing, t.routing_ms()),
            (&mut first_write, t.first_write_ms()),
            (&mut total, t.rto_ms()),
            (
                &mut promote_command,
                t.promote_took
                    .map(|took| u64::try_from(took.as_millis()).unwrap_or(u64::MAX)),
            ),
        ];
        for (histogram, value) in pairs {
            if let Some(value) = value {
                histogram.record(value);
            }
        }
    }
    let probe = options.ha.probe_period.as_millis();
    let threshold = options.ha.failure_threshold;
    let delay = options.ha.failover_delay.as_millis();
    let check = shanraq_render::haproxy::PG_CHECK_MS;
    eprintln!(
        "\nwhat bounds the RTO (p50 / p99 / max ms over {} runs, from the engine's events):\n\
         \x20 detection    {origin:<12} -> suspected     {}   probe {probe} ms x threshold {threshold} = {} ms \
         (one probe fewer when the connection is refused), + up to one probe period of phase, \
         + failover delay {delay} ms\n\
         \x20 fencing      suspected -> elected           {}   fence sent, the synchronous set detached (WAL receivers stopped)\n\
         \x20 promotion    elected -> promoted            {}   the promote command itself: {}\n\
         \x20 routing      promoted -> routed             {}   the new primary's quorum streaming, then HAProxy's next /primary check (every {check} ms, as rendered)\n\
         \x20 first write  routed -> first commit         {}   client reconnect\n\
         \x20 total RTO    {origin:<12} -> 1st commit    {}",
        timelines.len(),
        detection.summary(),
        probe * u128::from(threshold),
        fencing.summary(),
        promotion.summary(),
        promote_command.summary(),
        routing.summary(),
        first_write.summary(),
        total.summary(),
    );
}
