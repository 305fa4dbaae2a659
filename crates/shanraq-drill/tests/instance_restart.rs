//! What happens when an instance comes back by itself: a former primary's data dir never
//! starts writable on its own (it waits, fenced, for the operator), while postgres dying under
//! a running manager is restarted by it.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use shanraq_testkit::{LocalTopology, TopologyOptions};
use sqlx::{Connection, PgConnection};

const BOUND: Duration = Duration::from_secs(60);

async fn wait_status(topology: &LocalTopology, index: usize, role: &str) -> serde_json::Value {
    let deadline = Instant::now() + BOUND;
    loop {
        if let Ok(status) = topology.status(index).await
            && status["role"] == role
        {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "pg-{index} never reported role {role}; log:\n{}",
            topology.log(index)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_restarted_primary_waits_fenced_until_the_operator_promotes_it() {
    let mut topology = LocalTopology::start(common::binary(), TopologyOptions::asynchronous(1))
        .await
        .expect("topology starts");
    for crash in [false, true] {
        if crash {
            topology.kill(0).expect("kill");
        } else {
            topology.shutdown(0).await.expect("clean shutdown");
        }
        topology.restart(0).expect("restart");
        let status = wait_status(&topology, 0, "fenced").await;
        assert_eq!(status["running"], false, "{status}");
        let message = status["message"].as_str().unwrap_or_default();
        assert!(message.contains("waiting for the operator"), "{status}");
        // It stays that way: no self-promotion.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(topology.get(0, "/primary").await.expect("get"), 503);
        assert_eq!(topology.status(0).await.expect("status")["role"], "fenced");
        assert!(
            PgConnection::connect_with(&topology.member_options(0).expect("member"))
                .await
                .is_err()
        );
    }
    // The operator's promote starts it as primary at the new epoch.
    let (code, reply) = topology
        .command(0, "/promote", &json!({ "epoch": 2 }))
        .await
        .expect("post");
    assert_eq!(code, 200, "{reply}");
    assert_eq!(reply["status"]["role"], "primary", "{reply}");
    assert_eq!(reply["epoch"], 2, "{reply}");
    assert_eq!(topology.get(0, "/primary").await.expect("get"), 200);
    topology
        .wait_routed(0, Instant::now() + BOUND)
        .await
        .expect("routed again");
    let mut rw = PgConnection::connect_with(&topology.rw_options())
        .await
        .expect("connect");
    sqlx::query("CREATE TABLE after_restart (id int)")
        .execute(&mut rw)
        .await
        .expect("writable");
}

#[tokio::test]
async fn postgres_dying_under_its_manager_is_restarted() {
    let topology = LocalTopology::start(common::binary(), TopologyOptions::asynchronous(2))
        .await
        .expect("topology starts");
    let data_dir = topology.member(1).expect("member").data_dir.clone();
    let pid_text =
        std::fs::read_to_string(data_dir.join("postmaster.pid")).expect("postmaster.pid");
    assert!(
        topology.kill_postgres(1).expect("member"),
        "postgres of pg-1 runs"
    );
    // A new postmaster, started by the manager, serves as a replica again.
    let deadline = Instant::now() + BOUND;
    loop {
        let current = std::fs::read_to_string(data_dir.join("postmaster.pid")).unwrap_or_default();
        if current
            .lines()
            .next()
            .is_some_and(|pid| Some(pid) != pid_text.lines().next())
            && topology.get(1, "/replica").await.ok() == Some(200)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the manager never restarted postgres; log:\n{}",
            topology.log(1)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(topology.log(1).contains("postgres exited unexpectedly"));
    let status = wait_status(&topology, 1, "replica").await;
    assert_eq!(status["epoch"], 1, "{status}");
    let new_pid = std::fs::read_to_string(data_dir.join("postmaster.pid")).expect("postmaster.pid");
    assert_ne!(
        new_pid.lines().next(),
        pid_text.lines().next(),
        "a new postmaster runs"
    );
}
