//! `LocalKafka`: a KRaft cluster of real Kafka JVMs on 127.0.0.1, every node started from the
//! server.properties the operator renders for a ShanraqCluster (the testkit substitutes only
//! addresses, ports and directories) and its storage formatted with the rendered cluster id.
//! Every node runs the JMX exporter agent with the rendered exporter config, so the
//! controllers' raft metrics (who leads, how far each voter is) are read as a pod's would be.

use std::collections::BTreeMap;
use std::time::Duration;

use shanraq_api::kafka::KafkaTopic;
use shanraq_api::{LiveState, ShanraqCluster, ValidCluster};
use shanraq_ha::kafka::{ControllerView, RollObservation};
use shanraq_testkit::{KafkaCluster, KafkaOptions, MetricsAgent};

use crate::engines::kafka::admin::{ClusterInfo, KafkaAdmin};
use crate::engines::kafka::health::partition_views;

/// How long a cold cluster (six JVMs on two shared cores) gets to register every broker.
pub const START_TIMEOUT: Duration = Duration::from_secs(240);
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// A voter whose metadata log is this many records behind the leader's high watermark is not
/// caught up (the leader appends a no-op record about twice a second).
pub const MAX_VOTER_LAG: f64 = 100.0;

/// The drill's ShanraqCluster: Kafka alone, with `topics`.
pub fn drill_cluster(topics: Vec<KafkaTopic>) -> Result<ValidCluster, String> {
    let mut spec = shanraq_api::ShanraqClusterSpec::default();
    spec.postgres.enabled = false;
    spec.redis.enabled = false;
    spec.haproxy.enabled = false;
    spec.kafka.enabled = true;
    spec.kafka.topics = topics;
    let mut object = ShanraqCluster::new("drill", spec);
    object.metadata.namespace = Some("drill".to_owned());
    object.metadata.uid = Some("7d0c2a4e-5b1f-4c3a-9e8d-0f1e2d3c4b5a".to_owned());
    shanraq_api::validate(&object, &LiveState::default())
        .map_err(|error| format!("the drill's ShanraqCluster is invalid: {error}"))
}

/// The seeds' topics: transactions, payments and webhooks, 12 partitions each, RF 3.
pub fn seed_topics() -> Vec<KafkaTopic> {
    ["transactions", "payments", "webhooks"]
        .into_iter()
        .map(|name| KafkaTopic::new(name, 12, 3))
        .collect()
}

#[derive(Debug)]
pub struct LocalKafka {
    pub nodes: KafkaCluster,
    pub cluster: ValidCluster,
    admin: KafkaAdmin,
}

impl LocalKafka {
    /// Renders `cluster`'s Kafka configuration, starts every node from it and waits until the
    /// metadata lists every broker.
    pub async fn start(cluster: ValidCluster) -> Result<LocalKafka, String> {
        let files = shanraq_render::kafka::config_files(&cluster);
        let properties: Vec<String> = files
            .iter()
            .filter(|(name, _)| name.ends_with(".properties"))
            .map(|(_, text)| text.clone())
            .collect();
        let options = KafkaOptions {
            metrics: Some(MetricsAgent {
                config_yaml: files
                    .get("jmx-exporter.yaml")
                    .cloned()
                    .unwrap_or_else(shanraq_render::kafka::jmx_exporter_config),
            }),
            ..KafkaOptions::default()
        };
        let nodes = KafkaCluster::start(
            &shanraq_render::kafka::cluster_id(&cluster),
            &properties,
            options,
            START_TIMEOUT,
        )
        .await
        .map_err(|error| error.to_string())?;
        let admin = KafkaAdmin::new(&nodes.bootstrap_servers(), ADMIN_TIMEOUT)
            .map_err(|error| error.to_string())?;
        Ok(LocalKafka {
            nodes,
            cluster,
            admin,
        })
    }

    pub fn admin(&self) -> &KafkaAdmin {
        &self.admin
    }

    /// The controllers as their raft metrics show them; a controller whose metrics do not
    /// answer is down.
    pub async fn controllers(&self) -> (Vec<ControllerView>, Option<i32>) {
        let mut raft = BTreeMap::new();
        for id in self.nodes.controller_ids() {
            let metrics = match self.nodes.metrics_url(id) {
                Ok(url) if self.nodes.is_running(id) => scrape(&url).await.ok(),
                _ => None,
            };
            raft.insert(id, metrics.map(|text| RaftFigures::parse(&text)));
        }
        controller_views(&raft)
    }

