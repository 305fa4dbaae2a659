//! Admission rules, offline: every rule the API server enforces rejects the invalid specs a user
//! could write, with a message that names the field, and accepts the defaults.

use serde_json::{Value, json};
use shanraq_api::ShanraqCluster;
use shanraq_api::admission::{self, FieldError};

fn cluster(spec: Value) -> ShanraqCluster {
    let object = json!({
        "apiVersion": "shanraq.org/v1alpha1",
        "kind": "ShanraqCluster",
        "metadata": { "name": "payments", "namespace": "fintech" },
        "spec": spec,
    });
    serde_json::from_value(object).expect("test spec deserialises")
}

fn errors_for(spec: Value) -> Vec<FieldError> {
    admission::check(&cluster(spec), None)
}

#[track_caller]
fn assert_rejected(spec: Value, field: &str, words: &str) {
    let errors = errors_for(spec);
    assert!(
        errors
            .iter()
            .any(|e| e.field == field && e.message.contains(words)),
        "expected an error on {field} mentioning {words:?}, got {errors:#?}"
    );
}

#[test]
fn empty_spec_is_the_full_production_stack_and_valid() {
    let sqc = cluster(json!({}));
    assert_eq!(admission::check(&sqc, None), vec![]);
    assert_eq!(sqc.spec.postgres.instances, 3);
    assert_eq!(sqc.spec.postgres.synchronous.number, 1);
    assert_eq!(sqc.spec.redis.instances, 3);
    assert_eq!(sqc.spec.kafka.brokers, 3);
    assert_eq!(sqc.spec.kafka.controllers, 3);
    assert_eq!(sqc.spec.haproxy.replicas, 2);
    assert!(sqc.spec.monitoring.pod_monitors && sqc.spec.monitoring.prometheus_rules);
    assert!(sqc.spec.objectives.rpo.is_zero());
}

#[test]
fn rpo_zero_needs_synchronous_replication() {
    assert_rejected(
        json!({"postgres": {"synchronous": {"number": 0}}}),
        "spec.objectives.rpo",
        "synchronous",
    );
    assert_rejected(
        json!({"postgres": {"instances": 1, "synchronous": {"number": 0}}}),
        "spec.objectives.rpo",
        "instances >= 2",
    );
    // A non-zero RPO accepts asynchronous replication.
    assert_eq!(
        errors_for(
            json!({"objectives": {"rpo": "30s"}, "postgres": {"synchronous": {"number": 0}}})
        ),
        vec![]
    );
}

#[test]
fn synchronous_standbys_must_exist() {
    assert_rejected(
        json!({"postgres": {"instances": 2, "synchronous": {"number": 2}}}),
        "spec.postgres.synchronous.number",
        "lower than postgres.instances",
    );
}

#[test]
fn preferred_durability_needs_synchronous_standbys_and_keeps_rpo_zero_attainable() {
    assert_rejected(
        json!({"objectives": {"rpo": "30s"}, "postgres": {"synchronous": {"number": 0, "dataDurability": "preferred"}}}),
        "spec.postgres.synchronous.dataDurability",
        "number 1 or more",
    );
    // With its quorum streaming a `preferred` cluster holds RPO 0; RPOMet says when it falls
    // back, so the target is not refused up front.
    assert_eq!(
        errors_for(
            json!({"postgres": {"synchronous": {"number": 1, "dataDurability": "preferred"}}})
        ),
        vec![]
    );
}

#[test]
fn operator_owned_postgres_parameters_are_refused() {
    assert_rejected(
        json!({"postgres": {"parameters": {"wal_level": "minimal"}}}),
        "spec.postgres.parameters",
        "operator owns",
    );
    assert_eq!(
        errors_for(json!({"postgres": {"parameters": {"work_mem": "64MB"}}})),
        vec![]
    );
}

