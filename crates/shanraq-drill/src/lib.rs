//! The local failover drill: the same HA engines and instance managers as in Kubernetes, run
//! against real PostgreSQL, Redis and Kafka processes on 127.0.0.1. `shanraq-drill demo` runs
//! it once and prints the timeline; `shanraq-drill bench failover` runs it N times and prints
//! figures (`shanraq demo|bench|drill` hand over to this binary when it is installed beside
//! `shanraq`). The pieces (`LocalCluster`, the ledger writer, the scenario moves) are also what
//! the chaos and real-process tests in this crate use. A crate of its own so the operator
//! image never links the lab (`shanraq-testkit`).

pub mod backup;
pub mod bench;
pub mod demo;
pub mod error;
pub mod haproxy_config;
pub mod haproxy_router;
pub mod kafka;
pub mod ledger;
pub mod load;
pub mod local;
pub mod product;
pub mod reconcile_bench;
pub mod redis;
pub mod restore;
pub mod scenario;
pub mod timeline;
pub mod watch;
pub mod write_probe;

use std::future::Future;

pub use error::DrillError;
pub use ledger::{Ack, Ledger, LedgerOptions, LedgerReport};
pub use local::{ClusterOptions, LabPlacement, LocalCluster};

/// Flags of `shanraq demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// PostgreSQL instances (3 or more in synchronous mode).
    #[arg(long, default_value_t = 3)]
    pub instances: usize,
    /// Asynchronous streaming instead of one required synchronous standby.
    #[arg(long = "async")]
    pub asynchronous: bool,
    /// With --async: the most WAL a failover may lose (bytes; k, M suffixes accepted).
    #[arg(long, requires = "asynchronous", value_parser = parse_bytes, default_value = "1M")]
    pub max_lag: u64,
}

/// Flags of `shanraq drill`.
#[derive(Debug, clap::Args)]
pub struct DrillArgs {
    #[command(subcommand)]
    pub target: DrillTarget,
}

/// What `shanraq drill` verifies.
#[derive(Debug, clap::Subcommand)]
pub enum DrillTarget {
    /// Back up a local cluster to a local S3 store, restore the latest backup into a scratch
    /// cluster, check its rows and report the backup, archive and restore times.
    Restore(RestoreArgs),
}

/// Flags of `shanraq drill restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Rows written before the backup (as many again after it), one commit each.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rows: u32,
    /// Print one JSON object instead of the steps and a summary.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `shanraq bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub target: BenchTarget,
}

/// What `shanraq bench` measures.
#[derive(Debug, clap::Subcommand)]
pub enum BenchTarget {
    /// Inject a fault into the primary's side N times under load and report RTO, lost
    /// commits, members writable at once, false failovers and (kill) switchover pauses.
    Failover(FailoverBenchArgs),
    /// Load the cluster (pgbench and busy threads) and switch over periodically; report
    /// unplanned failovers, switchover refusals, throughput and lost commits.
    Load(LoadBenchArgs),
    /// Apply N ShanraqClusters to a real API server with the operator running as its own
    /// process, and report the time until all converged, the apply-to-status latency of one
    /// cluster and the operator's peak RSS.
    Reconcile(ReconcileBenchArgs),
    /// Start 3 Kafka controllers and 3 brokers from the rendered configuration, create the
    /// seeds' topics, restart every node one at a time as the ISR-safe roll planner allows
    /// under an acks=all producer, and report acknowledged and lost messages, the longest
    /// produce stall and the roll's time.
    Kafka(KafkaBenchArgs),
    /// Start a 3-node Redis replication group from the rendered redis.conf with persistence
    /// none, everysec and always in turn, and report for each the SET+WAIT 1 latency and the
    /// failover RTO after kill -9 of the master, with each mode's ratio to none.
    RedisPersistence(RedisPersistenceBenchArgs),
}

