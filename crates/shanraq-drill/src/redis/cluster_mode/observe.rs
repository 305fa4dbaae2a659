//! What a test sees of the cluster: the view of the first node that answers (fed to the
//! failover tracker, as the operator's), bounded waits on it, and killing or restarting a node.

use std::time::Duration;

use shanraq_ha::adapters::redis::{NodeClient, RedisPassword};
use shanraq_ha::redis::cluster::ClusterView;

use super::keys::owner;
use super::{LocalRedisCluster, POLL, WRITE_TIMEOUT};
use crate::redis::error::RedisDrillError;
use crate::redis::writer::connect;

impl LocalRedisCluster {
    pub fn password(&self) -> &str {
        &self.password
    }

    fn client(&self, index: usize) -> NodeClient {
        let member = &self.members[index];
        NodeClient::new(
            member.name.as_str(),
            member.host.clone(),
            member.port,
            Some(RedisPassword::new(self.password.clone())),
            Duration::from_millis(500),
        )
    }

    /// The view of the first node that answers, fed to the failover tracker.
    pub async fn view(&mut self) -> Option<ClusterView> {
        for index in 0..self.members.len() {
            if let Ok(view) = self.client(index).cluster_view().await {
                self.tracker.observe(&view);
                return Some(view);
            }
        }
        None
    }

    pub fn failovers_seen(&self) -> u64 {
        self.tracker.failovers_seen
    }

    /// Waits (bounded) until a node's view satisfies `done`.
    pub async fn wait_view(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&ClusterView) -> bool,
    ) -> Result<ClusterView, RedisDrillError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(view) = self.view().await {
                if done(&view) {
                    return Ok(view);
                }
                last = Some(view.summary());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RedisDrillError::Timeout {
                    what: what.to_owned(),
                    seconds: timeout.as_secs(),
                    detail: format!(": last view {last:?}"),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The index of the master serving the writer's hash slot.
    pub async fn master_of_writes(&self) -> Option<usize> {
        let owner = owner(&self.members, &self.password).await?;
        self.members.iter().position(|m| m.name == owner.name)
    }

    pub fn kill(&mut self, index: usize) {
        if let Some(server) = self.servers.get_mut(index) {
            server.kill();
        }
    }

    /// Restarts node `index` on its address and directory (its nodes.conf kept).
    pub async fn restart_in_place(&mut self, index: usize) -> Result<(), RedisDrillError> {
        let len = self.servers.len();
        let server = self
            .servers
            .get_mut(index)
            .ok_or(RedisDrillError::UnknownNode { index, len })?;
        server.restart_in_place().await?;
        Ok(())
    }

    /// `CLUSTER MYID` of node `index`.
    pub async fn node_id(&self, index: usize) -> Result<String, RedisDrillError> {
        let member = self
            .members
            .get(index)
            .ok_or(RedisDrillError::UnknownNode {
                index,
                len: self.members.len(),
            })?;
        let mut connection = connect(member, &self.password, WRITE_TIMEOUT)
            .await
            .map_err(|error| RedisDrillError::Node {
                node: member.name.to_string(),
                message: error.to_string(),
            })?;
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query_async(&mut connection)
            .await
            .map_err(|error| RedisDrillError::Node {
                node: member.name.to_string(),
                message: error.to_string(),
            })
    }

    /// Waits (bounded) until every node knows `count` nodes (gossip has spread) and reports
    /// `cluster_state:ok`: a node that has just joined answers CLUSTERDOWN until it has learned
    /// the slot map, and a rebalance through it then fails.
    pub async fn wait_all_know(&self, count: usize) -> Result<(), RedisDrillError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let mut all = true;
            for index in 0..self.members.len() {
                let settled = self
                    .client(index)
                    .cluster_view()
                    .await
                    .map(|view| (view.known_nodes as usize, view.state_ok));
                if settled.ok() != Some((count, true)) {
                    all = false;
                    break;
                }
            }
            if all {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RedisDrillError::Timeout {
                    what: format!("every Redis Cluster node knowing {count} nodes, state ok"),
                    seconds: 60,
                    detail: String::new(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
