//! `shanraq bench failover`: N unplanned failovers and N planned switchovers on one local
//! cluster, under a writer that commits one row at a time through HAProxy. RTO is measured
//! from the SIGKILL of the primary to the first commit the writer got acknowledged by the new
//! primary; a switchover's pause is the longest gap between acknowledged commits around it.
//! After each failover the killed primary is restarted and must rejoin (fenced, demoted
//! through pg_rewind) before the next run; if it does not, the run says so and the benchmark
//! continues on a fresh topology, so every figure comes from a healthy three-member cluster.
//! Figures go through HDR histograms; what bounds the RTO (detection, promotion, routing,
//! first write) is read from the engine's own events and printed to stderr.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::error::DrillError;
use super::ledger::{self, Ledger, LedgerOptions};
use super::local::{ClusterOptions, LocalCluster};
use super::scenario;
use super::timeline::FailoverTimeline;

const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Acknowledged commits before each kill or switchover, so the writer is in full swing.
const WARM_UP_ACKS: usize = 50;

/// What the benchmark runs.
#[derive(Clone, Debug)]
pub struct BenchPlan {
    pub runs: u32,
    pub instances: usize,
}

/// One run's figures.
#[derive(Clone, Debug)]
pub struct RunFigures {
    pub from: String,
    pub to: String,
    pub timeline: FailoverTimeline,
    pub lost_commits: usize,
    pub switchover: String,
    pub switchover_pause_ms: Option<u64>,
    pub switchover_lost: usize,
}

/// `--json` output, field order as documented.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub component: &'static str,
    pub runs: u32,
    pub rto_ms: RtoFigures,
    pub lost_commits: u64,
    pub switchover_pause_ms: PauseFigures,
}

#[derive(Clone, Debug, Serialize)]
pub struct RtoFigures {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PauseFigures {
    pub p50: u64,
    pub p99: u64,
}

/// Milliseconds in an HDR histogram (1 ms to 10 min, 3 significant digits).
#[derive(Debug)]
struct Millis(Histogram<u64>);

impl Millis {
    fn new() -> Millis {
        // Start-up with constant bounds that hdrhistogram accepts (low >= 1, high >= 2 low).
        Millis(Histogram::new_with_bounds(1, 600_000, 3).expect("valid histogram bounds"))
    }

    fn record(&mut self, value: u64) {
        self.0.saturating_record(value.max(1));
    }

    fn quantile(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.value_at_quantile(q)
        }
    }

    fn max(&self) -> u64 {
        if self.0.is_empty() { 0 } else { self.0.max() }
    }

    fn summary(&self) -> String {
        format!(
            "{:>5} / {:>5} / {:>5}",
            self.quantile(0.5),
            self.quantile(0.99),
            self.max()
        )
    }
}

pub async fn failover(
    binary: &Path,
    plan: &BenchPlan,
) -> Result<(BenchReport, Vec<RunFigures>), DrillError> {
    let options = ClusterOptions::synchronous(plan.instances);
    eprintln!(
        "bench: starting a {}-instance synchronous cluster on 127.0.0.1 ...",
        plan.instances
    );
    let mut cluster = LocalCluster::start(binary, options.clone()).await?;
    let all: Vec<usize> = (0..plan.instances).collect();
    let mut figures = Vec::new();
    for run in 1..=plan.runs {
        let outcome = one_run(&mut cluster, &all).await;
        let figure = match outcome {
            Ok(figure) => figure,
            Err(error) => {
                eprintln!(
                    "bench: run {run} could not finish ({error}); continuing on a fresh topology"
                );
                cluster.stop_driver().await;
                drop(cluster);
                cluster = LocalCluster::start(binary, options.clone()).await?;
                one_run(&mut cluster, &all).await?
            }
        };
        eprintln!(
            "bench: run {run}/{}: {} -> {} RTO {} ms, lost {}; switchover {} pause {} ms, lost {}",
            plan.runs,
            figure.from,
            figure.to,
            figure.timeline.rto_ms().unwrap_or_default(),
            figure.lost_commits,
            figure.switchover,
            figure.switchover_pause_ms.unwrap_or_default(),
            figure.switchover_lost
        );
        figures.push(figure);
    }
    // Let the last switchover's old primary finish rejoining before everything is stopped.
    if let Err(error) = cluster.wait_converged(&all, STEP_TIMEOUT).await {
        eprintln!("bench: the cluster did not converge after the last run: {error}");
    }
    cluster.stop_driver().await;
    drop(cluster);
    let report = summarise(plan.runs, &figures);
    print_bounds(&options, &figures);
    Ok((report, figures))
}

