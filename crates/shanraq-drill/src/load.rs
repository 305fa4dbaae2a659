//! `shanraq bench load`: a synchronous three-instance cluster with the default settings under
//! load for S seconds, as a loaded production node would be: pgbench (8 clients, 2 threads)
//! through HAProxy's rw frontend as the application owner, two busy-spinning threads in this
//! process, and the ledger writer. Every `switchover_every` the benchmark waits until the
//! cluster has converged, as a user would, then asks for a planned switchover and counts
//! refusals (with the engine's reason) and switchovers that did not complete. A healthy engine
//! makes no unplanned failover under load and refuses no switchover of a converged cluster.
//!
//! pgbench's clients are cut when HAProxy moves rw to the new primary (`shutdown-sessions`)
//! and pgbench does not reconnect, so it runs in segments: whenever it ends before the
//! deadline, it is started again for the time that is left. Its output goes to a log file.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use shanraq_ha::adapters::driver::DriverError;
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;
use tokio::io::AsyncWriteExt;

use super::error::DrillError;
use super::ledger::{self, Ledger, LedgerOptions};
use super::local::{ClusterOptions, LocalCluster};
use super::scenario;

const STEP_TIMEOUT: Duration = Duration::from_secs(60);
const PGBENCH_CLIENTS: &str = "8";
const PGBENCH_THREADS: &str = "2";
/// Scale 8: one branch row per client, so the clients do not all queue on one row lock.
const PGBENCH_SCALE: &str = "8";
const INIT_TIMEOUT: Duration = Duration::from_secs(600);
/// Busy-spinning threads beside pgbench: the machine has no idle core left.
const HOG_THREADS: usize = 2;
/// A pgbench segment shorter than this is not started.
const SHORTEST_SEGMENT: Duration = Duration::from_secs(2);

/// What the load benchmark runs.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    pub seconds: u64,
    pub switchover_every: Duration,
}

/// `--json` output, field order as documented.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadReport {
    pub seconds: u64,
    /// Unplanned failovers (`FailoverStarted`) during the run.
    pub failovers: usize,
    /// Switchovers that completed.
    pub switchovers: usize,
    /// Switchover requests the engine refused.
    pub switchover_refusals: usize,
    pub pgbench_tps: f64,
    pub lost_commits: usize,
    /// Switchovers accepted that aborted or did not complete, or that could not be asked for
    /// because the cluster did not converge first.
    pub switchover_failures: usize,
    pub pgbench_segments: usize,
    /// Why each refused or failed switchover did not happen.
    pub problems: Vec<String>,
    pub pgbench_log: PathBuf,
}

/// Two threads spinning until dropped.
struct CpuHog {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuHog {
    fn start(threads: usize) -> CpuHog {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut spins: u64 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        spins = std::hint::black_box(spins.wrapping_add(1));
                    }
                })
            })
            .collect();
        CpuHog { stop, threads }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn pgbench_binary() -> PathBuf {
    shanraq_testkit::binaries::postgres_tool("pgbench").unwrap_or_else(|_| "pgbench".into())
}

/// Where pgbench connects (host, port, user, database) and the password for PGPASSWORD, so it
/// never appears on a command line.
struct PgbenchTarget {
    host: String,
    port: u16,
    user: String,
    database: String,
    password: String,
}

impl PgbenchTarget {
    fn from_options(options: &PgConnectOptions) -> Result<PgbenchTarget, DrillError> {
        let url = options.to_url_lossy();
        // The topology's passwords are alphanumeric: nothing to percent-decode.
        let password = url.password().unwrap_or_default().to_owned();
        Ok(PgbenchTarget {
            host: options.get_host().to_owned(),
            port: options.get_port(),
            user: options.get_username().to_owned(),
            database: options.get_database().unwrap_or("postgres").to_owned(),
            password,
        })
    }

    fn command(&self, log: &Path) -> Result<tokio::process::Command, DrillError> {
        let open = |what: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|error| DrillError::InvalidOption {
                    option: "pgbench log",
                    reason: format!("{what} {}: {error}", log.display()),
                })
        };
        let mut command = tokio::process::Command::new(pgbench_binary());
        command
            .arg("-h")
            .arg(&self.host)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg(&self.user)
            .env("PGPASSWORD", &self.password)
            .env("PGSSLMODE", "disable")
            .env("PGCONNECT_TIMEOUT", "2")
            .stdin(Stdio::null())
            .stdout(open("opening")?)
            .stderr(open("opening")?)
            .kill_on_drop(true);
        Ok(command)
    }
}

