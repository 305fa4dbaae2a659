//! `shanraq bench redis-persistence`: what each `spec.redis.persistence` costs, measured in one
//! run so that the modes are compared on the same machine at the same time. For `none`,
//! `everysec` and `always` in turn, a replication group of three real redis-servers is started
//! from the rendered redis.conf of that mode (the append-only file on each server's own
//! directory), then:
//! - a client on the master makes `writes` writes one at a time, each `SET` then `WAIT 1`, and
//!   the time of each pair goes into an HDR histogram (what an application that confirms its
//!   writes waits for);
//! - `runs` times, the master is killed (kill -9) under a `SET`+`WAIT 1` writer and the time
//!   from the kill to the first write acknowledged on the new master is the RTO (the same run
//!   as `shanraq bench failover --component redis`).
//!
//! The figures depend on the disk under the servers' directories (an fsync per write for
//! `always`): compare the modes' ratios within one run, not figures across machines.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use shanraq_api::redis::{AppendOnly, RedisPersistence};

use super::bench::{RedisFault, RtoFigures, run_once};
use super::cluster::{LocalRedis, RedisOptions};
use super::error::RedisDrillError;
use super::writer::connect;

/// The modes, in the order they run and are printed.
const MODES: [RedisPersistence; 3] = [
    RedisPersistence::None,
    RedisPersistence::Everysec,
    RedisPersistence::Always,
];
/// The bound on one `SET` or `WAIT` of the latency loop.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `WAIT 1` may wait for a replica in the latency loop (milliseconds).
const WAIT_MS: u64 = 1000;
/// Keys of the latency loop, apart from the failover writer's.
const KEY_PREFIX: &str = "shanraq:bench:persistence:";

/// `SET`+`WAIT 1` latency, in microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyFigures {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// One mode's figures.
#[derive(Clone, Debug, Serialize)]
pub struct ModeReport {
    /// `spec.redis.persistence`.
    pub persistence: &'static str,
    /// What the rendered redis.conf says.
    pub appendonly: &'static str,
    pub appendfsync: &'static str,
    pub writes: u32,
    /// Writes a replica did not confirm within `WAIT 1`'s bound (counted in the latency).
    pub unconfirmed_writes: u32,
    pub set_wait_us: LatencyFigures,
    pub failover_runs: u32,
    /// From the kill of the master to the first write acknowledged on the new one.
    pub rto_ms: RtoFigures,
    /// Writes acknowledged during the failover runs that the master lacked afterwards.
    pub lost_writes: u64,
}

/// Each mode against `none`, from the same run.
#[derive(Clone, Debug, Serialize)]
pub struct Ratios {
    pub persistence: &'static str,
    pub set_wait_p50: f64,
    pub set_wait_p99: f64,
    pub rto_p50: f64,
}

/// `--json` output.
#[derive(Clone, Debug, Serialize)]
pub struct PersistenceBenchReport {
    pub component: &'static str,
    pub scenario: &'static str,
    pub modes: Vec<ModeReport>,
    pub ratios_to_none: Vec<Ratios>,
}

fn append_only(persistence: RedisPersistence) -> AppendOnly {
    match persistence {
        RedisPersistence::None => AppendOnly::Off,
        RedisPersistence::Everysec | RedisPersistence::Auto => AppendOnly::Everysec,
        RedisPersistence::Always => AppendOnly::Always,
    }
}

/// `writes` `SET`+`WAIT 1` pairs on the master, one at a time.
async fn latency(
    group: &LocalRedis,
    writes: u32,
) -> Result<(LatencyFigures, u32), RedisDrillError> {
    let master = group.wait_converged(Duration::from_secs(30)).await?;
    let index = group
        .index_of(&master)
        .ok_or_else(|| RedisDrillError::Render(format!("{master} is not a member")))?;
    let member = group.members()[index].clone();
    let failed = |message: String| RedisDrillError::ReadBack {
        node: member.name.to_string(),
        message,
    };
    let mut connection = connect(&member, group.password(), WRITE_TIMEOUT)
        .await
        .map_err(|error| failed(error.to_string()))?;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .map_err(|error| RedisDrillError::Render(format!("histogram: {error}")))?;
    let mut unconfirmed = 0;
    for id in 0..writes {
        let started = Instant::now();
        let _: () = redis::cmd("SET")
            .arg(format!("{KEY_PREFIX}{id}"))
            .arg(id)
            .query_async(&mut connection)
            .await
            .map_err(|error| failed(error.to_string()))?;
        let replicas: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(WAIT_MS)
            .query_async(&mut connection)
            .await
            .map_err(|error| failed(error.to_string()))?;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        histogram.saturating_record(micros.max(1));
        if replicas < 1 {
            unconfirmed += 1;
        }
    }
    Ok((
        LatencyFigures {
            p50: histogram.value_at_quantile(0.5),
            p99: histogram.value_at_quantile(0.99),
            max: histogram.max(),
        },
        unconfirmed,
    ))
}