#[test]
fn kafka_quorum_and_replication_rules() {
    assert_rejected(
        json!({"kafka": {"controllers": 2}}),
        "spec.kafka.controllers",
        "odd",
    );
    assert_rejected(
        json!({"kafka": {"minInsyncReplicas": 3}}),
        "spec.kafka.minInsyncReplicas",
        "lower than kafka.defaultReplicationFactor",
    );
    assert_rejected(
        json!({"kafka": {"brokers": 2}}),
        "spec.kafka.defaultReplicationFactor",
        "must not exceed kafka.brokers",
    );
    assert_rejected(
        json!({"kafka": {"topics": [{"name": "t", "partitions": 3, "replicationFactor": 5}]}}),
        "spec.kafka.topics",
        "must not exceed kafka.brokers",
    );
    assert_rejected(
        json!({"objectives": {"rpo": "10s"}, "kafka": {"topics": [{"name": "t", "partitions": 3, "replicationFactor": 2}]}}),
        "spec.kafka.topics",
        "must exceed kafka.minInsyncReplicas",
    );
}

#[test]
fn rpo_zero_needs_kafka_min_insync_of_two() {
    assert_rejected(
        json!({"kafka": {"minInsyncReplicas": 1, "defaultReplicationFactor": 3}}),
        "spec.objectives.rpo",
        "minInsyncReplicas >= 2",
    );
}

#[test]
fn redis_cluster_mode_needs_six_nodes() {
    assert_rejected(
        json!({"redis": {"mode": "cluster", "instances": 3}}),
        "spec.redis.instances",
        "at least 6",
    );
    assert_rejected(
        json!({"redis": {"mode": "cluster", "instances": 7}}),
        "spec.redis.instances",
        "multiple",
    );
    assert_eq!(
        errors_for(json!({"redis": {"mode": "cluster", "instances": 6}})),
        vec![]
    );
    assert_rejected(
        json!({"redis": {"instances": 2, "minReplicasToWrite": 2}}),
        "spec.redis.minReplicasToWrite",
        "refuse every write",
    );
}

#[test]
fn schema_rejects_bad_values_naming_the_field() {
    assert_rejected(
        json!({"postgres": {"instances": 0}}),
        "spec.postgres.instances",
        "minimum",
    );
    assert_rejected(
        json!({"failover": {"failureThreshold": 0}}),
        "spec.failover.failureThreshold",
        "minimum",
    );
    assert_rejected(
        json!({"postgres": {"storage": {"size": "lots"}}}),
        "spec.postgres.storage.size",
        "",
    );
    assert_rejected(
        json!({"redis": {"maxmemory": "2 GB"}}),
        "spec.redis.maxmemory",
        "",
    );
    assert_rejected(
        json!({"kafka": {"topics": [{"name": "bad topic!"}]}}),
        "spec.kafka.topics[0].name",
        "",
    );
    assert_rejected(
        json!({"kafka": {"topics": [{"name": "a"}, {"name": "a"}]}}),
        "spec.kafka.topics[1].name",
        "duplicate",
    );
    assert_rejected(
        json!({"objectives": {"availability": "100.5"}}),
        "spec.objectives.availability",
        "must not exceed 100",
    );
    assert_rejected(
        json!({"failover": {"probePeriod": "50ms"}}),
        "spec.failover.probePeriod",
        "at least 100ms",
    );
}

#[test]
fn durations_are_rejected_when_malformed() {
    let object = json!({
        "apiVersion": "shanraq.org/v1alpha1", "kind": "ShanraqCluster",
        "metadata": {"name": "payments"}, "spec": {"objectives": {"rto": "thirty seconds"}}
    });
    let error = serde_json::from_value::<ShanraqCluster>(object).expect_err("bad duration");
    assert!(error.to_string().contains("invalid duration"), "{error}");
}

#[test]
fn cluster_names_must_fit_child_names() {
    let mut sqc = cluster(json!({}));
    sqc.metadata.name = Some("a-very-long-cluster-name-that-overflows".to_owned());
    let errors = admission::check(&sqc, None);
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("at most 30 characters")),
        "{errors:#?}"
    );
    sqc.metadata.name = Some("Payments".to_owned());
    let errors = admission::check(&sqc, None);
    assert!(
        errors.iter().any(|e| e.message.contains("DNS-1035")),
        "{errors:#?}"
    );
}

