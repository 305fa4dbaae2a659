//! The driver runs the engine against instance managers over HTTP: a dead primary is failed
//! over, the state is persisted to the file store, routing is confirmed by the new primary's
//! `/primary`, and a switchover requested while it runs completes.

use crate::events::Lifecycle;
use std::collections::BTreeMap;
use std::time::Duration;

use super::fake_instance::{TOKEN, cluster};
use crate::adapters::driver::{
    Driver, DriverConfig, DriverEvent, DriverHandle, DriverMember, PrimaryCheckRouter, system_clock,
};
use crate::adapters::instance_client::{BearerToken, ClientTimeouts, InstanceClient};
use crate::driver::state_store::{FileStateStore, StateStore};
use crate::postgres::{
    EventKind, FailoverKind, HaState, Member, NodeId, Phase, PostgresHaConfig, ReplicationMode,
};

/// A driver over the fake cluster's instance managers, routing by their `/primary`, with its
/// state in a file store at `store`; not started, so the caller can subscribe first.
async fn driver_for(
    servers: &[(String, String, tokio::task::JoinHandle<()>)],
    ha: PostgresHaConfig,
    initial_state: HaState,
    store: impl AsRef<std::path::Path>,
) -> (Driver<FileStateStore, PrimaryCheckRouter>, DriverHandle) {
    engine_for(servers, ha, initial_state, store, "engine-a").await
}

/// `driver_for` acting as `identity`.
async fn engine_for(
    servers: &[(String, String, tokio::task::JoinHandle<()>)],
    ha: PostgresHaConfig,
    initial_state: HaState,
    store: impl AsRef<std::path::Path>,
    identity: &str,
) -> (Driver<FileStateStore, PrimaryCheckRouter>, DriverHandle) {
    let members: Vec<DriverMember> = servers
        .iter()
        .enumerate()
        .map(|(i, (name, url, _))| DriverMember {
            member: Member::new(
                name.clone(),
                "127.0.0.1",
                25432 + u16::try_from(i).expect("small"),
            ),
            manager_url: url.clone(),
        })
        .collect();
    let timeouts = ClientTimeouts::for_probe_period(ha.probe_period);
    let token = BearerToken::new(TOKEN);
    let router_clients: BTreeMap<NodeId, InstanceClient> = members
        .iter()
        .map(|m| {
            let client = InstanceClient::new(
                m.member.name.0.clone(),
                &m.manager_url,
                token.clone(),
                timeouts,
            );
            (m.member.name.clone(), client.expect("client"))
        })
        .collect();
    let config = DriverConfig {
        ha,
        members,
        token,
        timeouts,
        initial_state,
        identity: identity.to_owned(),
        authority: std::sync::Arc::new(crate::driver::custody::Unconditional),
    };
    crate::adapters::driver::start(
        config,
        FileStateStore::new(store.as_ref()),
        PrimaryCheckRouter::new(router_clients),
        system_clock(),
    )
    .await
    .expect("driver starts")
}

