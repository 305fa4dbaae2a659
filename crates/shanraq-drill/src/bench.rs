//! `shanraq bench failover`: runs of one or more scenarios, each under two writers that
//! commit one ledger row at a time (one through HAProxy, one holding a connection straight to
//! the primary) and a split-brain watch (the `/primary` answers and a write probe straight to
//! every member). A scenario is a value: what it injects into the primary's side, how many
//! failovers it may cause, and how it heals.
//!
//! `kill` runs on one loopback cluster (a fresh one only after a run that could not finish);
//! every other scenario is a network or process fault in a network lab (one namespace per
//! instance, HAProxy, the engine and the clients: `shanraq_testkit::NetLab`), and each of its
//! runs gets a fresh lab and cluster on a thread of its own, since the lab's runtimes cannot
//! be made or dropped inside the benchmark's async entry.
//!
//! A run waits until the cluster converged, injects the fault and then:
//! - scenarios that must fail over (`kill`, `engine-partition`, `primary-isolated`,
//!   `manager-freeze`) wait for the failover; RTO is from the injection to the first commit
//!   the HAProxy writer got acknowledged by the new primary (told apart by address and port);
//! - scenarios that hold the fault (`replica-partition` 10 s, `lossy-link` for
//!   `--lossy-seconds`) keep it that long; `replica-partition` counts the commits either
//!   writer got acknowledged while it held (the primary has no quorum: there must be none);
//!   when `lossy-link` fails over, its RTO is from the engine's first failed probe of the old
//!   primary (`lastFailover.detectedAt`) to the first commit on the new one, since the
//!   injection itself does not make the primary unavailable.
//!
//! It then heals (restart, thaw, or the lab's links as created) and waits until every member
//! streams from the primary, and counts the commits either writer got acknowledged that the
//! primary lacks. Only `kill` then switches over under load (the write pause around it), so
//! lab runs stay short. Failovers beyond the scenario's most are false failovers. If a run
//! cannot finish, it says so and is retried once on a fresh cluster, so every figure comes
//! from a healthy one. Figures go through HDR histograms; what bounds the RTO (detection,
//! promotion, routing, first write) is read from the engine's own events and printed to
//! stderr.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use shanraq_ha::adapters::driver::system_clock;
use shanraq_ha::postgres::{self as ha, FailoverKind};
use shanraq_testkit::LocalTopology;
use shanraq_testkit::topology::{CLIENT_NODE, ENGINE_NODE};

use super::error::DrillError;
use super::ledger::{self, Ledger, LedgerOptions, LedgerReport};
use super::local::{ClusterOptions, LabPlacement, LocalCluster};
use super::scenario;
use super::timeline::FailoverTimeline;

const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Acknowledged commits before each fault or switchover, so the writers are in full swing.
const WARM_UP_ACKS: usize = 50;
const WATCH_PERIOD: Duration = Duration::from_millis(50);
/// The longest a run's watch samples (a run is bounded by its steps well below this).
const WATCH_BOUND: Duration = Duration::from_secs(600);
/// The direct writer's ids start this far above the HAProxy writer's.
const DIRECT_ID_OFFSET: i64 = 1_000_000_000;
/// How long `replica-partition` keeps the primary cut from its replicas.
const REPLICA_PARTITION_HOLD: Duration = Duration::from_secs(10);
/// `lossy-link`: what every packet to and from the primary suffers.
const LOSSY_LOSS_PERCENT: u8 = 30;
const LOSSY_DELAY: Duration = Duration::from_millis(200);

/// A fault the benchmark injects. Adding one: a variant, its name, how many failovers it
/// may cause, whether it holds, and its `inject` and `heal` arms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// SIGKILL of the primary's whole instance (manager and every postgres process).
    Kill,
    /// Every packet between the engine and the primary dropped; clients and replicas still
    /// reach it.
    EnginePartition,
    /// Every packet to and from the primary dropped.
    PrimaryIsolated,
    /// Every packet between the primary and each replica dropped, for 10 s.
    ReplicaPartition,
    /// SIGSTOP of the primary's instance manager only; its postgres keeps serving.
    ManagerFreeze,
    /// 30 % loss and 200 ms delay on every packet to and from the primary, for a while.
    LossyLink,
}

/// How many unplanned failovers one run may cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedFailovers {
    pub at_least: usize,
    pub at_most: usize,
}

impl ExpectedFailovers {
    const fn exactly(count: usize) -> ExpectedFailovers {
        ExpectedFailovers {
            at_least: count,
            at_most: count,
        }
    }

    /// Failovers beyond the most the scenario may cause.
    pub fn false_failovers(self, unplanned: usize) -> usize {
        unplanned.saturating_sub(self.at_most)
    }
}

