//! Topics through the admin API on a real KRaft cluster (3 controllers, 3 brokers, Apache
//! Kafka from Maven Central, started from the rendered server.properties): the operator's own
//! topic round creates the seeds' topics, adds partitions, changes and resets configuration,
//! refuses a shrink and a replication factor change naming the topic and the field while the
//! other topics still converge, retains a removed topic unless `deletionPolicy: Delete`; and
//! `KafkaReady` and Kafka's RPO come from what the admin API reports. The operator's Kafka
//! latency probe produces with `acks=all` to its own topic, created with the cluster's
//! replication factor and `min.insync.replicas`, and fails once too few replicas remain.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use shanraq_api::conditions::Truth;
use shanraq_api::kafka::{KafkaSpec, TopicDeletionPolicy};
use shanraq_drill::kafka::{LocalKafka, drill_cluster, seed_topics};
use shanraq_ha::objectives::RpoMeasurement;
use shanraq_operator::controller::status::Want;
use shanraq_operator::engines::kafka::health::{self, AdminView};
use shanraq_operator::engines::kafka::round::{RoundOutcome, topics_round};
use shanraq_operator::engines::kafka::topics::TopicAction;

const CONVERGE: Duration = Duration::from_secs(90);

/// Rounds until a round has nothing left to write (metadata of a new topic or partition can
/// trail the write by a moment), returning that round.
async fn converge(
    kafka: &LocalKafka,
    spec: &KafkaSpec,
    managed: &BTreeSet<String>,
) -> RoundOutcome {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let outcome = topics_round(kafka.admin(), spec, managed)
            .await
            .unwrap_or_else(|error| panic!("a topic round: {error}"));
        let pending = outcome
            .plan
            .values()
            .flatten()
            .any(|action| !matches!(action, TopicAction::Retain | TopicAction::Refuse { .. }));
        // Settled: every topic exists in full and its configuration was read (a topic just
        // created can refuse DescribeConfigs for a moment).
        let settled = outcome.topics.iter().all(|t| t.partitions.is_some())
            && outcome.figures.under_replicated_partitions == 0
            && outcome.figures.min_insync_unread.is_empty();
        if !pending && settled {
            return outcome;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "topics did not converge: {:?}",
            outcome.plan
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The `kafka_*` series names in a text of queries.
fn kafka_series(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("kafka_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let preceded_by_word = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !preceded_by_word {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

fn managed(outcome: &RoundOutcome) -> BTreeSet<String> {
    outcome.topics.iter().map(|t| t.name.clone()).collect()
}

fn topic<'a>(outcome: &'a RoundOutcome, name: &str) -> &'a shanraq_api::kafka::KafkaTopicStatus {
    outcome
        .topics
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("topic {name} in {:?}", outcome.topics))
}

fn ready_workloads() -> Want {
    Want::new("KafkaReady", Truth::True, "Ready", "workloads ready")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_converge_through_the_admin_api_on_real_brokers() {
    let cluster = drill_cluster(seed_topics()).expect("drill cluster");
    let kafka = LocalKafka::start(cluster.clone())
        .await
        .unwrap_or_else(|error| panic!("Kafka starts from the rendered config: {error}"));
    let mut spec = cluster.spec.kafka.clone();

    // Created as the seeds want them.
    let created = converge(&kafka, &spec, &BTreeSet::new()).await;
    for name in ["transactions", "payments", "webhooks"] {
        let status = topic(&created, name);
        assert_eq!(status.state, "Ready", "{status:?}");
        assert_eq!(status.partitions, Some(12), "{status:?}");
        assert_eq!(status.replication_factor, Some(3), "{status:?}");
        assert_eq!(status.under_replicated_partitions, Some(0), "{status:?}");
    }
    assert_eq!(created.figures.brokers_registered, 3);
    assert_eq!(created.figures.offline_partitions, 0);
    // The rendered min.insync.replicas is what the brokers apply.
    assert_eq!(created.info.topics["payments"].min_isr, Some(2));

    // KafkaReady and RPO from the admin API.
    let view = AdminView::Seen {
        figures: created.figures.clone(),
        topics: created.topics.clone(),
        roll: None,
    };
    let ready = health::kafka_condition(ready_workloads(), &cluster, Some(&view));
    assert_eq!(ready.truth, Truth::True, "{ready:?}");
    assert!(
        ready.message.contains("3/3 brokers registered"),
        "{}",
        ready.message
    );
    // A topic just created can report Kafka's static default of min.insync.replicas for a
    // moment, before the brokers apply the controllers' cluster-wide value: rounds until the
    // admin API reports the settled value (what the operator's RPO would say meanwhile is
    // what Kafka says).
    let deadline = tokio::time::Instant::now() + CONVERGE;
    let mut settled = health::rpo(&created.figures);
    while !matches!(settled, Some(RpoMeasurement::Synchronous { .. }))
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
        settled = topics_round(kafka.admin(), &spec, &managed(&created))
            .await
            .ok()
            .and_then(|outcome| health::rpo(&outcome.figures));
    }
    match settled {
        Some(RpoMeasurement::Synchronous { streaming, .. }) => {
            assert!(streaming[0].contains("ISR >= 3"), "{streaming:?}");
            assert!(
                streaming[0].contains("min.insync.replicas 2"),
                "{streaming:?}"
            );
        }
        other => panic!("RPO with every ISR full: {other:?}"),
    }

    // Every Kafka series the alert rules and the dashboard query is one the real nodes'
    // JMX exporter (with the rendered rules) serves.
    let mut served = String::new();
    for id in kafka
        .nodes
        .controller_ids()
        .into_iter()
        .chain(kafka.nodes.broker_ids())
    {
        let url = kafka.nodes.metrics_url(id).expect("metrics url");
        served.push_str(
            &reqwest::get(&url)
                .await
                .expect("scrape")
                .text()
                .await
                .expect("body"),
        );
    }
    let queried = format!(
        "{}\n{}",
        serde_json::to_string(&shanraq_render::monitoring::rule_spec(&cluster)).expect("rules"),
        shanraq_render::monitoring::dashboard_json(&cluster).expect("dashboard")
    );
    let mut names = kafka_series(&queried);
    assert!(names.len() >= 8, "{names:?}");
    // The checked-in list the monitoring test reads must stay true too.
    let listed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shanraq-render/exporters/kafka_jmx_exporter.txt"),
    )
    .expect("the checked-in Kafka exporter list");
    names.extend(
        listed
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_owned),
    );
    for name in &names {
        assert!(
            served
                .lines()
                .any(|line| line.starts_with(&format!("{name} "))
                    || line.starts_with(&format!("{name}{{"))),
            "{name} is queried but no Kafka node serves it"
        );
    }

    // More partitions, and configuration set.
    spec.topics[1].partitions = 24;
    spec.topics[2]
        .config
        .insert("retention.ms".to_owned(), "3600000".to_owned());
    spec.topics[2]
        .config
        .insert("cleanup.policy".to_owned(), "compact".to_owned());
    let grown = converge(&kafka, &spec, &managed(&created)).await;
    assert_eq!(topic(&grown, "payments").partitions, Some(24));
    assert_eq!(
        grown.info.topics["webhooks"].own_config,
        BTreeMap::from([
            ("cleanup.policy".to_owned(), "compact".to_owned()),
            ("retention.ms".to_owned(), "3600000".to_owned()),
        ])
    );

    // A key removed from the spec goes back to the broker default.
    spec.topics[2].config.remove("retention.ms");
    let reset = converge(&kafka, &spec, &managed(&grown)).await;
    assert_eq!(
        reset.info.topics["webhooks"].own_config,
        BTreeMap::from([("cleanup.policy".to_owned(), "compact".to_owned())])
    );

    // A shrink and a replication factor change are refused, naming topic and field; the
    // other topic's change in the same round still lands.
    let mut refused_spec = spec.clone();
    refused_spec.topics[1].partitions = 12;
    refused_spec.topics[0].replication_factor = 2;
    refused_spec.topics[2]
        .config
        .insert("retention.ms".to_owned(), "7200000".to_owned());
    let refused = converge(&kafka, &refused_spec, &managed(&reset)).await;
    let payments = topic(&refused, "payments");
    assert_eq!(payments.state, "Refused");
    assert!(
        payments
            .message
            .contains("spec.kafka.topics[name=payments].partitions is 12"),
        "{}",
        payments.message
    );
    assert_eq!(payments.partitions, Some(24), "Kafka keeps its partitions");
    let transactions = topic(&refused, "transactions");
    assert_eq!(transactions.state, "Refused");
    assert!(
        transactions
            .message
            .contains("spec.kafka.topics[name=transactions].replicationFactor"),
        "{}",
        transactions.message
    );
    assert_eq!(transactions.replication_factor, Some(3));
    assert_eq!(topic(&refused, "webhooks").state, "Ready");
    assert_eq!(
        refused.info.topics["webhooks"]
            .own_config
            .get("retention.ms"),
        Some(&"7200000".to_owned())
    );
    let view = AdminView::Seen {
        figures: refused.figures.clone(),
        topics: refused.topics.clone(),
        roll: None,
    };
    let not_ready = health::kafka_condition(ready_workloads(), &cluster, Some(&view));
    assert_eq!(not_ready.truth, Truth::False);
    assert_eq!(not_ready.reason, "TopicRefused");
    assert!(
        not_ready.message.contains("spec.kafka.topics[name="),
        "{}",
        not_ready.message
    );

    // Removed from the spec: retained, then deleted under deletionPolicy: Delete.
    let mut without = spec.clone();
    without.topics.retain(|t| t.name != "webhooks");
    let retained = converge(&kafka, &without, &managed(&refused)).await;
    assert_eq!(topic(&retained, "webhooks").state, "Retained");
    assert!(retained.info.topics.contains_key("webhooks"));
    without.deletion_policy = TopicDeletionPolicy::Delete;
    let deadline = tokio::time::Instant::now() + CONVERGE;
    let mut known = managed(&retained);
    loop {
        let outcome = topics_round(kafka.admin(), &without, &known)
            .await
            .unwrap_or_else(|error| panic!("a topic round: {error}"));
        if !outcome.info.topics.contains_key("webhooks") {
            assert!(
                outcome.topics.iter().all(|t| t.name != "webhooks"),
                "a deleted topic leaves the status: {:?}",
                outcome.topics
            );
            break;
        }
        known = managed(&outcome);
        known.insert("webhooks".to_owned());
        assert!(
            tokio::time::Instant::now() < deadline,
            "webhooks was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The latency probe: its topic is created as the cluster's settings say, an acks=all
    // produce is acknowledged, and one fails once fewer brokers than min.insync.replicas run.
    let plan = shanraq_operator::engines::probes::plan::plan(&cluster, "cluster.local");
    let target = shanraq_operator::engines::probes::plan::KafkaProbe {
        bootstrap: kafka.nodes.bootstrap_servers(),
        ..plan.kafka.expect("Kafka is probed")
    };
    let mut prober = shanraq_operator::engines::probes::kafka::KafkaProber::new(target.clone())
        .expect("a producer");
    let deadline = tokio::time::Instant::now() + CONVERGE;
    let latency = loop {
        match prober.produce().await {
            Ok(latency) => break latency,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no acks=all produce was acknowledged: {error}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    println!("acks=all produce acknowledged in {latency:?}");
    let described = kafka.admin().describe().await.expect("described");
    let probe_topic = described
        .topics
        .get(&target.topic)
        .expect("the probe topic exists");
    assert_eq!(probe_topic.replication_factor(), 3);
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let described = kafka.admin().describe().await.expect("described");
        if let Some(min_isr) = described.topics.get(&target.topic).and_then(|t| t.min_isr) {
            assert_eq!(min_isr, 2, "the cluster's min.insync.replicas");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the probe topic's config was never read"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut kafka = kafka;
    let brokers = kafka.nodes.broker_ids();
    for id in &brokers[..2] {
        kafka.nodes.kill(*id).expect("broker killed");
    }
    let error = prober
        .produce()
        .await
        .expect_err("one broker left of three: acks=all cannot be met with min.insync.replicas 2");
    assert!(error.starts_with("produce: "), "{error}");
}