async fn note(log: &Path, line: &str) {
    if let Ok(mut file) = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .await
    {
        let _ = file.write_all(format!("\n### {line}\n").as_bytes()).await;
    }
}

/// Runs `command` for at most `bound`; false when it failed or had to be killed.
async fn run_bounded(
    mut command: tokio::process::Command,
    bound: Duration,
    what: &str,
) -> Result<bool, DrillError> {
    let mut child = command
        .spawn()
        .map_err(|error| DrillError::MissingDependency {
            what: "pgbench",
            package: "postgresql-15",
            detail: format!("{what}: {error}"),
        })?;
    match tokio::time::timeout(bound, child.wait()).await {
        Ok(Ok(status)) => Ok(status.success()),
        Ok(Err(_)) => Ok(false),
        Err(_) => {
            let _ = child.kill().await;
            Ok(false)
        }
    }
}

/// The transactions pgbench reported in `log` (`number of transactions actually processed`),
/// over every segment.
fn transactions_in(log: &Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            line.trim()
                .strip_prefix("number of transactions actually processed:")?
                .split(|c: char| c == '/' || c.is_whitespace())
                .find(|word| !word.is_empty())?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// pgbench in segments until `deadline`; the number of segments.
async fn pgbench_until(
    target: &PgbenchTarget,
    log: &Path,
    deadline: Instant,
) -> Result<usize, DrillError> {
    let mut segments = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < SHORTEST_SEGMENT {
            return Ok(segments);
        }
        segments += 1;
        note(log, &format!("segment {segments}: {} s", left.as_secs())).await;
        let mut command = target.command(log)?;
        command
            .arg("-c")
            .arg(PGBENCH_CLIENTS)
            .arg("-j")
            .arg(PGBENCH_THREADS)
            .arg("-T")
            .arg(left.as_secs().to_string())
            .arg("-n")
            .arg(&target.database);
        let finished = run_bounded(command, left + Duration::from_secs(30), "pgbench").await?;
        if !finished && Instant::now() < deadline {
            // Its clients were cut by a switchover, or it could not connect yet.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

pub async fn run(binary: &Path, plan: &LoadPlan) -> Result<LoadReport, DrillError> {
    let options = ClusterOptions::synchronous(3);
    let all = [0, 1, 2];
    eprintln!(
        "bench load: starting a 3-instance synchronous cluster with the default settings ..."
    );
    let cluster = LocalCluster::start(binary, options).await?;
    cluster.wait_converged(&all, STEP_TIMEOUT).await?;
    let log = std::env::temp_dir().join(format!("shanraq-bench-load-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let target = PgbenchTarget::from_options(&cluster.topology().app_rw_options())?;
    eprintln!(
        "bench load: pgbench -i -s {PGBENCH_SCALE} (output in {}) ...",
        log.display()
    );
    note(&log, "pgbench -i").await;
    let mut init = target.command(&log)?;
    init.arg("-i")
        .arg("-s")
        .arg(PGBENCH_SCALE)
        .arg(&target.database);
    if !run_bounded(init, INIT_TIMEOUT, "pgbench -i").await? {
        return Err(DrillError::InvalidOption {
            option: "pgbench -i",
            reason: format!("failed; see {}", log.display()),
        });
    }
    cluster.wait_converged(&all, STEP_TIMEOUT).await?;

    let mut report = LoadReport {
        seconds: plan.seconds,
        pgbench_log: log.clone(),
        ..LoadReport::default()
    };
    let mark = cluster.event_mark();
    let writer = Ledger::start(
        cluster.topology().app_rw_options(),
        LedgerOptions::default(),
    )
    .await?;
    let hog = CpuHog::start(HOG_THREADS);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(plan.seconds);
    eprintln!(
        "bench load: {} s of pgbench -c {PGBENCH_CLIENTS} -j {PGBENCH_THREADS}, {HOG_THREADS} spinning threads, the ledger writer; a switchover every {} s",
        plan.seconds,
        plan.switchover_every.as_secs()
    );
    let load = pgbench_until(&target, &log, deadline);
    let switchovers = switch_over_periodically(&cluster, &writer, plan, deadline, &mut report);
    let (segments, switched) = tokio::join!(load, switchovers);
    drop(hog);
    report.pgbench_segments = segments?;
    switched?;
    let elapsed = started.elapsed().as_secs_f64().max(1.0);
    report.pgbench_tps = (transactions_in(&log) as f64 / elapsed * 10.0).round() / 10.0;

    let ledger_report = writer.stop().await;
    let state = cluster.wait_converged(&all, STEP_TIMEOUT).await?;
    let primary = state
        .current_primary
        .as_ref()
        .map(|node| cluster.index_of(node))
        .transpose()?
        .unwrap_or(0);
    report.lost_commits = ledger::missing_on(&cluster.member_app_options(primary)?, &ledger_report)
        .await?
        .len();
    report.failovers = scenario::unplanned_failovers(&cluster.events_since(mark));
    Ok(report)
}

/// Every `plan.switchover_every` until `deadline`: wait for convergence, ask for a switchover,
/// wait for it to complete; refusals and failures are counted with their reason.
async fn switch_over_periodically(
    cluster: &LocalCluster,
    writer: &Ledger,
    plan: &LoadPlan,
    deadline: Instant,
    report: &mut LoadReport,
) -> Result<(), DrillError> {
    let all = [0, 1, 2];
    let mut next = Instant::now() + plan.switchover_every;
    while next < deadline {
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
        next += plan.switchover_every;
        if let Err(error) = cluster.wait_converged(&all, STEP_TIMEOUT).await {
            report.switchover_failures += 1;
            report
                .problems
                .push(format!("not converged before a switchover: {error}"));
            continue;
        }
        match scenario::switchover(cluster, writer, None, STEP_TIMEOUT).await {
            Ok(planned) if planned.outcome.record.aborted.is_none() => {
                report.switchovers += 1;
                eprintln!(
                    "bench load: switchover {} -> {} (pause {} ms)",
                    cluster.node(planned.outcome.old_primary)?,
                    cluster.node(planned.outcome.new_primary)?,
                    planned.pause_ms.unwrap_or_default()
                );
            }
            Ok(planned) => {
                report.switchover_failures += 1;
                let reason = format!(
                    "switchover aborted: {}",
                    planned.outcome.record.aborted.unwrap_or_default()
                );
                eprintln!("bench load: {reason}");
                report.problems.push(reason);
            }
            Err(DrillError::Driver(DriverError::Switchover(refusal))) => {
                report.switchover_refusals += 1;
                let reason = format!("switchover refused right after convergence: {refusal}");
                eprintln!("bench load: {reason}");
                report.problems.push(reason);
            }
            Err(error) => {
                report.switchover_failures += 1;
                let reason = format!("switchover did not complete: {error}");
                eprintln!("bench load: {reason}");
                report.problems.push(reason);
            }
        }
    }
    Ok(())
}

/// The readable summary of `shanraq bench load` without `--json`.
pub fn summary(report: &LoadReport) -> String {
    let mut out = format!(
        "{} s under load: {} unplanned failovers, {} switchovers, {} refused, {} failed; \
         pgbench {} tps over {} segments; {} lost acknowledged commits\npgbench output: {}\n",
        report.seconds,
        report.failovers,
        report.switchovers,
        report.switchover_refusals,
        report.switchover_failures,
        report.pgbench_tps,
        report.pgbench_segments,
        report.lost_commits,
        report.pgbench_log.display()
    );
    for problem in &report.problems {
        out.push_str(&format!("  {problem}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_are_summed_over_segments() {
        let dir = std::env::temp_dir().join(format!("shanraq-load-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("pgbench.log");
        std::fs::write(
            &log,
            "### segment 1\nnumber of transactions actually processed: 120\n\
             pgbench: error: client 3 aborted\n### segment 2\n\
             number of transactions actually processed: 30/30\n",
        )
        .expect("write");
        assert_eq!(transactions_in(&log), 150);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_hog_stops_when_dropped() {
        let hog = CpuHog::start(2);
        std::thread::sleep(Duration::from_millis(20));
        drop(hog);
    }
}
