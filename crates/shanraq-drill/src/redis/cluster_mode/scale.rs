//! Scaling out and in with `redis-cli --cluster` (add-node, rebalance, del-node), each step
//! after the nodes agree on the slots' configuration, as those commands insist.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use shanraq_ha::redis::RedisMember;
use shanraq_testkit::{RedisServer, free_port};

use super::{LocalRedisCluster, POLL, WRITE_TIMEOUT, address};
use crate::redis::error::RedisDrillError;
use crate::redis::writer::connect;

/// `redis-cli --cluster ...` with the password in the environment (never on the command line).
fn redis_cli_cluster(password: &str, args: &[String]) -> Result<String, RedisDrillError> {
    let output = Command::new("redis-cli")
        .env("REDISCLI_AUTH", password)
        .arg("--cluster")
        .args(args)
        .output()
        .map_err(|error| RedisDrillError::Tool {
            command: "redis-cli".to_owned(),
            output: error.to_string(),
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(RedisDrillError::Tool {
            command: format!(
                "redis-cli --cluster {}",
                args.first().map_or("", String::as_str)
            ),
            output: format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
        });
    }
    Ok(stdout)
}

/// Waits (bounded) until `redis-cli --cluster check` passes: every node agrees on the slots'
/// configuration, which `add-node`, `rebalance` and `del-node` insist on.
async fn wait_agreement(password: &str, entry: &str) -> Result<(), RedisDrillError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match redis_cli_cluster(password, &["check".to_owned(), entry.to_owned()]) {
            Ok(_) => return Ok(()),
            Err(error) if tokio::time::Instant::now() >= deadline => return Err(error),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

impl LocalRedisCluster {
    /// Scaling out: two new nodes from the same config, the first added as a master, the
    /// second as its replica, then the slots rebalanced onto the empty master.
    pub async fn add_pair(&mut self) -> Result<(usize, usize), RedisDrillError> {
        let config_source = self
            .servers
            .first()
            .map(|server| server.dir().join("redis.conf"))
            .ok_or(RedisDrillError::UnknownNode { index: 0, len: 0 })?;
        let config =
            std::fs::read_to_string(&config_source).map_err(|error| RedisDrillError::Node {
                node: "redis-0".to_owned(),
                message: format!("cannot read {}: {error}", config_source.display()),
            })?;
        let mut added = Vec::new();
        for _ in 0..2 {
            let port = loop {
                let port = free_port()?;
                if port <= 22_700 {
                    break port;
                }
            };
            let server = RedisServer::start_at(&config, Ipv4Addr::LOCALHOST, port, None).await?;
            let index = self.members.len();
            self.members.push(RedisMember::new(
                format!("redis-{index}"),
                "127.0.0.1",
                port,
            ));
            self.servers.push(server);
            added.push(index);
        }
        let (master, replica) = (added[0], added[1]);
        let existing = address(&self.members[0]);
        wait_agreement(&self.password, &existing).await?;
        redis_cli_cluster(
            &self.password,
            &[
                "add-node".to_owned(),
                address(&self.members[master]),
                existing.clone(),
            ],
        )?;
        self.wait_view("the new master joining", Duration::from_secs(30), |view| {
            view.known_nodes as usize == master + 1
        })
        .await?;
        let master_id = self.node_id(master).await?;
        wait_agreement(&self.password, &existing).await?;
        // Joined as an empty master, then made a replica once it has heard of the new master
        // through gossip (`--cluster-slave` races that and fails with "Unknown node").
        redis_cli_cluster(
            &self.password,
            &[
                "add-node".to_owned(),
                address(&self.members[replica]),
                existing.clone(),
            ],
        )?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let member = &self.members[replica];
            let answer = match connect(member, &self.password, WRITE_TIMEOUT).await {
                Ok(mut connection) => redis::cmd("CLUSTER")
                    .arg("REPLICATE")
                    .arg(&master_id)
                    .query_async::<()>(&mut connection)
                    .await
                    .map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            match answer {
                Ok(()) => break,
                Err(message) if tokio::time::Instant::now() >= deadline => {
                    return Err(RedisDrillError::Node {
                        node: member.name.to_string(),
                        message: format!("CLUSTER REPLICATE {master_id}: {message}"),
                    });
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
        self.wait_view("the new replica joining", Duration::from_secs(30), |view| {
            view.replicas_of(&master_id) == 1
        })
        .await?;
        // Slots move between nodes directly: each must know every other before a rebalance.
        self.wait_all_know(self.members.len()).await?;
        wait_agreement(&self.password, &existing).await?;
        redis_cli_cluster(
            &self.password,
            &[
                "rebalance".to_owned(),
                existing,
                "--cluster-use-empty-masters".to_owned(),
            ],
        )?;
        Ok((master, replica))
    }

    /// Scaling in: every slot moved off the master at `master` (rebalance with weight 0), then
    /// its replica and itself forgotten by the cluster (`del-node`) and stopped.
    pub async fn remove_pair(&mut self, master: usize) -> Result<(), RedisDrillError> {
        let master_id = self.node_id(master).await?;
        let other = (0..self.members.len())
            .find(|index| *index != master)
            .ok_or(RedisDrillError::UnknownNode {
                index: master,
                len: self.members.len(),
            })?;
        let entry = address(&self.members[other]);
        self.wait_all_know(self.members.len()).await?;
        wait_agreement(&self.password, &entry).await?;
        redis_cli_cluster(
            &self.password,
            &[
                "rebalance".to_owned(),
                entry.clone(),
                "--cluster-weight".to_owned(),
                format!("{master_id}=0"),
            ],
        )?;
        let id = master_id.clone();
        let view = self
            .wait_view(
                "the leaving master emptied",
                Duration::from_secs(60),
                move |view| {
                    view.covered()
                        && view
                            .nodes
                            .iter()
                            .any(|node| node.id == id && node.slots == 0)
                },
            )
            .await?;
        let replicas: Vec<String> = view
            .nodes
            .iter()
            .filter(|node| node.master_id.as_deref() == Some(master_id.as_str()))
            .map(|node| node.id.clone())
            .collect();
        for node in replicas.iter().chain(std::iter::once(&master_id)) {
            wait_agreement(&self.password, &entry).await?;
            redis_cli_cluster(
                &self.password,
                &["del-node".to_owned(), entry.clone(), node.clone()],
            )?;
        }
        Ok(())
    }
}