#[tokio::test]
async fn driver_fails_over_a_dead_primary_persists_and_switches_over_on_request() {
    let (model, servers) = cluster(1).await;
    let ha = PostgresHaConfig {
        probe_period: Duration::from_millis(50),
        failure_threshold: 3,
        failover_delay: Duration::ZERO,
        maximum_lag_on_failover: 0,
        replication: ReplicationMode::Synchronous { number: 1 },
        data_durability: crate::postgres::DataDurability::Required,
        switchover_timeout: Duration::from_secs(5),
        fence_timeout: Duration::from_millis(500),
        lease_duration: Duration::from_millis(1500),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let store_path = dir.path().join("ha.json");
    let (driver, handle) = driver_for(
        &servers,
        ha,
        HaState::with_primary(NodeId::new("pg-0"), 1),
        &store_path,
    )
    .await;
    let mut events = handle.subscribe();
    let collector = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            match events.recv().await {
                Ok(event) => seen.push(event),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(skipped)) => {
                    panic!("{skipped} events lost")
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return seen,
            }
        }
    });
    let run = tokio::spawn(driver.run());

    // Steady state: routed to pg-0, the synchronous set learnt from its replication rows.
    let healthy = handle
        .wait_for_state(Duration::from_secs(10), |s| {
            s.phase == Phase::Healthy && s.detail.sync_set.len() == 2
        })
        .await
        .expect("learns the synchronous set");
    assert_eq!(healthy.current_primary, Some(NodeId::new("pg-0")));

    model.lock().expect("lock").dead.insert("pg-0".into(), true);
    let after = handle
        .wait_for_state(Duration::from_secs(10), |s| {
            s.phase == Phase::Healthy && s.last_failover.is_some()
        })
        .await
        .expect("fails over");
    let record = after.last_failover.clone().expect("recorded");
    assert_eq!(record.kind, FailoverKind::Failover);
    assert_eq!(record.from, NodeId::new("pg-0"));
    let new_primary = record.to.clone().expect("a new primary");
    assert_eq!(after.current_primary.as_ref(), Some(&new_primary));
    assert_eq!(after.epoch, 2);
    assert!(record.rto_ms.is_some() && record.routed_at.is_some());
    {
        let m = model.lock().expect("lock");
        assert!(
            m.received.contains(&(new_primary.0.clone(), "promote", 2)),
            "{:?}",
            m.received
        );
        let primaries = m
            .instances
            .values()
            .filter(|s| {
                s.role == crate::wire::InstanceRole::Primary
                    && !m.dead.get(&s.name).copied().unwrap_or(false)
            })
            .count();
        assert_eq!(primaries, 1, "exactly one live primary");
    }
    let persisted: HaState = FileStateStore::new(&store_path)
        .load()
        .await
        .expect("load")
        .expect("persisted")
        .state;
    assert_eq!(
        persisted.current_primary.as_ref(),
        Some(&new_primary),
        "the file holds the new primary"
    );

    // A planned switchover to the remaining replica while the loop runs.
    let other = if new_primary.as_str() == "pg-1" {
        "pg-2"
    } else {
        "pg-1"
    };
    handle
        .wait_for_state(Duration::from_secs(10), |s| !s.detail.sync_set.is_empty())
        .await
        .expect("the new primary reports its standbys");
    // What the probes saw is published, so callers need not probe the instances again. The
    // state can run ahead of it (a command's reply carries a status too): wait for a round.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = handle.statuses();
        if seen.iter().any(|status| {
            status.name == new_primary.as_str() && status.role == crate::wire::InstanceRole::Primary
        }) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no probe round showed the new primary: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let chosen = handle
        .request_switchover(Some(NodeId::new(other)))
        .await
        .expect("switchover accepted");
    assert_eq!(chosen.as_str(), other);
    let switched = handle
        .wait_for_state(Duration::from_secs(10), |s| {
            s.phase == Phase::Healthy
                && s.last_failover
                    .as_ref()
                    .is_some_and(|r| r.kind == FailoverKind::Switchover)
        })
        .await
        .expect("switchover completes");
    assert_eq!(switched.current_primary, Some(NodeId::new(other)));
    assert!(
        switched
            .last_failover
            .as_ref()
            .is_some_and(|r| r.aborted.is_none())
    );
    assert_eq!(switched.epoch, 3);

    handle.stop().await;
    let last = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("stops")
        .expect("joins");
    assert_eq!(last.current_primary, Some(NodeId::new(other)));

    drop(handle);
    let seen = tokio::time::timeout(Duration::from_secs(5), collector)
        .await
        .expect("events close")
        .expect("collector");
    let mut reasons = Vec::new();
    let mut commands = BTreeMap::<String, usize>::new();
    for event in seen {
        if let DriverEvent::CommandStarted { command, .. } = &event {
            *commands.entry(command.to_string()).or_default() += 1;
        }
        if let DriverEvent::Engine(event) = event {
            reasons.push(crate::engine::Notable::reason(&event));
            if let EventKind::Lifecycle(Lifecycle::FailoverCompleted { record }) = &event.kind {
                assert_eq!(record.to.as_ref(), Some(&new_primary));
            }
        }
    }
    for expected in [
        "FailoverStarted",
        "Promoted",
        "Routed",
        "FailoverCompleted",
        "SwitchoverStarted",
        "SwitchoverCompleted",
    ] {
        assert!(
            reasons.iter().any(|told| told == expected),
            "missing {expected} in {reasons:?}"
        );
    }
    let routes_to_dead = commands
        .get("route writes to pg-0 (epoch 1)")
        .copied()
        .unwrap_or(0);
    assert!(
        routes_to_dead <= 10,
        "a failing route is retried per probe period, not in a loop ({routes_to_dead})"
    );
}