async fn mode(
    persistence: RedisPersistence,
    writes: u32,
    runs: u32,
) -> Result<ModeReport, RedisDrillError> {
    let options = RedisOptions {
        persistence,
        ..RedisOptions::default()
    };
    let mut group = LocalRedis::start(&options, None).await?;
    let outcome = async {
        let (set_wait_us, unconfirmed_writes) = latency(&group, writes).await?;
        let mut failovers = Vec::new();
        for run in 1..=runs {
            let figure = run_once(&mut group, RedisFault::Kill, u64::from(run)).await?;
            eprintln!(
                "bench: redis persistence {}: run {run}/{runs}: {}",
                append_only(persistence).spec_value(),
                super::bench::describe(&figure)
            );
            failovers.push(figure);
        }
        Ok::<_, RedisDrillError>((set_wait_us, unconfirmed_writes, failovers))
    }
    .await;
    group.stop_driver().await;
    let (set_wait_us, unconfirmed_writes, failovers) = outcome?;
    let summary = super::bench::summarise(RedisFault::Kill, &failovers);
    let rendered = append_only(persistence);
    Ok(ModeReport {
        persistence: rendered.spec_value(),
        appendonly: rendered.appendonly(),
        appendfsync: rendered.appendfsync(),
        writes,
        unconfirmed_writes,
        set_wait_us,
        failover_runs: runs,
        rto_ms: summary.rto_ms,
        lost_writes: summary.lost_writes,
    })
}

fn ratio(value: u64, base: u64) -> f64 {
    if base == 0 {
        return 0.0;
    }
    // Two decimals are what a reader compares.
    ((value as f64 / base as f64) * 100.0).round() / 100.0
}

/// Every mode, one after the other, in this run.
pub async fn run(writes: u32, runs: u32) -> Result<PersistenceBenchReport, RedisDrillError> {
    let mut modes = Vec::new();
    for persistence in MODES {
        modes.push(mode(persistence, writes, runs).await?);
    }
    let ratios_to_none = match modes.first() {
        Some(none) => modes
            .iter()
            .skip(1)
            .map(|other| Ratios {
                persistence: other.persistence,
                set_wait_p50: ratio(other.set_wait_us.p50, none.set_wait_us.p50),
                set_wait_p99: ratio(other.set_wait_us.p99, none.set_wait_us.p99),
                rto_p50: ratio(other.rto_ms.p50, none.rto_ms.p50),
            })
            .collect(),
        None => Vec::new(),
    };
    Ok(PersistenceBenchReport {
        component: "redis",
        scenario: "persistence",
        modes,
        ratios_to_none,
    })
}

/// What a person reads.
pub fn table(report: &PersistenceBenchReport) -> String {
    let mut text = String::from(
        "redis persistence: SET+WAIT 1 latency (µs) and failover RTO after kill -9 of the master (ms)\n",
    );
    for mode in &report.modes {
        text.push_str(&format!(
            "  {:<8} appendonly {:<3} appendfsync {:<8} {} writes: p50 {} / p99 {} / max {}; {} kills: RTO p50 {} / max {}; {} acknowledged writes lost\n",
            mode.persistence,
            mode.appendonly,
            mode.appendfsync,
            mode.writes,
            mode.set_wait_us.p50,
            mode.set_wait_us.p99,
            mode.set_wait_us.max,
            mode.failover_runs,
            mode.rto_ms.p50,
            mode.rto_ms.max,
            mode.lost_writes
        ));
    }
    for ratio in &report.ratios_to_none {
        text.push_str(&format!(
            "  {} / none: latency p50 x{}, p99 x{}; RTO p50 x{}\n",
            ratio.persistence, ratio.set_wait_p50, ratio.set_wait_p99, ratio.rto_p50
        ));
    }
    text
}
