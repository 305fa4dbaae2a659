//! The paused controller that wakes up (ANCHORS, "where they break" 8), on real processes:
//! engine A drives the cluster from a runtime that is then paused, as SIGSTOP, a long stall, a
//! frozen VM or a throttled container would pause it. Engine B starts on the same persisted
//! state, claims it, and fails the primary over when it is killed. Then A wakes.
//!
//! What must hold: A sends nothing (no command started, none obeyed), stands down, B's failover
//! stays the only one (same epoch, same record), no acknowledged write is lost, and writes go on
//! after A wakes. An outage needs a command, and A starts none; the longest write gap after the
//! wake is printed as a figure, not asserted (a loaded machine stalls a writer on its own). For
//! PostgreSQL in synchronous and in asynchronous mode (where nothing but the tokens stops a stale engine from
//! promoting a lagging replica), and for Redis (whose nodes cannot check a token, so the
//! driver's check against the store before every command is what stops it).

mod common;
use common::BOUND;

use shanraq_drill::ledger;
use shanraq_drill::redis::bench::{RedisFault, describe, run_once};
use shanraq_drill::redis::{LocalRedis, RedisOptions, WaitWriter};
use shanraq_drill::scenario;
use shanraq_drill::{ClusterOptions, LocalCluster};
use shanraq_ha::adapters::driver::{DriverEvent, DriverHandle, system_clock};
use shanraq_ha::adapters::redis::{RedisDriverEvent, RedisDriverHandle};
use shanraq_ha::postgres::Phase;
use shanraq_testkit::PausableRuntime;

