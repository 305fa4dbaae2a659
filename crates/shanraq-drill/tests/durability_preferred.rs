//! `synchronous.dataDurability`, on real PostgreSQL 15 driven by the real instance managers and
//! engine. Both standbys of a three-member cluster (ANY 1) are stopped while a client commits
//! straight on the primary:
//! - `preferred`: the commit waits, then completes once the engine has recorded the fallback
//!   and lowered the primary; the RPO measurement says fallen back (RPOMet False at rpo 0).
//!   The standbys back, the engine restores ANY 1 and the measurement says synchronous again.
//! - `required`: the commit stays blocked and the primary keeps ANY 1, until a standby is back.
//!
//! And a failover while fallen back (ANY 2, one standby stopped, lowered to the other): the
//! engine waits out the old primary's lease, promotes the standby that acknowledged every
//! commit, records the loss as unknown, and the new primary takes writes once lowered in turn.

mod common;
use common::BOUND;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shanraq_drill::{ClusterOptions, LocalCluster, scenario};
use shanraq_ha::adapters::driver::DriverEvent;
use shanraq_ha::objectives::{self, RpoMeasurement};
use shanraq_ha::postgres::{Command, DataDurability, ReplicationMode};
use shanraq_operator::engines::postgres::objectives::rpo_measurement;
use shanraq_operator::engines::postgres::spec::engine_config;
use sqlx::{Connection, PgConnection};

const POLL: Duration = Duration::from_millis(50);
const CONFIGURED: &str = "ANY 1 (*)";

/// Three members, ANY 1, and a detection period of 3 s (probe 250 ms x threshold 12): long
/// enough that a commit issued right after the second standby stopped is surely issued before
/// the engine may fall back, on a loaded machine too.
fn options(durability: DataDurability) -> ClusterOptions {
    let mut options = ClusterOptions::synchronous(3);
    options.ha.failure_threshold = 12;
    options.ha.lease_duration = options.ha.probe_period * 12 * 2;
    options.ha.data_durability = durability;
    options
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The RPO the operator would publish from what the members report now.
async fn measured(cluster: &LocalCluster) -> RpoMeasurement {
    let mut statuses = Vec::new();
    let mut members = Vec::new();
    for index in 0..3 {
        members.push(format!("pg-{index}"));
        if let Ok(status) = cluster.instance_status(index).await {
            statuses.push(status);
        }
    }
    let mode = engine_config(cluster.cluster()).replication;
    rpo_measurement(mode, Some("pg-0"), &members, &statuses)
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + BOUND;
    loop {
        let last = match check().await {
            Ok(()) => return,
            Err(last) => last,
        };
        assert!(Instant::now() < deadline, "never {what}; last: {last}");
        tokio::time::sleep(POLL).await;
    }
}

/// The primary's `synchronous_standby_names` in effect.
async fn standby_names(cluster: &LocalCluster) -> Option<String> {
    cluster
        .instance_status(0)
        .await
        .ok()
        .and_then(|status| status.synchronous_standby_names)
}

/// A connection straight to pg-0 (HAProxy cuts its sessions while `/primary` says the primary
/// cannot commit), and the table the test writes, owned by the application's role that the
/// writes through HAProxy use.
async fn direct_writer(cluster: &LocalCluster) -> PgConnection {
    let mut app = PgConnection::connect_with(&cluster.topology().app_rw_options())
        .await
        .expect("connect rw");
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS durability_probe (id bigserial PRIMARY KEY, note text)",
    )
    .execute(&mut app)
    .await
    .expect("create table");
    drop(app);
    PgConnection::connect_with(&cluster.member_app_options(0).expect("pg-0"))
        .await
        .expect("connect pg-0")
}

/// Stops both standbys cleanly and waits until the primary lists none of them.
async fn stop_standbys(cluster: &mut LocalCluster) {
    for index in [1, 2] {
        cluster
            .topology_mut()
            .shutdown(index)
            .await
            .expect("stop standby");
    }
    wait_for("the primary without standbys", || async {
        let status = cluster
            .instance_status(0)
            .await
            .map_err(|e| e.to_string())?;
        if status.replication.is_empty() {
            Ok(())
        } else {
            Err(format!("{:?}", status.replication))
        }
    })
    .await;
}

fn start_standbys(cluster: &mut LocalCluster) {
    for index in [1, 2] {
        cluster
            .topology_mut()
            .restart(index)
            .expect("start standby");
    }
}

