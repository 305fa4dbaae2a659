//! One round of topic reconciliation against a cluster's admin API: describe, plan, execute
//! the plan topic by topic, describe again when anything was written, and turn the result
//! into the status figures. The Kafka task runs it periodically; the real-broker tests run
//! exactly this function.

use std::collections::{BTreeMap, BTreeSet};

use shanraq_api::kafka::{KafkaSpec, KafkaTopicStatus};

use super::admin::{AdminError, ClusterInfo, KafkaAdmin};
use super::health::{self, ClusterFigures};
use super::topics::{self, TopicAction, TopicPlan};

#[derive(Clone, Debug, PartialEq)]
pub struct RoundOutcome {
    pub plan: TopicPlan,
    /// Topics whose actions failed, with why.
    pub failures: BTreeMap<String, String>,
    /// The cluster after the round.
    pub info: ClusterInfo,
    pub figures: ClusterFigures,
    pub topics: Vec<KafkaTopicStatus>,
}

fn writes(plan: &TopicPlan) -> bool {
    plan.values()
        .flatten()
        .any(|action| !matches!(action, TopicAction::Retain | TopicAction::Refuse { .. }))
}

/// `managed`: the topics the status listed before (so that a topic removed from the spec is
/// known to be this cluster's).
pub async fn topics_round(
    admin: &KafkaAdmin,
    spec: &KafkaSpec,
    managed: &BTreeSet<String>,
) -> Result<RoundOutcome, AdminError> {
    let before = admin.describe().await?;
    let plan = topics::plan(spec, &before.live_topics(), managed);
    let (failures, info) = if writes(&plan) {
        let failures = admin.execute(&plan).await;
        (failures, admin.describe().await?)
    } else {
        (admin.execute(&plan).await, before)
    };
    let topics = health::topic_statuses(&plan, &failures, &info);
    Ok(RoundOutcome {
        figures: health::figures(&info),
        plan,
        failures,
        info,
        topics,
    })
}
