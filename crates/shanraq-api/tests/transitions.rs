//! Changes to an existing cluster, offline: every immutable field has a CEL transition rule in
//! the generated CRD whose message names the field and what to do instead, and the same rules
//! refuse the change when evaluated here; the changes a running cluster can take are accepted.
//! The live rules (a deletion without confirmation, a scale-in that deletes the primary) refuse
//! through `validate`, naming the field.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use shanraq_api::admission::{self, FieldError};
use shanraq_api::names::ANNOTATION_CONFIRM_DELETE;
use shanraq_api::transition::Stateful;
use shanraq_api::{LiveState, ShanraqCluster};

fn cluster(spec: Value) -> ShanraqCluster {
    serde_json::from_value(json!({
        "apiVersion": "shanraq.org/v1alpha1",
        "kind": "ShanraqCluster",
        "metadata": { "name": "payments", "namespace": "fintech" },
        "spec": spec,
    }))
    .expect("test spec deserialises")
}

fn backup() -> Value {
    json!({
        "endpoint": "https://s3.example.com:9000",
        "bucket": "payments-backups",
        "credentials": { "secretName": "payments-s3" },
    })
}

fn change(old: Value, new: Value) -> Vec<FieldError> {
    let old = cluster(old);
    let new = cluster(new);
    assert_eq!(
        admission::check(&old, None),
        vec![],
        "the base spec is valid"
    );
    admission::check(&new, Some(&old))
}

/// `(what, base spec, changed spec, the field refused, words of its message)`.
fn immutable_changes() -> Vec<(&'static str, Value, Value, &'static str, &'static str)> {
    let recovery = |source: &str| json!({"recovery": {"source": source, "latest": true}});
    vec![
        (
            "renaming the bootstrap database",
            json!({}),
            json!({"postgres": {"bootstrap": {"database": "ledger"}}}),
            "spec.postgres.bootstrap.database",
            "CREATE DATABASE",
        ),
        (
            "renaming the bootstrap owner",
            json!({}),
            json!({"postgres": {"bootstrap": {"owner": "ledger"}}}),
            "spec.postgres.bootstrap.owner",
            "create another role",
        ),
        (
            "resizing PostgreSQL storage",
            json!({}),
            json!({"postgres": {"storage": {"size": "20Gi"}}}),
            "spec.postgres.storage.size",
            "immutable",
        ),
        (
            "setting a PostgreSQL storage class",
            json!({}),
            json!({"postgres": {"storage": {"size": "10Gi", "storageClassName": "fast"}}}),
            "spec.postgres.storage.storageClassName",
            "immutable",
        ),
        (
            "resizing Redis storage",
            json!({}),
            json!({"redis": {"storage": {"size": "6Gi"}}}),
            "spec.redis.storage.size",
            "immutable",
        ),
        (
            "setting a Redis storage class",
            json!({}),
            json!({"redis": {"storage": {"size": "5Gi", "storageClassName": "fast"}}}),
            "spec.redis.storage.storageClassName",
            "immutable",
        ),
        (
            "resizing Kafka storage",
            json!({}),
            json!({"kafka": {"storage": {"size": "30Gi"}}}),
            "spec.kafka.storage.size",
            "immutable",
        ),
        (
            "setting a Kafka storage class",
            json!({}),
            json!({"kafka": {"storage": {"size": "20Gi", "storageClassName": "fast"}}}),
            "spec.kafka.storage.storageClassName",
            "immutable",
        ),
        (
            "moving Redis to cluster mode",
            json!({}),
            json!({"redis": {"mode": "cluster", "instances": 6}}),
            "spec.redis.mode",
            "new cluster",
        ),
        (
            "more replicas per shard in a formed Redis Cluster",
            json!({"redis": {"mode": "cluster", "instances": 6, "replicasPerShard": 1}}),
            json!({"redis": {"mode": "cluster", "instances": 6, "replicasPerShard": 2}}),
            "spec.redis.replicasPerShard",
            "create a new cluster",
        ),
        (
            "shrinking a Redis Cluster",
            json!({"redis": {"mode": "cluster", "instances": 8}}),
            json!({"redis": {"mode": "cluster", "instances": 6}}),
            "spec.redis.instances",
            "cannot shrink",
        ),
        (
            "removing a Kafka broker",
            json!({"kafka": {"brokers": 4}}),
            json!({"kafka": {"brokers": 3}}),
            "spec.kafka.brokers",
            "cannot shrink",
        ),
        (
            "changing the KRaft voters",
            json!({}),
            json!({"kafka": {"controllers": 5}}),
            "spec.kafka.controllers",
            "immutable",
        ),
        (
            "removing partitions",
            json!({"kafka": {"topics": [{"name": "t", "partitions": 12}]}}),
            json!({"kafka": {"topics": [{"name": "t", "partitions": 6}]}}),
            "spec.kafka.topics[0].partitions",
            "only grow",
        ),
        (
            "changing a topic's replication factor",
            json!({"kafka": {"brokers": 4, "topics": [{"name": "t", "replicationFactor": 3}]}}),
            json!({"kafka": {"brokers": 4, "topics": [{"name": "t", "replicationFactor": 4}]}}),
            "spec.kafka.topics[0].replicationFactor",
            "immutable",
        ),
        (
            "adding a recovery to a running cluster",
            json!({"backup": backup()}),
            json!({"backup": backup(), "bootstrap": recovery("ledger")}),
            "spec.bootstrap.recovery",
            "restore into a new cluster",
        ),
        (
            "changing the recovery source",
            json!({"backup": backup(), "bootstrap": recovery("ledger")}),
            json!({"backup": backup(), "bootstrap": recovery("orders")}),
            "spec.bootstrap.recovery",
            "restore into a new cluster",
        ),
        (
            "turning PostgreSQL off while backups are configured",
            json!({"backup": backup()}),
            json!({"backup": backup(), "postgres": {"enabled": false}}),
            "spec.postgres.enabled",
            "remove spec.backup first",
        ),
    ]
}