/// A pod watch that sees the primary's pod deleted starts the failover at once, long before
/// the probe threshold (here set so high that probes alone would take minutes).
#[tokio::test]
async fn pod_deletion_signal_fails_over_without_waiting_for_the_probe_threshold() {
    let (model, servers) = cluster(1).await;
    let ha = PostgresHaConfig {
        probe_period: Duration::from_millis(50),
        failure_threshold: 100_000,
        failover_delay: Duration::ZERO,
        maximum_lag_on_failover: 0,
        replication: ReplicationMode::Synchronous { number: 1 },
        data_durability: crate::postgres::DataDurability::Required,
        switchover_timeout: Duration::from_secs(5),
        fence_timeout: Duration::from_millis(500),
        lease_duration: Duration::from_millis(1500),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let (driver, handle) = driver_for(
        &servers,
        ha,
        HaState::with_primary(NodeId::new("pg-0"), 1),
        dir.path().join("ha.json"),
    )
    .await;
    let run = tokio::spawn(driver.run());
    handle
        .wait_for_state(Duration::from_secs(10), |s| {
            s.phase == Phase::Healthy && s.detail.sync_set.len() == 2
        })
        .await
        .expect("learns the synchronous set");

    model.lock().expect("lock").dead.insert("pg-0".into(), true);
    handle
        .observe_pod(crate::postgres::PodSignal {
            node: NodeId::new("pg-0"),
            at: (system_clock())(),
            ready: false,
            deleted: true,
        })
        .await
        .expect("signal delivered");
    let after = handle
        .wait_for_state(Duration::from_secs(10), |s| {
            s.phase == Phase::Healthy && s.last_failover.is_some()
        })
        .await
        .expect("the pod signal alone triggers the failover");
    let record = after.last_failover.expect("recorded");
    assert_eq!(record.from, NodeId::new("pg-0"));
    assert_ne!(after.current_primary, Some(NodeId::new("pg-0")));

    handle.stop().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), run).await;
    assert!(
        matches!(
            handle
                .observe_pod(crate::postgres::PodSignal {
                    node: NodeId::new("pg-1"),
                    at: (system_clock())(),
                    ready: true,
                    deleted: false,
                })
                .await,
            Err(crate::adapters::driver::DriverError::Stopped)
        ),
        "a stopped driver says so"
    );
}

/// A switchover asked for the moment the driver starts, before the primary confirmed its
/// epoch, waits for that confirmation instead of failing with `PrimaryNotReady`.
#[tokio::test]
async fn a_switchover_asked_for_before_the_primary_confirmed_waits_for_it() {
    let (_model, servers) = cluster(1).await;
    let ha = PostgresHaConfig {
        probe_period: Duration::from_millis(100),
        switchover_timeout: Duration::from_secs(5),
        fence_timeout: Duration::from_millis(500),
        ..PostgresHaConfig::default()
    };
    let dir = tempfile::tempdir().expect("temp dir");
    // The instances hold epoch 1: pg-0 confirms epoch 2 only once the engine's promote of it
    // returned, a round trip after the first probes.
    let (driver, handle) = driver_for(
        &servers,
        ha,
        HaState::with_primary(NodeId::new("pg-0"), 2),
        dir.path().join("ha.json"),
    )
    .await;
    let run = tokio::spawn(driver.run());
    // Asked at once: the engine has not seen pg-0 confirm epoch 2 yet.
    let chosen = handle
        .request_switchover(Some(NodeId::new("pg-1")))
        .await
        .expect("the request waits for the confirmation, then starts");
    assert_eq!(chosen, NodeId::new("pg-1"));
    let done = handle
        .wait_for_state(Duration::from_secs(10), |s| {
            s.phase == Phase::Healthy
                && s.last_failover
                    .as_ref()
                    .is_some_and(|r| r.kind == FailoverKind::Switchover)
        })
        .await
        .expect("the switchover completes");
    assert_eq!(done.current_primary, Some(NodeId::new("pg-1")));
    handle.stop().await;
    let _ = run.await;
}

