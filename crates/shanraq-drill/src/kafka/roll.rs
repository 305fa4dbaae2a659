//! A rolling restart of every Kafka node of a `LocalKafka`, driven by the roll planner
//! (`shanraq_ha::kafka::next_step`) on what the admin API and the controllers' raft metrics
//! show, under an `acks=all` idempotent producer; then every acknowledged message is read
//! back. The report gives what a user relies on: acknowledged and lost messages, the longest
//! produce stall, partitions seen under `min.insync.replicas`, and the whole roll's time.
//! Each node goes down the way a deleted pod does (SIGTERM: a broker's controlled shutdown)
//! and comes back on its own data directory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use shanraq_ha::kafka::{KafkaNode, RollStep, next_step};
use tokio::sync::watch;

use super::error::KafkaDrillError;
use super::local::LocalKafka;
use shanraq_operator::engines::kafka::admin::KafkaAdmin;
use shanraq_operator::engines::kafka::health;

/// How often the sampler looks for partitions under `min.insync.replicas`.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// How often the roll loop re-observes while it waits.
const POLL: Duration = Duration::from_millis(250);
/// Produce requests in flight at once.
const IN_FLIGHT: usize = 64;

#[derive(Clone, Debug)]
pub struct RollOptions {
    pub topic: String,
    /// The producer stops after this many messages, or when the roll is over.
    pub max_messages: u64,
    /// The whole roll's bound; a roll still waiting then fails.
    pub timeout: Duration,
}

#[derive(Clone, Debug, Serialize)]
pub struct RollReport {
    pub messages_acknowledged: u64,
    pub messages_lost: u64,
    /// Sends that failed after the producer's own retries (not acknowledged, so not lost).
    pub messages_failed: u64,
    /// The longest time the producer went without an acknowledgement while it was sending.
    pub longest_produce_stall_ms: u64,
    pub roll_ms: u64,
    /// The nodes in the order they restarted.
    pub restarts: Vec<String>,
    /// The last node restarted was the controller leading the quorum at that moment.
    pub active_controller_last: bool,
    /// Observations that found a partition under `min.insync.replicas`, of all taken.
    pub samples_under_min_isr: u64,
    pub samples: u64,
    /// The smallest ISR any sample saw.
    pub smallest_isr_seen: Option<i32>,
    /// Why the roll waited, once per distinct reason, in order.
    pub waits: Vec<String>,
}

#[derive(Debug, Default)]
struct Acks {
    acked: BTreeSet<u64>,
    failed: u64,
    last_ack: Option<Instant>,
    longest_stall: Duration,
}

fn producer(bootstrap: &str) -> Result<FutureProducer, KafkaDrillError> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "300000")
        .set("request.timeout.ms", "30000")
        .create()
        .map_err(KafkaDrillError::Producer)
}

/// Produces ids 0.. until `stop` or `max`, `IN_FLIGHT` at a time.
async fn produce(
    producer: FutureProducer,
    topic: String,
    max: u64,
    acks: Arc<Mutex<Acks>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut pending = FuturesUnordered::new();
    let mut next = 0_u64;
    loop {
        let stopping = *stop.borrow();
        while !stopping && next < max && pending.len() < IN_FLIGHT {
            let id = next;
            next += 1;
            let producer = producer.clone();
            let topic = topic.clone();
            pending.push(async move {
                let payload = id.to_string();
                let record = FutureRecord::to(&topic).key(&payload).payload(&payload);
                (
                    id,
                    producer
                        .send(record, Duration::from_secs(300))
                        .await
                        .is_ok(),
                )
            });
        }
        if pending.is_empty() {
            return;
        }
        tokio::select! {
            Some((id, ok)) = pending.next() => {
                let now = Instant::now();
                if let Ok(mut acks) = acks.lock() {
                    if ok {
                        acks.acked.insert(id);
                        if let Some(last) = acks.last_ack {
                            acks.longest_stall = acks.longest_stall.max(now - last);
                        }
                        acks.last_ack = Some(now);
                    } else {
                        acks.failed += 1;
                    }
                }
            }
            _ = stop.changed() => {}
        }
    }
}

#[derive(Debug, Default)]
struct Samples {
    taken: u64,
    under_min_isr: u64,
    smallest_isr: Option<i32>,
}

