//! `shanraq demo`: the newcomer's first command. Boots a local cluster (instance managers
//! over real PostgreSQL 15, HAProxy, the HA engine), writes through HAProxy, SIGKILLs the
//! primary, lets the engine fail over, and prints the timeline, the RTO and the lost
//! acknowledged commits; then brings the old primary back (fenced, demoted through pg_rewind)
//! and switches over to it under load. Every process is gone when it returns.

use std::path::Path;
use std::time::{Duration, Instant};

use shanraq_ha::postgres::ReplicationMode;

use super::error::DrillError;
use super::ledger::{self, Ledger, LedgerOptions};
use super::local::{ClusterOptions, LocalCluster, check_dependencies};
use super::scenario;

const STEP_TIMEOUT: Duration = Duration::from_secs(60);
const WRITE_BEFORE_KILL: Duration = Duration::from_secs(2);

/// What the demo runs.
#[derive(Clone, Debug)]
pub struct DemoPlan {
    pub instances: usize,
    /// `None`: synchronous (`ANY 1 (*)`); `Some(bytes)`: asynchronous with that maximum lag.
    pub asynchronous_max_lag: Option<u64>,
}

struct Progress {
    started: Instant,
}

impl Progress {
    fn say(&self, text: impl std::fmt::Display) {
        println!("[{:>5.1}s] {text}", self.started.elapsed().as_secs_f64());
    }
}

pub async fn run(binary: &Path, plan: DemoPlan) -> Result<(), DrillError> {
    let progress = Progress {
        started: Instant::now(),
    };
    println!(
        "shanraq demo: a failover drill on 127.0.0.1 with real PostgreSQL 15, HAProxy and the HA engine\n"
    );
    check_dependencies()?;
    let options = match plan.asynchronous_max_lag {
        None => {
            if plan.instances < 3 {
                return Err(DrillError::InvalidOption {
                    option: "--instances",
                    reason:
                        "synchronous mode needs 3 or more: with 2, the survivor has no standby to \
                             acknowledge commits (use --async for 2)"
                            .to_owned(),
                });
            }
            ClusterOptions::synchronous(plan.instances)
        }
        Some(max_lag) => ClusterOptions::asynchronous(plan.instances, max_lag),
    };
    let synchronous = matches!(options.ha.replication, ReplicationMode::Synchronous { .. });
    progress.say(format!(
        "starting {} instance managers (pg-0 runs initdb, the others clone it with pg_basebackup) and HAProxy ...",
        plan.instances
    ));
    let mut cluster = LocalCluster::start_without_driver(binary, options.clone()).await?;
    progress.say(format!(
        "cluster formed: pg-0 primary, {} replicas streaming, {}",
        plan.instances - 1,
        if synchronous {
            "synchronous_standby_names = 'ANY 1 (*)' (a commit returns once a standby has it)"
                .to_owned()
        } else {
            format!(
                "asynchronous streaming (a failover may lose up to {} bytes)",
                options.ha.maximum_lag_on_failover
            )
        }
    ));
    progress.say(format!(
        "starting the HA engine: probe every {} ms, failover after {} failed probes, failover delay {} ms",
        options.ha.probe_period.as_millis(),
        options.ha.failure_threshold,
        options.ha.failover_delay.as_millis()
    ));
    let outcome = drill(&mut cluster, &progress, synchronous).await;
    progress.say(format!(
        "cleaning up: the writer, the engine, {} instance managers, PostgreSQL and HAProxy",
        plan.instances
    ));
    cluster.stop_driver().await;
    drop(cluster);
    progress.say("done");
    outcome
}

async fn drill(
    cluster: &mut LocalCluster,
    progress: &Progress,
    synchronous: bool,
) -> Result<(), DrillError> {
    cluster.start_driver().await?;
    let all: Vec<usize> = (0..cluster.topology().len()).collect();
    let state = cluster.wait_converged(&all, STEP_TIMEOUT).await?;
    let standbys: Vec<&str> = state
        .detail
        .sync_set
        .iter()
        .map(|node| node.as_str())
        .collect();
    progress.say(format!(
        "the engine routes writes to pg-0 (epoch {}){}",
        state.epoch,
        if synchronous {
            format!("; synchronous standbys: {}", standbys.join(", "))
        } else {
            String::new()
        }
    ));
    progress.say(format!(
        "writer: one ledger row per commit through HAProxy rw (127.0.0.1:{}) as the application owner",
        cluster.topology().rw_port()
    ));
    let writer = Ledger::start(
        cluster.topology().app_rw_options(),
        LedgerOptions::default(),
    )
    .await?;
    tokio::time::sleep(WRITE_BEFORE_KILL).await;
    let old = cluster.primary_index()?;
    let old_name = cluster.node(old)?;
    progress.say(format!(
        "{} commits acknowledged; killing {old_name} (SIGKILL of its instance manager and postgres)",
        writer.acknowledged()
    ));
    let failover = scenario::kill_primary(cluster, &writer, STEP_TIMEOUT).await?;
    // Let the writer run on the new primary for a moment before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = writer.report();
    let new_name = cluster.node(failover.new_primary)?;
    let missing =
        ledger::missing_on(&cluster.member_app_options(failover.new_primary)?, &report).await?;
    println!("\nUnplanned failover {old_name} -> {new_name}");
    for line in failover
        .timeline
        .lines(&format!("{old_name} killed (SIGKILL)"))
    {
        println!("{line}");
    }
    let (before, after) = report.split_at(failover.timeline.origin);
    println!(
        "RTO: {} ms (kill -> first committed write)",
        failover.timeline.rto_ms().unwrap_or_default()
    );
    println!("acknowledged commits: {before} before the kill, {after} after");
    println!(
        "lost acknowledged commits: {}{}\n",
        missing.len(),
        if synchronous {
            format!(" (every acknowledged id was looked up on {new_name})")
        } else {
            " (asynchronous replication: loss is bounded by the maximum lag)".to_owned()
        }
    );
    if synchronous && !missing.is_empty() {
        return Err(DrillError::LostCommits {
            count: missing.len(),
            member: new_name.to_string(),
            sample: missing.iter().take(10).copied().collect(),
        });
    }

    progress.say(format!(
        "restarting {old_name}: it comes back fenced, the engine demotes it (pg_rewind) to a replica of {new_name}"
    ));
    let rejoin_started = Instant::now();
    scenario::rejoin(cluster, old, &all, STEP_TIMEOUT).await?;
    progress.say(format!(
        "{old_name} streams from {new_name} again ({} ms after its restart)",
        rejoin_started.elapsed().as_millis()
    ));

    progress.say(format!(
        "planned switchover back to {old_name} while the writer keeps writing ..."
    ));
    let planned =
        scenario::switchover(cluster, &writer, Some(old_name.clone()), STEP_TIMEOUT).await?;
    let report = writer.stop().await;
    let missing = ledger::missing_on(&cluster.member_app_options(old)?, &report).await?;
    println!("\nPlanned switchover {new_name} -> {old_name}");
    for line in planned.outcome.timeline.lines("switchover requested") {
        println!("{line}");
    }
    println!(
        "write pause: {} ms (longest gap between acknowledged commits)",
        planned.pause_ms.unwrap_or_default()
    );
    println!(
        "acknowledged commits in total: {}; lost acknowledged commits: {}\n",
        report.acks.len(),
        missing.len()
    );
    progress.say(format!(
        "waiting for {new_name} to rejoin as a replica of {old_name}"
    ));
    cluster.wait_converged(&all, STEP_TIMEOUT).await?;
    progress.say(format!("{new_name} streams from {old_name}"));
    Ok(())
}
