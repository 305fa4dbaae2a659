//! A full outage of a Redis replication group on real redis-server processes started from the
//! rendered redis.conf, under a writer that `SET`s then `WAIT 1`s: every node killed at once.
//!
//! Started again with an empty directory (a pod that lost its volume, or `persistence: none`,
//! which keeps nothing on disk), the acknowledged writes are gone whatever the engine does;
//! what is asserted is that it says so: a `RedisDatasetLost` Warning for a node that came back
//! without its data, and a failover record that says the data was lost (`dataLost`) and never
//! that 0 bytes were.
//!
//! Started again on their own directories with `persistence: always`, each node loads its
//! append-only file and reports a new replication id and offset 0, like an empty node: the
//! engine must tell the two apart, raise no `RedisDatasetLost`, and fail over to a node whose
//! file holds every acknowledged write.

use std::time::Duration;

use shanraq_api::redis::RedisPersistence;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outage_with_appendfsync_always_keeps_every_acknowledged_write() {
    let options = RedisOptions {
        rpo: Duration::from_secs(1),
        persistence: RedisPersistence::Always,
        ..RedisOptions::default()
    };
    let mut group = LocalRedis::start(&options, None)
        .await
        .unwrap_or_else(|error| panic!("the group starts: {error}"));
    assert!(
        group.ha_config().fsync_always,
        "the engine knows every acknowledged write is on disk"
    );
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
        .wait_for(|count| *count >= 200)
        .await
        .unwrap_or_else(|_| panic!("the writer stopped before 200 acknowledged writes"));
    // A replica that has just synced starts a new append-only file with a rewrite, and its
    // file holds what it acknowledges only once that is done (the engine would rightly count
    // one killed before as having lost its data): wait until the engine saw every file up to
    // date, as it is outside the moments after a full sync.
    // The engine's own round must come after these writes: a round from before the replicas'
    // syncs also shows every file up to date, for the history they had then.
    let members = group.members();
    let master_index = group.master_index().expect("a master");
    let written = group.infos().await[master_index]
        .as_ref()
        .map(|info| info.offset)
        .expect("the master answers");
    let handle = group.handle().clone();
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let infos = handle.infos();
        if infos.len() == members.len()
            && infos
                .values()
                .all(|info| info.aof_settled() && info.offset >= written)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: the engine sees every append-only file up to date past offset {written}: {infos:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Killed while the writer still writes: the last acknowledged writes are the ones a
    // crash is most likely to lose.
    for index in 0..members.len() {
        group.kill(index).expect("kill");
    }
    until("the engine notices the master is gone", || {
        handle.state().phase != Phase::Healthy
    })
    .await;
    let report = writer.stop().await;
    assert!(report.acks.len() >= 200);
    for index in 0..members.len() {
        group
            .restart_in_place(index)
            .await
            .unwrap_or_else(|error| panic!("node {index} restarts on its directory: {error}"));
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
    assert_eq!(
        record.detail.data_lost, None,
        "nothing was lost: {record:?}"
    );
    // Every node reports offset 0 after loading its file; the old master, whose file holds at
    // least what any replica's does, is taken back.
    assert_eq!(
        record.to.as_ref(),
        Some(&record.from),
        "the old master is taken back: {record:?}"
    );
    assert_eq!(record.lost_bytes, Some(0), "{record:?}");
    // Every node, the new master and the replicas that resynced from it, holds every write
    // acknowledged before the outage.
    for member in &members {
        let missing = missing_on(member, group.password(), &report.acks)
            .await
            .expect("read back");
        assert_eq!(
            missing,
            Vec::<u64>::new(),
            "{} lacks acknowledged writes (master {master})",
            member.name
        );
    }
    let mut told = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let DriverEvent::Engine(event) = event {
            told.push((event.reason(), event.message()));
        }
    }
    assert!(
        !told.iter().any(|(reason, _)| reason == "RedisDatasetLost"),
        "a node back from its append-only file did not lose its data: {told:?}"
    );
    assert!(
        told.iter()
            .any(|(reason, _)| reason == "RedisDatasetRestored"),
        "a node back from its append-only file is said: {told:?}"
    );
    group.stop_driver().await;
}