/// Flags of `shanraq bench redis-persistence`.
#[derive(Debug, clap::Args)]
pub struct RedisPersistenceBenchArgs {
    /// SET+WAIT 1 pairs timed in each mode.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub writes: u32,
    /// Kills of the master in each mode.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `shanraq bench kafka`.
#[derive(Debug, clap::Args)]
pub struct KafkaBenchArgs {
    /// The most messages the producer sends (it stops earlier when the roll is over).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub messages: u64,
    /// The roll's bound in seconds.
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(30..=7_200))]
    pub timeout_seconds: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `shanraq bench reconcile`.
#[derive(Debug, clap::Args)]
pub struct ReconcileBenchArgs {
    /// ShanraqClusters applied at once, each the spec of deploy/examples/minimal.yaml.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=5_000))]
    pub clusters: u32,
    /// Spec changes of the single cluster whose apply-to-status latency is measured.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub samples: u32,
    /// Cluster applies in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// The API server's kubeconfig (else KUBECONFIG, else SHANRAQ_E2E_KUBECONFIG).
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `shanraq bench failover`.
#[derive(Debug, clap::Args)]
pub struct FailoverBenchArgs {
    /// The fault to inject: kill (SIGKILL of the primary's instance), engine-partition,
    /// primary-isolated, replica-partition, manager-freeze, lossy-link (all but kill in a
    /// network lab, which needs root), or all.
    #[arg(long, default_value = "kill")]
    pub scenario: bench::ScenarioSelection,
    /// Runs of each scenario (each kill run followed by a switchover).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
    /// Print JSON (one object, or an array for several scenarios) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// PostgreSQL instances (3 or more).
    #[arg(long, default_value_t = 3)]
    pub instances: usize,
    /// How long lossy-link degrades the primary's link (30 % loss, 200 ms delay), in seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub lossy_seconds: u64,
    /// What to fail over: postgres, or redis (a 3-node replication group).
    #[arg(long, default_value = "postgres", value_parser = ["postgres", "redis"])]
    pub component: String,
    /// With --component redis: the fault, kill (kill -9), freeze (SIGSTOP), restart-empty,
    /// engine-partition (network lab, needs root), a comma-separated list, or all.
    #[arg(long, default_value = "kill")]
    pub redis_fault: redis::bench::RedisFaults,
}

/// Flags of `shanraq bench load`.
#[derive(Debug, clap::Args)]
pub struct LoadBenchArgs {
    /// How long the load runs.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(10..=86_400))]
    pub seconds: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Why a `--max-lag` value is not a byte count.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
enum ByteCountError {
    #[error("unknown unit {unit:?}: use k, M or G")]
    UnknownUnit { unit: String },
    #[error("{text:?} is not a byte count: {error}")]
    NotANumber {
        text: String,
        error: std::num::ParseIntError,
    },
    #[error("{text} is too large")]
    TooLarge { text: String },
}

/// `1048576`, `512k`, `1M` (binary multiples).
fn parse_bytes(text: &str) -> Result<u64, ByteCountError> {
    let text = text.trim();
    let (digits, multiplier) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (text, 1),
        Some((at, _)) => {
            let multiplier = match text[at..].to_ascii_lowercase().as_str() {
                "k" | "kb" | "kib" => 1024,
                "m" | "mb" | "mib" => 1024 * 1024,
                "g" | "gb" | "gib" => 1024 * 1024 * 1024,
                other => {
                    return Err(ByteCountError::UnknownUnit {
                        unit: other.to_owned(),
                    });
                }
            };
            (&text[..at], multiplier)
        }
    };
    let number: u64 = digits.parse().map_err(|error| ByteCountError::NotANumber {
        text: text.to_owned(),
        error,
    })?;
    number
        .checked_mul(multiplier)
        .ok_or_else(|| ByteCountError::TooLarge {
            text: text.to_owned(),
        })
}

/// Runs `work` on a fresh runtime; Ctrl-C drops it, which kills every process it started.
fn block_on<T, E>(work: impl Future<Output = Result<T, E>>) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        tokio::select! {
            outcome = work => Ok(outcome?),
            _ = tokio::signal::ctrl_c() => {
                anyhow::bail!("interrupted; every process the drill started was stopped")
            }
        }
    })
}

