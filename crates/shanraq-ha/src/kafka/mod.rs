//! Kafka's pure planning, sans IO: what to do to each topic (`topics`), what an admin API
//! round means (`cluster`, `figures`), and which node may restart now (`roll`). The operator
//! observes the cluster through the admin API and the controllers' raft metrics and executes
//! the plans (topics through the admin API, a roll by deleting one pod at a time); the drill
//! executes them on real processes.

pub mod cluster;
pub mod figures;
pub mod roll;
pub mod topics;

pub use roll::{ControllerView, KafkaNode, PartitionView, RollObservation, RollStep, next_step};
