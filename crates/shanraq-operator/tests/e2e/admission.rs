//! Admission at the real API server: every invalid spec a user could write is refused with the
//! field named, by the CRD's OpenAPI schema (ranges, patterns, enums), its CEL rules (relations
//! between fields) and its transition rules (immutable fields, storage that cannot shrink,
//! partitions that cannot go down). A refused update leaves the stored object untouched.

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use shanraq_api::ShanraqCluster;

use super::{TestNamespace, client};

/// `(what, spec, words the refusal must contain)`; each spec is merged into `{}`, the full
/// production stack with defaults.
fn invalid_specs() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "no PostgreSQL instance",
            json!({"postgres": {"instances": 0}}),
            "spec.postgres.instances",
        ),
        (
            "too many PostgreSQL instances",
            json!({"postgres": {"instances": 10}}),
            "spec.postgres.instances",
        ),
        (
            "as many synchronous standbys as instances",
            json!({"postgres": {"instances": 3, "synchronous": {"number": 3}}}),
            "postgres.synchronous.number",
        ),
        (
            "an unknown data durability",
            json!({"postgres": {"synchronous": {"dataDurability": "sometimes"}}}),
            "spec.postgres.synchronous.dataDurability",
        ),
        (
            "a preferred data durability without synchronous standbys",
            json!({"objectives": {"rpo": "30s"}, "postgres": {"synchronous": {"number": 0, "dataDurability": "preferred"}}}),
            "spec.postgres.synchronous.dataDurability",
        ),
        (
            "a setting the operator owns",
            json!({"postgres": {"parameters": {"port": "5433"}}}),
            "spec.postgres.parameters",
        ),
        (
            "an invalid database name",
            json!({"postgres": {"bootstrap": {"database": "Pay-Ments"}}}),
            "spec.postgres.bootstrap.database",
        ),
        (
            "an invalid owner name",
            json!({"postgres": {"bootstrap": {"owner": "1owner"}}}),
            "spec.postgres.bootstrap.owner",
        ),
        (
            "a storage size that is no quantity",
            json!({"postgres": {"storage": {"size": "10GB"}}}),
            "spec.postgres.storage.size",
        ),
        (
            "an unknown Redis mode",
            json!({"redis": {"mode": "sentinel"}}),
            "spec.redis.mode",
        ),
        (
            "no Redis instance",
            json!({"redis": {"instances": 0}}),
            "spec.redis.instances",
        ),
        (
            "a Redis Cluster of 3",
            json!({"redis": {"mode": "cluster", "instances": 3}}),
            "redis.instances",
        ),
        (
            "a Redis Cluster with an incomplete shard",
            json!({"redis": {"mode": "cluster", "instances": 7, "replicasPerShard": 1}}),
            "redis.instances",
        ),
        (
            "a master that needs more replicas than exist",
            json!({"redis": {"instances": 3, "minReplicasToWrite": 3}}),
            "redis.minReplicasToWrite",
        ),
        (
            "a maxmemory that is no size",
            json!({"redis": {"maxmemory": "1TB"}}),
            "spec.redis.maxmemory",
        ),
        (
            "an unknown eviction policy",
            json!({"redis": {"maxmemoryPolicy": "lru"}}),
            "spec.redis.maxmemoryPolicy",
        ),
        (
            "an unknown persistence",
            json!({"redis": {"persistence": "sometimes"}}),
            "spec.redis.persistence",
        ),
        (
            "an even KRaft quorum",
            json!({"kafka": {"controllers": 2}}),
            "spec.kafka.controllers",
        ),
        (
            "no broker",
            json!({"kafka": {"brokers": 0}}),
            "spec.kafka.brokers",
        ),
        (
            "min.insync.replicas equal to the replication factor",
            json!({"kafka": {"minInsyncReplicas": 3, "defaultReplicationFactor": 3}}),
            "kafka.minInsyncReplicas",
        ),
        (
            "a replication factor above the brokers",
            json!({"kafka": {"brokers": 3, "defaultReplicationFactor": 5}}),
            "kafka.defaultReplicationFactor",
        ),
        (
            "a topic without partitions",
            json!({"kafka": {"topics": [{"name": "payments", "partitions": 0, "replicationFactor": 3}]}}),
            "spec.kafka.topics[0].partitions",
        ),
        (
            "a topic name Kafka refuses",
            json!({"kafka": {"topics": [{"name": "pay ments", "partitions": 12, "replicationFactor": 3}]}}),
            "spec.kafka.topics[0].name",
        ),
        (
            "a topic replicated beyond the brokers",
            json!({"kafka": {"topics": [{"name": "payments", "partitions": 12, "replicationFactor": 5}]}}),
            "kafka.topics",
        ),
        (
            "a topic whose replicas equal min.insync.replicas",
            json!({"kafka": {"topics": [{"name": "payments", "partitions": 12, "replicationFactor": 2}]}}),
            "kafka.topics",
        ),
        (
            "no HAProxy replica",
            json!({"haproxy": {"replicas": 0}}),
            "spec.haproxy.replicas",
        ),
        (
            "a backend on a privileged port",
            json!({"haproxy": {"backends": [{"name": "api", "port": 80, "servers": [{"host": "api", "port": 8080}]}]}}),
            "spec.haproxy.backends[0].port",
        ),
        (
            "an unknown balance algorithm",
            json!({"haproxy": {"backends": [{"name": "api", "port": 8080, "balance": "random", "servers": [{"host": "api", "port": 8080}]}]}}),
            "spec.haproxy.backends[0].balance",
        ),
        (
            "a backend without servers",
            json!({"haproxy": {"backends": [{"name": "api", "port": 8080, "servers": []}]}}),
            "spec.haproxy.backends[0].servers",
        ),
        (
            "a probe period below 100ms",
            json!({"failover": {"probePeriod": "50ms"}}),
            "failover.probePeriod",
        ),
        (
            "a probe period that is no duration",
            json!({"failover": {"probePeriod": "fast"}}),
            "spec.failover.probePeriod",
        ),
        (
            "a failure threshold of 0",
            json!({"failover": {"failureThreshold": 0}}),
            "spec.failover.failureThreshold",
        ),
        (
            "a switchover timeout below 1s",
            json!({"failover": {"switchoverTimeout": "500ms"}}),
            "failover.switchoverTimeout",
        ),
        (
            "availability above 100 %",
            json!({"objectives": {"availability": "101"}}),
            "spec.objectives.availability",
        ),
        (
            "an RTO of 0s",
            json!({"objectives": {"rto": "0s"}}),
            "objectives.rto",
        ),
        (
            "a p99 of 0s",
            json!({"objectives": {"latency": {"p99": "0s"}}}),
            "objectives.latency.p99",
        ),
        (
            "RPO 0 without a synchronous standby",
            json!({"objectives": {"rpo": "0s"}, "postgres": {"synchronous": {"number": 0}}}),
            "objectives.rpo",
        ),
        (
            "RPO 0 with min.insync.replicas 1",
            json!({"objectives": {"rpo": "0s"}, "kafka": {"minInsyncReplicas": 1}}),
            "objectives.rpo",
        ),
    ]
}

