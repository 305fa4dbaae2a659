//! A three-instance topology with every instance manager, HAProxy and the test in network
//! namespaces of their own: it forms over the lab's bridge, writes through HAProxy's rw land
//! on pg-0, and a real partition between pg-0 and pg-1 stops pg-1's replication until the
//! network heals. (In this crate because the testkit cannot see the shanraq binary.)

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use shanraq_testkit::{LocalTopology, NetLab, Network, TopologyOptions};
use sqlx::Connection;

const BOUND: Duration = Duration::from_secs(60);

#[test]
fn a_topology_in_namespaces_replicates_and_a_cut_stops_streaming_until_heal() {
    let lab = Arc::new(
        LocalTopology::create_lab(3).expect("lab (needs root, iproute2, nftables, iptables)"),
    );
    let client = lab.runtime("client").expect("client runtime");
    let scenario = client.spawn(scenario(Arc::clone(&lab)));
    if let Err(error) = client.block_on(scenario) {
        if error.is_panic() {
            std::panic::resume_unwind(error.into_panic());
        }
        panic!("scenario task: {error}");
    }
}

/// Waits until `/status` of member `index` reports `streaming` == `expected`.
async fn wait_streaming(topology: &LocalTopology, index: usize, expected: bool) -> Duration {
    let started = Instant::now();
    loop {
        let status = topology.status(index).await.expect("status");
        if status["streaming"] == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < BOUND,
            "pg-{index} never reported streaming={expected} within {BOUND:?}: {status}\n{}",
            topology.log(index)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn scenario(lab: Arc<NetLab>) {
    let started = Instant::now();
    let topology = LocalTopology::start_in(
        Arc::clone(&lab),
        common::binary(),
        TopologyOptions {
            network: Network::Namespaces,
            ..TopologyOptions::default()
        },
    )
    .await
    .expect("topology starts in namespaces");
    println!(
        "measured: 3-instance topology in namespaces formed in {} ms",
        started.elapsed().as_millis()
    );
    let pg0 = lab.addr("pg-0").expect("pg-0").to_string();
    assert_eq!(topology.member(0).expect("member").host, pg0);
    assert_eq!(
        topology.rw_addr().ip().to_string(),
        lab.addr("proxy").expect("proxy").to_string()
    );

    let mut rw = sqlx::PgConnection::connect_with(&topology.rw_options())
        .await
        .expect("connect through HAProxy rw");
    let server: String = sqlx::query_scalar("SELECT host(inet_server_addr())")
        .fetch_one(&mut rw)
        .await
        .expect("server address");
    assert_eq!(server, pg0, "rw lands on pg-0");
    sqlx::query("CREATE TABLE netns_probe (id int PRIMARY KEY)")
        .execute(&mut rw)
        .await
        .expect("create");
    sqlx::query("INSERT INTO netns_probe VALUES (1)")
        .execute(&mut rw)
        .await
        .expect("a synchronous write commits");
    let _ = rw.close().await;
    let mut direct = sqlx::PgConnection::connect_with(&topology.member_options(0).expect("pg-0"))
        .await
        .expect("connect to pg-0 directly");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM netns_probe")
        .fetch_one(&mut direct)
        .await
        .expect("count");
    assert_eq!(rows, 1, "the write is on pg-0");
    let _ = direct.close().await;
    assert_eq!(topology.rw_backend().await.expect("rw backend"), Some(0));
    wait_streaming(&topology, 1, true).await;

    lab.cut("pg-0", "pg-1").expect("cut pg-0 from pg-1");
    let stopped = wait_streaming(&topology, 1, false).await;
    println!(
        "measured: pg-1 stopped streaming {} ms after the cut",
        stopped.as_millis()
    );
    let other = topology.status(2).await.expect("status 2");
    assert_eq!(other["streaming"], true, "pg-2 is not cut off: {other}");

    lab.heal().expect("heal");
    let resumed = wait_streaming(&topology, 1, true).await;
    println!(
        "measured: pg-1 streams again {} ms after heal",
        resumed.as_millis()
    );
    drop(topology);
}
