//! The operator's Redis latency probe on real redis-server processes started from the rendered
//! redis.conf: on the master a `GET` and a `SET` + `WAIT` answer; on a replica the `SET` is
//! refused; and once no replica is left to acknowledge, the `WAIT` makes the write fail
//! rather than count a write no replica holds.

use std::time::Duration;

use shanraq_drill::redis::{LocalRedis, RedisOptions};
use shanraq_operator::engines::probes::plan::RedisProbe;
use shanraq_operator::engines::probes::redis::RedisProber;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_probe_times_what_a_client_sees_and_fails_writes_no_replica_holds() {
    let mut group = LocalRedis::start(&RedisOptions::default(), None)
        .await
        .unwrap_or_else(|error| panic!("the group starts: {error}"));
    let master = group.master_index().expect("a master");
    let members = group.members();
    let probe = |index: usize| RedisProbe {
        host: members[index].host.clone(),
        port: members[index].port,
        cluster: false,
        secret: "unused".to_owned(),
        wait_replicas: Some(1),
    };
    let mut prober = RedisProber::new(probe(master), group.password().to_owned());
    let get = prober.get().await.expect("GET on the master");
    let set = prober.set().await.expect("SET + WAIT 1 on the master");
    println!("GET {get:?}, SET + WAIT 1 {set:?}");
    assert!(get < Duration::from_secs(2) && set < Duration::from_secs(2));

    let replica = (0..members.len())
        .find(|i| *i != master)
        .expect("a replica");
    let mut on_replica = RedisProber::new(probe(replica), group.password().to_owned());
    assert!(on_replica.get().await.is_ok(), "a replica serves reads");
    let refused = on_replica
        .set()
        .await
        .expect_err("a replica refuses writes");
    assert!(refused.to_lowercase().contains("read only"), "{refused}");

    group.stop_driver().await;
    for index in (0..members.len()).filter(|i| *i != master) {
        group.kill(index).expect("replica killed");
    }
    let unheld = prober
        .set()
        .await
        .expect_err("no replica left to acknowledge the write");
    assert!(
        unheld.contains("WAIT: 0 of 1 replicas") || unheld.contains("NOREPLICAS"),
        "{unheld}"
    );
}
