//! What every chaos test needs: a converged local cluster, a writer keeping the ledger of
//! acknowledged commits, and the two checks every scenario ends with (nothing acknowledged was
//! lost; never two primaries at once: neither two members answering `/primary` nor two
//! acknowledging a write of the same write-probe tick).

// Each test binary uses its own subset.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use shanraq_drill::ledger::{self, Ledger, LedgerOptions, LedgerReport};
use shanraq_drill::watch::WatchReport;
use shanraq_drill::{ClusterOptions, LocalCluster};

/// Bound of every wait in the chaos tests.
pub const BOUND: Duration = Duration::from_secs(60);

pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shanraq-drill"))
}

/// A started cluster whose members all stream from pg-0.
pub async fn converged(options: ClusterOptions) -> LocalCluster {
    let cluster = LocalCluster::start(binary(), options)
        .await
        .expect("the local cluster starts (needs postgresql-15 and haproxy)");
    cluster
        .wait_converged(&[0, 1, 2], BOUND)
        .await
        .expect("all three members stream from pg-0");
    cluster
}

/// A writer through HAProxy `rw` that already has 100 acknowledged commits.
pub async fn writing(cluster: &LocalCluster) -> Ledger {
    let writer = Ledger::start(
        cluster.topology().app_rw_options(),
        LedgerOptions::default(),
    )
    .await
    .expect("writer starts");
    writer.wait_for_acks(100, BOUND).await.expect("writes");
    writer
}

/// A second writer holding a connection straight to member `index` (not through HAProxy), with
/// ids of its own, that already has 100 acknowledged commits: an application that keeps
/// writing to the old primary whatever the engine decides.
pub async fn writing_straight_to(cluster: &LocalCluster, index: usize) -> Ledger {
    let direct = Ledger::start(
        cluster.member_app_options(index).expect("member"),
        LedgerOptions {
            id_offset: 1_000_000_000,
            ..LedgerOptions::default()
        },
    )
    .await
    .expect("direct writer starts");
    direct
        .wait_for_acks(100, BOUND)
        .await
        .expect("direct writes");
    direct
}

/// Every commit the writer got an acknowledgement for is on member `index`.
pub async fn assert_nothing_lost(cluster: &LocalCluster, index: usize, report: &LedgerReport) {
    let missing = ledger::missing_on(&cluster.member_app_options(index).expect("member"), report)
        .await
        .expect("read the ledger");
    assert!(
        missing.is_empty(),
        "{} acknowledged commits missing on pg-{index}: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
}

/// No sample saw two instances answer `/primary`, and no write-probe tick saw two instances
/// acknowledge a commit; the probe did see a primary accept writes, so it was working.
pub fn assert_one_primary_at_a_time(seen: &WatchReport) {
    assert!(
        seen.two_primaries.is_empty(),
        "two instances answered /primary at once: {:?}",
        seen.two_primaries
    );
    assert!(
        seen.two_accepting_writes.is_empty(),
        "two instances acknowledged a write of the same tick: {:?}",
        seen.two_accepting_writes
    );
    assert_eq!(seen.max_writable_at_once, 1, "{seen:?}");
    assert!(
        seen.ticks_with_a_writer > 0,
        "the write probe never got a write acknowledged: {seen:?}"
    );
}

/// The wire body of an upstream: member `index` of a local topology.
pub fn upstream(topology: &shanraq_testkit::LocalTopology, index: usize) -> serde_json::Value {
    let member = topology.member(index).expect("member");
    serde_json::json!({ "host": member.host, "port": member.pg_port, "name": member.name })
}

/// POSTs a command to member `index`, which must answer 200 with `ok: true`; shows its log if
/// not.
pub async fn command_ok(
    topology: &shanraq_testkit::LocalTopology,
    index: usize,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let (code, reply) = topology.command(index, path, &body).await.expect("post");
    assert_eq!(
        code,
        200,
        "POST {path} to pg-{index}: {reply}\nlog:\n{}",
        topology.log(index)
    );
    assert_eq!(reply["ok"], true, "{reply}");
    reply
}
