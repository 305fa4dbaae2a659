//! `shanraq bench failover`: runs of one or more scenarios on a local cluster, each under a
//! writer that commits one ledger row at a time through HAProxy and a split-brain watch (the
//! `/primary` answers and a write probe straight to every member). A scenario is a value: what
//! it injects into the cluster, how many failovers it should cause, and how it heals; one run
//! injects the fault into the primary's side, waits for the expected failover (RTO: from the
//! injection to the first commit the writer got acknowledged by the new primary), counts the
//! acknowledged commits the primary lacks, heals and waits until every member streams again,
//! then switches over under load (the write pause around it). Failovers beyond the expected
//! ones are false failovers. If a run cannot finish, it says so and the benchmark continues on
//! a fresh topology, so every figure comes from a healthy cluster. Figures go through HDR
//! histograms; what bounds the RTO (detection, promotion, routing, first write) is read from
//! the engine's own events and printed to stderr.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use shanraq_ha::adapters::driver::system_clock;

use super::error::DrillError;
use super::ledger::{self, Ledger, LedgerOptions};
use super::local::{ClusterOptions, LocalCluster};
use super::scenario;
use super::timeline::FailoverTimeline;

const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Acknowledged commits before each fault or switchover, so the writer is in full swing.
const WARM_UP_ACKS: usize = 50;
const WATCH_PERIOD: Duration = Duration::from_millis(50);
/// The longest a run's watch samples (a run is bounded by its steps well below this).
const WATCH_BOUND: Duration = Duration::from_secs(600);

/// A fault the benchmark injects. Adding one: a variant, its name, how many failovers it
/// should cause, and its `inject` and `heal` arms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// SIGKILL of the primary's whole instance (manager and every postgres process).
    Kill,
}

/// What `inject` did, for `heal` to undo.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    Killed { member: usize },
}

impl Scenario {
    pub const ALL: &'static [Scenario] = &[Scenario::Kill];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Kill => "kill",
        }
    }

    /// Unplanned failovers one run must cause; any more are false failovers.
    pub fn expected_failovers(self) -> usize {
        match self {
            Scenario::Kill => 1,
        }
    }

    /// Injects the fault; `primary` is the member the engine designates.
    pub async fn inject(
        self,
        cluster: &mut LocalCluster,
        primary: usize,
    ) -> Result<Fault, DrillError> {
        match self {
            Scenario::Kill => {
                cluster.topology_mut().kill(primary)?;
                Ok(Fault::Killed { member: primary })
            }
        }
    }

    /// Undoes `fault` and waits until every member of `all` streams from the primary.
    pub async fn heal(
        self,
        cluster: &mut LocalCluster,
        fault: Fault,
        all: &[usize],
    ) -> Result<(), DrillError> {
        match fault {
            Fault::Killed { member } => {
                scenario::rejoin(cluster, member, all, STEP_TIMEOUT).await?;
            }
        }
        Ok(())
    }
}

/// `kill`, or `all` for every scenario in turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioSelection(pub Vec<Scenario>);

impl std::str::FromStr for ScenarioSelection {
    type Err = String;

    fn from_str(text: &str) -> Result<ScenarioSelection, String> {
        if text == "all" {
            return Ok(ScenarioSelection(Scenario::ALL.to_vec()));
        }
        Scenario::ALL
            .iter()
            .find(|scenario| scenario.name() == text)
            .map(|scenario| ScenarioSelection(vec![*scenario]))
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {text:?}: use {} or all", names.join(", "))
            })
    }
}

/// What the benchmark runs.
#[derive(Clone, Debug)]
pub struct BenchPlan {
    pub scenarios: Vec<Scenario>,
    pub runs: u32,
    pub instances: usize,
}

/// One run's figures.
#[derive(Clone, Debug)]
pub struct RunFigures {
    pub from: String,
    /// The new primary (the old one when no failover was expected).
    pub to: String,
    /// The expected failover, when the scenario expects one.
    pub timeline: Option<FailoverTimeline>,
    pub lost_commits: usize,
    pub max_writable_at_once: usize,
    pub unplanned_failovers: usize,
    pub false_failovers: usize,
    pub switchover: String,
    pub switchover_pause_ms: Option<u64>,
    pub switchover_lost: usize,
}

