//! Kafka's rolling-restart safety, sans IO: which node may restart now (`roll`). The operator
//! observes the cluster through the admin API and the controllers' raft metrics, and executes
//! the steps by deleting one pod at a time; the drill executes them on real processes.

pub mod roll;

pub use roll::{ControllerView, KafkaNode, PartitionView, RollObservation, RollStep, next_step};
