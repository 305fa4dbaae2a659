//! Redis failover runs, for the chaos tests and `shanraq bench failover --component redis`:
//! each run waits until the group converged, starts a `SET`+`WAIT 1` writer that follows the
//! engine's routing and the split-brain watch, injects one fault into the master, and then:
//! - waits for exactly one failover and for the writer's first acknowledged write on another
//!   node: RTO is from the injection to that write;
//! - heals (restart with an empty directory, thaw, or the lab's links as created), waits until
//!   the old master follows the new one, and writes on for a while;
//! - reads every acknowledged write back from the master (lost writes), and counts failovers
//!   beyond the one the fault caused (false failovers) and rounds in which two nodes took an
//!   acknowledged write.
//!
//! Every wait is on a condition, bounded in time.

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use shanraq_ha::redis::NodeId;

use super::cluster::{LocalRedis, RedisLab, RedisOptions};
use super::error::RedisDrillError;
use super::writer::{SplitBrainWatch, WaitWriter, WriterReport, missing_on};

const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Acknowledged writes before the fault, and after the heal.
const WARM_UP_ACKS: usize = 30;
const POLL: Duration = Duration::from_millis(10);
/// Each run's writer ids start this far above the previous run's.
const IDS_PER_RUN: u64 = 10_000_000;

/// A fault injected into the master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisFault {
    /// kill -9; the node comes back later with an empty directory.
    Kill,
    /// SIGSTOP; thawed later.
    Freeze,
    /// kill -9 and an immediate restart with an empty directory, on the same address, before
    /// the engine could notice anything but a node that is no longer the master.
    RestartEmpty,
    /// Every packet between the engine and the master dropped (lab only); clients and replicas
    /// still reach it.
    EnginePartition,
}

impl RedisFault {
    pub const ALL: &'static [RedisFault] = &[
        RedisFault::Kill,
        RedisFault::Freeze,
        RedisFault::RestartEmpty,
        RedisFault::EnginePartition,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RedisFault::Kill => "kill",
            RedisFault::Freeze => "freeze",
            RedisFault::RestartEmpty => "restart-empty",
            RedisFault::EnginePartition => "engine-partition",
        }
    }

    pub fn in_lab(self) -> bool {
        self == RedisFault::EnginePartition
    }

    pub fn parse(text: &str) -> Result<Vec<RedisFault>, UnknownRedisFault> {
        if text == "all" {
            return Ok(RedisFault::ALL.to_vec());
        }
        text.split(',')
            .map(|name| {
                RedisFault::ALL
                    .iter()
                    .copied()
                    .find(|fault| fault.name() == name.trim())
                    .ok_or_else(|| UnknownRedisFault {
                        name: name.to_owned(),
                    })
            })
            .collect()
    }
}

/// `--redis-fault` named no fault; the message lists them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown Redis fault {name:?}: use kill, freeze, restart-empty, engine-partition or all")]
pub struct UnknownRedisFault {
    pub name: String,
}

/// `--redis-fault`: one fault, a comma-separated list, or `all`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisFaults(pub Vec<RedisFault>);

impl std::str::FromStr for RedisFaults {
    type Err = UnknownRedisFault;

    fn from_str(text: &str) -> Result<RedisFaults, UnknownRedisFault> {
        RedisFault::parse(text).map(RedisFaults)
    }
}

/// One run's figures.
#[derive(Clone, Debug)]
pub struct RedisRun {
    pub fault: RedisFault,
    pub from: NodeId,
    pub to: NodeId,
    /// Injection to the first write acknowledged on the new master.
    pub rto_ms: u64,
    /// The engine's own record: first failed probe to routed.
    pub engine_rto_ms: Option<u64>,
    pub acknowledged: usize,
    pub lost_writes: usize,
    pub max_writable_at_once: usize,
    pub failovers: u64,
    pub false_failovers: u64,
}

async fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, RedisDrillError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(RedisDrillError::Timeout {
                what: what.to_owned(),
                seconds: timeout.as_secs(),
                detail: String::new(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs one fault on `group` (run number `run`, for distinct writer ids).
pub async fn run_once(
    group: &mut LocalRedis,
    fault: RedisFault,
    run: u64,
) -> Result<RedisRun, RedisDrillError> {
    let from = group.wait_converged(STEP_TIMEOUT).await?;
    let from_index = group
        .index_of(&from)
        .ok_or_else(|| RedisDrillError::Render(format!("{from} is not a member")))?;
    let clock = shanraq_ha::adapters::driver::system_clock();
    let before = group.handle().state().failovers;
    let watch = SplitBrainWatch::start(group.members(), group.password().to_owned(), clock.clone());
    let (progress_tx, progress) = tokio::sync::watch::channel(0_usize);
    let writer = WaitWriter::start(
        group.routed(),
        group.password().to_owned(),
        clock.clone(),
        run * IDS_PER_RUN,
        progress_tx,
    );
    wait_until("the writer's warm-up", STEP_TIMEOUT, || {
        (*progress.borrow() >= WARM_UP_ACKS).then_some(())
    })
    .await?;
    let injected_at = clock();
    match fault {
        RedisFault::Kill => group.kill(from_index)?,
        RedisFault::Freeze => group.freeze(from_index)?,
        RedisFault::RestartEmpty => group.restart_empty(from_index).await?,
        RedisFault::EnginePartition => group.cut_engine_from(from_index)?,
    }
    let handle = group.handle().clone();
    let routed = group.routed();
    let failed_over = wait_until("the failover", STEP_TIMEOUT, || {
        let state = handle.state();
        let moved = routed
            .borrow()
            .as_ref()
            .is_some_and(|(master, _)| master.name != from);
        (state.failovers > before && moved).then_some(state)
    })
    .await;
    let failed_over = match failed_over {
        Ok(state) => state,
        Err(error) => {
            let _ = writer.stop().await;
            let _ = watch.stop().await;
            return Err(error);
        }
    };
    let to = failed_over
        .current_primary
        .clone()
        .unwrap_or_else(|| from.clone());
    let acked_before_heal = *progress.borrow();
    let first_new = wait_until("the first write on the new master", STEP_TIMEOUT, || {
        (*progress.borrow() > acked_before_heal).then_some(())
    })
    .await;
    // Heal, then wait until the old master follows the new one.
    match fault {
        RedisFault::Kill => group.restart_empty(from_index).await?,
        RedisFault::Freeze => group.thaw(from_index)?,
        RedisFault::RestartEmpty => {}
        RedisFault::EnginePartition => group.heal()?,
    }
    let converged = group.wait_converged(STEP_TIMEOUT).await;
    let settled = *progress.borrow();
    let more = wait_until("writes after the heal", STEP_TIMEOUT, || {
        (*progress.borrow() >= settled + WARM_UP_ACKS).then_some(())
    })
    .await;
    let report: WriterReport = writer.stop().await;
    let split = watch.stop().await;
    first_new?;
    converged?;
    more?;
    let state = group.handle().state();
    let master = state.current_primary.clone().unwrap_or_else(|| to.clone());
    let master_index = group
        .index_of(&master)
        .ok_or_else(|| RedisDrillError::Render(format!("{master} is not a member")))?;
    let master_member = group.members()[master_index].clone();
    let missing = missing_on(&master_member, group.password(), &report.acks).await?;
    let rto_ms = report
        .first_ack_on_other(&from, injected_at)
        .map_or(0, |ack| ack.at.since(injected_at));
    let failovers = state.failovers.saturating_sub(before);
    Ok(RedisRun {
        fault,
        from,
        to,
        rto_ms,
        engine_rto_ms: failed_over.last_failover.and_then(|record| record.rto_ms),
        acknowledged: report.acks.len(),
        lost_writes: missing.len(),
        max_writable_at_once: split.max_writable_at_once,
        failovers,
        false_failovers: failovers.saturating_sub(1),
    })
}

/// `--json` output, field order as documented in docs/operations.md.
#[derive(Clone, Debug, Serialize)]
pub struct RedisBenchReport {
    pub component: &'static str,
    pub runs: u32,
    /// Injection to the first write acknowledged by `WAIT 1` on the new master.
    pub rto_ms: RtoFigures,
    /// Writes acknowledged by `WAIT 1` that the master lacks after the heal.
    pub lost_writes: u64,
    pub scenario: &'static str,
    pub acknowledged_writes: u64,
    pub max_writable_at_once: usize,
    pub false_failovers: u64,
    pub failovers: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RtoFigures {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

pub fn summarise(fault: RedisFault, runs: &[RedisRun]) -> RedisBenchReport {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000, 3).ok();
    for run in runs {
        if let Some(h) = histogram.as_mut() {
            h.saturating_record(run.rto_ms.max(1));
        }
    }
    let quantile = |q: f64| {
        histogram
            .as_ref()
            .filter(|h| !h.is_empty())
            .map_or(0, |h| h.value_at_quantile(q))
    };
    RedisBenchReport {
        component: "redis",
        scenario: fault.name(),
        runs: u32::try_from(runs.len()).unwrap_or(u32::MAX),
        rto_ms: RtoFigures {
            p50: quantile(0.5),
            p99: quantile(0.99),
            max: runs.iter().map(|r| r.rto_ms).max().unwrap_or(0),
        },
        lost_writes: runs.iter().map(|r| r.lost_writes as u64).sum(),
        acknowledged_writes: runs.iter().map(|r| r.acknowledged as u64).sum(),
        max_writable_at_once: runs
            .iter()
            .map(|r| r.max_writable_at_once)
            .max()
            .unwrap_or(0),
        false_failovers: runs.iter().map(|r| r.false_failovers).sum(),
        failovers: runs.iter().map(|r| r.failovers).sum(),
    }
}

pub fn describe(run: &RedisRun) -> String {
    format!(
        "{} {} -> {}: writes back after {} ms (engine: {} ms), {} acknowledged, {} lost, {} writable at once, {} false failovers",
        run.fault.name(),
        run.from,
        run.to,
        run.rto_ms,
        run.engine_rto_ms
            .map_or_else(|| "?".to_owned(), |ms| ms.to_string()),
        run.acknowledged,
        run.lost_writes,
        run.max_writable_at_once,
        run.false_failovers
    )
}

/// `runs` runs of each fault; loopback faults share one group, lab faults get a lab (built
/// on a thread of its own: its runtimes cannot be made or dropped inside async code).
pub async fn failover(
    faults: &[RedisFault],
    runs: u32,
    options: &RedisOptions,
) -> Result<Vec<RedisBenchReport>, RedisDrillError> {
    let mut reports = Vec::new();
    for &fault in faults {
        let figures = if fault.in_lab() {
            let options = options.clone();
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                let _ = tx.send(in_lab(fault, runs, &options));
            });
            rx.await
                .map_err(|_| RedisDrillError::Render("the lab thread ended early".to_owned()))??
        } else {
            let mut group = LocalRedis::start(options, None).await?;
            let mut figures = Vec::new();
            for run in 1..=runs {
                let figure = run_once(&mut group, fault, u64::from(run)).await?;
                eprintln!("bench: redis run {run}/{runs}: {}", describe(&figure));
                figures.push(figure);
            }
            group.stop_driver().await;
            figures
        };
        reports.push(summarise(fault, &figures));
    }
    Ok(reports)
}

/// Runs every run of a lab fault in one lab, on this (blocking) thread.
pub fn in_lab(
    fault: RedisFault,
    runs: u32,
    options: &RedisOptions,
) -> Result<Vec<RedisRun>, RedisDrillError> {
    let lab = Arc::new(RedisLab::create(options.instances)?);
    let body_lab = Arc::clone(&lab);
    let options = options.clone();
    let task = lab.client.spawn(async move {
        let mut group = LocalRedis::start(&options, Some(body_lab)).await?;
        let mut figures = Vec::new();
        for run in 1..=runs {
            let figure = run_once(&mut group, fault, u64::from(run)).await?;
            eprintln!("bench: redis run {run}/{runs}: {}", describe(&figure));
            figures.push(figure);
        }
        group.stop_driver().await;
        drop(group);
        Ok::<_, RedisDrillError>(figures)
    });
    let outcome = lab
        .client
        .block_on(task)
        .map_err(|error| RedisDrillError::Render(format!("lab task: {error}")))?;
    drop(lab);
    outcome
}

/// The unit the figures are in, for the table.
pub fn table(report: &RedisBenchReport) -> String {
    format!(
        "redis {}: {} runs, writes back after p50 {} / p99 {} / max {} ms, {} of {} acknowledged writes lost, \
         at most {} node(s) writable at once, {} false failovers\n",
        report.scenario,
        report.runs,
        report.rto_ms.p50,
        report.rto_ms.p99,
        report.rto_ms.max,
        report.lost_writes,
        report.acknowledged_writes,
        report.max_writable_at_once,
        report.false_failovers
    )
}

/// One planned switchover under the writer.
#[derive(Clone, Debug)]
pub struct RedisSwitchover {
    pub from: NodeId,
    pub to: NodeId,
    /// Request to the first write acknowledged on the new master.
    pub pause_ms: u64,
    pub acknowledged: usize,
    pub lost_writes: usize,
    pub max_writable_at_once: usize,
    /// Unplanned failovers during the switchover (there must be none).
    pub failovers: u64,
}

/// Switches over (to the most advanced replica) under a `SET`+`WAIT 1` writer.
pub async fn switch_over(
    group: &mut LocalRedis,
    run: u64,
) -> Result<RedisSwitchover, RedisDrillError> {
    let from = group.wait_converged(STEP_TIMEOUT).await?;
    let clock = shanraq_ha::adapters::driver::system_clock();
    let before = group.handle().state();
    let watch = SplitBrainWatch::start(group.members(), group.password().to_owned(), clock.clone());
    let (progress_tx, progress) = tokio::sync::watch::channel(0_usize);
    let writer = WaitWriter::start(
        group.routed(),
        group.password().to_owned(),
        clock.clone(),
        run * IDS_PER_RUN,
        progress_tx,
    );
    let warm = wait_until("the writer's warm-up", STEP_TIMEOUT, || {
        (*progress.borrow() >= WARM_UP_ACKS).then_some(())
    })
    .await;
    let requested_at = clock();
    let outcome = async {
        warm?;
        let to = group
            .handle()
            .request_switchover(None)
            .await
            .map_err(shanraq_ha::adapters::redis::RedisDriverError::from)?;
        let handle = group.handle().clone();
        wait_until("the switchover", STEP_TIMEOUT, || {
            (handle.state().switchovers > before.switchovers).then_some(())
        })
        .await?;
        let master = group.wait_converged(STEP_TIMEOUT).await?;
        let settled = *progress.borrow();
        wait_until("writes after the switchover", STEP_TIMEOUT, || {
            (*progress.borrow() >= settled + WARM_UP_ACKS).then_some(())
        })
        .await?;
        Ok::<_, RedisDrillError>((to, master))
    }
    .await;
    let report = writer.stop().await;
    let split = watch.stop().await;
    let (to, master) = outcome?;
    let master_index = group
        .index_of(&master)
        .ok_or_else(|| RedisDrillError::Render(format!("{master} is not a member")))?;
    let master_member = group.members()[master_index].clone();
    let missing = missing_on(&master_member, group.password(), &report.acks).await?;
    Ok(RedisSwitchover {
        pause_ms: report
            .first_ack_on_other(&from, requested_at)
            .map_or(0, |ack| ack.at.since(requested_at)),
        from,
        to,
        acknowledged: report.acks.len(),
        lost_writes: missing.len(),
        max_writable_at_once: split.max_writable_at_once,
        failovers: group
            .handle()
            .state()
            .failovers
            .saturating_sub(before.failovers),
    })
}
