//! Kafka's admin API at the operator's edge (rdkafka, which bundles librdkafka): describe the
//! cluster (brokers, partitions with their ISR, each topic's configuration) and execute a
//! topic plan one topic at a time, so that one topic's failure names that topic and leaves the
//! others alone. Every call is bounded by the admin client's timeout.
//!
//! Configuration changes go through `AlterConfigs` with the topic's whole declared set: rdkafka
//! 0.39 exposes no `IncrementalAlterConfigs`, and `AlterConfigs` replaces a topic's own
//! settings, so a key left out returns to the broker's default. The plan still computes the
//! per-key changes, and a topic whose settings already match is not written.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;

use super::topics::{TopicAction, TopicPlan};
pub use shanraq_ha::kafka::cluster::{ClusterInfo, PartitionInfo, TopicInfo};

/// The broker default of `min.insync.replicas` when a topic's configuration was not read.
const KAFKA_DEFAULT_MIN_ISR: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot create a Kafka admin client for {bootstrap}: {message}")]
    Client { bootstrap: String, message: String },
    #[error("Kafka at {bootstrap} did not answer {what}: {message}")]
    Unreachable {
        bootstrap: String,
        what: &'static str,
        message: String,
    },
}

/// Why one topic's action failed: the message its status gives for that topic.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("topic {topic}: {what} failed: {error}")]
    Request {
        topic: String,
        what: String,
        error: Box<rdkafka::error::KafkaError>,
    },
    #[error("topic {topic}: {what} failed: {code}")]
    Rejected {
        topic: String,
        what: String,
        code: rdkafka::types::RDKafkaErrorCode,
    },
    /// The plan refused the change (its message says why and what to do).
    #[error("{0}")]
    Refused(String),
}

/// An admin client of one cluster.
#[derive(Clone)]
pub struct KafkaAdmin {
    client: Arc<AdminClient<DefaultClientContext>>,
    bootstrap: String,
    timeout: Duration,
}

impl std::fmt::Debug for KafkaAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaAdmin")
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

