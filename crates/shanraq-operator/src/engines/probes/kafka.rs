//! Kafka as a client sees it: through the bootstrap Service, one small record produced with
//! `acks=all` every round to the probe topic, timed until the broker acknowledges it (every
//! in-sync replica has it, and at least `min.insync.replicas` of them). The topic
//! (`plan::KAFKA_PROBE_TOPIC`, one partition) is created by the probe with the cluster's
//! replication factor and `min.insync.replicas`, so the produce waits for what an
//! application's would; it is not a declared topic, so the topic engine leaves it alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use shanraq_api::objectives::ObjectiveComponent;

use super::plan::{KafkaProbe, ProbePath};
use super::window::ProbeWindow;
use super::{PROBE_TIMEOUT, RETRY_PERIOD, error_text, next_round, resolves, retry_due};

const COMPONENT: ObjectiveComponent = ObjectiveComponent::Kafka;
const PATH: ProbePath = ProbePath::KafkaProduce;

/// One producer, kept (librdkafka reconnects and follows partition leadership by itself).
#[allow(missing_debug_implementations)] // the producer has none
pub struct KafkaProber {
    target: KafkaProbe,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    topic_ready: bool,
}

impl KafkaProber {
    pub fn new(target: KafkaProbe) -> Result<Self, String> {
        let millis = PROBE_TIMEOUT.as_millis().to_string();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &target.bootstrap)
            .set("socket.timeout.ms", &millis)
            .set("request.timeout.ms", &millis);
        let admin = config.create().map_err(|error| {
            format!("cannot create a Kafka admin client: {}", error_text(&error))
        })?;
        let producer = config
            .clone()
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.timeout.ms", &millis)
            .create()
            .map_err(|error| format!("cannot create a Kafka producer: {}", error_text(&error)))?;
        Ok(KafkaProber {
            target,
            producer,
            admin,
            topic_ready: false,
        })
    }

    /// Creates the probe topic once (an existing one is kept as it is).
    async fn topic(&mut self) -> Result<(), String> {
        if self.topic_ready {
            return Ok(());
        }
        let topic = NewTopic::new(
            &self.target.topic,
            1,
            TopicReplication::Fixed(self.target.replication_factor),
        );
        let min_insync = self.target.min_insync_replicas.to_string();
        let topic = topic.set("min.insync.replicas", &min_insync);
        let options = AdminOptions::new()
            .request_timeout(Some(PROBE_TIMEOUT))
            .operation_timeout(Some(PROBE_TIMEOUT));
        let results = tokio::time::timeout(
            PROBE_TIMEOUT * 2,
            self.admin.create_topics([&topic], &options),
        )
        .await
        .map_err(|_| format!("creating topic {}: no answer", self.target.topic))?
        .map_err(|error| {
            format!(
                "creating topic {}: {}",
                self.target.topic,
                error_text(&error)
            )
        })?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(format!("creating topic {}: {code}", self.target.topic));
                }
            }
        }
        self.topic_ready = true;
        Ok(())
    }

    /// One `acks=all` produce: its latency until acknowledged, or why it failed.
    pub async fn produce(&mut self) -> Result<Duration, String> {
        self.topic().await?;
        let started = Instant::now();
        let payload = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis())
            .to_string();
        let record = FutureRecord::to(&self.target.topic)
            .key("shanraq-probe")
            .payload(&payload);
        match tokio::time::timeout(PROBE_TIMEOUT * 2, self.producer.send(record, PROBE_TIMEOUT))
            .await
        {
            Ok(Ok(_)) => Ok(started.elapsed()),
            Ok(Err((error, _))) => Err(format!("produce: {}", error_text(&error))),
            Err(_) => Err(format!(
                "produce: no acknowledgement within {:?}",
                PROBE_TIMEOUT * 2
            )),
        }
    }
}

/// Probes every round until the task is aborted.
pub async fn run(target: KafkaProbe, window: Arc<ProbeWindow>) {
    let (host, port) = match target.bootstrap.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().unwrap_or(9092)),
        None => (target.bootstrap.clone(), 9092),
    };
    let mut prober = None;
    let mut round = Instant::now();
    loop {
        tokio::time::sleep_until(round.into()).await;
        round = Instant::now();
        if prober.is_none() {
            if let Err(why) = resolves(&host, port).await {
                window.set_not_running(COMPONENT, Some(why));
                round = next_round(round);
                continue;
            }
            match KafkaProber::new(target.clone()) {
                Ok(created) => prober = Some(created),
                Err(why) => {
                    window.set_not_running(COMPONENT, Some(why));
                    round = next_round(round);
                    continue;
                }
            }
        }
        window.set_not_running(COMPONENT, None);
        let Some(prober) = prober.as_mut() else {
            continue;
        };
        let started = Instant::now();
        let result = prober.produce().await;
        if let Err(error) = &result {
            window.note_error(COMPONENT, error.clone());
        }
        window.record(PATH, started, result.ok());
        round = next_round(round);
        while retry_due(&window, PATH, round) {
            tokio::time::sleep(RETRY_PERIOD).await;
            let started = Instant::now();
            let ok = prober.produce().await.is_ok();
            window.retried(PATH, started, ok);
        }
    }
}
