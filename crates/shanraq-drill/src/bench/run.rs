//! One run of a scenario under the two writers and the split-brain watch, and the loop over
//! every scenario and run (retrying a run that could not finish once, on a fresh cluster).

use std::path::Path;
use std::time::Duration;

use shanraq_ha::adapters::driver::system_clock;
use shanraq_ha::postgres::{self as ha, FailoverKind};

use super::figures::summarise;
use super::lab::in_lab;
use super::table::{describe_run, error_chain, print_bounds};
use super::{RunFigures, STEP_TIMEOUT, Scenario, ScenarioReport, SwitchoverFigures};
use crate::error::DrillError;
use crate::ledger::{self, Ledger, LedgerOptions, LedgerReport};
use crate::local::{ClusterOptions, LocalCluster};
use crate::scenario;
use crate::timeline::FailoverTimeline;

/// Acknowledged commits before each fault or switchover, so the writers are in full swing.
const WARM_UP_ACKS: usize = 50;
const WATCH_PERIOD: Duration = Duration::from_millis(50);
/// The longest a run's watch samples (a run is bounded by its steps well below this).
const WATCH_BOUND: Duration = Duration::from_secs(600);
/// The direct writer's ids start this far above the HAProxy writer's.
const DIRECT_ID_OFFSET: i64 = 1_000_000_000;

/// What the benchmark runs.
#[derive(Clone, Debug)]
pub struct BenchPlan {
    pub scenarios: Vec<Scenario>,
    pub runs: u32,
    pub instances: usize,
    /// How long `lossy-link` degrades the primary's link.
    pub lossy_hold: Duration,
}

pub async fn failover(
    binary: &Path,
    plan: &BenchPlan,
) -> Result<Vec<(ScenarioReport, Vec<RunFigures>)>, DrillError> {
    let all: Vec<usize> = (0..plan.instances).collect();
    // `kill` runs on one loopback cluster across runs, started when first needed.
    let mut loopback: Option<LocalCluster> = None;
    let mut reports = Vec::new();
    for &scenario in &plan.scenarios {
        let mut figures = Vec::new();
        for run in 1..=plan.runs {
            eprintln!(
                "bench: {} run {run}/{} starting",
                scenario.name(),
                plan.runs
            );
            let figure = match attempt(scenario, binary, plan, &all, &mut loopback).await {
                Ok(figure) => figure,
                Err(error) => {
                    eprintln!(
                        "bench: {} run {run} could not finish ({}); retrying on a fresh cluster",
                        scenario.name(),
                        error_chain(&error)
                    );
                    if let Some(mut cluster) = loopback.take() {
                        cluster.stop_driver().await;
                    }
                    attempt(scenario, binary, plan, &all, &mut loopback).await?
                }
            };
            eprintln!(
                "bench: {} run {run}/{}: {}",
                scenario.name(),
                plan.runs,
                describe_run(&figure)
            );
            figures.push(figure);
        }
        print_bounds(
            &ClusterOptions::synchronous(plan.instances),
            scenario.hold(plan).is_some(),
            &figures,
        );
        reports.push((summarise(scenario, plan.runs, &figures), figures));
    }
    if let Some(mut cluster) = loopback {
        // Let the last switchover's old primary finish rejoining before everything is stopped.
        if let Err(error) = cluster.wait_converged(&all, STEP_TIMEOUT).await {
            eprintln!("bench: the cluster did not converge after the last run: {error}");
        }
        cluster.stop_driver().await;
    }
    Ok(reports)
}

/// One run: on the loopback cluster (started if there is none), or in a fresh lab.
async fn attempt(
    scenario: Scenario,
    binary: &Path,
    plan: &BenchPlan,
    all: &[usize],
    loopback: &mut Option<LocalCluster>,
) -> Result<RunFigures, DrillError> {
    if scenario.in_lab() {
        return in_lab(scenario, binary, plan).await;
    }
    let cluster = match loopback.take() {
        Some(cluster) => cluster,
        None => {
            eprintln!(
                "bench: starting a {}-instance synchronous cluster on 127.0.0.1 ...",
                plan.instances
            );
            LocalCluster::start(binary, ClusterOptions::synchronous(plan.instances)).await?
        }
    };
    let cluster = loopback.insert(cluster);
    run_once(scenario, cluster, all, plan).await
}

/// The two writers of a run: one through HAProxy `rw`, one holding a connection straight to
/// the primary of the start of the run.
struct Writers {
    through_haproxy: Ledger,
    direct: Ledger,
}

impl Writers {
    /// Starts both, one after the other (the first creates the table), each with
    /// `WARM_UP_ACKS` acknowledged commits.
    async fn start(cluster: &LocalCluster, primary: usize) -> Result<Writers, DrillError> {
        let through_haproxy = Ledger::start(
            cluster.topology().app_rw_options(),
            LedgerOptions::default(),
        )
        .await?;
        through_haproxy
            .wait_for_acks(WARM_UP_ACKS, STEP_TIMEOUT)
            .await?;
        let direct = Ledger::start(
            cluster.member_app_options(primary)?,
            LedgerOptions {
                id_offset: DIRECT_ID_OFFSET,
                ..LedgerOptions::default()
            },
        )
        .await?;
        direct.wait_for_acks(WARM_UP_ACKS, STEP_TIMEOUT).await?;
        Ok(Writers {
            through_haproxy,
            direct,
        })
    }

