//! An ISR-safe rolling restart of a real KRaft cluster (3 controllers, 3 brokers from the
//! rendered configuration) under an `acks=all` idempotent producer: the roll planner restarts
//! every node once, one at a time, as the admin API's ISR view and the controllers' raft
//! metrics allow, the active controller last. No acknowledged message is lost, no sample sees
//! a partition under `min.insync.replicas`, and the figures are printed.

use std::time::Duration;

use shanraq_drill::kafka::bench::seeded_cluster;
use shanraq_drill::kafka::roll::{RollOptions, roll_under_load};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_restarts_one_at_a_time_without_losing_an_acknowledged_message() {
    let mut kafka = seeded_cluster()
        .await
        .unwrap_or_else(|error| panic!("the cluster and its topics: {error}"));
    let report = roll_under_load(
        &mut kafka,
        &RollOptions {
            topic: "payments".to_owned(),
            max_messages: 2_000_000,
            timeout: Duration::from_secs(900),
        },
    )
    .await
    .unwrap_or_else(|error| panic!("the roll: {error}"));
    println!(
        "kafka roll: {}",
        serde_json::to_string(&report).expect("json")
    );
    assert_eq!(report.messages_lost, 0, "{report:?}");
    assert!(report.messages_acknowledged > 0, "{report:?}");
    assert_eq!(report.samples_under_min_isr, 0, "{report:?}");
    assert!(report.samples > 0, "{report:?}");
    assert_eq!(report.restarts.len(), 6, "{report:?}");
    assert!(
        report.active_controller_last,
        "the active controller goes last: {report:?}"
    );
    // Restarted brokers are all back in every ISR.
    let info = kafka.admin().describe().await.expect("describe");
    for (name, topic) in &info.topics {
        assert_eq!(topic.under_replicated(), 0, "{name} after the roll");
    }
}