async fn one_run(cluster: &mut LocalCluster, all: &[usize]) -> Result<RunFigures, DrillError> {
    cluster.wait_converged(all, STEP_TIMEOUT).await?;
    let writer = Ledger::start(
        cluster.topology().app_rw_options(),
        LedgerOptions::default(),
    )
    .await?;
    writer.wait_for_acks(WARM_UP_ACKS, STEP_TIMEOUT).await?;
    let failover = scenario::kill_primary(cluster, &writer, STEP_TIMEOUT).await?;
    let report = writer.stop().await;
    let lost_commits =
        ledger::missing_on(&cluster.member_app_options(failover.new_primary)?, &report)
            .await?
            .len();
    scenario::rejoin(cluster, failover.old_primary, all, STEP_TIMEOUT).await?;

    let writer = Ledger::start(
        cluster.topology().app_rw_options(),
        LedgerOptions::default(),
    )
    .await?;
    writer.wait_for_acks(WARM_UP_ACKS, STEP_TIMEOUT).await?;
    let planned = scenario::switchover(cluster, &writer, None, STEP_TIMEOUT).await?;
    let report = writer.stop().await;
    let switchover_lost = ledger::missing_on(
        &cluster.member_app_options(planned.outcome.new_primary)?,
        &report,
    )
    .await?
    .len();
    Ok(RunFigures {
        from: cluster.node(failover.old_primary)?.to_string(),
        to: cluster.node(failover.new_primary)?.to_string(),
        timeline: failover.timeline,
        lost_commits,
        switchover: format!(
            "{} -> {}",
            cluster.node(planned.outcome.old_primary)?,
            cluster.node(planned.outcome.new_primary)?
        ),
        switchover_pause_ms: planned.pause_ms,
        switchover_lost,
    })
}

fn summarise(runs: u32, figures: &[RunFigures]) -> BenchReport {
    let mut rto = Millis::new();
    let mut pause = Millis::new();
    let mut lost = 0_u64;
    for figure in figures {
        if let Some(ms) = figure.timeline.rto_ms() {
            rto.record(ms);
        }
        if let Some(ms) = figure.switchover_pause_ms {
            pause.record(ms);
        }
        lost += u64::try_from(figure.lost_commits + figure.switchover_lost).unwrap_or(u64::MAX);
    }
    BenchReport {
        component: "postgres",
        runs,
        rto_ms: RtoFigures {
            p50: rto.quantile(0.5),
            p99: rto.quantile(0.99),
            max: rto.max(),
        },
        lost_commits: lost,
        switchover_pause_ms: PauseFigures {
            p50: pause.quantile(0.5),
            p99: pause.quantile(0.99),
        },
    }
}

/// The readable table of `shanraq bench failover` without `--json`.
pub fn table(report: &BenchReport, figures: &[RunFigures]) -> String {
    let mut out = String::new();
    out.push_str(
        "run  failover        RTO ms  detect  promote  route  1st write  lost | switchover      pause ms  lost\n",
    );
    for (index, figure) in figures.iter().enumerate() {
        let t = &figure.timeline;
        let cell = |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |v| v.to_string());
        out.push_str(&format!(
            "{:>3}  {:<14} {:>7} {:>7} {:>8} {:>6} {:>10} {:>5} | {:<14} {:>9} {:>5}\n",
            index + 1,
            format!("{} -> {}", figure.from, figure.to),
            cell(t.rto_ms()),
            cell(t.detection_ms()),
            cell(t.promotion_ms()),
            cell(t.routing_ms()),
            cell(t.first_write_ms()),
            figure.lost_commits,
            figure.switchover,
            cell(figure.switchover_pause_ms),
            figure.switchover_lost,
        ));
    }
    out.push_str(&format!(
        "\nRTO (kill -> first acknowledged commit on the new primary): p50 {} ms, p99 {} ms, max {} ms over {} runs\n\
         switchover write pause: p50 {} ms, p99 {} ms\n\
         lost acknowledged commits: {}\n",
        report.rto_ms.p50,
        report.rto_ms.p99,
        report.rto_ms.max,
        report.runs,
        report.switchover_pause_ms.p50,
        report.switchover_pause_ms.p99,
        report.lost_commits
    ));
    out
}

/// What bounds the RTO, measured from the driver's events, on stderr.
fn print_bounds(options: &ClusterOptions, figures: &[RunFigures]) {
    let mut detection = Millis::new();
    let mut promotion = Millis::new();
    let mut routing = Millis::new();
    let mut first_write = Millis::new();
    let mut total = Millis::new();
    let mut promote_command = Millis::new();
    for figure in figures {
        let t = &figure.timeline;
        let pairs = [
            (&mut detection, t.detection_ms()),
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
    eprintln!(
        "\nwhat bounds the RTO (p50 / p99 / max ms over {} runs, from the engine's events):\n\
         \x20 detection    kill -> primary suspected      {}   probe {probe} ms x threshold {threshold} = {} ms, \
         + up to one probe period of phase, + failover delay {delay} ms\n\
         \x20 promotion    elected -> promoted            {}   the promote command itself: {}\n\
         \x20 routing      promoted -> routed             {}   HAProxy checks /primary every 100 ms (fall 1, rise 1)\n\
         \x20 first write  routed -> first commit         {}   the other replica re-pointed to the new primary \
         (a commit waits for a synchronous standby) + client reconnect\n\
         \x20 total RTO    kill -> first commit           {}",
        figures.len(),
        detection.summary(),
        probe * u128::from(threshold),
        promotion.summary(),
        promote_command.summary(),
        routing.summary(),
        first_write.summary(),
        total.summary(),
    );
}
