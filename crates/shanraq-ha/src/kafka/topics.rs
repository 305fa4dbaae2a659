//! What to do to each topic so that Kafka matches `spec.kafka.topics`, decided from the spec
//! and the topics as the admin API described them: create, add partitions, change the
//! topic's own configuration (a key removed from the spec goes back to the broker's default),
//! delete (only with `deletionPolicy: Delete`, only topics this cluster managed), or refuse
//! what Kafka cannot do in place (fewer partitions, another replication factor), naming the
//! topic and the field. Pure: `admin` executes the plan, one topic at a time, so that a
//! failure touches nothing else.

use std::collections::{BTreeMap, BTreeSet};

use shanraq_api::kafka::{KafkaSpec, KafkaTopic, TopicDeletionPolicy};

/// A topic as the admin API described it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveTopic {
    pub partitions: i32,
    pub replication_factor: i32,
    /// The topic's own settings (`DYNAMIC_TOPIC_CONFIG`), not the defaults it inherits.
    pub config: BTreeMap<String, String>,
}

/// One change of a topic's own configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigChange {
    Set {
        key: String,
        value: String,
    },
    /// Back to the broker's default.
    Reset {
        key: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum TopicAction {
    Create(KafkaTopic),
    AddPartitions {
        from: i32,
        to: i32,
    },
    /// `config` is the whole of the topic's own settings afterwards; `changes` what differs.
    Configure {
        changes: Vec<ConfigChange>,
        config: BTreeMap<String, String>,
    },
    Delete,
    /// Removed from the spec and kept (`deletionPolicy: Retain`).
    Retain,
    /// The spec asks for what Kafka cannot do in place; nothing is done to the topic.
    Refuse {
        field: &'static str,
        message: String,
    },
}

/// Per topic, the actions in the order they run (empty: in sync).
pub type TopicPlan = BTreeMap<String, Vec<TopicAction>>;

/// The field path of a topic's field in messages and conditions.
pub fn field_path(topic: &str, field: &str) -> String {
    format!("spec.kafka.topics[name={topic}].{field}")
}

/// The plan for every topic of the spec, and for every topic `managed` earlier (in
/// `status.kafka.topics`) that the spec no longer lists. Topics Kafka holds that were never
/// in the spec (internal topics, ones created by applications) are not part of it.
pub fn plan(
    spec: &KafkaSpec,
    live: &BTreeMap<String, LiveTopic>,
    managed: &BTreeSet<String>,
) -> TopicPlan {
    let mut plan = TopicPlan::new();
    for topic in &spec.topics {
        let actions = match live.get(&topic.name) {
            None => vec![TopicAction::Create(topic.clone())],
            Some(current) => converge(topic, current),
        };
        plan.insert(topic.name.clone(), actions);
    }
    let declared: BTreeSet<&str> = spec.topics.iter().map(|t| t.name.as_str()).collect();
    for name in managed {
        if declared.contains(name.as_str()) || !live.contains_key(name) {
            continue;
        }
        let action = match spec.deletion_policy {
            TopicDeletionPolicy::Delete => TopicAction::Delete,
            TopicDeletionPolicy::Retain => TopicAction::Retain,
        };
        plan.insert(name.clone(), vec![action]);
    }
    plan
}

fn converge(topic: &KafkaTopic, current: &LiveTopic) -> Vec<TopicAction> {
    let mut refusals = Vec::new();
    if current.partitions > topic.partitions {
        refusals.push(TopicAction::Refuse {
            field: "partitions",
            message: format!(
                "{} is {} but topic {} has {} partitions in Kafka: partitions cannot be removed",
                field_path(&topic.name, "partitions"),
                topic.partitions,
                topic.name,
                current.partitions
            ),
        });
    }
    if current.replication_factor != topic.replication_factor {
        refusals.push(TopicAction::Refuse {
            field: "replicationFactor",
            message: format!(
                "{} is {} but topic {} has replication factor {} in Kafka: it is not changed in place",
                field_path(&topic.name, "replicationFactor"),
                topic.replication_factor,
                topic.name,
                current.replication_factor
            ),
        });
    }
    if !refusals.is_empty() {
        return refusals;
    }
    let mut actions = Vec::new();
    if current.partitions < topic.partitions {
        actions.push(TopicAction::AddPartitions {
            from: current.partitions,
            to: topic.partitions,
        });
    }
    let changes = config_changes(&topic.config, &current.config);
    if !changes.is_empty() {
        actions.push(TopicAction::Configure {
            changes,
            config: topic.config.clone(),
        });
    }
    actions
}

/// Keys to set (new or different) and keys to reset (no longer declared), by key.
pub fn config_changes(
    desired: &BTreeMap<String, String>,
    current: &BTreeMap<String, String>,
) -> Vec<ConfigChange> {
    let mut changes: Vec<ConfigChange> = desired
        .iter()
        .filter(|(key, value)| current.get(*key) != Some(*value))
        .map(|(key, value)| ConfigChange::Set {
            key: key.clone(),
            value: value.clone(),
        })
        .collect();
    changes.extend(
        current
            .keys()
            .filter(|key| !desired.contains_key(*key))
            .map(|key| ConfigChange::Reset { key: key.clone() }),
    );
    changes.sort_by(|a, b| key_of(a).cmp(key_of(b)));
    changes
}

fn key_of(change: &ConfigChange) -> &str {
    match change {
        ConfigChange::Set { key, .. } | ConfigChange::Reset { key } => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn spec(topics: Vec<KafkaTopic>, deletion_policy: TopicDeletionPolicy) -> KafkaSpec {
        KafkaSpec {
            topics,
            deletion_policy,
            ..KafkaSpec::default()
        }
    }

    fn live(partitions: i32, replication_factor: i32, config: &[(&str, &str)]) -> LiveTopic {
        LiveTopic {
            partitions,
            replication_factor,
            config: config
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn with_config(mut topic: KafkaTopic, config: &[(&str, &str)]) -> KafkaTopic {
        topic.config = config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        topic
    }

    #[test]
    fn a_missing_topic_is_created_with_its_config() {
        let payments = with_config(KafkaTopic::new("payments", 12, 3), &[("retention.ms", "1")]);
        let plan = plan(
            &spec(vec![payments.clone()], TopicDeletionPolicy::Retain),
            &BTreeMap::new(),
            &BTreeSet::new(),
        );
        assert_eq!(plan["payments"], vec![TopicAction::Create(payments)]);
    }

    #[test]
    fn a_topic_in_sync_needs_nothing() {
        let topic = with_config(KafkaTopic::new("payments", 12, 3), &[("retention.ms", "1")]);
        let plan = plan(
            &spec(vec![topic], TopicDeletionPolicy::Retain),
            &BTreeMap::from([("payments".to_owned(), live(12, 3, &[("retention.ms", "1")]))]),
            &BTreeSet::new(),
        );
        assert_eq!(plan["payments"], vec![]);
    }

    #[test]
    fn partitions_grow_and_config_converges_with_removed_keys_reset() {
        let topic = with_config(
            KafkaTopic::new("payments", 24, 3),
            &[("retention.ms", "2"), ("cleanup.policy", "compact")],
        );
        let plan = plan(
            &spec(vec![topic.clone()], TopicDeletionPolicy::Retain),
            &BTreeMap::from([(
                "payments".to_owned(),
                live(
                    12,
                    3,
                    &[("retention.ms", "1"), ("segment.bytes", "1048576")],
                ),
            )]),
            &BTreeSet::new(),
        );
        assert_eq!(
            plan["payments"],
            vec![
                TopicAction::AddPartitions { from: 12, to: 24 },
                TopicAction::Configure {
                    changes: vec![
                        ConfigChange::Set {
                            key: "cleanup.policy".into(),
                            value: "compact".into()
                        },
                        ConfigChange::Set {
                            key: "retention.ms".into(),
                            value: "2".into()
                        },
                        ConfigChange::Reset {
                            key: "segment.bytes".into()
                        },
                    ],
                    config: topic.config,
                },
            ]
        );
    }

    #[test]
    fn shrinking_and_a_new_replication_factor_are_refused_naming_topic_and_field() {
        let plan = plan(
            &spec(
                vec![
                    with_config(KafkaTopic::new("payments", 6, 2), &[("retention.ms", "9")]),
                    KafkaTopic::new("webhooks", 12, 3),
                ],
                TopicDeletionPolicy::Retain,
            ),
            &BTreeMap::from([
                ("payments".to_owned(), live(12, 3, &[])),
                ("webhooks".to_owned(), live(6, 3, &[])),
            ]),
            &BTreeSet::new(),
        );
        let refused: Vec<(&str, &str)> = plan["payments"]
            .iter()
            .map(|action| match action {
                TopicAction::Refuse { field, message } => (*field, message.as_str()),
                other => panic!("only refusals for payments, got {other:?}"),
            })
            .collect();
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert_eq!(refused[0].0, "partitions");
        assert!(
            refused[0]
                .1
                .contains("spec.kafka.topics[name=payments].partitions is 6"),
            "{}",
            refused[0].1
        );
        assert_eq!(refused[1].0, "replicationFactor");
        assert!(
            refused[1].1.contains("replication factor 3"),
            "{}",
            refused[1].1
        );
        // The refused topic does not hold the others back.
        assert_eq!(
            plan["webhooks"],
            vec![TopicAction::AddPartitions { from: 6, to: 12 }]
        );
    }

    #[test]
    fn removed_topics_are_retained_unless_the_policy_deletes_them() {
        let live_topics = BTreeMap::from([
            ("old".to_owned(), live(3, 3, &[])),
            ("__consumer_offsets".to_owned(), live(50, 3, &[])),
            ("app-owned".to_owned(), live(1, 3, &[])),
        ]);
        let managed = BTreeSet::from(["old".to_owned(), "gone".to_owned()]);
        let retain = plan(
            &spec(vec![], TopicDeletionPolicy::Retain),
            &live_topics,
            &managed,
        );
        assert_eq!(
            retain,
            TopicPlan::from([("old".to_owned(), vec![TopicAction::Retain])])
        );
        let delete = plan(
            &spec(vec![], TopicDeletionPolicy::Delete),
            &live_topics,
            &managed,
        );
        assert_eq!(
            delete,
            TopicPlan::from([("old".to_owned(), vec![TopicAction::Delete])]),
            "never a topic the cluster did not manage"
        );
    }
}