/// What `inject` did, for `heal` to undo.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    Killed {
        member: usize,
    },
    /// Cuts, isolation or degradation in the lab; its `heal` undoes them all.
    Network,
    ManagerFrozen {
        member: usize,
    },
}

impl Scenario {
    pub const ALL: &'static [Scenario] = &[
        Scenario::Kill,
        Scenario::EnginePartition,
        Scenario::PrimaryIsolated,
        Scenario::ReplicaPartition,
        Scenario::ManagerFreeze,
        Scenario::LossyLink,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Kill => "kill",
            Scenario::EnginePartition => "engine-partition",
            Scenario::PrimaryIsolated => "primary-isolated",
            Scenario::ReplicaPartition => "replica-partition",
            Scenario::ManagerFreeze => "manager-freeze",
            Scenario::LossyLink => "lossy-link",
        }
    }

    /// Unplanned failovers one run must and may cause; any more are false failovers.
    pub fn expected_failovers(self) -> ExpectedFailovers {
        match self {
            Scenario::Kill
            | Scenario::EnginePartition
            | Scenario::PrimaryIsolated
            | Scenario::ManagerFreeze => ExpectedFailovers::exactly(1),
            Scenario::ReplicaPartition => ExpectedFailovers::exactly(0),
            Scenario::LossyLink => ExpectedFailovers {
                at_least: 0,
                at_most: 1,
            },
        }
    }

    /// Whether the scenario runs in a network lab (every scenario but `kill`).
    pub fn in_lab(self) -> bool {
        self != Scenario::Kill
    }

    /// How long the fault is held before the heal, for scenarios that do not wait for a
    /// failover.
    pub fn hold(self, plan: &BenchPlan) -> Option<Duration> {
        match self {
            Scenario::ReplicaPartition => Some(REPLICA_PARTITION_HOLD),
            Scenario::LossyLink => Some(plan.lossy_hold),
            Scenario::Kill
            | Scenario::EnginePartition
            | Scenario::PrimaryIsolated
            | Scenario::ManagerFreeze => None,
        }
    }

    /// Injects the fault; `primary` is the member the engine designates.
    pub async fn inject(
        self,
        cluster: &mut LocalCluster,
        primary: usize,
    ) -> Result<Fault, DrillError> {
        if self == Scenario::Kill {
            cluster.topology_mut().kill(primary)?;
            return Ok(Fault::Killed { member: primary });
        }
        if self == Scenario::ManagerFreeze {
            cluster.topology().freeze_manager(primary)?;
            return Ok(Fault::ManagerFrozen { member: primary });
        }
        let lab = self.lab(cluster)?;
        let node = cluster.node(primary)?;
        let node = node.as_str();
        match self {
            Scenario::EnginePartition => lab.cut(ENGINE_NODE, node)?,
            Scenario::PrimaryIsolated => lab.isolate(node)?,
            Scenario::ReplicaPartition => {
                for replica in (0..cluster.topology().len()).filter(|&index| index != primary) {
                    lab.cut(node, cluster.node(replica)?.as_str())?;
                }
            }
            Scenario::LossyLink => lab.degrade(node, LOSSY_LOSS_PERCENT, LOSSY_DELAY)?,
            Scenario::Kill | Scenario::ManagerFreeze => {}
        }
        Ok(Fault::Network)
    }

    fn lab(self, cluster: &LocalCluster) -> Result<&shanraq_testkit::NetLab, DrillError> {
        cluster
            .topology()
            .lab()
            .ok_or_else(|| DrillError::InvalidOption {
                option: "scenario",
                reason: format!("{} needs a network lab", self.name()),
            })
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
                return Ok(());
            }
            Fault::Network => self.lab(cluster)?.heal()?,
            Fault::ManagerFrozen { member } => cluster.topology().thaw_manager(member)?,
        }
        cluster.wait_converged(all, STEP_TIMEOUT).await?;
        Ok(())
    }
}

/// A scenario's name, or `all` for every scenario in turn.
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
    /// How long `lossy-link` degrades the primary's link.
    pub lossy_hold: Duration,
}

/// One run's figures.
#[derive(Clone, Debug)]
pub struct RunFigures {
    pub from: String,
    /// The primary after the heal (the old one when nothing failed over).
    pub to: String,
    /// The failover, when there was one.
    pub timeline: Option<FailoverTimeline>,
    /// Acknowledged commits of both writers the primary lacks after the heal.
    pub lost_commits: usize,
    pub max_writable_at_once: usize,
    pub unplanned_failovers: usize,
    pub false_failovers: usize,
    /// `replica-partition`: commits either writer got acknowledged while the cut held.
    pub writes_acknowledged_during_fault: Option<usize>,
    /// `kill` only: the switchover after the heal.
    pub switchover: Option<SwitchoverFigures>,
}