#[test]
fn every_immutable_field_is_refused_naming_it() {
    for (what, old, new, field, words) in immutable_changes() {
        let errors = change(old, new);
        assert!(
            errors
                .iter()
                .any(|e| e.field == field && e.message.contains(words)),
            "{what}: expected a refusal of {field} mentioning {words:?}, got {errors:#?}"
        );
    }
}

#[test]
fn changes_a_running_cluster_can_take_are_accepted() {
    let recovery = json!({"recovery": {"source": "ledger", "latest": true}});
    for (what, old, new) in [
        (
            "more PostgreSQL instances",
            json!({}),
            json!({"postgres": {"instances": 5}}),
        ),
        (
            "PostgreSQL parameters",
            json!({}),
            json!({"postgres": {"parameters": {"work_mem": "64MB"}}}),
        ),
        (
            "a Redis Cluster grows by a shard",
            json!({"redis": {"mode": "cluster", "instances": 6}}),
            json!({"redis": {"mode": "cluster", "instances": 8}}),
        ),
        (
            "replicasPerShard is unused in replication mode",
            json!({}),
            json!({"redis": {"replicasPerShard": 2}}),
        ),
        (
            "HAProxy off",
            json!({}),
            json!({"haproxy": {"enabled": false}}),
        ),
        (
            "PostgreSQL off without backups",
            json!({}),
            json!({"postgres": {"enabled": false}}),
        ),
        (
            "a recovery removed once done",
            json!({"backup": backup(), "bootstrap": recovery}),
            json!({"backup": backup()}),
        ),
        ("backups removed", json!({"backup": backup()}), json!({})),
    ] {
        assert_eq!(change(old, new), vec![], "{what}");
    }
}

#[test]
fn postgres_off_with_backups_is_refused_at_creation_too() {
    let errors = admission::check(
        &cluster(json!({"backup": backup(), "postgres": {"enabled": false}})),
        None,
    );
    assert!(
        errors.iter().any(|e| e.field == "spec.postgres.enabled"),
        "{errors:#?}"
    );
}