#[test]
fn transition_rules_guard_immutable_fields() {
    let old = cluster(
        json!({"redis": {"mode": "replication"}, "kafka": {"topics": [{"name": "t", "partitions": 12}]}}),
    );
    let new = cluster(
        json!({"redis": {"mode": "cluster", "instances": 6}, "kafka": {"brokers": 3, "topics": [{"name": "t", "partitions": 6}]}}),
    );
    let errors = admission::check(&new, Some(&old));
    assert!(
        errors
            .iter()
            .any(|e| e.field == "spec.redis.mode" && e.message.contains("immutable")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("partitions can only grow")),
        "{errors:#?}"
    );

    let redis_cluster =
        cluster(json!({"redis": {"mode": "cluster", "instances": 8, "replicasPerShard": 1}}));
    let smaller =
        cluster(json!({"redis": {"mode": "cluster", "instances": 6, "replicasPerShard": 1}}));
    let errors = admission::check(&smaller, Some(&redis_cluster));
    assert!(
        errors.iter().any(|e| e.field == "spec.redis.instances"
            && e.message.contains("cannot shrink in cluster mode")),
        "{errors:#?}"
    );
    let larger =
        cluster(json!({"redis": {"mode": "cluster", "instances": 10, "replicasPerShard": 1}}));
    assert!(
        admission::check(&larger, Some(&redis_cluster)).is_empty(),
        "growing a Redis Cluster is allowed"
    );

    let shrunk = cluster(json!({"postgres": {"storage": {"size": "5Gi"}}}));
    let errors = admission::check(&shrunk, Some(&cluster(json!({}))));
    assert!(
        errors
            .iter()
            .any(|e| e.field == "spec.postgres.storage.size" && e.message.contains("immutable")),
        "{errors:#?}"
    );
}

#[test]
fn component_objectives_are_checked_against_their_own_fields() {
    // PostgreSQL's own RPO decides what its replication needs; the cluster-wide 0s then no
    // longer asks PostgreSQL for synchronous replication.
    assert_eq!(
        errors_for(json!({
            "postgres": {"synchronous": {"number": 0}, "objectives": {"rpo": "5s"}}
        })),
        vec![]
    );
    assert_rejected(
        json!({
            "objectives": {"rpo": "5s"},
            "postgres": {"synchronous": {"number": 0}, "objectives": {"rpo": "0s"}}
        }),
        "spec.postgres.objectives.rpo",
        "synchronous",
    );
    assert_rejected(
        json!({
            "objectives": {"rpo": "5s"},
            "kafka": {"minInsyncReplicas": 1, "objectives": {"rpo": "0s"}}
        }),
        "spec.kafka.objectives.rpo",
        "minInsyncReplicas >= 2",
    );
    assert_rejected(
        json!({"redis": {"objectives": {"rto": "0s"}}}),
        "spec.redis.objectives.rto",
        "greater than 0s",
    );
    assert_rejected(
        json!({"kafka": {"objectives": {"latency": {"p99": "0s"}}}}),
        "spec.kafka.objectives.latency.p99",
        "greater than 0s",
    );
}

#[test]
fn the_availability_window_is_bounded() {
    assert_rejected(
        json!({"objectives": {"availabilityWindow": "30m"}}),
        "spec.objectives.availabilityWindow",
        "between 1h and 2160h",
    );
    assert_rejected(
        json!({"objectives": {"availabilityWindow": "2161h"}}),
        "spec.objectives.availabilityWindow",
        "between 1h and 2160h",
    );
    assert_eq!(
        errors_for(json!({"objectives": {"availabilityWindow": "168h"}})),
        vec![]
    );
    assert_eq!(
        cluster(json!({}))
            .spec
            .objectives
            .availability_window
            .to_string(),
        "720h"
    );
}