    async fn stop(self) -> (LedgerReport, LedgerReport) {
        (self.through_haproxy.stop().await, self.direct.stop().await)
    }
}

/// Commits of `reports` acknowledged at or after `from` and before `to`.
fn acknowledged_between(reports: &[&LedgerReport], from: ha::Millis, to: ha::Millis) -> usize {
    reports
        .iter()
        .flat_map(|report| report.acks.iter())
        .filter(|ack| ack.at >= from && ack.at < to)
        .count()
}

/// One run of `scenario` on a converged cluster; see the module's documentation.
pub async fn run_once(
    scenario: Scenario,
    cluster: &mut LocalCluster,
    all: &[usize],
    plan: &BenchPlan,
) -> Result<RunFigures, DrillError> {
    let now = system_clock();
    // From here on, so that a failover while the previous run's last victim rejoins counts.
    let run_mark = cluster.event_mark();
    cluster.wait_converged(all, STEP_TIMEOUT).await?;
    let watch = cluster.watch(WATCH_PERIOD, WATCH_BOUND).await?;
    let old_primary = cluster.primary_index()?;
    let writers = Writers::start(cluster, old_primary).await?;
    let epoch = cluster.state()?.epoch;
    let mark = cluster.event_mark();
    let injected_at = now();
    let fault = scenario.inject(cluster, old_primary).await?;
    let in_place_at = now();
    let mut timeline = None;
    let hold = scenario.hold(plan);
    if let Some(hold) = hold {
        tokio::time::sleep(hold).await;
    } else {
        let outcome = scenario::finish(
            cluster,
            &writers.through_haproxy,
            old_primary,
            epoch,
            mark,
            injected_at,
            STEP_TIMEOUT,
        )
        .await?;
        timeline = Some(outcome.timeline);
    }
    let healed_at = now();
    scenario.heal(cluster, fault, all).await?;
    let primary = cluster.primary_index()?;
    let (through_haproxy, direct) = writers.stop().await;
    let primary_options = cluster.member_app_options(primary)?;
    let lost_commits = ledger::missing_on(&primary_options, &through_haproxy)
        .await?
        .len()
        + ledger::missing_on(&primary_options, &direct).await?.len();
    if hold.is_some() {
        timeline = failover_during_hold(cluster, &through_haproxy, epoch, mark)?;
    }
    let writes_acknowledged_during_fault = (scenario == Scenario::ReplicaPartition)
        .then(|| acknowledged_between(&[&through_haproxy, &direct], in_place_at, healed_at));
    let switchover = if scenario == Scenario::Kill {
        Some(switch_over(cluster).await?)
    } else {
        None
    };
    let seen = watch.stop().await;
    let unplanned = scenario::unplanned_failovers(&cluster.events_since(run_mark));
    Ok(RunFigures {
        from: cluster.node(old_primary)?.to_string(),
        to: cluster.node(primary)?.to_string(),
        timeline,
        lost_commits,
        max_writable_at_once: seen.max_writable_at_once,
        unplanned_failovers: unplanned,
        false_failovers: scenario.expected_failovers().false_failovers(unplanned),
        writes_acknowledged_during_fault,
        switchover,
    })
}

/// The failover that completed while a fault was held (epoch above `epoch`), if any, timed
/// from the engine's first failed probe of the old primary.
fn failover_during_hold(
    cluster: &LocalCluster,
    writer: &LedgerReport,
    epoch: u64,
    mark: usize,
) -> Result<Option<FailoverTimeline>, DrillError> {
    let state = cluster.state()?;
    let Some(record) = state
        .last_failover
        .filter(|record| record.epoch > epoch && record.kind == FailoverKind::Failover)
    else {
        return Ok(None);
    };
    let first_write = match &record.to {
        Some(to) => {
            writer.first_ack_on(cluster.pg_addr(cluster.index_of(to)?)?, record.detected_at)
        }
        None => None,
    };
    Ok(Some(FailoverTimeline::build(
        record.detected_at,
        &record,
        &cluster.events_since(mark),
        first_write,
    )))
}

/// A switchover under a fresh writer through HAProxy.
async fn switch_over(cluster: &LocalCluster) -> Result<SwitchoverFigures, DrillError> {
    let writer = Ledger::start(
        cluster.topology().app_rw_options(),
        LedgerOptions::default(),
    )
    .await?;
    writer.wait_for_acks(WARM_UP_ACKS, STEP_TIMEOUT).await?;
    let planned = scenario::switchover(cluster, &writer, None, STEP_TIMEOUT).await?;
    let report = writer.stop().await;
    let lost_commits = ledger::missing_on(
        &cluster.member_app_options(planned.outcome.new_primary)?,
        &report,
    )
    .await?
    .len();
    Ok(SwitchoverFigures {
        from: cluster.node(planned.outcome.old_primary)?.to_string(),
        to: cluster.node(planned.outcome.new_primary)?.to_string(),
        pause_ms: planned.pause_ms,
        lost_commits,
    })
}