impl KafkaAdmin {
    /// A client of `bootstrap` (`host:port,...`); it connects lazily.
    pub fn new(bootstrap: &str, timeout: Duration) -> Result<KafkaAdmin, AdminError> {
        let millis = timeout.as_millis().to_string();
        let client = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("socket.timeout.ms", &millis)
            .set("request.timeout.ms", &millis)
            .create()
            .map_err(|error| AdminError::Client {
                bootstrap: bootstrap.to_owned(),
                message: error.to_string(),
            })?;
        Ok(KafkaAdmin {
            client: Arc::new(client),
            bootstrap: bootstrap.to_owned(),
            timeout,
        })
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout))
    }

    /// Brokers, partitions and every topic's configuration.
    pub async fn describe(&self) -> Result<ClusterInfo, AdminError> {
        let client = self.client.clone();
        let timeout = self.timeout;
        let metadata = tokio::task::spawn_blocking(move || {
            client
                .inner()
                .fetch_metadata(None, timeout)
                .map(|metadata| {
                    let brokers: BTreeSet<i32> = metadata
                        .brokers()
                        .iter()
                        .map(|broker| broker.id())
                        .collect();
                    let topics: BTreeMap<String, Vec<PartitionInfo>> = metadata
                        .topics()
                        .iter()
                        .filter(|topic| topic.error().is_none())
                        .map(|topic| {
                            let partitions = topic
                                .partitions()
                                .iter()
                                .map(|p| PartitionInfo {
                                    id: p.id(),
                                    leader: p.leader(),
                                    replicas: p.replicas().to_vec(),
                                    isr: p.isr().to_vec(),
                                })
                                .collect();
                            (topic.name().to_owned(), partitions)
                        })
                        .collect();
                    (brokers, topics)
                })
                .map_err(|error| error.to_string())
        })
        .await
        .map_err(|error| error.to_string())
        .and_then(|result| result)
        .map_err(|message| self.unreachable("metadata", message))?;
        let (brokers, partitions) = metadata;

        let names: Vec<String> = partitions.keys().cloned().collect();
        let specifiers: Vec<ResourceSpecifier<'_>> = names
            .iter()
            .map(|name| ResourceSpecifier::Topic(name.as_str()))
            .collect();
        let configs = if specifiers.is_empty() {
            Vec::new()
        } else {
            self.client
                .describe_configs(&specifiers, &self.options())
                .await
                .map_err(|error| self.unreachable("DescribeConfigs", error.to_string()))?
        };
        let mut topics: BTreeMap<String, TopicInfo> = partitions
            .into_iter()
            .map(|(name, partitions)| {
                (
                    name,
                    TopicInfo {
                        partitions,
                        own_config: BTreeMap::new(),
                        min_isr: None,
                    },
                )
            })
            .collect();
        for (name, result) in names.iter().zip(configs) {
            let Ok(resource) = result else { continue };
            let Some(topic) = topics.get_mut(name) else {
                continue;
            };
            topic.min_isr = Some(KAFKA_DEFAULT_MIN_ISR);
            for entry in &resource.entries {
                let Some(value) = entry.value.as_ref() else {
                    continue;
                };
                if entry.name == "min.insync.replicas" {
                    topic.min_isr = Some(value.parse().unwrap_or(KAFKA_DEFAULT_MIN_ISR));
                }
                if entry.source == ConfigSource::DynamicTopic {
                    topic.own_config.insert(entry.name.clone(), value.clone());
                }
            }
        }
        Ok(ClusterInfo { brokers, topics })
    }

    fn unreachable(&self, what: &'static str, message: String) -> AdminError {
        AdminError::Unreachable {
            bootstrap: self.bootstrap.clone(),
            what,
            message,
        }
    }

    /// Executes each topic's actions in order; the first failure of a topic stops that topic
    /// only. Returns every topic that failed, with why.
    pub async fn execute(&self, plan: &TopicPlan) -> BTreeMap<String, String> {
        let mut failures = BTreeMap::new();
        for (name, actions) in plan {
            for action in actions {
                if let Err(error) = self.run(name, action).await {
                    failures.insert(name.clone(), error.to_string());
                    break;
                }
            }
        }
        failures
    }

    async fn run(&self, name: &str, action: &TopicAction) -> Result<(), TopicError> {
        let options = self.options();
        let request = |what: &str| {
            let what = what.to_owned();
            move |error| TopicError::Request {
                topic: name.to_owned(),
                what,
                error: Box::new(error),
            }
        };
        match action {
            TopicAction::Create(topic) => {
                let mut new = NewTopic::new(
                    name,
                    topic.partitions,
                    TopicReplication::Fixed(topic.replication_factor),
                );
                for (key, value) in &topic.config {
                    new = new.set(key, value);
                }
                let results = self
                    .client
                    .create_topics([&new], &options)
                    .await
                    .map_err(request("creating it"))?;
                topic_results(name, "creating it", results)
            }
            TopicAction::AddPartitions { from, to } => {
                let count = usize::try_from(*to).unwrap_or(0);
                let partitions = NewPartitions::new(name, count);
                let what = format!("adding partitions ({from} to {to})");
                let results = self
                    .client
                    .create_partitions([&partitions], &options)
                    .await
                    .map_err(request(&what))?;
                topic_results(name, &what, results)
            }
            TopicAction::Configure { config, .. } => {
                let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
                for (key, value) in config {
                    alter = alter.set(key, value);
                }
                let results = self
                    .client
                    .alter_configs([&alter], &options)
                    .await
                    .map_err(request("changing its config"))?;
                for result in results {
                    if let Err((_, code)) = result {
                        return Err(TopicError::Rejected {
                            topic: name.to_owned(),
                            what: "changing its config".to_owned(),
                            code,
                        });
                    }
                }
                Ok(())
            }
            TopicAction::Delete => {
                let results = self
                    .client
                    .delete_topics(&[name], &options)
                    .await
                    .map_err(request("deleting it"))?;
                topic_results(name, "deleting it", results)
            }
            TopicAction::Retain => Ok(()),
            TopicAction::Refuse { message, .. } => Err(TopicError::Refused(message.clone())),
        }
    }
}

fn topic_results(
    name: &str,
    what: &str,
    results: Vec<rdkafka::admin::TopicResult>,
) -> Result<(), TopicError> {
    for result in results {
        if let Err((_, code)) = result {
            return Err(TopicError::Rejected {
                topic: name.to_owned(),
                what: what.to_owned(),
                code,
            });
        }
    }
    Ok(())
}