/// One cluster at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits for A to stand down; panics on any command it starts meanwhile.
async fn stands_down(events: &mut tokio::sync::broadcast::Receiver<DriverEvent>) -> String {
    tokio::time::timeout(BOUND, async {
        loop {
            match events.recv().await {
                Ok(DriverEvent::SteppedDown { reason, .. }) => return reason,
                Ok(DriverEvent::CommandStarted { command, .. }) => {
                    panic!("the stale engine sent a command: {command}")
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(error) => panic!("the stale engine's events ended: {error}"),
            }
        }
    })
    .await
    .expect("the stale engine stands down")
}

/// `synchronous`: every acknowledged commit must survive. Asynchronous: the failover may lose
/// what the replicas had not received (bounded by `maximumLagOnFailover`), but only commits
/// acknowledged before the kill; nothing the stale engine did may cost one more.
async fn stale_postgres_engine(options: ClusterOptions, synchronous: bool) {
    let _serial = SERIAL.lock().await;
    let mut cluster = LocalCluster::start_without_driver(common::binary(), options)
        .await
        .expect("the local cluster starts (needs postgresql-15 and haproxy)");
    let paused = PausableRuntime::start("engine-a").expect("a pausable runtime");
    let (a, a_run): (DriverHandle, _) = cluster
        .start_engine("engine-a", paused.handle())
        .await
        .expect("engine-a starts");
    a.wait_for_state(BOUND, |s| {
        s.phase == Phase::Healthy
            && s.owner.as_deref() == Some("engine-a")
            && s.current_primary
                .as_ref()
                .is_some_and(|p| p.as_str() == "pg-0")
    })
    .await
    .expect("engine-a claims the cluster");
    let writer = common::writing(&cluster).await;
    let mut a_events = a.subscribe();

    paused.pause();
    // What engine-a did before the pause was legitimate: only what follows its wake counts.
    while a_events.try_recv().is_ok() {}
    let b = cluster
        .start_driver_as("engine-b")
        .await
        .expect("engine-b starts");
    let claimed = b
        .wait_for_state(BOUND, |s| {
            s.phase == Phase::Healthy && s.owner.as_deref() == Some("engine-b")
        })
        .await
        .expect("engine-b claims the state");
    cluster
        .wait_converged(&[0, 1, 2], BOUND)
        .await
        .expect("engine-b re-grants pg-0 and the replicas at its epoch");
    println!(
        "engine-a paused at epoch {}; engine-b claimed epoch {}",
        claimed.epoch - 1,
        claimed.epoch
    );

    let mark = cluster.event_mark();
    let killed_at = system_clock()();
    cluster.topology_mut().kill(0).expect("kill pg-0");
    let outcome = scenario::finish(&cluster, &writer, 0, claimed.epoch, mark, killed_at, BOUND)
        .await
        .expect("engine-b fails over");
    let rto_ms = outcome.timeline.rto_ms().unwrap_or_default();
    let failed_over = outcome.state.clone();
    println!(
        "{}",
        outcome.timeline.lines("pg-0 killed (SIGKILL)").join("\n")
    );

    let resumed_at = system_clock()();
    paused.resume();
    let reason = stands_down(&mut a_events).await;
    println!("engine-a woke and stood down: {reason}");
    assert!(reason.contains("engine-b"), "{reason}");
    tokio::time::timeout(BOUND, a_run)
        .await
        .expect("engine-a's loop ends")
        .expect("joined");

    // Some probe rounds later: still B's one failover, and writes never stopped again.
    let acked = writer.acknowledged();
    writer
        .wait_for_acks(acked + 200, BOUND)
        .await
        .expect("writes go on");
    cluster
        .wait_converged(&[1, 2], BOUND)
        .await
        .expect("still converged on the new primary");
    let now = cluster.state().expect("state");
    assert_eq!(now.epoch, failed_over.epoch, "no further epoch");
    assert_eq!(
        now.last_failover, failed_over.last_failover,
        "no second failover"
    );
    assert_eq!(now.owner.as_deref(), Some("engine-b"));
    let refused = (0..3)
        .map(|i| {
            cluster
                .topology()
                .log(i)
                .matches("refused a command")
                .count()
        })
        .sum::<usize>();
    assert_eq!(refused, 0, "the stale engine did not even send a command");

    let report = writer.stop().await;
    let gap_after_wake = report.max_gap(resumed_at, system_clock()()).unwrap_or(0);
    println!(
        "measured: RTO {rto_ms} ms; longest write gap after engine-a woke {gap_after_wake} ms; {} commits acknowledged",
        report.acks.len()
    );
    let missing = ledger::missing_on(
        &cluster
            .member_app_options(outcome.new_primary)
            .expect("member"),
        &report,
    )
    .await
    .expect("read the ledger back");
    if synchronous {
        assert!(missing.is_empty(), "acknowledged commits lost: {missing:?}");
    } else {
        // Asynchronous mode may lose the killed primary's unreplicated tail, including a commit
        // it acknowledged between `killed_at` and the signal's delivery; what no failover may
        // lose is a commit acknowledged by any other member.
        let killed_port = cluster.pg_port(0).expect("pg-0's port");
        let late: Vec<_> = report
            .acks
            .iter()
            .filter(|ack| {
                missing.contains(&ack.id) && ack.at >= killed_at && ack.server.port() != killed_port
            })
            .collect();
        println!(
            "asynchronous: {} commits acknowledged before the kill were not on the new primary (lost bytes recorded: {:?})",
            missing.len(),
            outcome.record.lost_bytes
        );
        assert!(
            late.is_empty(),
            "commits acknowledged by the surviving members after the kill lost: {late:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_engine_that_wakes_after_a_failover_acts_on_nothing_synchronous() {
    stale_postgres_engine(ClusterOptions::synchronous(3), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_engine_that_wakes_after_a_failover_acts_on_nothing_asynchronous() {
    stale_postgres_engine(ClusterOptions::asynchronous(3, 16 * 1024 * 1024), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_engine_that_wakes_after_a_failover_acts_on_nothing() {
    let _serial = SERIAL.lock().await;
    let mut group = LocalRedis::start(&RedisOptions::default(), None)
        .await
        .unwrap_or_else(|error| panic!("the group starts: {error}"));
    group.stop_driver().await;
    let paused = PausableRuntime::start("redis-engine-a").expect("a pausable runtime");
    let (a, a_run): (RedisDriverHandle, _) = group
        .start_engine("engine-a", paused.handle())
        .await
        .expect("engine-a starts");
    a.wait_for_state(BOUND, |s| s.owner.as_deref() == Some("engine-a"))
        .await
        .expect("engine-a claims the group");
    group
        .wait_converged(BOUND)
        .await
        .expect("converged under engine-a");
    let mut a_events = a.subscribe();

    paused.pause();
    while a_events.try_recv().is_ok() {}
    group
        .start_driver_as("engine-b")
        .await
        .expect("engine-b starts");
    let claimed = group
        .handle()
        .wait_for_state(BOUND, |s| s.owner.as_deref() == Some("engine-b"))
        .await
        .expect("engine-b claims the state");
    let run = run_once(&mut group, RedisFault::Kill, 1)
        .await
        .unwrap_or_else(|error| panic!("engine-b's failover: {error}"));
    eprintln!("{}", describe(&run));
    assert_eq!(run.lost_writes, 0, "no write acknowledged by WAIT lost");
    assert_eq!(run.failovers, 1);
    assert!(run.max_writable_at_once <= 1);
    let failed_over = group.handle().state();
    assert!(failed_over.epoch > claimed.epoch);

    // A writer across the wake-up.
    let clock = system_clock();
    let (progress_tx, progress) = tokio::sync::watch::channel(0_usize);
    let writer = WaitWriter::start(
        group.routed(),
        group.password().to_owned(),
        clock.clone(),
        1_000_000,
        progress_tx,
    );
    let wait_acks = |count: usize| {
        let mut progress = progress.clone();
        async move {
            tokio::time::timeout(BOUND, progress.wait_for(|n| *n >= count))
                .await
                .expect("writes are acknowledged")
                .expect("the writer runs");
        }
    };
    wait_acks(50).await;
    let resumed_at = clock();
    paused.resume();
    let reason = tokio::time::timeout(BOUND, async {
        loop {
            match a_events.recv().await {
                Ok(RedisDriverEvent::SteppedDown { reason, .. }) => return reason,
                Ok(RedisDriverEvent::CommandStarted { command, .. }) => {
                    panic!("the stale Redis engine sent a command: {command}")
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(error) => panic!("engine-a's events ended: {error}"),
            }
        }
    })
    .await
    .expect("the stale Redis engine stands down");
    println!("Redis engine-a woke and stood down: {reason}");
    assert!(reason.contains("engine-b"), "{reason}");
    tokio::time::timeout(BOUND, a_run)
        .await
        .expect("engine-a's loop ends")
        .expect("joined");
    let acked = *progress.borrow();
    wait_acks(acked + 200).await;
    let report = writer.stop().await;
    let gap_after_wake = report
        .acks
        .windows(2)
        .filter(|pair| pair[1].at >= resumed_at)
        .map(|pair| pair[1].at.since(pair[0].at))
        .max()
        .unwrap_or(0);
    println!(
        "measured: Redis RTO {} ms; longest write gap after engine-a woke {gap_after_wake} ms",
        run.rto_ms
    );
    let now = group.handle().state();
    assert_eq!(now.epoch, failed_over.epoch, "no further epoch");
    assert_eq!(now.failovers, failed_over.failovers, "no second failover");
    assert_eq!(now.current_primary, failed_over.current_primary);
    group.stop_driver().await;
}