/// `(what, change to the running object, words the refusal must contain)`.
fn invalid_updates() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "growing PostgreSQL storage",
            json!({"postgres": {"storage": {"size": "20Gi"}}}),
            "spec.postgres.storage.size",
        ),
        (
            "shrinking PostgreSQL storage",
            json!({"postgres": {"storage": {"size": "1Gi"}}}),
            "spec.postgres.storage.size",
        ),
        (
            "changing the PostgreSQL storage class",
            json!({"postgres": {"storage": {"storageClassName": "fast"}}}),
            "spec.postgres.storage.storageClassName",
        ),
        (
            "shrinking Redis storage",
            json!({"redis": {"storage": {"size": "1Mi"}}}),
            "spec.redis.storage.size",
        ),
        (
            "moving Redis to cluster mode",
            json!({"redis": {"mode": "cluster", "instances": 6}}),
            "spec.redis.mode",
        ),
        (
            "removing a broker",
            json!({"kafka": {"brokers": 2, "defaultReplicationFactor": 2, "minInsyncReplicas": 1, "topics": []}}),
            "spec.kafka.brokers",
        ),
        (
            "changing the KRaft voters",
            json!({"kafka": {"controllers": 5}}),
            "spec.kafka.controllers",
        ),
        (
            "removing partitions",
            json!({"kafka": {"topics": [{"name": "payments", "partitions": 6, "replicationFactor": 3}]}}),
            "spec.kafka.topics[0].partitions",
        ),
        (
            "changing a topic's replication factor",
            json!({"kafka": {"brokers": 4, "topics": [{"name": "payments", "partitions": 12, "replicationFactor": 4}]}}),
            "spec.kafka.topics[0].replicationFactor",
        ),
    ]
}

