//! A Redis Cluster as a user gets it on a real node: six pods on the project's Redis image in a
//! namespace enforcing the `restricted` Pod Security level, formed by the rendered Job through
//! cluster DNS, all 16384 slots served; keys written through the cluster (`redis-cli -c`,
//! following redirections), then a scale-out to eight nodes that the Job joins and rebalances,
//! and every key read back. The operator is the Helm-installed one of the `stack` test when
//! that runs first in the same lane, or is installed here.

use std::process::Command;

use serde_json::json;
use shanraq_api::cluster::ShanraqCluster;

use super::stack::{ensure_operator, image, restricted_namespace, secret_value, wait_explained};
use super::*;

const CLUSTER: &str = "cache";
const NAMESPACE: &str = "cache";
const KEYS: usize = 200;

fn cluster(instances: u32) -> ShanraqCluster {
    serde_json::from_value(json!({
        "apiVersion": "shanraq.org/v1alpha1",
        "kind": "ShanraqCluster",
        "metadata": {"name": CLUSTER, "namespace": NAMESPACE},
        "spec": {
            "postgres": {"enabled": false, "image": image("postgres")},
            "redis": {"mode": "cluster", "instances": instances, "replicasPerShard": 1,
                      "image": image("redis")},
            "haproxy": {"enabled": false, "image": image("haproxy")},
            "kafka": {"enabled": false, "image": image("kafka")},
        }
    }))
    .expect("a ShanraqCluster")
}

/// `redis-cli -c` against one node: the cluster redirects each key to its master.
fn cli(host: &str, password: &str, args: &[&str]) -> Option<String> {
    let output = Command::new("redis-cli")
        .args([
            "-c",
            "-h",
            host,
            "-p",
            "6379",
            "--no-auth-warning",
            "-a",
            password,
        ])
        .args(args)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The cluster as the status shows it: serving every slot with `masters` masters.
async fn serving(clusters: &Api<ShanraqCluster>, masters: usize) -> Option<()> {
    let cluster = clusters.get(CLUSTER).await.ok()?;
    let redis = cluster.status.as_ref()?.redis.as_ref()?.cluster.as_ref()?;
    (redis.state == "ok" && redis.slots_covered == 16384 && redis.masters.len() == masters)
        .then_some(())
}

#[tokio::test]
#[ignore = "needs a real node: scripts/e2e --node cargo test ... -- --include-ignored (scripts/test runs it)"]
async fn a_redis_cluster_forms_scales_out_and_keeps_every_key() {
    let Some(lane) = lane().await else { return };
    let started = Instant::now();
    ensure_operator(&lane.client).await;
    restricted_namespace(&lane.client, NAMESPACE).await;
    let clusters: Api<ShanraqCluster> = Api::namespaced(lane.client.clone(), NAMESPACE);
    clusters
        .create(&PostParams::default(), &cluster(6))
        .await
        .expect("the ShanraqCluster admitted");
    wait_explained("the Redis Cluster formed, serving every slot", || {
        serving(&clusters, 3)
    })
    .await;
    println!(
        "Redis Cluster of 6 formed in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let password = secret_value(
        &lane.client,
        NAMESPACE,
        &format!("{CLUSTER}-redis-auth"),
        "password",
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(lane.client.clone(), NAMESPACE);
    let entry = pods
        .get(&format!("{CLUSTER}-redis-0"))
        .await
        .expect("a Redis pod")
        .status
        .and_then(|s| s.pod_ip)
        .expect("its IP");
    for key in 0..KEYS {
        let reply = cli(
            &entry,
            &password,
            &["SET", &format!("key:{key}"), &key.to_string()],
        );
        assert_eq!(reply.as_deref(), Some("OK"), "SET key:{key}");
    }

    let scaled = Instant::now();
    let patch = json!({"spec": {"redis": {"instances": 8}}});
    clusters
        .patch(
            CLUSTER,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("scaled out to 8");
    wait_explained("the scale-out joined and rebalanced", || {
        serving(&clusters, 4)
    })
    .await;
    println!("scaled out to 8 in {:.1}s", scaled.elapsed().as_secs_f64());
    for key in 0..KEYS {
        let reply = cli(&entry, &password, &["GET", &format!("key:{key}")]);
        assert_eq!(
            reply.as_deref(),
            Some(key.to_string().as_str()),
            "key:{key} after the scale-out"
        );
    }
    println!(
        "the Redis Cluster test passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
