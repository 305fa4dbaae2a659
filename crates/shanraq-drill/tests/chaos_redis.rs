//! Chaos on real redis-server processes started from the rendered redis.conf, driven by the
//! Redis engine and its redis-rs driver, each under a writer that `SET`s then `WAIT 1`s: kill
//! -9 of the master, SIGSTOP of the master, the master restarting empty, a partition between
//! the engine and the master (network namespaces), and back-to-back failovers. Each asserts
//! that no write acknowledged by `WAIT` was lost, that no two nodes took an acknowledged write
//! in the same round, that the group recovered with the old master as a replica, and that the
//! fault caused exactly one failover. A planned switchover under the same writer loses nothing.

use shanraq_drill::redis::bench::{RedisFault, RedisRun, describe, run_once};
use shanraq_drill::redis::{LocalRedis, RedisOptions};

fn check(run: &RedisRun) {
    eprintln!("{}", describe(run));
    assert_ne!(run.from, run.to, "the master moved");
    assert!(run.acknowledged > 0, "the writer got acknowledgements");
    assert_eq!(run.lost_writes, 0, "no write acknowledged by WAIT lost");
    assert!(
        run.max_writable_at_once <= 1,
        "two nodes took acknowledged writes at once"
    );
    assert_eq!(run.failovers, 1, "exactly one failover for one fault");
    assert_eq!(run.false_failovers, 0);
}

async fn one(fault: RedisFault) -> RedisRun {
    let mut group = LocalRedis::start(&RedisOptions::default(), None)
        .await
        .unwrap_or_else(|error| panic!("the group starts: {error}"));
    let run = run_once(&mut group, fault, 1)
        .await
        .unwrap_or_else(|error| panic!("{} run: {error}", fault.name()));
    group.stop_driver().await;
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_master_fails_over_without_losing_an_acknowledged_write() {
    check(&one(RedisFault::Kill).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_master_is_failed_over_and_rejoins_as_a_replica_when_thawed() {
    check(&one(RedisFault::Freeze).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_restarting_empty_never_empties_its_replicas() {
    check(&one(RedisFault::RestartEmpty).await);
}

#[test]
fn a_master_cut_off_from_the_engine_alone_is_fenced_through_its_replicas() {
    let runs = shanraq_drill::redis::bench::in_lab(
        RedisFault::EnginePartition,
        1,
        &RedisOptions::default(),
    )
    .unwrap_or_else(|error| panic!("the lab run: {error}"));
    for run in &runs {
        check(run);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_failovers_never_fail_the_new_master_over_without_a_fault() {
    let runs: u64 = std::env::var("SHANRAQ_REDIS_SOAK_RUNS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(20);
    let mut group = LocalRedis::start(&RedisOptions::default(), None)
        .await
        .unwrap_or_else(|error| panic!("the group starts: {error}"));
    let faults = [
        RedisFault::Kill,
        RedisFault::Freeze,
        RedisFault::RestartEmpty,
    ];
    for run in 1..=runs {
        let fault = faults[usize::try_from(run).unwrap_or(0) % faults.len()];
        let figures = run_once(&mut group, fault, run)
            .await
            .unwrap_or_else(|error| panic!("run {run} ({}): {error}", fault.name()));
        check(&figures);
    }
    let state = group.stop_driver().await.expect("the driver's last state");
    assert_eq!(state.failovers, runs, "one failover per fault, none more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_under_writes_loses_nothing_and_fails_nothing_over() {
    let mut group = LocalRedis::start(&RedisOptions::default(), None)
        .await
        .unwrap_or_else(|error| panic!("the group starts: {error}"));
    for run in 1..=3 {
        let switchover = shanraq_drill::redis::bench::switch_over(&mut group, run)
            .await
            .unwrap_or_else(|error| panic!("switchover {run}: {error}"));
        eprintln!("{switchover:?}");
        assert_ne!(switchover.from, switchover.to);
        assert!(switchover.acknowledged > 0);
        assert_eq!(switchover.lost_writes, 0, "a switchover loses nothing");
        assert!(switchover.max_writable_at_once <= 1);
        assert_eq!(switchover.failovers, 0);
    }
    group.stop_driver().await;
}