/// The transition rules of the generated CRD, as `(fieldPath relative to spec, rule)`.
fn transition_rules() -> BTreeSet<String> {
    let crd: Value = serde_json::to_value(<ShanraqCluster as kube::CustomResourceExt>::crd())
        .expect("CRD serialises");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut found = BTreeSet::new();
    collect(spec, "spec", &mut found);
    found
}

fn collect(schema: &Value, at: &str, found: &mut BTreeSet<String>) {
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let text = rule["rule"].as_str().unwrap_or_default();
        if text.contains("oldSelf") {
            let field = rule["fieldPath"].as_str().unwrap_or_default();
            found.insert(format!("{at}{field}"));
        }
    }
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        collect(property, &format!("{at}.{name}"), found);
    }
    if schema["items"].is_object() {
        collect(&schema["items"], &format!("{at}[]"), found);
    }
}

#[test]
fn the_crd_carries_a_transition_rule_for_every_immutable_field() {
    let found = transition_rules();
    for field in [
        "spec.postgres.bootstrap.database",
        "spec.postgres.bootstrap.owner",
        "spec.postgres.storage.size",
        "spec.postgres.storage.storageClassName",
        "spec.redis.storage.size",
        "spec.redis.storage.storageClassName",
        "spec.kafka.storage.size",
        "spec.kafka.storage.storageClassName",
        "spec.redis.mode",
        "spec.redis.replicasPerShard",
        "spec.redis.instances",
        "spec.kafka.brokers",
        "spec.kafka.controllers",
        "spec.kafka.topics[].partitions",
        "spec.kafka.topics[].replicationFactor",
        "spec.bootstrap.recovery",
    ] {
        assert!(
            found.contains(field),
            "no transition rule on {field}: {found:#?}"
        );
    }
}

fn annotated(spec: Value, confirm: Option<&str>) -> ShanraqCluster {
    let mut sqc = cluster(spec);
    if let Some(value) = confirm {
        sqc.metadata.annotations = Some(BTreeMap::from([(
            ANNOTATION_CONFIRM_DELETE.to_owned(),
            value.to_owned(),
        )]));
    }
    sqc
}

#[test]
fn turning_off_a_running_component_waits_for_its_confirmation() {
    let live = LiveState {
        running: BTreeMap::from([(Stateful::Redis, vec!["payments-redis".to_owned()])]),
        ..LiveState::default()
    };
    let off = json!({"redis": {"enabled": false}});
    let refused = shanraq_api::validate(&annotated(off.clone(), None), &live)
        .expect_err("held without confirmation");
    assert_eq!(refused.errors.len(), 1, "{refused}");
    assert_eq!(refused.errors[0].field, "spec.redis.enabled");
    assert!(
        refused.errors[0]
            .message
            .contains("shanraq.org/confirm-delete=redis"),
        "{refused}"
    );
    // Another component's confirmation does not count.
    assert!(shanraq_api::validate(&annotated(off.clone(), Some("postgres")), &live).is_err());
    assert!(shanraq_api::validate(&annotated(off.clone(), Some("postgres,redis")), &live).is_ok());
    // Nothing running: nothing to confirm.
    assert!(shanraq_api::validate(&annotated(off, None), &LiveState::default()).is_ok());
}

#[test]
fn a_redis_scale_in_may_not_delete_the_master() {
    let live = LiveState {
        current_redis_master: Some("payments-redis-2".to_owned()),
        ..LiveState::default()
    };
    let refused = shanraq_api::validate(
        &cluster(json!({"redis": {"instances": 2, "minReplicasToWrite": 1}})),
        &live,
    )
    .expect_err("the master would be deleted");
    assert_eq!(refused.errors[0].field, "spec.redis.instances");
    assert!(
        refused.errors[0].message.contains("redis-switchover"),
        "{refused}"
    );
}
