//! Redis Cluster mode on real redis-server processes started from the rendered cluster-mode
//! redis.conf: formation and scale-out by the rendered Job's own script, scaling out and in as
//! the drill does it, and a killed master under a `SET` + `WAIT 1` writer. Failover is Redis Cluster's own (`cluster-node-timeout` as rendered); the
//! test proves what the operator observes: the state, slots covered, masters and replicas, one
//! failover seen, the killed node back as a replica, and no acknowledged write lost; and the
//! RPO the operator samples from each shard's master (`sample_cluster_rpo`): bounded while every
//! shard has an online replica, unbounded naming the shard that has none. The operator's Redis
//! latency probe reaches the cluster as a cluster client does, before and after the failover.

use std::time::Duration;

use shanraq_drill::redis::cluster_mode::{LocalRedisCluster, SlotWriter, missing_in_cluster};
use shanraq_ha::adapters::driver::system_clock;
use shanraq_ha::adapters::redis::{RedisPassword, sample_cluster_rpo};
use shanraq_ha::objectives::RpoMeasurement;
use shanraq_ha::redis::RedisMember;
use shanraq_ha::redis::cluster::CLUSTER_SLOTS;
use shanraq_operator::engines::probes::plan::RedisProbe;
use shanraq_operator::engines::probes::redis::RedisProber;

const STEP: Duration = Duration::from_secs(60);

/// The operator's probe as a cluster client seeded from `seed`: a `GET` and a `SET` + `WAIT 1`
/// (every master's), each within the probe's bounds.
async fn probe_through(seed: &RedisMember, password: &str) {
    let mut prober = RedisProber::new(
        RedisProbe {
            host: seed.host.clone(),
            port: seed.port,
            cluster: true,
            secret: "unused".to_owned(),
            wait_replicas: Some(1),
        },
        password.to_owned(),
    );
    let get = prober.get().await.expect("GET through a cluster client");
    let set = prober
        .set()
        .await
        .expect("SET + WAIT 1 through a cluster client");
    eprintln!("probe: GET {get:?}, SET + WAIT 1 {set:?}");
}

