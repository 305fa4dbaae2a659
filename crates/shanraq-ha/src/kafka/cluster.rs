//! The cluster as Kafka's admin API described it at one instant: brokers, and every topic with
//! its partitions (leader, replicas, ISR) and configuration. Plain data, filled by the
//! operator's admin client and read by the topic plan, the figures and the roll planner.

use std::collections::{BTreeMap, BTreeSet};

use super::topics::LiveTopic;

/// One partition as the metadata shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub id: i32,
    /// -1: no leader (offline).
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicInfo {
    pub partitions: Vec<PartitionInfo>,
    /// The topic's own settings (`DYNAMIC_TOPIC_CONFIG`).
    pub own_config: BTreeMap<String, String>,
    /// The effective `min.insync.replicas` (own, broker or default); `None` when the topic's
    /// configuration could not be read this round (a topic just created, say): never guessed.
    pub min_isr: Option<i32>,
}

impl TopicInfo {
    pub fn replication_factor(&self) -> i32 {
        self.partitions
            .iter()
            .map(|p| i32::try_from(p.replicas.len()).unwrap_or(i32::MAX))
            .max()
            .unwrap_or(0)
    }

    pub fn under_replicated(&self) -> i32 {
        count(
            self.partitions
                .iter()
                .filter(|p| p.isr.len() < p.replicas.len()),
        )
    }

    pub fn live(&self) -> LiveTopic {
        LiveTopic {
            partitions: count(self.partitions.iter()),
            replication_factor: self.replication_factor(),
            config: self.own_config.clone(),
        }
    }
}

fn count<T>(items: impl Iterator<Item = T>) -> i32 {
    i32::try_from(items.count()).unwrap_or(i32::MAX)
}

/// The cluster as the admin API described it, one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    pub brokers: BTreeSet<i32>,
    /// Every topic, internal ones included.
    pub topics: BTreeMap<String, TopicInfo>,
}

impl ClusterInfo {
    pub fn live_topics(&self) -> BTreeMap<String, LiveTopic> {
        self.topics
            .iter()
            .map(|(name, topic)| (name.clone(), topic.live()))
            .collect()
    }
}
