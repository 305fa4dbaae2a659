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

use shanraq_operator::engines::kafka::admin::{ClusterInfo, KafkaAdmin};
use shanraq_operator::engines::kafka::health::partition_views;
use shanraq_operator::engines::kafka::quorum::{RaftFigures, controller_views, scrape};

use super::error::KafkaDrillError;

/// How long a cold cluster (six JVMs on two shared cores) gets to register every broker.
pub const START_TIMEOUT: Duration = Duration::from_secs(240);
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The drill's ShanraqCluster: Kafka alone, with `topics`.
pub fn drill_cluster(topics: Vec<KafkaTopic>) -> Result<ValidCluster, KafkaDrillError> {
    let mut spec = shanraq_api::ShanraqClusterSpec::default();
    spec.postgres.enabled = false;
    spec.redis.enabled = false;
    spec.haproxy.enabled = false;
    spec.kafka.enabled = true;
    spec.kafka.topics = topics;
    let mut object = ShanraqCluster::new("drill", spec);
    object.metadata.namespace = Some("drill".to_owned());
    object.metadata.uid = Some("7d0c2a4e-5b1f-4c3a-9e8d-0f1e2d3c4b5a".to_owned());
    shanraq_api::validate(&object, &LiveState::default()).map_err(KafkaDrillError::InvalidCluster)
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
    pub async fn start(cluster: ValidCluster) -> Result<LocalKafka, KafkaDrillError> {
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
        .map_err(KafkaDrillError::Nodes)?;
        let admin = KafkaAdmin::new(&nodes.bootstrap_servers(), ADMIN_TIMEOUT)
            .map_err(KafkaDrillError::Admin)?;
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
    pub async fn observe(&self) -> Result<(RollObservation, ClusterInfo), KafkaDrillError> {
        let info = self
            .admin
            .describe()
            .await
            .map_err(KafkaDrillError::Admin)?;
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