async fn wait_progress(progress: &tokio::sync::watch::Receiver<usize>, at_least: usize) {
    let deadline = tokio::time::Instant::now() + STEP;
    while *progress.borrow() < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the writer got {} of {at_least} acknowledgements",
            *progress.borrow()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The RPO the operator's cluster observer would publish, sampled until `done` holds.
async fn sampled_rpo(
    cluster: &mut LocalRedisCluster,
    what: &str,
    done: impl Fn(&RpoMeasurement) -> bool,
) -> RpoMeasurement {
    let deadline = tokio::time::Instant::now() + STEP;
    let mut last = None;
    loop {
        if let Some(view) = cluster.view().await {
            let password = RedisPassword::new(cluster.password().to_owned());
            last = sample_cluster_rpo(&view, Some(password), Duration::from_secs(1)).await;
            if let Some(measurement) = last.as_ref().filter(|m| done(m)) {
                return measurement.clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: {what}; last sampled {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn bounded(measurement: &RpoMeasurement) -> bool {
    matches!(measurement, RpoMeasurement::Asynchronous { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_nodes_form_a_cluster_and_a_killed_master_is_replaced_without_losing_a_write() {
    let mut cluster = LocalRedisCluster::start(6)
        .await
        .unwrap_or_else(|error| panic!("the cluster forms: {error}"));
    let view = cluster.view().await.expect("a view");
    assert!(view.covered(), "{}", view.summary());
    assert_eq!(view.slots_ok, CLUSTER_SLOTS);
    assert_eq!(view.masters().len(), 3, "{}", view.summary());
    for master in view.masters() {
        assert_eq!(view.replicas_of(&master.id), 1, "{}", view.summary());
    }
    eprintln!("formed: {}", view.summary());
    probe_through(&cluster.members[0], cluster.password()).await;

    let (progress_tx, progress) = tokio::sync::watch::channel(0_usize);
    let writer = SlotWriter::start(
        cluster.members.clone(),
        cluster.password().to_owned(),
        system_clock(),
        progress_tx,
    );
    wait_progress(&progress, 30).await;
    let formed = sampled_rpo(&mut cluster, "every shard with an online replica", bounded).await;
    match &formed {
        RpoMeasurement::Asynchronous { replica, .. } => {
            assert!(
                replica.contains("replica of Redis Cluster master"),
                "{replica}"
            );
        }
        other => panic!("bounded expected: {other:?}"),
    }
    let victim = cluster.master_of_writes().await.expect("the slot's master");
    let victim_address = format!(
        "{}:{}",
        cluster.members[victim].host, cluster.members[victim].port
    );
    cluster.kill(victim);
    let after = cluster
        .wait_view("Redis Cluster failing over", STEP, |view| {
            view.covered()
                && view.masters().len() == 3
                && view.masters().iter().all(|m| m.address != victim_address)
        })
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(cluster.failovers_seen(), 1, "{}", after.summary());
    eprintln!("after the failover: {}", after.summary());
    // The promoted replica's shard has no replica until the killed node rejoins.
    let alone = sampled_rpo(&mut cluster, "the promoted shard without a replica", |m| {
        matches!(m, RpoMeasurement::NoPromotableReplica { .. })
    })
    .await;
    let RpoMeasurement::NoPromotableReplica { reason } = &alone else {
        panic!("unbounded expected: {alone:?}");
    };
    assert!(
        reason.contains("no online replica in the shard"),
        "{reason}"
    );
    assert!(
        after
            .masters()
            .iter()
            .any(|master| reason.contains(&master.address)),
        "the shard is named: {reason}"
    );
    cluster
        .restart_in_place(victim)
        .await
        .unwrap_or_else(|error| panic!("restart: {error}"));
    let healed = cluster
        .wait_view("the killed node rejoining as a replica", STEP, |view| {
            view.covered()
                && view.masters().len() == 3
                && view
                    .masters()
                    .iter()
                    .all(|master| view.replicas_of(&master.id) == 1)
        })
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    eprintln!("healed: {}", healed.summary());
    sampled_rpo(&mut cluster, "the killed node streaming again", bounded).await;
    probe_through(&cluster.members[victim], cluster.password()).await;
    let acked = *progress.borrow();
    wait_progress(&progress, acked + 30).await;
    let report = writer.stop().await;
    let missing = missing_in_cluster(&cluster.members, cluster.password(), &report.acks)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(report.acks.len() >= 60);
    assert_eq!(
        missing,
        Vec::<u64>::new(),
        "no write acknowledged by WAIT lost"
    );
    assert_eq!(cluster.failovers_seen(), 1, "no further failover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_out_by_a_pair_and_back_in_moves_the_slots_and_loses_no_key() {
    use shanraq_drill::redis::cluster_mode::{cluster_get, cluster_set};
    let mut cluster = LocalRedisCluster::start(6)
        .await
        .unwrap_or_else(|error| panic!("the cluster forms: {error}"));
    let keys: Vec<String> = (0..500).map(|i| format!("scale:{i}")).collect();
    for key in &keys {
        cluster_set(&cluster.members, cluster.password(), key, key)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
    }
    let (master, _replica) = cluster
        .add_pair()
        .await
        .unwrap_or_else(|error| panic!("scale out: {error}"));
    let grown = cluster
        .wait_view("four masters serving", STEP, |view| {
            view.covered()
                && view.masters().len() == 4
                && view.masters().iter().all(|m| view.replicas_of(&m.id) == 1)
        })
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    eprintln!("scaled out: {}", grown.summary());
    for key in &keys {
        let value = cluster_get(&cluster.members, cluster.password(), key)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            value.as_deref(),
            Some(key.as_str()),
            "{key} after scaling out"
        );
    }
    cluster
        .remove_pair(master)
        .await
        .unwrap_or_else(|error| panic!("scale in: {error}"));
    let shrunk = cluster
        .wait_view("three masters serving again", STEP, |view| {
            view.covered() && view.masters().len() == 3 && view.known_nodes == 6
        })
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    eprintln!("scaled in: {}", shrunk.summary());
    let remaining: Vec<_> = cluster.members[..6].to_vec();
    for key in &keys {
        let value = cluster_get(&remaining, cluster.password(), key)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            value.as_deref(),
            Some(key.as_str()),
            "{key} after scaling in"
        );
    }
    assert_eq!(cluster.failovers_seen(), 0, "scaling is not a failover");
}

/// The rendered cluster Job's own script (only pod names and the password's directory
/// substituted), run as Kubernetes would run it: it forms six fresh nodes, does nothing when
/// run again, and after a scale-out to eight joins the two new nodes as a master and its
/// replica and moves slots onto the new master, keys and all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_cluster_job_forms_the_cluster_and_joins_a_scale_out_without_losing_a_key() {
    use shanraq_drill::redis::cluster_mode::{cluster_get, cluster_set};
    let mut cluster = LocalRedisCluster::start_unformed(6)
        .await
        .unwrap_or_else(|error| panic!("six nodes start: {error}"));
    let printed = cluster
        .run_cluster_job()
        .unwrap_or_else(|error| panic!("the Job forms the cluster: {error}"));
    eprintln!("{printed}");
    let formed = cluster
        .wait_view("three masters with a replica each", STEP, |view| {
            view.covered()
                && view.masters().len() == 3
                && view.masters().iter().all(|m| view.replicas_of(&m.id) == 1)
        })
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    eprintln!("formed: {}", formed.summary());
    let again = cluster
        .run_cluster_job()
        .unwrap_or_else(|error| panic!("a rerun succeeds: {error}"));
    assert!(
        again.contains("nothing to do"),
        "a rerun changes nothing: {again}"
    );

    let keys: Vec<String> = (0..500).map(|i| format!("job:{i}")).collect();
    for key in &keys {
        cluster_set(&cluster.members, cluster.password(), key, key)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
    }
    cluster
        .add_unformed(2)
        .await
        .unwrap_or_else(|error| panic!("two more nodes start: {error}"));
    let printed = cluster
        .run_cluster_job()
        .unwrap_or_else(|error| panic!("the Job joins the new nodes: {error}"));
    eprintln!("{printed}");
    assert!(printed.contains("as a master"), "{printed}");
    assert!(printed.contains("as a replica of"), "{printed}");
    let grown = cluster
        .wait_view("four masters serving, each with a replica", STEP, |view| {
            view.covered()
                && view.known_nodes == 8
                && view.masters().len() == 4
                && view.masters().iter().all(|m| view.replicas_of(&m.id) == 1)
        })
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    eprintln!("scaled out: {}", grown.summary());
    for key in &keys {
        let value = cluster_get(&cluster.members, cluster.password(), key)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            value.as_deref(),
            Some(key.as_str()),
            "{key} after the scale-out"
        );
    }
    assert_eq!(
        cluster.failovers_seen(),
        0,
        "joining nodes is not a failover"
    );
}
