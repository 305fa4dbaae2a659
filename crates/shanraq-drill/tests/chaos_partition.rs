//! Real network partitions: every PostgreSQL instance, HAProxy, the HA engine and the clients
//! each live in a network namespace of their own, joined by veth pairs to a bridge, with
//! addresses only inside the lab (`shanraq_testkit::NetLab`). Each scenario runs under writes
//! through HAProxy and from a writer holding a connection straight to the primary, with a
//! write probe committing straight to every member every 50 ms, and asserts three things:
//! no acknowledged commit is lost, never two members acknowledge a write of the same tick,
//! and after the heal every member (standbys that streamed past the fork included) streams
//! from the primary again.

mod common;
use common::BOUND;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shanraq_drill::ledger::{Ledger, LedgerReport};
use shanraq_drill::watch::PrimaryWatch;
use shanraq_drill::{ClusterOptions, LabPlacement, LocalCluster};
use shanraq_ha::adapters::driver::DriverEvent;
use shanraq_ha::events::Lifecycle;
use shanraq_ha::postgres::EventKind;
use shanraq_testkit::topology::{CLIENT_NODE, ENGINE_NODE};
use shanraq_testkit::{LocalTopology, NetLab};

/// One scenario at a time: each runs seven namespaces and three PostgreSQL instances.
static SERIAL: Mutex<()> = Mutex::new(());

/// The lab, and the runtimes of the clients and of the engine.
struct Lab {
    net: Arc<NetLab>,
    client: tokio::runtime::Runtime,
    engine: tokio::runtime::Runtime,
}

impl Lab {
    fn new() -> Lab {
        let net = Arc::new(LocalTopology::create_lab(3).expect("the lab is created (needs root)"));
        let client = net.runtime(CLIENT_NODE).expect("client runtime");
        let engine = net.runtime(ENGINE_NODE).expect("engine runtime");
        Lab {
            net,
            client,
            engine,
        }
    }

