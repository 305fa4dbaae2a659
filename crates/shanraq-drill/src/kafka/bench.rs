//! `shanraq bench kafka`: a 3-controller, 3-broker KRaft cluster of real JVMs from the rendered
//! configuration with the seeds' topics (created by the operator's own topic round), then a
//! rolling restart of every node under an `acks=all` producer (`roll::roll_under_load`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::error::KafkaDrillError;
use super::local::{LocalKafka, drill_cluster, seed_topics};
use super::roll::{RollOptions, RollReport, roll_under_load};
use shanraq_operator::engines::kafka::round::topics_round;
use shanraq_operator::engines::kafka::topics::TopicAction;

const TOPICS_TIMEOUT: Duration = Duration::from_secs(90);

/// Starts the cluster and creates the seeds' topics until every one is in sync.
pub async fn seeded_cluster() -> Result<LocalKafka, KafkaDrillError> {
    let cluster = drill_cluster(seed_topics())?;
    let kafka = LocalKafka::start(cluster).await?;
    let deadline = Instant::now() + TOPICS_TIMEOUT;
    loop {
        let outcome = topics_round(kafka.admin(), &kafka.cluster.spec.kafka, &BTreeSet::new())
            .await
            .map_err(KafkaDrillError::Admin)?;
        let writes = outcome
            .plan
            .values()
            .flatten()
            .any(|action| !matches!(action, TopicAction::Retain | TopicAction::Refuse { .. }));
        if !writes && outcome.figures.under_replicated_partitions == 0 {
            return Ok(kafka);
        }
        if Instant::now() >= deadline {
            return Err(KafkaDrillError::TopicsNotConverged { plan: outcome.plan });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn run(messages: u64, timeout: Duration) -> Result<RollReport, KafkaDrillError> {
    let mut kafka = seeded_cluster().await?;
    roll_under_load(
        &mut kafka,
        &RollOptions {
            topic: "payments".to_owned(),
            max_messages: messages,
            timeout,
        },
    )
    .await
}

pub fn summary(report: &RollReport) -> String {
    format!(
        "kafka roll of {} nodes ({}): {} ms\n  acknowledged {}, lost {}, failed {}\n  longest produce stall {} ms\n  samples under min.insync.replicas {} of {} (smallest ISR {:?})\n",
        report.restarts.len(),
        report.restarts.join(", "),
        report.roll_ms,
        report.messages_acknowledged,
        report.messages_lost,
        report.messages_failed,
        report.longest_produce_stall_ms,
        report.samples_under_min_isr,
        report.samples,
        report.smallest_isr_seen
    )
}