pub fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let binary = std::env::current_exe()?;
    let plan = demo::DemoPlan {
        instances: args.instances,
        asynchronous_max_lag: args.asynchronous.then_some(args.max_lag),
    };
    block_on(demo::run(&binary, plan))?;
    block_on(redis::demo::run())
}

pub fn drill(args: DrillArgs) -> anyhow::Result<()> {
    let binary = std::env::current_exe()?;
    match args.target {
        DrillTarget::Restore(args) => {
            let json = args.json;
            let report = block_on(restore::run(&binary, args.rows, |line| {
                if !json {
                    println!("{line}");
                }
            }))?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "backup {} of {} rows on {}{}: {} ms; archive after pg_switch_wal: {} ms; restore into a scratch cluster: {} ms; {} rows restored, checksum {}",
                    report.backup_label,
                    report.rows,
                    report.backup_instance,
                    if report.backup_from_standby {
                        " (a replica)"
                    } else {
                        " (the primary)"
                    },
                    report.backup_ms,
                    report.archive_ms,
                    report.restore_ms,
                    report.restored_rows,
                    if report.verified {
                        "matches"
                    } else {
                        "DIFFERS"
                    }
                );
            }
            if !report.verified {
                anyhow::bail!("the restored cluster does not hold the source's rows");
            }
            Ok(())
        }
    }
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let binary = std::env::current_exe()?;
    match args.target {
        BenchTarget::Failover(args) if args.component == "redis" => {
            let options = redis::RedisOptions::default();
            let reports = block_on(redis::bench::failover(
                &args.redis_fault.0,
                args.runs,
                &options,
            ))?;
            if args.json {
                match reports.as_slice() {
                    [one] => println!("{}", serde_json::to_string(one)?),
                    several => println!("{}", serde_json::to_string(several)?),
                }
            } else {
                for report in &reports {
                    print!("{}", redis::bench::table(report));
                }
            }
            Ok(())
        }
        BenchTarget::Failover(args) => {
            let plan = bench::BenchPlan {
                scenarios: args.scenario.0,
                runs: args.runs,
                instances: args.instances,
                lossy_hold: std::time::Duration::from_secs(args.lossy_seconds),
            };
            let results = block_on(bench::failover(&binary, &plan))?;
            if args.json {
                let reports: Vec<&bench::ScenarioReport> =
                    results.iter().map(|(report, _)| report).collect();
                match reports.as_slice() {
                    [one] => println!("{}", serde_json::to_string(one)?),
                    several => println!("{}", serde_json::to_string(several)?),
                }
            } else {
                for (report, figures) in &results {
                    print!("{}", bench::table(report, figures));
                }
            }
            Ok(())
        }
        BenchTarget::Reconcile(args) => {
            let plan = reconcile_bench::ReconcilePlan {
                clusters: args.clusters as usize,
                samples: args.samples as usize,
                concurrency: args.concurrency as usize,
                kubeconfig: args.kubeconfig,
            };
            let report = block_on(reconcile_bench::run(&binary, &plan))?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", reconcile_bench::summary(&report));
            }
            Ok(())
        }
        BenchTarget::RedisPersistence(args) => {
            let report = block_on(redis::persistence_bench::run(args.writes, args.runs))?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", redis::persistence_bench::table(&report));
            }
            Ok(())
        }
        BenchTarget::Kafka(args) => {
            let report = block_on(kafka::bench::run(
                args.messages,
                std::time::Duration::from_secs(args.timeout_seconds),
            ))?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", kafka::bench::summary(&report));
            }
            Ok(())
        }
        BenchTarget::Load(args) => {
            let plan = load::LoadPlan {
                seconds: args.seconds,
                switchover_every: std::time::Duration::from_secs(30),
            };
            let report = block_on(load::run(&binary, &plan))?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", load::summary(&report));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn byte_counts_take_binary_suffixes() {
        assert_eq!(parse_bytes("1048576"), Ok(1_048_576));
        assert_eq!(parse_bytes("512k"), Ok(524_288));
        assert_eq!(parse_bytes("1M"), Ok(1_048_576));
        assert!(parse_bytes("1X").is_err());
        assert!(parse_bytes("").is_err());
    }
}
