//! Starting the nodes from the rendered cluster-mode redis.conf: formed at once the way
//! `redis-cli --cluster create` does it, or left unformed (each on its own loopback address
//! and the rendered port, as pods) for the rendered cluster Job to form.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use shanraq_api::redis::RedisMode;
use shanraq_ha::redis::RedisMember;
use shanraq_ha::redis::cluster::FailoverTracker;
use shanraq_testkit::{RedisServer, free_port};

use super::LocalRedisCluster;
use crate::redis::cluster::{RedisOptions, drill_cluster};
use crate::redis::error::RedisDrillError;

impl LocalRedisCluster {
    /// Starts `instances` nodes from the rendered cluster-mode config and forms the cluster.
    pub async fn start(instances: usize) -> Result<LocalRedisCluster, RedisDrillError> {
        let cluster = cluster_mode_spec(instances)?;
        let password = shanraq_testkit::secrets::random_secret(32);
        let config = node_config(&cluster, &password);
        let mut servers = Vec::new();
        let mut members = Vec::new();
        for index in 0..instances {
            // The cluster bus listens on port + 10000: keep both below the ephemeral range.
            let port = loop {
                let port = free_port()?;
                if port <= 22_700 {
                    break port;
                }
            };
            let server = RedisServer::start_at(&config, Ipv4Addr::LOCALHOST, port, None).await?;
            members.push(RedisMember::new(
                format!("redis-{index}"),
                "127.0.0.1",
                port,
            ));
            servers.push(server);
        }
        let addresses: Vec<String> = members
            .iter()
            .map(|m| format!("{}:{}", m.host, m.port))
            .collect();
        let replicas = cluster.spec.redis.replicas_per_shard.to_string();
        let output = Command::new("redis-cli")
            .env("REDISCLI_AUTH", &password)
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas, "--cluster-yes"])
            .output()
            .map_err(|error| RedisDrillError::Tool {
                command: "redis-cli".to_owned(),
                output: error.to_string(),
            })?;
        if !output.status.success() {
            return Err(RedisDrillError::Tool {
                command: "redis-cli --cluster create".to_owned(),
                output: String::from_utf8_lossy(&output.stdout).into_owned(),
            });
        }
        let per_shard = usize::try_from(cluster.spec.redis.replicas_per_shard.max(0)).unwrap_or(1);
        let mut group = LocalRedisCluster {
            servers,
            members,
            password,
            tracker: FailoverTracker::default(),
        };
        group
            .wait_view(
                "the Redis Cluster forming",
                Duration::from_secs(60),
                // Replicas show as masters until their CLUSTER REPLICATE has spread.
                |view| {
                    view.covered()
                        && view.masters().len() * (per_shard + 1) == instances
                        && view
                            .masters()
                            .iter()
                            .all(|master| view.replicas_of(&master.id) == per_shard)
                },
            )
            .await?;
        Ok(group)
    }

    /// Starts `instances` nodes from the rendered cluster-mode config, each on its own loopback
    /// address and the rendered port, and leaves them unformed: the rendered cluster Job's
    /// script ([`LocalRedisCluster::run_cluster_job`]) forms them.
    pub async fn start_unformed(instances: usize) -> Result<LocalRedisCluster, RedisDrillError> {
        let mut group = LocalRedisCluster {
            servers: Vec::new(),
            members: Vec::new(),
            password: shanraq_testkit::secrets::random_secret(32),
            tracker: FailoverTracker::default(),
        };
        group.add_unformed(instances).await?;
        Ok(group)
    }

    /// Starts `count` more unformed nodes, as a scale-out's new pods.
    pub async fn add_unformed(&mut self, count: usize) -> Result<(), RedisDrillError> {
        let cluster = cluster_mode_spec(self.members.len() + count)?;
        let config = node_config(&cluster, &self.password);
        let port = u16::try_from(shanraq_render::redis::PORT).unwrap_or(6379);
        for _ in 0..count {
            let index = self.members.len();
            let last = u8::try_from(index + 1).map_err(|_| RedisDrillError::UnknownNode {
                index,
                len: self.members.len(),
            })?;
            let ip = Ipv4Addr::new(SCRIPT_NET[0], SCRIPT_NET[1], SCRIPT_NET[2], last);
            // Outgoing connections from a loopback address start at 127.0.0.1 unless told
            // otherwise, and Redis Cluster records a peer at the address its connection came
            // from; a pod's connections leave from the pod's own IP.
            let config = format!("{config}bind-source-addr {ip}\n");
            let server = RedisServer::start_at(&config, ip, port, None).await?;
            self.members.push(RedisMember::new(
                format!("redis-{index}"),
                ip.to_string(),
                port,
            ));
            self.servers.push(server);
        }
        Ok(())
    }
}

/// The nodes the rendered cluster Job's script forms listen on the rendered port, each on its
/// own loopback address (as pods have their own IPs): 127.0.77.1, 127.0.77.2, ...
const SCRIPT_NET: [u8; 3] = [127, 0, 77];

/// The cluster-mode ValidCluster of `instances` nodes the drill renders from.
pub(super) fn cluster_mode_spec(
    instances: usize,
) -> Result<shanraq_api::ValidCluster, RedisDrillError> {
    let mut cluster = drill_cluster(&RedisOptions {
        instances,
        ..RedisOptions::default()
    })?;
    cluster.spec.redis.mode = RedisMode::Cluster;
    cluster.spec.redis.persistence = shanraq_api::redis::RedisPersistence::None;
    Ok(cluster)
}

/// The rendered cluster-mode redis.conf of `cluster` with the drill's password.
fn node_config(cluster: &shanraq_api::ValidCluster, password: &str) -> String {
    let rendered = shanraq_render::redis::redis_conf(cluster).replace(
        "\ndir /data\n",
        &format!("\ndir {}\n", std::env::temp_dir().display()),
    );
    format!("{rendered}requirepass \"{password}\"\nmasterauth \"{password}\"\n")
}