/// `--json` output of one scenario, field order as documented.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioReport {
    pub scenario: &'static str,
    pub runs: u32,
    pub rto_ms: RtoFigures,
    pub lost_commits: u64,
    pub max_writable_at_once: usize,
    pub false_failovers: u64,
    pub switchover_pause_ms: PauseFigures,
    pub component: &'static str,
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
) -> Result<Vec<(ScenarioReport, Vec<RunFigures>)>, DrillError> {
    let options = ClusterOptions::synchronous(plan.instances);
    eprintln!(
        "bench: starting a {}-instance synchronous cluster on 127.0.0.1 ...",
        plan.instances
    );
    let mut cluster = LocalCluster::start(binary, options.clone()).await?;
    let all: Vec<usize> = (0..plan.instances).collect();
    let mut reports = Vec::new();
    for &scenario in &plan.scenarios {
        let mut figures = Vec::new();
        for run in 1..=plan.runs {
            let figure = match run_once(scenario, &mut cluster, &all).await {
                Ok(figure) => figure,
                Err(error) => {
                    eprintln!(
                        "bench: {} run {run} could not finish ({error}); continuing on a fresh topology",
                        scenario.name()
                    );
                    cluster.stop_driver().await;
                    drop(cluster);
                    cluster = LocalCluster::start(binary, options.clone()).await?;
                    run_once(scenario, &mut cluster, &all).await?
                }
            };
            eprintln!(
                "bench: {} run {run}/{}: {} -> {} RTO {} ms, lost {}, at most {} writable at once, {} false failovers; switchover {} pause {} ms, lost {}",
                scenario.name(),
                plan.runs,
                figure.from,
                figure.to,
                figure
                    .timeline
                    .as_ref()
                    .and_then(FailoverTimeline::rto_ms)
                    .unwrap_or_default(),
                figure.lost_commits,
                figure.max_writable_at_once,
                figure.false_failovers,
                figure.switchover,
                figure.switchover_pause_ms.unwrap_or_default(),
                figure.switchover_lost
            );
            figures.push(figure);
        }
        print_bounds(&options, &figures);
        reports.push((summarise(scenario, plan.runs, &figures), figures));
    }
    // Let the last switchover's old primary finish rejoining before everything is stopped.
    if let Err(error) = cluster.wait_converged(&all, STEP_TIMEOUT).await {
        eprintln!("bench: the cluster did not converge after the last run: {error}");
    }
    cluster.stop_driver().await;
    drop(cluster);
    Ok(reports)
}

/// One run of `scenario` on a converged cluster; see the module's documentation.
pub async fn run_once(
    scenario: Scenario,
    cluster: &mut LocalCluster,
    all: &[usize],
) -> Result<RunFigures, DrillError> {
    // From here on, so that a failover while the previous run's last victim rejoins counts.
    let run_mark = cluster.event_mark();
    cluster.wait_converged(all, STEP_TIMEOUT).await?;
    let watch = cluster.watch(WATCH_PERIOD, WATCH_BOUND).await?;
    let writer = Ledger::start(
        cluster.topology().app_rw_options(),
        LedgerOptions::default(),
    )
    .await?;
    writer.wait_for_acks(WARM_UP_ACKS, STEP_TIMEOUT).await?;
    let old_primary = cluster.primary_index()?;
    let epoch = cluster.state()?.epoch;
    let mark = cluster.event_mark();
    let injected_at = system_clock()();
    let fault = scenario.inject(cluster, old_primary).await?;
    let (timeline, new_primary) = if scenario.expected_failovers() > 0 {
        let outcome = scenario::finish(
            cluster,
            &writer,
            old_primary,
            epoch,
            mark,
            injected_at,
            STEP_TIMEOUT,
        )
        .await?;
        (Some(outcome.timeline), outcome.new_primary)
    } else {
        (None, cluster.primary_index()?)
    };
    let report = writer.stop().await;
    let lost_commits = ledger::missing_on(&cluster.member_app_options(new_primary)?, &report)
        .await?
        .len();
    scenario.heal(cluster, fault, all).await?;

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
    let seen = watch.stop().await;
    let unplanned = scenario::unplanned_failovers(&cluster.events_since(run_mark));
    Ok(RunFigures {
        from: cluster.node(old_primary)?.to_string(),
        to: cluster.node(new_primary)?.to_string(),
        timeline,
        lost_commits,
        max_writable_at_once: seen.max_writable_at_once,
        unplanned_failovers: unplanned,
        false_failovers: unplanned.saturating_sub(scenario.expected_failovers()),
        switchover: format!(
            "{} -> {}",
            cluster.node(planned.outcome.old_primary)?,
            cluster.node(planned.outcome.new_primary)?
        ),
        switchover_pause_ms: planned.pause_ms,
        switchover_lost,
    })
}