    /// One observation for the roll planner.
    pub async fn observe(&self) -> Result<(RollObservation, ClusterInfo), String> {
        let info = self
            .admin
            .describe()
            .await
            .map_err(|error| error.to_string())?;
        let (controllers, active_controller) = self.controllers().await;
        let observation = RollObservation {
            brokers: self.nodes.broker_ids(),
            registered: info.brokers.clone(),
            partitions: partition_views(&info),
            controllers,
            active_controller,
        };
        Ok((observation, info))
    }
}

/// A controller's raft figures from its exporter.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RaftFigures {
    pub current_leader: Option<f64>,
    pub high_watermark: Option<f64>,
    pub log_end_offset: Option<f64>,
}

impl RaftFigures {
    pub fn parse(text: &str) -> RaftFigures {
        let value = |name: &str| {
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .find_map(|line| {
                    let (series, value) = line.rsplit_once(' ')?;
                    let bare = series.split('{').next()?;
                    (bare == name).then(|| value.parse::<f64>().ok()).flatten()
                })
        };
        RaftFigures {
            current_leader: value("kafka_server_raft_metrics_current_leader"),
            high_watermark: value("kafka_server_raft_metrics_high_watermark"),
            log_end_offset: value("kafka_server_raft_metrics_log_end_offset"),
        }
    }
}

/// The voters' views and the quorum's leader, from each controller's raft figures (`None`:
/// its metrics did not answer). The leader is the one the leader itself and most voters name.
pub fn controller_views(
    raft: &BTreeMap<i32, Option<RaftFigures>>,
) -> (Vec<ControllerView>, Option<i32>) {
    let mut votes: BTreeMap<i32, usize> = BTreeMap::new();
    for figures in raft.values().flatten() {
        if let Some(leader) = figures.current_leader.filter(|l| *l >= 0.0) {
            // Node ids are small integers; the exporter prints them as floats.
            #[allow(clippy::cast_possible_truncation)]
            let leader = leader as i32;
            *votes.entry(leader).or_default() += 1;
        }
    }
    let leader = votes
        .iter()
        .filter(|(id, _)| raft.get(id).is_some_and(Option::is_some))
        .max_by_key(|(_, count)| **count)
        .map(|(id, _)| *id);
    let leader_hw = leader
        .and_then(|id| raft.get(&id).copied().flatten())
        .and_then(|figures| figures.high_watermark);
    let views = raft
        .iter()
        .map(|(id, figures)| {
            let caught_up = match (figures, leader_hw) {
                (Some(figures), Some(hw)) => figures
                    .log_end_offset
                    .is_some_and(|end| end + MAX_VOTER_LAG >= hw),
                _ => false,
            };
            ControllerView {
                id: *id,
                up: figures.is_some(),
                caught_up,
            }
        })
        .collect();
    (views, leader)
}

async fn scrape(url: &str) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|error| error.to_string())?;
    client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|error| error.to_string())?
        .text()
        .await
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_and_lagging_voters_come_from_raft_figures() {
        let figures = |leader: f64, hw: f64, end: f64| {
            Some(RaftFigures {
                current_leader: Some(leader),
                high_watermark: Some(hw),
                log_end_offset: Some(end),
            })
        };
        let raft = BTreeMap::from([
            (0, figures(1.0, 900.0, 900.0)),
            (1, figures(1.0, 1000.0, 1000.0)),
            (2, figures(1.0, 500.0, 500.0)),
            (3, None),
        ]);
        let (views, leader) = controller_views(&raft);
        assert_eq!(leader, Some(1));
        let caught: Vec<(i32, bool, bool)> =
            views.iter().map(|v| (v.id, v.up, v.caught_up)).collect();
        assert_eq!(
            caught,
            vec![
                (0, true, true),
                (1, true, true),
                (2, true, false),
                (3, false, false)
            ]
        );
        let text = "# HELP x\nkafka_server_raft_metrics_current_leader 2.0\nkafka_server_raft_metrics_high_watermark{a=\"b\"} 14.0\n";
        let parsed = RaftFigures::parse(text);
        assert_eq!(parsed.current_leader, Some(2.0));
        assert_eq!(parsed.high_watermark, Some(14.0));
        assert_eq!(parsed.log_end_offset, None);
    }
}
