//! Kafka wired to the operator: the admin API client (`admin`), the topic plan computed from
//! the spec and the described topics (`topics`, pure), one reconciliation round (`round`), the
//! status, `KafkaReady` and RPO figures drawn from it (`health`, pure), the controller quorum
//! from the controllers' exporters (`quorum`), the ISR-safe roll of stale pods (`roll`), and
//! one task per cluster that runs both beside the reconcile (`task`).

pub mod admin;
pub mod health;
pub mod quorum;
pub mod roll;
pub mod round;
pub mod task;
pub mod topics;

pub use task::KafkaRegistry;
