//! A full outage of a Redis replication group on real redis-server processes started from the
//! rendered redis.conf, under a writer that `SET`s then `WAIT 1`s: every node killed at once and
//! started again with an empty directory (a pod that lost its volume; the rendered
//! configuration without `appendonly` keeps nothing on disk). The acknowledged writes are gone
//! whatever the engine does; what is asserted is that it says so: a `RedisDatasetLost` Warning
//! for a node that came back without its data, and a failover record that says the data was
//! lost (`dataLost`) and never that 0 bytes were.

use std::time::Duration;

use shanraq_drill::redis::writer::missing_on;
use shanraq_drill::redis::{LocalRedis, RedisOptions, WaitWriter};
use shanraq_ha::driver::{DriverEvent, system_clock};
use shanraq_ha::engine::Notable;
use shanraq_ha::redis::Phase;
use tokio::sync::watch;

const STEP: Duration = Duration::from_secs(60);

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outage_without_persistence_reports_every_write_it_lost() {
    let mut group = LocalRedis::start(&RedisOptions::default(), None)
        .await
        .unwrap_or_else(|error| panic!("the group starts: {error}"));
    let mut events = group.handle().subscribe();
    let before = group.handle().state();

    let (progress, mut acknowledged) = watch::channel(0);
    let writer = WaitWriter::start(
        group.routed(),
        group.password().to_owned(),
        system_clock(),
        1,
        progress,
    );
    acknowledged
        .wait_for(|count| *count >= 50)
        .await
        .unwrap_or_else(|_| panic!("the writer stopped before 50 acknowledged writes"));
    let report = writer.stop().await;
    assert!(report.acks.len() >= 50);

    let members = group.members();
    for index in 0..members.len() {
        group.kill(index).expect("kill");
    }
    let handle = group.handle().clone();
    until("the engine notices the master is gone", || {
        handle.state().phase != Phase::Healthy
    })
    .await;
    for index in 0..members.len() {
        group
            .restart_empty(index)
            .await
            .unwrap_or_else(|error| panic!("node {index} restarts: {error}"));
    }
    let master = group
        .wait_converged(STEP)
        .await
        .unwrap_or_else(|error| panic!("the group converges again: {error}"));

    let state = group.handle().state();
    let record = state
        .last_failover
        .clone()
        .expect("the outage ended in a failover");
    assert!(record.epoch > before.epoch, "a new failover: {record:?}");
    let index = group.index_of(&master).expect("the master is a member");
    let missing = missing_on(&members[index], group.password(), &report.acks)
        .await
        .expect("read back");
    assert_eq!(
        missing.len(),
        report.acks.len(),
        "every acknowledged write is gone: the nodes came back empty"
    );
    let mut told = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let DriverEvent::Engine(event) = event {
            told.push((event.reason(), event.message()));
        }
    }
    assert_ne!(
        record.lost_bytes,
        Some(0),
        "a failover after which every acknowledged write is gone never says it lost nothing: {record:?}"
    );
    let why = record
        .detail
        .data_lost
        .as_deref()
        .unwrap_or_else(|| panic!("the failover says the data was lost: {record:?}"));
    assert!(why.contains("history"), "{why}");
    assert!(
        told.iter().any(|(reason, _)| reason == "RedisDatasetLost"),
        "a node back without its data is said: {told:?}"
    );
    group.stop_driver().await;
}
