//! Kafka wired to the operator: the admin API client (`admin`), the topic plan computed from
//! the spec and the described topics (`topics`, pure), one reconciliation round (`round`), the
//! status, `KafkaReady` and RPO figures drawn from it (`health`, pure), and one task per
//! cluster that runs the rounds beside the reconcile (`task`).

pub mod admin;
pub mod health;
pub mod round;
pub mod task;
pub mod topics;

pub use task::KafkaRegistry;