    /// Runs the test body on the client runtime's threads (so its sockets are in the client
    /// namespace), re-raising its panic here.
    fn run<F>(&self, body: impl FnOnce(Arc<NetLab>, LabPlacement) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let placement = LabPlacement {
            lab: Arc::clone(&self.net),
            engine: self.engine.handle().clone(),
        };
        let task = self.client.spawn(body(Arc::clone(&self.net), placement));
        if let Err(error) = self.client.block_on(task) {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}

/// The writers and the watch every scenario runs.
struct Load {
    watch: PrimaryWatch,
    through_haproxy: Ledger,
    direct: Ledger,
}

impl Load {
    async fn start(cluster: &LocalCluster) -> Load {
        let watch = cluster
            .watch(Duration::from_millis(50), Duration::from_secs(300))
            .await
            .expect("watch starts");
        let through_haproxy = common::writing(cluster).await;
        let direct = common::writing_straight_to(cluster, 0).await;
        Load {
            watch,
            through_haproxy,
            direct,
        }
    }

    /// Stops everything and asserts the scenario's three properties against `primary`.
    async fn finish(self, cluster: &LocalCluster) -> (LedgerReport, LedgerReport) {
        cluster
            .wait_converged(&[0, 1, 2], BOUND)
            .await
            .expect("after the heal every member streams from the primary");
        let primary = cluster.primary_index().expect("a primary");
        let through_haproxy = self.through_haproxy.stop().await;
        let direct = self.direct.stop().await;
        common::assert_nothing_lost(cluster, primary, &through_haproxy).await;
        common::assert_nothing_lost(cluster, primary, &direct).await;
        let seen = self.watch.stop().await;
        common::assert_one_primary_at_a_time(&seen);
        println!(
            "acknowledged: {} through HAProxy, {} straight to pg-0; watch max writable at once: {}",
            through_haproxy.acks.len(),
            direct.acks.len(),
            seen.max_writable_at_once
        );
        (through_haproxy, direct)
    }
}

fn failovers_started(cluster: &LocalCluster, mark: usize) -> usize {
    cluster
        .events_since(mark)
        .iter()
        .filter(|event| {
            matches!(event, DriverEvent::Engine(e) if matches!(e.kind, EventKind::Lifecycle(Lifecycle::FailoverStarted { .. })))
        })
        .count()
}

/// What the engine decided since `mark`, one line each, for a failure's message.
fn timeline(cluster: &LocalCluster, mark: usize) -> String {
    cluster
        .events_since(mark)
        .iter()
        .filter_map(|event| match event {
            DriverEvent::Engine(e) => Some(format!(
                "  {} {}",
                e.at,
                shanraq_ha::engine::Notable::message(e)
            )),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn started(placement: LabPlacement) -> LocalCluster {
    let cluster =
        LocalCluster::start_in_lab(common::binary(), ClusterOptions::synchronous(3), placement)
            .await
            .expect("the cluster starts in the lab");
    cluster
        .wait_converged(&[0, 1, 2], BOUND)
        .await
        .expect("all three members stream from pg-0");
    cluster
}

/// Cuts, waits for the failover away from pg-0, heals, checks.
async fn fails_over_under(cluster: LocalCluster, net: Arc<NetLab>, fault: &str) {
    let load = Load::start(&cluster).await;
    let epoch = cluster.state().expect("state").epoch;
    let mark = cluster.event_mark();
    match fault {
        "engine-partition" => net.cut(ENGINE_NODE, "pg-0").expect("cut"),
        "primary-isolated" => net.isolate("pg-0").expect("isolate"),
        other => panic!("unknown fault {other}"),
    }
    let (_, record) = cluster
        .wait_for_completion(epoch, BOUND)
        .await
        .expect("the engine fails over away from the primary it cannot see");
    println!(
        "measured: {fault}: failover {} -> {} RTO {} ms",
        record.from,
        record.to.as_ref().map_or("?", |to| to.as_str()),
        record.rto_ms.unwrap_or_default()
    );
    assert_eq!(record.from.as_str(), "pg-0");
    // The old primary is still alive behind the fault: give its clients time to try.
    let before = load.direct.report().acks.len();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = load.direct.report().acks.len() - before;
    println!("direct commits acknowledged by the old primary after the failover: {during}");
    // Without the engine's lease and without its replicas, the old primary stops postgres.
    let deadline = Instant::now() + BOUND;
    while !cluster.topology().log(0).contains("fenced itself") {
        assert!(
            Instant::now() < deadline,
            "the old primary never fenced itself:\n{}",
            cluster.topology().log(0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    net.heal().expect("heal");
    load.finish(&cluster).await;
    assert_eq!(failovers_started(&cluster, mark), 1, "exactly one failover");
}

#[test]
fn engine_cut_from_the_primary_fails_over_without_loss_while_clients_still_reach_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    Lab::new().run(|net, placement| async move {
        let cluster = started(placement).await;
        fails_over_under(cluster, net, "engine-partition").await;
    });
}

#[test]
fn an_isolated_primary_fails_over_without_loss_and_rejoins() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    Lab::new().run(|net, placement| async move {
        let cluster = started(placement).await;
        fails_over_under(cluster, net, "primary-isolated").await;
    });
}

#[test]
fn a_primary_cut_from_its_replicas_acknowledges_nothing_and_nobody_fails_over() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    Lab::new().run(|net, placement| async move {
        let cluster = started(placement).await;
        let load = Load::start(&cluster).await;
        let mark = cluster.event_mark();
        net.cut("pg-0", "pg-1").expect("cut");
        net.cut("pg-0", "pg-2").expect("cut");
        // Held for a while: the engine still sees a running primary, so it must not fail over,
        // and the primary, without its quorum, must acknowledge nothing.
        let acked = load.through_haproxy.report().acks.len() + load.direct.report().acks.len();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let during = load.through_haproxy.report().acks.len() + load.direct.report().acks.len();
        println!("commits acknowledged during the cut: {}", during - acked);
        net.heal().expect("heal");
        load.finish(&cluster).await;
        assert_eq!(
            failovers_started(&cluster, mark),
            0,
            "no failover, no flapping"
        );
    });
}

#[test]
fn a_lossy_slow_primary_link_fails_over_at_most_once_and_never_flaps() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    Lab::new().run(|net, placement| async move {
        let cluster = started(placement).await;
        let load = Load::start(&cluster).await;
        let mark = cluster.event_mark();
        net.degrade("pg-0", 30, Duration::from_millis(200))
            .expect("degrade");
        let until = Instant::now() + Duration::from_secs(120);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(250)).await;
            assert!(
                failovers_started(&cluster, mark) <= 1,
                "a second failover under the lossy link: flapping; the engine's timeline:\n{}",
                timeline(&cluster, mark)
            );
        }
        net.heal().expect("heal");
        load.finish(&cluster).await;
        let failovers = failovers_started(&cluster, mark);
        println!("failovers under 30 % loss and 200 ms delay for 2 minutes: {failovers}");
        assert!(failovers <= 1, "flapping: {failovers} failovers");
    });
}