async fn sample(admin: KafkaAdmin, samples: Arc<Mutex<Samples>>, mut stop: watch::Receiver<bool>) {
    loop {
        if let Ok(info) = admin.describe().await {
            let figures = health::figures(&info);
            if let Ok(mut samples) = samples.lock() {
                samples.taken += 1;
                if !figures.below_min_isr.is_empty() {
                    samples.under_min_isr += 1;
                }
                if let Some(seen) = figures.min_isr_seen {
                    samples.smallest_isr = Some(samples.smallest_isr.map_or(seen, |s| s.min(seen)));
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(SAMPLE_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Restarts every controller and broker once, one at a time as the planner allows, under
/// load; then reads every acknowledged message back.
pub async fn roll_under_load(
    kafka: &mut LocalKafka,
    options: &RollOptions,
) -> Result<RollReport, KafkaDrillError> {
    let bootstrap = kafka.nodes.bootstrap_servers();
    let acks = Arc::new(Mutex::new(Acks::default()));
    let samples = Arc::new(Mutex::new(Samples::default()));
    let (stop, stopped) = watch::channel(false);
    let producing = tokio::spawn(produce(
        producer(&bootstrap)?,
        options.topic.clone(),
        options.max_messages,
        Arc::clone(&acks),
        stopped.clone(),
    ));
    let sampling = tokio::spawn(sample(kafka.admin().clone(), Arc::clone(&samples), stopped));

    // Load first, so the roll starts under it.
    let warm = Instant::now() + Duration::from_secs(30);
    while acks.lock().map_or(0, |a| a.acked.len()) < 100 && Instant::now() < warm {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = Instant::now();
    let deadline = started + options.timeout;
    let mut pending: BTreeSet<KafkaNode> = kafka
        .nodes
        .controller_ids()
        .into_iter()
        .map(KafkaNode::Controller)
        .chain(kafka.nodes.broker_ids().into_iter().map(KafkaNode::Broker))
        .collect();
    let mut in_flight = None;
    let mut restarts = Vec::new();
    let mut last_was_active = false;
    let mut waits: Vec<String> = Vec::new();
    let outcome = loop {
        if Instant::now() >= deadline {
            break Err(KafkaDrillError::RollTimeout {
                timeout: options.timeout,
                last_wait: waits.last().cloned(),
            });
        }
        let observation = match kafka.observe().await {
            Ok((observation, _)) => observation,
            Err(error) => {
                note(&mut waits, format!("admin API: {error}"));
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        match next_step(&observation, &pending, in_flight) {
            RollStep::Done => break Ok(()),
            RollStep::Restart(node) => {
                tracing::info!(%node, "restarting");
                let id = node.id();
                last_was_active = matches!(node, KafkaNode::Controller(c) if observation.active_controller == Some(c));
                kafka.nodes.stop(id).await.map_err(KafkaDrillError::Nodes)?;
                kafka
                    .nodes
                    .start_node(id)
                    .await
                    .map_err(KafkaDrillError::Nodes)?;
                pending.remove(&node);
                in_flight = Some(node);
                restarts.push(node.to_string());
            }
            step => {
                if let Some(reason) = step.reason() {
                    // Reasons carry changing partition lists; keep the first clause.
                    let short = reason.split(" (").next().unwrap_or(reason).to_owned();
                    note(&mut waits, short);
                }
                tokio::time::sleep(POLL).await;
            }
        }
    };
    let roll_ms = millis(started.elapsed());
    let _ = stop.send(true);
    let _ = producing.await;
    let _ = sampling.await;
    outcome?;

    let (acked, failed, longest_stall) = {
        let acks = acks.lock().map_err(|_| KafkaDrillError::AcksPoisoned)?;
        (acks.acked.clone(), acks.failed, acks.longest_stall)
    };
    let read = read_back(&bootstrap, &options.topic).await?;
    let lost = acked.iter().filter(|id| !read.contains(id)).count();
    let samples = samples
        .lock()
        .map_err(|_| KafkaDrillError::SamplesPoisoned)?;
    Ok(RollReport {
        messages_acknowledged: acked.len() as u64,
        messages_lost: lost as u64,
        messages_failed: failed,
        longest_produce_stall_ms: millis(longest_stall),
        roll_ms,
        restarts,
        active_controller_last: last_was_active,
        samples_under_min_isr: samples.under_min_isr,
        samples: samples.taken,
        smallest_isr_seen: samples.smallest_isr,
        waits,
    })
}

fn note(waits: &mut Vec<String>, reason: String) {
    if waits.last() != Some(&reason) {
        waits.push(reason);
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Every message id in `topic`, read from the beginning of each partition up to its high
/// watermark.
async fn read_back(bootstrap: &str, topic: &str) -> Result<BTreeSet<u64>, KafkaDrillError> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_back_blocking(&bootstrap, &topic))
        .await
        .map_err(KafkaDrillError::ReadBackTask)?
}

fn read_back_blocking(bootstrap: &str, topic: &str) -> Result<BTreeSet<u64>, KafkaDrillError> {
    const READ_TIMEOUT: Duration = Duration::from_secs(120);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "shanraq-roll-verifier")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(KafkaDrillError::Verifier)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|error| KafkaDrillError::Metadata {
            topic: topic.to_owned(),
            error,
        })?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut ends = BTreeMap::new();
    let mut list = TopicPartitionList::new();
    for partition in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, *partition, Duration::from_secs(10))
            .map_err(|error| KafkaDrillError::Watermarks {
                topic: topic.to_owned(),
                partition: *partition,
                error,
            })?;
        if high > 0 {
            ends.insert(*partition, high);
            list.add_partition_offset(topic, *partition, Offset::Beginning)
                .map_err(KafkaDrillError::PartitionOffset)?;
        }
    }
    consumer
        .assign(&list)
        .map_err(|error| KafkaDrillError::Assign {
            topic: topic.to_owned(),
            error,
        })?;
    let mut seen = BTreeSet::new();
    let mut done: BTreeSet<i32> = BTreeSet::new();
    let deadline = Instant::now() + READ_TIMEOUT;
    while done.len() < ends.len() {
        if Instant::now() >= deadline {
            return Err(KafkaDrillError::ReadTimeout {
                read: seen.len(),
                topic: topic.to_owned(),
                timeout: READ_TIMEOUT,
                done,
                partitions: ends.keys().copied().collect(),
            });
        }
        let Some(result) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = result.map_err(|error| KafkaDrillError::Read {
            topic: topic.to_owned(),
            error,
        })?;
        if let Some(id) = message
            .payload()
            .and_then(|p| std::str::from_utf8(p).ok())
            .and_then(|text| text.parse::<u64>().ok())
        {
            seen.insert(id);
        }
        if ends
            .get(&message.partition())
            .is_some_and(|end| message.offset() + 1 >= *end)
        {
            done.insert(message.partition());
        }
    }
    Ok(seen)
}
