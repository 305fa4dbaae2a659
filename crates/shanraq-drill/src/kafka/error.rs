//! What can go wrong in a Kafka drill, each naming the step, the node or the topic, so that
//! the person running `shanraq bench kafka` or the roll test knows where to look.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::error::KafkaError;
use shanraq_api::InvalidSpec;
use shanraq_operator::engines::kafka::admin::AdminError;
use shanraq_operator::engines::kafka::topics::TopicPlan;
use shanraq_testkit::TestkitError;

#[derive(Debug, thiserror::Error)]
pub enum KafkaDrillError {
    #[error("the drill's ShanraqCluster is invalid: {0}")]
    InvalidCluster(InvalidSpec),
    #[error("{0}")]
    Nodes(TestkitError),
    #[error("{0}")]
    Admin(AdminError),
    #[error("the seeds' topics did not converge: {plan:?}")]
    TopicsNotConverged { plan: TopicPlan },
    #[error("creating the producer: {0}")]
    Producer(KafkaError),
    #[error("the roll did not finish within {timeout:?}; last wait: {last_wait:?}")]
    RollTimeout {
        timeout: Duration,
        last_wait: Option<String>,
    },
    #[error("the ack ledger is poisoned")]
    AcksPoisoned,
    #[error("the samples are poisoned")]
    SamplesPoisoned,
    #[error("the read-back task: {0}")]
    ReadBackTask(tokio::task::JoinError),
    #[error("creating the verifier: {0}")]
    Verifier(KafkaError),
    #[error("metadata of {topic}: {error}")]
    Metadata { topic: String, error: KafkaError },
    #[error("watermarks of {topic}-{partition}: {error}")]
    Watermarks {
        topic: String,
        partition: i32,
        error: KafkaError,
    },
    #[error("{0}")]
    PartitionOffset(KafkaError),
    #[error("assigning {topic}: {error}")]
    Assign { topic: String, error: KafkaError },
    #[error(
        "read {read} messages of {topic} in {timeout:?}, partitions done: {done:?} of {partitions:?}"
    )]
    ReadTimeout {
        read: usize,
        topic: String,
        timeout: Duration,
        done: BTreeSet<i32>,
        partitions: Vec<i32>,
    },
    #[error("reading {topic}: {error}")]
    Read { topic: String, error: KafkaError },
}
