//! Kafka drills on real JVMs: a local KRaft cluster from the rendered configuration
//! (`local`), and a rolling restart driven by the roll planner under an `acks=all` producer
//! (`roll`), which `shanraq bench kafka` and the roll test run.

pub mod bench;
pub mod error;
pub mod local;
pub mod roll;

pub use error::KafkaDrillError;
pub use local::{LocalKafka, drill_cluster, seed_topics};