/// The paused-controller case (ANCHORS 8), against instance managers that apply the token rule:
/// engine A runs on a runtime that is then paused, as SIGSTOP would pause it; engine B starts on
/// the same store, claims the state and fails the primary over; A wakes. A must send nothing,
/// stand down, and leave B's failover the only one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_engine_that_wakes_after_another_took_over_sends_nothing_and_stands_down() {
    let (model, servers) = cluster(1).await;
    let ha = PostgresHaConfig {
        probe_period: Duration::from_millis(50),
        failure_threshold: 3,
        failover_delay: Duration::ZERO,
        maximum_lag_on_failover: 0,
        replication: ReplicationMode::Synchronous { number: 1 },
        data_durability: crate::postgres::DataDurability::Required,
        switchover_timeout: Duration::from_secs(5),
        fence_timeout: Duration::from_millis(500),
        lease_duration: Duration::from_millis(1500),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let store_path = dir.path().join("ha.json");
    let initial = HaState::with_primary(NodeId::new("pg-0"), 1);

    let paused = shanraq_testkit::PausableRuntime::start("engine-a").expect("runtime");
    let (a, a_handle) = engine_for(
        &servers,
        ha.clone(),
        initial.clone(),
        &store_path,
        "engine-a",
    )
    .await;
    let mut a_events = a_handle.subscribe();
    let a_run = paused.handle().spawn(a.run());
    let claimed = a_handle
        .wait_for_state(Duration::from_secs(10), |s| {
            s.phase == Phase::Healthy
                && s.detail.sync_set.len() == 2
                && s.owner.as_deref() == Some("engine-a")
        })
        .await
        .expect("engine-a converges and claims epoch 1");
    assert_eq!(claimed.epoch, 1);
    paused.pause();
    while a_events.try_recv().is_ok() {}
    let obeyed_from_a = |m: &super::fake_instance::Model| {
        m.obeyed
            .iter()
            .filter(|(_, _, _, owner)| owner.as_deref() == Some("engine-a"))
            .count()
    };
    let a_before = obeyed_from_a(&model.lock().expect("lock"));

    let (b, b_handle) = engine_for(&servers, ha, initial, &store_path, "engine-b").await;
    let b_run = tokio::spawn(b.run());
    b_handle
        .wait_for_state(Duration::from_secs(10), |s| {
            s.phase == Phase::Healthy && s.epoch == 2 && s.detail.sync_set.len() == 2
        })
        .await
        .expect("engine-b claims epoch 2 and re-grants it");
    model.lock().expect("lock").dead.insert("pg-0".into(), true);
    let failed_over = b_handle
        .wait_for_state(Duration::from_secs(10), |s| {
            s.phase == Phase::Healthy && s.last_failover.is_some()
        })
        .await
        .expect("engine-b fails over");
    assert_eq!(failed_over.epoch, 3);

    paused.resume();
    let reason = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match a_events.recv().await {
                Ok(DriverEvent::SteppedDown { reason, .. }) => return reason,
                Ok(DriverEvent::CommandStarted { command, .. }) => {
                    panic!("the stale engine sent {command}")
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(error) => panic!("engine-a's events ended: {error}"),
            }
        }
    })
    .await
    .expect("engine-a stands down");
    assert!(reason.contains("engine-b"), "{reason}");
    tokio::time::timeout(Duration::from_secs(5), a_run)
        .await
        .expect("engine-a's loop ends")
        .expect("joined");
    assert_eq!(
        obeyed_from_a(&model.lock().expect("lock")),
        a_before,
        "no command of the stale engine was obeyed"
    );

    // B's failover stays the only one: ten more probe rounds, same epoch and record.
    let served = model.lock().expect("lock").statuses_served;
    tokio::time::timeout(Duration::from_secs(10), async {
        while model.lock().expect("lock").statuses_served < served + 20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("engine-b keeps probing");
    let after = b_handle.state();
    assert_eq!(after.epoch, 3, "no further epoch");
    assert_eq!(after.last_failover, failed_over.last_failover);
    assert_eq!(after.owner.as_deref(), Some("engine-b"));
    b_handle.stop().await;
    let _ = b_run.await;
}