fn summarise(scenario: Scenario, runs: u32, figures: &[RunFigures]) -> ScenarioReport {
    let mut rto = Millis::new();
    let mut pause = Millis::new();
    let mut lost = 0_u64;
    let mut false_failovers = 0_u64;
    let mut max_writable = 0;
    for figure in figures {
        if let Some(ms) = figure.timeline.as_ref().and_then(FailoverTimeline::rto_ms) {
            rto.record(ms);
        }
        if let Some(ms) = figure.switchover_pause_ms {
            pause.record(ms);
        }
        lost += u64::try_from(figure.lost_commits + figure.switchover_lost).unwrap_or(u64::MAX);
        false_failovers += u64::try_from(figure.false_failovers).unwrap_or(u64::MAX);
        max_writable = max_writable.max(figure.max_writable_at_once);
    }
    ScenarioReport {
        scenario: scenario.name(),
        runs,
        rto_ms: RtoFigures {
            p50: rto.quantile(0.5),
            p99: rto.quantile(0.99),
            max: rto.max(),
        },
        lost_commits: lost,
        max_writable_at_once: max_writable,
        false_failovers,
        switchover_pause_ms: PauseFigures {
            p50: pause.quantile(0.5),
            p99: pause.quantile(0.99),
        },
        component: "postgres",
    }
}

/// The readable table of one scenario of `shanraq bench failover` without `--json`.
pub fn table(report: &ScenarioReport, figures: &[RunFigures]) -> String {
    let mut out = format!("scenario {}\n", report.scenario);
    out.push_str(
        "run  failover        RTO ms  detect  promote  route  1st write  lost  max-w  false | switchover      pause ms  lost\n",
    );
    let cell = |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |v| v.to_string());
    for (index, figure) in figures.iter().enumerate() {
        let t = figure.timeline.as_ref();
        out.push_str(&format!(
            "{:>3}  {:<14} {:>7} {:>7} {:>8} {:>6} {:>10} {:>5} {:>6} {:>6} | {:<14} {:>9} {:>5}\n",
            index + 1,
            format!("{} -> {}", figure.from, figure.to),
            cell(t.and_then(FailoverTimeline::rto_ms)),
            cell(t.and_then(FailoverTimeline::detection_ms)),
            cell(t.and_then(FailoverTimeline::promotion_ms)),
            cell(t.and_then(FailoverTimeline::routing_ms)),
            cell(t.and_then(FailoverTimeline::first_write_ms)),
            figure.lost_commits,
            figure.max_writable_at_once,
            figure.false_failovers,
            figure.switchover,
            cell(figure.switchover_pause_ms),
            figure.switchover_lost,
        ));
    }
    out.push_str(&format!(
        "\nRTO (fault -> first acknowledged commit on the new primary): p50 {} ms, p99 {} ms, max {} ms over {} runs\n\
         switchover write pause: p50 {} ms, p99 {} ms\n\
         lost acknowledged commits: {}; most members acknowledging one write-probe tick: {}; false failovers: {}\n",
        report.rto_ms.p50,
        report.rto_ms.p99,
        report.rto_ms.max,
        report.runs,
        report.switchover_pause_ms.p50,
        report.switchover_pause_ms.p99,
        report.lost_commits,
        report.max_writable_at_once,
        report.false_failovers,
    ));
    out
}

/// What bounds the RTO, measured from the driver's events, on stderr.
fn print_bounds(options: &ClusterOptions, figures: &[RunFigures]) {
    let timelines: Vec<&FailoverTimeline> = figures
        .iter()
        .filter_map(|figure| figure.timeline.as_ref())
        .collect();
    if timelines.is_empty() {
        return;
    }
    let mut detection = Millis::new();
    let mut promotion = Millis::new();
    let mut routing = Millis::new();
    let mut first_write = Millis::new();
    let mut total = Millis::new();
    let mut promote_command = Millis::new();
    for t in &timelines {
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
         \x20 routing      promoted -> routed             {}   HAProxy checks /primary every {probe} ms (fall 1, rise 1), as rendered\n\
         \x20 first write  routed -> first commit         {}   the other replica re-pointed to the new primary \
         (a commit waits for a synchronous standby) + client reconnect\n\
         \x20 total RTO    kill -> first commit           {}",
        timelines.len(),
        detection.summary(),
        probe * u128::from(threshold),
        promotion.summary(),
        promote_command.summary(),
        routing.summary(),
        first_write.summary(),
        total.summary(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_are_chosen_by_name_or_all() {
        assert_eq!(
            "kill".parse::<ScenarioSelection>(),
            Ok(ScenarioSelection(vec![Scenario::Kill]))
        );
        assert_eq!(
            "all".parse::<ScenarioSelection>(),
            Ok(ScenarioSelection(Scenario::ALL.to_vec()))
        );
        let error = "nope".parse::<ScenarioSelection>().expect_err("unknown");
        assert!(error.contains("kill"), "{error}");
    }

    #[test]
    fn a_report_reads_as_documented() {
        let report = summarise(Scenario::Kill, 0, &[]);
        let json = serde_json::to_string(&report).expect("serialises");
        assert!(
            json.starts_with(r#"{"scenario":"kill","runs":0,"rto_ms":{"p50":0,"p99":0,"max":0},"lost_commits":0,"max_writable_at_once":0,"false_failovers":0,"#),
            "{json}"
        );
    }
}