/// Commits one row on `conn` in its own task; the task answers with when the commit returned.
fn commit(
    mut conn: PgConnection,
    note: &'static str,
) -> tokio::task::JoinHandle<(PgConnection, u64)> {
    tokio::spawn(async move {
        sqlx::query("INSERT INTO durability_probe (note) VALUES ($1)")
            .bind(note)
            .execute(&mut conn)
            .await
            .expect("insert");
        (conn, unix_ms())
    })
}

fn synchronous_commands_sent(cluster: &LocalCluster, mark: usize) -> Vec<Command> {
    cluster
        .events_since(mark)
        .into_iter()
        .filter_map(|event| match event {
            DriverEvent::CommandStarted {
                command: command @ Command::Synchronous { .. },
                ..
            } => Some(command),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_goes_on_without_its_standbys_and_restores_any_number_when_they_return() {
    let mut cluster = common::converged(options(DataDurability::Preferred)).await;
    assert!(
        matches!(measured(&cluster).await, RpoMeasurement::Synchronous { .. }),
        "{:?}",
        measured(&cluster).await
    );
    assert_eq!(standby_names(&cluster).await.as_deref(), Some(CONFIGURED));
    let conn = direct_writer(&cluster).await;
    let mark = cluster.event_mark();

    stop_standbys(&mut cluster).await;
    let issued = unix_ms();
    let pending = commit(conn, "while the standbys are gone");
    let (conn, returned) = tokio::time::timeout(BOUND, pending)
        .await
        .expect("the commit returns once the engine falls back")
        .expect("commit task");
    let state = cluster.state().expect("state");
    let fallback = state
        .detail
        .fallback
        .clone()
        .expect("the fallback is in the persisted state");
    println!(
        "measured: commit issued at {issued}, fallback decided at {}, commit returned at {returned} ({} ms blocked)",
        fallback.since.0,
        returned.saturating_sub(issued)
    );
    assert!(
        issued < fallback.since.0 && fallback.since.0 <= returned,
        "the commit waited for the engine's fallback: issued {issued}, fallback {}, returned {returned}",
        fallback.since.0
    );
    assert_eq!(fallback.standby_names, "");
    assert_eq!(
        synchronous_commands_sent(&cluster, mark),
        vec![Command::Synchronous {
            node: cluster.node(0).expect("pg-0"),
            standby_names: Some(String::new()),
            epoch: state.epoch,
        }],
        "the primary was lowered by the engine's command"
    );

    // Writes go on, straight and through HAProxy (the primary may commit alone: `/primary`
    // answers again).
    let pending = commit(conn, "fallen back");
    tokio::time::timeout(BOUND, pending)
        .await
        .expect("a commit while fallen back returns")
        .expect("commit task");
    wait_for("a write through HAProxy while fallen back", || async {
        let mut rw = PgConnection::connect_with(&cluster.topology().app_rw_options())
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query("INSERT INTO durability_probe (note) VALUES ('through rw')")
            .execute(&mut rw)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    })
    .await;
    wait_for("the fallback to be measured", || async {
        match measured(&cluster).await {
            RpoMeasurement::FellBack { ref missing, .. }
                if *missing == ["pg-1".to_owned(), "pg-2".to_owned()] =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let verdict = objectives::rpo(Duration::ZERO, &measured(&cluster).await);
    println!("RPOMet while fallen back: {}", verdict.message);
    assert!(!verdict.met);
    assert!(
        verdict.message.contains("dataDurability: preferred")
            && verdict.message.contains("pg-1, pg-2"),
        "{}",
        verdict.message
    );

    start_standbys(&mut cluster);
    wait_for("ANY 1 restored and the fallback cleared", || async {
        let names = standby_names(&cluster).await;
        let fallback = cluster.state().map_err(|e| e.to_string())?.detail.fallback;
        if names.as_deref() == Some(CONFIGURED) && fallback.is_none() {
            Ok(())
        } else {
            Err(format!("{names:?}, {fallback:?}"))
        }
    })
    .await;
    let restored = cluster.state().expect("state");
    assert_eq!(
        synchronous_commands_sent(&cluster, mark).last(),
        Some(&Command::Synchronous {
            node: cluster.node(0).expect("pg-0"),
            standby_names: None,
            epoch: restored.epoch,
        })
    );
    wait_for("RPO measured synchronous again", || async {
        let measurement = measured(&cluster).await;
        if objectives::rpo(Duration::ZERO, &measurement).met {
            Ok(())
        } else {
            Err(format!("{measurement:?}"))
        }
    })
    .await;
    let rows: i64 = {
        let mut replica = PgConnection::connect_with(&cluster.member_app_options(1).expect("pg-1"))
            .await
            .expect("connect pg-1");
        sqlx::query_scalar("SELECT count(*) FROM durability_probe")
            .fetch_one(&mut replica)
            .await
            .expect("count on pg-1")
    };
    assert!(
        rows >= 3,
        "pg-1 caught up with the fallback's commits: {rows}"
    );
    cluster
        .wait_converged(&[0, 1, 2], BOUND)
        .await
        .expect("converged again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_keeps_commits_waiting_for_a_standby() {
    let mut cluster = common::converged(options(DataDurability::Required)).await;
    let conn = direct_writer(&cluster).await;
    let mark = cluster.event_mark();
    stop_standbys(&mut cluster).await;
    let pending = commit(conn, "needs a standby");
    // Three detection periods of the engine seeing the primary without standbys: it may not
    // touch the setting, and the commit may not return.
    let window = cluster.options().ha.detection_period() * 3;
    let watched = Instant::now();
    while watched.elapsed() < window {
        assert!(
            !pending.is_finished(),
            "a commit returned without a standby"
        );
        assert_eq!(standby_names(&cluster).await.as_deref(), Some(CONFIGURED));
        assert!(cluster.state().expect("state").detail.fallback.is_none());
        tokio::time::sleep(POLL).await;
    }
    assert!(synchronous_commands_sent(&cluster, mark).is_empty());
    let measurement = measured(&cluster).await;
    assert!(
        matches!(measurement, RpoMeasurement::Synchronous { ref streaming, .. } if streaming.is_empty()),
        "{measurement:?}"
    );

    start_standbys(&mut cluster);
    tokio::time::timeout(BOUND, pending)
        .await
        .expect("the commit returns once a standby has it")
        .expect("commit task");
    cluster
        .wait_converged(&[0, 1, 2], BOUND)
        .await
        .expect("converged again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_while_fallen_back_waits_out_the_lease_and_keeps_what_was_acknowledged() {
    let mut options = ClusterOptions::synchronous(3);
    options.ha.replication = ReplicationMode::Synchronous { number: 2 };
    options.ha.data_durability = DataDurability::Preferred;
    let lease = options.ha.lease_duration;
    let mut cluster = common::converged(options).await;
    let writer = common::writing(&cluster).await;

    cluster.topology_mut().shutdown(2).await.expect("stop pg-2");
    wait_for("the primary lowered to pg-1", || async {
        let names = standby_names(&cluster).await;
        let fallback = cluster.state().map_err(|e| e.to_string())?.detail.fallback;
        match (names.as_deref(), fallback) {
            (Some("ANY 1 (\"pg-1\")"), Some(_)) => Ok(()),
            (names, fallback) => Err(format!("{names:?}, {fallback:?}")),
        }
    })
    .await;
    let acked = writer.report().acks.len();
    writer
        .wait_for_acks(acked + 50, BOUND)
        .await
        .expect("writes go on with pg-1 alone");

    let outcome = scenario::kill_primary(&mut cluster, &writer, BOUND)
        .await
        .expect("the engine fails over and the new primary takes writes");
    println!(
        "{}",
        outcome
            .timeline
            .lines("pg-0 killed (SIGKILL) while fallen back")
            .join("\n")
    );
    assert_eq!(outcome.new_primary, 1, "pg-1 is the one that streamed");
    let record = &outcome.record;
    assert!(record.detail.fallback_since.is_some(), "{record:?}");
    assert_eq!(
        record.lost_bytes, None,
        "the loss is not knowable: {record:?}"
    );
    let fenced_after = record
        .detail
        .quorum_fenced_at
        .expect("fencing shown")
        .since(record.started_at);
    assert!(
        fenced_after >= u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
        "the old primary's lease ({lease:?}) was waited out: {fenced_after} ms"
    );
    let report = writer.stop().await;
    common::assert_nothing_lost(&cluster, 1, &report).await;
    println!(
        "measured: RTO {} ms, {} commits acknowledged, none missing on pg-1",
        outcome.timeline.rto_ms().unwrap_or_default(),
        report.acks.len()
    );
}
