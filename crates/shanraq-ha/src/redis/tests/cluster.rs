//! `CLUSTER INFO`/`CLUSTER NODES` as redis-server 7.0 prints them, and the failover tracker.

use crate::redis::cluster::{FailoverTracker, parse_cluster};

const INFO: &str = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n\
cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:6\r\ncluster_size:3\r\n\
cluster_current_epoch:6\r\ncluster_my_epoch:1\r\n";

const NODES: &str = "\
a1 127.0.0.1:21001@31001 myself,master - 0 0 1 connected 0-5460\n\
a2 127.0.0.1:21002@31002 master - 0 1 2 connected 5461-10922\n\
a3 127.0.0.1:21003@31003 master - 0 1 3 connected 10923-16383\n\
b1 127.0.0.1:21004@31004 slave a1 0 1 1 connected\n\
b2 127.0.0.1:21005@31005 slave a2 0 1 2 connected\n\
b3 127.0.0.1:21006@31006 slave a3 0 1 3 connected\n";

#[test]
fn a_formed_cluster_reports_its_slots_masters_and_replicas() {
    let view = parse_cluster(INFO, NODES).expect("parses");
    assert!(view.covered());
    assert_eq!(view.masters().len(), 3);
    assert_eq!(view.masters()[0].slots, 5461);
    assert_eq!(view.replicas_of("a2"), 1);
    assert_eq!(
        view.summary(),
        "cluster_state ok, 16384 of 16384 slots covered, masters: 127.0.0.1:21001 (5461 slots, 1 replicas), \
         127.0.0.1:21002 (5462 slots, 1 replicas), 127.0.0.1:21003 (5461 slots, 1 replicas)"
    );
}

#[test]
fn a_replica_taking_over_a_failed_master_counts_as_one_failover() {
    let mut tracker = FailoverTracker::default();
    let view = parse_cluster(INFO, NODES).expect("parses");
    assert!(tracker.observe(&view).is_empty());
    let after = NODES
        .replace(
            "a2 127.0.0.1:21002@31002 master - 0 1 2 connected 5461-10922",
            "a2 127.0.0.1:21002@31002 master,fail - 0 1 2 connected",
        )
        .replace(
            "b2 127.0.0.1:21005@31005 slave a2 0 1 2 connected",
            "b2 127.0.0.1:21005@31005 master - 0 1 7 connected 5461-10922",
        );
    let view = parse_cluster(&INFO.replace("epoch:6", "epoch:7"), &after).expect("parses");
    assert_eq!(tracker.observe(&view), vec!["127.0.0.1:21005".to_owned()]);
    assert_eq!(tracker.observe(&view), Vec::<String>::new(), "counted once");
    assert_eq!(tracker.failovers_seen, 1);
    assert_eq!(
        view.masters().len(),
        3,
        "the failed master no longer counts"
    );
}

#[test]
fn slots_in_migration_are_not_counted_as_served() {
    let nodes = "a1 127.0.0.1:21001@31001 myself,master - 0 0 1 connected 0-99 [100->-b1]\n";
    let info = INFO.replace("cluster_state:ok", "cluster_state:fail");
    let view = parse_cluster(&info, nodes).expect("parses");
    assert_eq!(view.nodes[0].slots, 100);
    assert!(!view.covered());
}

#[test]
fn an_empty_master_receiving_slots_is_not_a_failover() {
    let mut tracker = FailoverTracker::default();
    let before = format!("{NODES}c1 127.0.0.1:21007@31007 master - 0 1 8 connected\n");
    tracker.observe(&parse_cluster(INFO, &before).expect("parses"));
    let after = format!("{NODES}c1 127.0.0.1:21007@31007 master - 0 1 8 connected 0-100\n");
    assert!(
        tracker
            .observe(&parse_cluster(INFO, &after).expect("parses"))
            .is_empty()
    );
    assert_eq!(tracker.failovers_seen, 0);
}

/// `INFO replication` of a cluster-mode master as redis-server 7.0 prints it, with one replica.
fn master_info(replica_port: u16, state: &str, replica_offset: u64, lag: u64) -> String {
    format!(
        "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n\
         slave0:ip=127.0.0.1,port={replica_port},state={state},offset={replica_offset},lag={lag}\r\n\
         master_failover_state:no-failover\r\nmaster_replid:9f0c1e4b43e2a8e2f2c3c0a15c0b1d4a1c4e5f60\r\n\
         master_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:5000\r\n\
         second_repl_offset:-1\r\nrepl_backlog_active:1\r\n"
    )
}

fn answers(texts: &[(&str, String)]) -> crate::redis::cluster::MasterAnswers {
    texts
        .iter()
        .map(|(address, text)| {
            (
                (*address).to_owned(),
                crate::redis::parse_replication_info(text).map_err(|e| e.to_string()),
            )
        })
        .collect()
}

#[test]
fn the_worst_shard_decides_the_redis_cluster_rpo() {
    use crate::objectives::RpoMeasurement;
    use crate::redis::cluster::rpo;
    let view = parse_cluster(INFO, NODES).expect("parses");
    let healthy = answers(&[
        ("127.0.0.1:21001", master_info(21004, "online", 5000, 0)),
        ("127.0.0.1:21002", master_info(21005, "online", 4200, 1)),
        ("127.0.0.1:21003", master_info(21006, "online", 4990, 0)),
    ]);
    assert_eq!(
        rpo(&view, &healthy),
        Some(RpoMeasurement::Asynchronous {
            replica: "redis 127.0.0.1:21005 (replica of Redis Cluster master 127.0.0.1:21002)"
                .to_owned(),
            lag_bytes: 800,
            lag: std::time::Duration::from_secs(1),
        }),
        "the shard whose replica lags the most"
    );
    // A replica still syncing is not promotable: its shard has no online replica.
    let mut syncing = healthy.clone();
    syncing.insert(
        "127.0.0.1:21003".to_owned(),
        crate::redis::parse_replication_info(&master_info(21006, "wait_bgsave", 0, 0))
            .map_err(|e| e.to_string()),
    );
    match rpo(&view, &syncing) {
        Some(RpoMeasurement::NoPromotableReplica { reason }) => assert!(
            reason
                .contains("no online replica in the shard of Redis Cluster master 127.0.0.1:21003"),
            "{reason}"
        ),
        other => panic!("unbounded expected: {other:?}"),
    }
    // A master that did not answer is not vouched for.
    let mut silent = healthy.clone();
    silent.insert("127.0.0.1:21001".to_owned(), Err("timed out".to_owned()));
    match rpo(&view, &silent) {
        Some(RpoMeasurement::NoPromotableReplica { reason }) => {
            assert!(
                reason.contains("127.0.0.1:21001") && reason.contains("timed out"),
                "{reason}"
            );
        }
        other => panic!("unbounded expected: {other:?}"),
    }
    // Not formed: nothing to say.
    let empty = parse_cluster(
        &INFO.replace("cluster_state:ok", "cluster_state:fail"),
        "a1 127.0.0.1:21001@31001 myself,master - 0 0 0 connected\n",
    )
    .expect("parses");
    assert_eq!(rpo(&empty, &healthy), None);
}
