//! Kafka wired to the operator: the admin API client (`admin`), one reconciliation round of
//! the topic plan (`round`; the plan itself is `shanraq_ha::kafka::topics`), `status.kafka`
//! and `KafkaReady` (`health`, pure; the figures are `shanraq_ha::kafka::figures`), the
//! controller quorum from the controllers' exporters (`quorum`), the ISR-safe roll of stale
//! pods (`roll`), and one task per cluster that runs both beside the reconcile (`task`).

pub mod admin;
pub mod health;
pub mod quorum;
pub mod roll;
pub mod round;
pub mod task;

pub use shanraq_ha::kafka::topics;

pub use task::KafkaRegistry;
