//! What the admin API's view of the cluster means for the status: `status.kafka` and
//! `KafkaReady`, from the figures and topic entries `shanraq_ha::kafka::figures` computes.
//! Pure.

use shanraq_api::ValidCluster;
use shanraq_api::kafka::{KafkaStatus, KafkaTopicStatus};
use shanraq_api::status::WorkloadStatus;
pub use shanraq_ha::kafka::figures::{
    ClusterFigures, STATE_FAILED, STATE_READY, STATE_REFUSED, STATE_RETAINED, figures,
    partition_views, rpo, topic_statuses,
};

use crate::controller::status::{Truth, Want};

/// `status.kafka`: the workloads' counts and the admin API's figures and topics. While the
/// admin API does not answer, the figures and topics of the last round that did are kept.
pub fn kafka_status(
    counts: WorkloadStatus,
    view: Option<&AdminView>,
    previous: Option<&KafkaStatus>,
) -> KafkaStatus {
    let mut status = match (view, previous) {
        (
            Some(AdminView::Seen {
                figures, topics, ..
            }),
            _,
        ) => KafkaStatus {
            brokers_registered: Some(figures.brokers_registered),
            offline_partitions: Some(figures.offline_partitions),
            under_replicated_partitions: Some(figures.under_replicated_partitions),
            min_isr: figures.min_isr_seen,
            topics: topics.clone(),
            ..KafkaStatus::default()
        },
        (_, Some(previous)) => previous.clone(),
        (_, None) => KafkaStatus::default(),
    };
    status.ready_replicas = counts.ready_replicas;
    status.replicas = counts.replicas;
    status
}

/// `KafkaReady` from the workloads' condition and, once the admin API answered, the cluster's
/// own view: every broker registered, no partition offline, every topic reconciled.
pub fn kafka_condition(workloads: Want, cluster: &ValidCluster, view: Option<&AdminView>) -> Want {
    let Some(view) = view else {
        return workloads;
    };
    if workloads.truth != Truth::True {
        return workloads;
    }
    let brokers = cluster.spec.kafka.brokers;
    match view {
        AdminView::NeverReached { error } => Want {
            message: format!("{}; admin API not reached yet: {error}", workloads.message),
            ..workloads
        },
        AdminView::Unreachable { error } => Want::new(
            workloads.type_,
            Truth::False,
            "AdminUnreachable",
            format!("the admin API stopped answering: {error}"),
        ),
        AdminView::Seen {
            figures,
            topics,
            roll,
        } => {
            let summary = format!(
                "{}/{brokers} brokers registered, {} offline and {} under-replicated partitions",
                figures.brokers_registered,
                figures.offline_partitions,
                figures.under_replicated_partitions
            );
            let troubled: Vec<String> = topics
                .iter()
                .filter(|t| t.state == STATE_REFUSED || t.state == STATE_FAILED)
                .map(|t| t.message.clone())
                .collect();
            if figures.brokers_registered < brokers {
                Want::new(workloads.type_, Truth::False, "BrokersMissing", summary)
            } else if figures.offline_partitions > 0 {
                Want::new(workloads.type_, Truth::False, "OfflinePartitions", summary)
            } else if let Some(first) = troubled.first() {
                let reason = if topics.iter().any(|t| t.state == STATE_REFUSED) {
                    "TopicRefused"
                } else {
                    "TopicFailed"
                };
                let more = if troubled.len() > 1 {
                    format!(" (and {} more topics)", troubled.len() - 1)
                } else {
                    String::new()
                };
                Want::new(
                    workloads.type_,
                    Truth::False,
                    reason,
                    format!("{first}{more}; {summary}"),
                )
            } else if let Some(reason) = roll {
                Want::new(
                    workloads.type_,
                    Truth::False,
                    "RollWaiting",
                    format!("{reason}; {summary}"),
                )
            } else {
                Want::new(workloads.type_, Truth::True, "Ready", summary)
            }
        }
    }
}

/// What the Kafka task last learnt from the admin API.
#[derive(Clone, Debug, PartialEq)]
pub enum AdminView {
    /// No round succeeded since the task started.
    NeverReached { error: String },
    /// Rounds succeeded before; the last one failed.
    Unreachable { error: String },
    Seen {
        figures: ClusterFigures,
        topics: Vec<KafkaTopicStatus>,
        /// Why a rolling restart waits, while one does.
        roll: Option<String>,
    },
}