/// The object as raw JSON: an invalid spec often cannot even be held by the typed struct.
fn object(name: &str, namespace: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "shanraq.org/v1alpha1",
        "kind": "ShanraqCluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }))
    .expect("an object")
}

fn refusal(result: Result<DynamicObject, kube::Error>, what: &str, words: &str) -> String {
    match result {
        Ok(_) => panic!("{what}: the API server accepted it"),
        Err(kube::Error::Api(status)) => {
            assert!(
                status.is_invalid(),
                "{what}: expected 422 Invalid, got {status:?}"
            );
            assert!(
                status.message.contains(words),
                "{what}: the refusal does not name {words}: {}",
                status.message
            );
            status.message
        }
        Err(other) => panic!("{what}: expected an admission error, got {other}"),
    }
}

#[tokio::test]
async fn invalid_specs_are_refused_at_admission_with_the_field_named() {
    let Some(client) = client().await else { return };
    let namespace = TestNamespace::create(&client, "admission").await;
    let ns = namespace.name.clone();
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::erase::<ShanraqCluster>(&()),
    );
    let mut refused = 0;

    for (index, (what, spec, words)) in invalid_specs().into_iter().enumerate() {
        let message = refusal(
            api.create(
                &PostParams::default(),
                &object(&format!("invalid-{index}"), &ns, spec),
            )
            .await,
            what,
            words,
        );
        println!("refused {what}: {message}");
        refused += 1;
    }
    for (what, name, words) in [
        (
            "a name longer than 30 characters",
            "a-name-that-is-far-too-long-for-it",
            "metadata.name",
        ),
        (
            "a name that is no DNS-1035 label",
            "9lives",
            "metadata.name",
        ),
    ] {
        let message = refusal(
            api.create(&PostParams::default(), &object(name, &ns, json!({})))
                .await,
            what,
            words,
        );
        println!("refused {what}: {message}");
        refused += 1;
    }

    // Transition rules, against an object that already exists: every refused update leaves
    // it exactly as it was (same resourceVersion and generation).
    let running = api
        .create(
            &PostParams::default(),
            &object(
                "running",
                &ns,
                json!({"kafka": {"topics": [{"name": "payments", "partitions": 12, "replicationFactor": 3}]}}),
            ),
        )
        .await
        .expect("a valid cluster is accepted");
    for (what, change, words) in invalid_updates() {
        let message = refusal(
            api.patch(
                "running",
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": change})),
            )
            .await,
            what,
            words,
        );
        println!("refused {what}: {message}");
        refused += 1;
        let now = api.get("running").await.expect("still there");
        assert_eq!(
            now.metadata.resource_version, running.metadata.resource_version,
            "{what} changed the object"
        );
        assert_eq!(
            now.data["spec"], running.data["spec"],
            "{what} changed the spec"
        );
    }
    println!("{refused} invalid specs refused at admission");
    assert!(refused >= 30, "only {refused} cases");
    // Nothing invalid was stored.
    let stored = api.list(&Default::default()).await.expect("list");
    let names: Vec<String> = stored
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    assert_eq!(names, vec!["running".to_owned()]);
}
