//! The cluster under load (pgbench through HAProxy, two busy-spinning threads, the ledger
//! writer) for 45 s with a planned switchover every 30 s, each asked for once the cluster has
//! converged: the engine makes no unplanned failover, refuses no switchover, every switchover
//! completes and no acknowledged commit is lost. Throughput is printed, never asserted.

mod common;

use std::time::Duration;

use shanraq_drill::load::{self, LoadPlan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loaded_cluster_neither_fails_over_nor_refuses_a_switchover() {
    let plan = LoadPlan {
        seconds: 45,
        switchover_every: Duration::from_secs(30),
    };
    let report = load::run(common::binary(), &plan)
        .await
        .expect("the load run finishes (needs postgresql-15 with pgbench, and haproxy)");
    println!("{}", load::summary(&report));
    assert_eq!(
        report.switchover_refusals, 0,
        "switchovers refused: {:?}",
        report.problems
    );
    assert_eq!(
        report.switchover_failures, 0,
        "switchovers failed: {:?}",
        report.problems
    );
    assert!(report.switchovers >= 1, "{report:?}");
    assert_eq!(
        report.failovers, 0,
        "unplanned failovers under load: {report:?}"
    );
    assert_eq!(report.lost_commits, 0, "{report:?}");
    assert!(report.pgbench_tps > 0.0, "pgbench did not run: {report:?}");
}
