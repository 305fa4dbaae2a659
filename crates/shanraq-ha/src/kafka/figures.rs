//! What one admin API round means: the cluster figures (brokers registered, offline and
//! under-replicated partitions, the smallest ISR beside `min.insync.replicas`), each topic's
//! entry in `status.kafka.topics`, the partitions as the roll planner sees them, and Kafka's
//! part of the RPO. Pure.

use std::collections::BTreeMap;

use shanraq_api::kafka::KafkaTopicStatus;

use super::cluster::ClusterInfo;
use super::roll::PartitionView;
use super::topics::{TopicAction, TopicPlan};
use crate::objectives::RpoMeasurement;

pub const STATE_READY: &str = "Ready";
pub const STATE_REFUSED: &str = "Refused";
pub const STATE_FAILED: &str = "Failed";
pub const STATE_RETAINED: &str = "Retained";

/// The figures of one admin API round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterFigures {
    pub brokers_registered: i32,
    pub offline_partitions: i32,
    pub under_replicated_partitions: i32,
    /// The smallest ISR of any partition (`None`: no partitions).
    pub min_isr_seen: Option<i32>,
    /// The lowest `min.insync.replicas` of any topic whose configuration was read.
    pub lowest_min_insync: Option<i32>,
    /// Topics whose configuration could not be read this round: their `min.insync.replicas`
    /// is unknown, so no RPO is claimed from this round.
    pub min_insync_unread: Vec<String>,
    /// Partitions whose ISR is below their topic's `min.insync.replicas`.
    pub below_min_isr: Vec<String>,
}

fn len(items: usize) -> i32 {
    i32::try_from(items).unwrap_or(i32::MAX)
}

pub fn figures(info: &ClusterInfo) -> ClusterFigures {
    let mut figures = ClusterFigures {
        brokers_registered: len(info.brokers.len()),
        ..ClusterFigures::default()
    };
    for (name, topic) in &info.topics {
        match topic.min_isr {
            Some(min_isr) => {
                figures.lowest_min_insync = Some(
                    figures
                        .lowest_min_insync
                        .map_or(min_isr, |low| low.min(min_isr)),
                );
            }
            None => figures.min_insync_unread.push(name.clone()),
        }
        for partition in &topic.partitions {
            let isr = len(partition.isr.len());
            if partition.leader < 0 {
                figures.offline_partitions += 1;
            }
            if partition.isr.len() < partition.replicas.len() {
                figures.under_replicated_partitions += 1;
            }
            if topic.min_isr.is_some_and(|min_isr| isr < min_isr) {
                figures
                    .below_min_isr
                    .push(format!("{name}-{}", partition.id));
            }
            figures.min_isr_seen = Some(figures.min_isr_seen.map_or(isr, |low| low.min(isr)));
        }
    }
    figures
}

/// Every partition for the roll planner.
pub fn partition_views(info: &ClusterInfo) -> Vec<PartitionView> {
    info.topics
        .iter()
        .flat_map(|(name, topic)| {
            topic.partitions.iter().map(|p| PartitionView {
                topic: name.clone(),
                partition: p.id,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                // Unknown this round: as if every replica were needed, so a roll waits.
                min_isr: topic.min_isr.unwrap_or_else(|| len(p.replicas.len())),
            })
        })
        .collect()
}

/// `status.kafka.topics` after a round: each declared topic, and each retained one, with what
/// Kafka holds now and why it is not `Ready`.
pub fn topic_statuses(
    plan: &TopicPlan,
    failures: &BTreeMap<String, String>,
    after: &ClusterInfo,
) -> Vec<KafkaTopicStatus> {
    let mut statuses = Vec::new();
    for (name, actions) in plan {
        if actions.contains(&TopicAction::Delete) && !failures.contains_key(name) {
            continue;
        }
        let refusals: Vec<&str> = actions
            .iter()
            .filter_map(|action| match action {
                TopicAction::Refuse { message, .. } => Some(message.as_str()),
                _ => None,
            })
            .collect();
        let (state, message) = if !refusals.is_empty() {
            (STATE_REFUSED, refusals.join("; "))
        } else if let Some(failure) = failures.get(name) {
            (STATE_FAILED, failure.clone())
        } else if actions.contains(&TopicAction::Retain) {
            (
                STATE_RETAINED,
                format!(
                    "topic {name} is no longer in spec.kafka.topics; kept because spec.kafka.deletionPolicy is Retain"
                ),
            )
        } else {
            (STATE_READY, String::new())
        };
        let live = after.topics.get(name);
        statuses.push(KafkaTopicStatus {
            name: name.clone(),
            state: state.to_owned(),
            partitions: live.map(|t| len(t.partitions.len())),
            replication_factor: live.map(super::cluster::TopicInfo::replication_factor),
            under_replicated_partitions: live.map(super::cluster::TopicInfo::under_replicated),
            message,
        });
    }
    statuses
}