#[derive(Clone, Debug)]
pub struct SwitchoverFigures {
    pub from: String,
    pub to: String,
    pub pause_ms: Option<u64>,
    pub lost_commits: usize,
}

/// `--json` output of one scenario, field order as documented.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioReport {
    pub scenario: &'static str,
    pub runs: u32,
    /// `null` when no run failed over.
    pub rto_ms: Option<RtoFigures>,
    pub lost_commits: u64,
    pub max_writable_at_once: usize,
    pub false_failovers: u64,
    /// `null` for scenarios without a switchover (all but `kill`).
    pub switchover_pause_ms: Option<PauseFigures>,
    /// Unplanned failovers over all runs.
    pub failovers: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes_acknowledged_during_fault: Option<u64>,
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

/// The error and its sources, on one line.
fn error_chain(error: &DrillError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn describe_run(figure: &RunFigures) -> String {
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

/// Joins the lab's thread when dropped, also when the benchmark is interrupted, so that its
/// processes and namespaces are gone before the process exits.
struct LabThread(Option<std::thread::JoinHandle<()>>);

impl Drop for LabThread {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

/// One run of `scenario` in a fresh lab, on a thread of its own.
async fn in_lab(
    scenario: Scenario,
    binary: &Path,
    plan: &BenchPlan,
) -> Result<RunFigures, DrillError> {
    let binary = binary.to_path_buf();
    let lab_plan = plan.clone();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name(format!("bench-{}", scenario.name()))
        .spawn(move || {
            let _ = sender.send(run_in_lab(scenario, binary, lab_plan));
        })
        .map_err(|error| DrillError::Lab {
            scenario: scenario.name(),
            problem: format!("could not get a thread: {error}"),
        })?;
    let mut thread = LabThread(Some(thread));
    let outcome = receiver.await.map_err(|_| DrillError::Lab {
        scenario: scenario.name(),
        problem: "ended without an answer (its thread panicked)".to_owned(),
    });
    if let Some(handle) = thread.0.take() {
        let _ = tokio::task::spawn_blocking(move || handle.join()).await;
    }
    outcome?
}

/// Creates the lab and its client and engine runtimes, runs `scenario` on a task of the
/// client runtime (every socket of the cluster, the writers and the watch is created there),
/// and drops the runtimes before the lab, whose namespaces their threads live in.
fn run_in_lab(
    scenario: Scenario,
    binary: PathBuf,
    plan: BenchPlan,
) -> Result<RunFigures, DrillError> {
    let lab = Arc::new(LocalTopology::create_lab(plan.instances)?);
    let client = lab.runtime(CLIENT_NODE)?;
    let engine = lab.runtime(ENGINE_NODE)?;
    let placement = LabPlacement {
        lab: Arc::clone(&lab),
        engine: engine.handle().clone(),
    };
    let task = client.spawn(async move {
        let work = async {
            let options = ClusterOptions::synchronous(plan.instances);
            let mut cluster = LocalCluster::start_in_lab(&binary, options, placement).await?;
            let all: Vec<usize> = (0..plan.instances).collect();
            let figures = run_once(scenario, &mut cluster, &all, &plan).await;
            cluster.stop_driver().await;
            figures
        };
        tokio::select! {
            figures = work => figures,
            _ = tokio::signal::ctrl_c() => Err(DrillError::Interrupted),
        }
    });
    let outcome = client.block_on(task);
    drop(client);
    drop(engine);
    drop(lab);
    outcome.map_err(|error| DrillError::Lab {
        scenario: scenario.name(),
        problem: format!("run failed: {error}"),
    })?
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

fn summarise(scenario: Scenario, runs: u32, figures: &[RunFigures]) -> ScenarioReport {
    let mut rto = Millis::new();
    let mut pause = Millis::new();
    let mut lost = 0_u64;
    let mut false_failovers = 0_u64;
    let mut failovers = 0_u64;
    let mut during_fault: Option<u64> = None;
    let mut max_writable = 0;
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    for figure in figures {
        if let Some(ms) = figure.timeline.as_ref().and_then(FailoverTimeline::rto_ms) {
            rto.record(ms);
        }
        if let Some(ms) = figure.switchover.as_ref().and_then(|s| s.pause_ms) {
            pause.record(ms);
        }
        let switchover_lost = figure.switchover.as_ref().map_or(0, |s| s.lost_commits);
        lost += count(figure.lost_commits + switchover_lost);
        false_failovers += count(figure.false_failovers);
        failovers += count(figure.unplanned_failovers);
        if let Some(during) = figure.writes_acknowledged_during_fault {
            *during_fault.get_or_insert(0) += count(during);
        }
        max_writable = max_writable.max(figure.max_writable_at_once);
    }
    ScenarioReport {
        scenario: scenario.name(),
        runs,
        rto_ms: (!rto.0.is_empty()).then(|| RtoFigures {
            p50: rto.quantile(0.5),
            p99: rto.quantile(0.99),
            max: rto.max(),
        }),
        lost_commits: lost,
        max_writable_at_once: max_writable,
        false_failovers,
        switchover_pause_ms: (!pause.0.is_empty()).then(|| PauseFigures {
            p50: pause.quantile(0.5),
            p99: pause.quantile(0.99),
        }),
        failovers,
        writes_acknowledged_during_fault: during_fault,
        component: "postgres",
    }
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
fn print_bounds(options: &ClusterOptions, held: bool, figures: &[RunFigures]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Ack;

    #[test]
    fn scenarios_are_chosen_by_name_or_all() {
        for scenario in Scenario::ALL {
            assert_eq!(
                scenario.name().parse::<ScenarioSelection>(),
                Ok(ScenarioSelection(vec![*scenario]))
            );
        }
        let all = "all".parse::<ScenarioSelection>().expect("all");
        assert_eq!(all.0.first(), Some(&Scenario::Kill), "kill runs first");
        assert_eq!(all.0.len(), 6);
        let error = "nope".parse::<ScenarioSelection>().expect_err("unknown");
        assert!(
            error.contains("engine-partition") && error.contains("lossy-link"),
            "{error}"
        );
    }

    #[test]
    fn failovers_beyond_the_most_a_scenario_may_cause_are_false() {
        let false_failovers =
            |scenario: Scenario, seen: usize| scenario.expected_failovers().false_failovers(seen);
        assert_eq!(false_failovers(Scenario::Kill, 1), 0);
        assert_eq!(false_failovers(Scenario::EnginePartition, 2), 1);
        assert_eq!(false_failovers(Scenario::ReplicaPartition, 1), 1);
        assert_eq!(false_failovers(Scenario::LossyLink, 0), 0);
        assert_eq!(false_failovers(Scenario::LossyLink, 1), 0);
        assert_eq!(false_failovers(Scenario::LossyLink, 3), 2);
        let must_fail_over: Vec<&str> = Scenario::ALL
            .iter()
            .filter(|scenario| scenario.expected_failovers().at_least > 0)
            .map(|scenario| scenario.name())
            .collect();
        assert_eq!(
            must_fail_over,
            [
                "kill",
                "engine-partition",
                "primary-isolated",
                "manager-freeze"
            ]
        );
    }

    fn run(rto_ms: Option<u64>) -> RunFigures {
        let timeline = rto_ms.map(|ms| FailoverTimeline {
            origin: ha::Millis(1_000),
            first_write: Some(Ack {
                id: 1,
                at: ha::Millis(1_000 + ms),
                server: std::net::SocketAddr::from(([10, 231, 0, 11], 5432)),
            }),
            ..FailoverTimeline::default()
        });
        RunFigures {
            from: "pg-0".to_owned(),
            to: "pg-1".to_owned(),
            timeline,
            lost_commits: 0,
            max_writable_at_once: 1,
            unplanned_failovers: usize::from(rto_ms.is_some()),
            false_failovers: 0,
            writes_acknowledged_during_fault: None,
            switchover: None,
        }
    }

    #[test]
    fn a_report_reads_as_documented() {
        let report = summarise(
            Scenario::EnginePartition,
            2,
            &[run(Some(900)), run(Some(1_100))],
        );
        let json = serde_json::to_string(&report).expect("serialises");
        assert_eq!(
            json,
            r#"{"scenario":"engine-partition","runs":2,"rto_ms":{"p50":900,"p99":1100,"max":1100},"lost_commits":0,"max_writable_at_once":1,"false_failovers":0,"switchover_pause_ms":null,"failovers":2,"component":"postgres"}"#
        );
    }

    #[test]
    fn a_scenario_without_failover_reports_no_rto_and_the_writes_during_the_fault() {
        let held = RunFigures {
            to: "pg-0".to_owned(),
            writes_acknowledged_during_fault: Some(0),
            ..run(None)
        };
        let report = summarise(Scenario::ReplicaPartition, 1, &[held]);
        let json = serde_json::to_string(&report).expect("serialises");
        assert_eq!(
            json,
            r#"{"scenario":"replica-partition","runs":1,"rto_ms":null,"lost_commits":0,"max_writable_at_once":1,"false_failovers":0,"switchover_pause_ms":null,"failovers":0,"writes_acknowledged_during_fault":0,"component":"postgres"}"#
        );
    }
}