/// Kafka's part of the RPO: with `acks=all` an acknowledged message is on at least
/// `min.insync.replicas` replicas, so it survives the loss of one broker when every ISR holds
/// at least that many and that many is at least 2.
pub fn rpo(figures: &ClusterFigures) -> Option<RpoMeasurement> {
    if !figures.min_insync_unread.is_empty() {
        return None;
    }
    // Every topic's configuration was read, so no lowest min.insync.replicas means no topic at
    // all: no acknowledged message exists that the loss of a broker could take. Without this a
    // cluster that declares no topics (`spec: {}`) would never have its RPO measured.
    let Some(lowest) = figures.lowest_min_insync else {
        return Some(RpoMeasurement::Synchronous {
            streaming: vec!["Kafka: no topic yet, so no acknowledged message to lose".to_owned()],
            required: 1,
        });
    };
    let seen = figures.min_isr_seen?;
    if lowest < 2 {
        return Some(RpoMeasurement::NoPromotableReplica {
            reason: format!(
                "a Kafka topic has min.insync.replicas {lowest}: an acks=all write may be on one broker only"
            ),
        });
    }
    if let Some(first) = figures.below_min_isr.first() {
        return Some(RpoMeasurement::NoPromotableReplica {
            reason: format!(
                "Kafka partition {first} (and {} more) has fewer in-sync replicas than min.insync.replicas",
                figures.below_min_isr.len() - 1
            ),
        });
    }
    Some(RpoMeasurement::Synchronous {
        streaming: vec![format!(
            "Kafka: every partition's ISR >= {seen}, min.insync.replicas {lowest}, acks=all"
        )],
        required: 1,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::kafka::cluster::{PartitionInfo, TopicInfo};

    fn info(isr: &[&[i32]], leader: i32) -> ClusterInfo {
        ClusterInfo {
            brokers: BTreeSet::from([100, 101, 102]),
            topics: BTreeMap::from([(
                "payments".to_owned(),
                TopicInfo {
                    partitions: isr
                        .iter()
                        .enumerate()
                        .map(|(i, isr)| PartitionInfo {
                            id: i32::try_from(i).expect("small"),
                            leader,
                            replicas: vec![100, 101, 102],
                            isr: isr.to_vec(),
                        })
                        .collect(),
                    own_config: BTreeMap::new(),
                    min_isr: Some(2),
                },
            )]),
        }
    }

    /// A topic whose configuration could not be read (just created, its describe refused)
    /// is never taken for `min.insync.replicas` 1: no RPO is claimed from that round, and a
    /// roll counts every replica of it as needed.
    #[test]
    fn an_unread_topic_configuration_claims_no_rpo_and_holds_a_roll() {
        let mut unread = info(&[&[100, 101, 102]], 100);
        if let Some(topic) = unread.topics.get_mut("payments") {
            topic.min_isr = None;
        }
        let figures = figures(&unread);
        assert_eq!(figures.min_insync_unread, vec!["payments".to_owned()]);
        assert_eq!(figures.lowest_min_insync, None);
        assert_eq!(rpo(&figures), None);
        assert_eq!(partition_views(&unread)[0].min_isr, 3);
        let read = super::figures(&info(&[&[100, 101, 102]], 100));
        assert!(
            matches!(rpo(&read), Some(RpoMeasurement::Synchronous { .. })),
            "{:?}",
            rpo(&read)
        );
    }

    /// A cluster without a single topic holds no acknowledged message: its RPO is 0s at
    /// once, not waiting for a topic that may never be declared.
    #[test]
    fn a_cluster_without_topics_has_nothing_to_lose() {
        let empty = ClusterInfo {
            brokers: BTreeSet::from([100, 101, 102]),
            topics: BTreeMap::new(),
        };
        match rpo(&figures(&empty)) {
            Some(RpoMeasurement::Synchronous {
                streaming,
                required,
            }) => {
                assert_eq!(required, 1);
                assert!(streaming[0].contains("no topic"), "{streaming:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn figures_count_offline_under_replicated_and_the_smallest_isr() {
        let figures = figures(&info(&[&[100, 101, 102], &[100]], 100));
        assert_eq!(figures.under_replicated_partitions, 1);
        assert_eq!(figures.min_isr_seen, Some(1));
        assert_eq!(figures.below_min_isr, vec!["payments-1".to_owned()]);
        assert_eq!(figures.offline_partitions, 0);
        assert_eq!(super::figures(&info(&[&[]], -1)).offline_partitions, 1);
    }

    #[test]
    fn rpo_holds_only_with_every_isr_at_min_insync_of_two_or_more() {
        let healthy = figures(&info(&[&[100, 101, 102], &[100, 101]], 100));
        match rpo(&healthy) {
            Some(RpoMeasurement::Synchronous { streaming, .. }) => {
                assert!(streaming[0].contains("ISR >= 2"), "{streaming:?}");
            }
            other => panic!("{other:?}"),
        }
        let short = figures(&info(&[&[100]], 100));
        assert!(matches!(
            rpo(&short),
            Some(RpoMeasurement::NoPromotableReplica { reason }) if reason.contains("payments-0")
        ));
    }
}
