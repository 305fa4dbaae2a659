//! Every spec change is safe, at a real API server with the operator running: a table of
//! transitions, each a base cluster, a change, and what must follow. A change is refused at
//! admission naming its field (and the stored object stays as it was), or held by the operator
//! as `Stalled` naming its field, or applied; where nothing should change, every StatefulSet and
//! Deployment of the cluster keeps its generation and its pod template. Destructive changes
//! (turning a stateful component off) go through once the cluster carries
//! `shanraq.org/confirm-delete` naming the component, and the annotation is consumed.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use shanraq_api::ShanraqCluster;
use shanraq_api::conditions::{
    AVAILABILITY_MET, HAPROXY_READY, LATENCY_MET, POSTGRES_READY, STALLED,
};
use shanraq_api::names::{ANNOTATION_CONFIRM_DELETE, Names};

use super::operator::OperatorProcess;
use super::{LONG, TestNamespace, client, condition, wait_for};

/// What must follow a change.
#[derive(Clone, Debug)]
enum Expect {
    /// The API server refuses it, naming the field; the stored object is unchanged.
    Refused(&'static str),
    /// Admitted, then held: `Stalled=True` naming the field, every workload unchanged.
    Held(&'static str),
    /// Held like `Held` until the cluster is annotated `shanraq.org/confirm-delete=<confirm>`;
    /// then the StatefulSets with these suffixes are deleted and the cluster is no longer
    /// stalled.
    HeldUntilConfirmed {
        field: &'static str,
        confirm: &'static str,
        deleted: &'static [&'static str],
    },
    /// Applied: the workload with this suffix gets `replicas`, every other workload unchanged.
    Scaled {
        workload: &'static str,
        replicas: i32,
    },
    /// Applied to the workload with this suffix (a new pod template) but not rolled by the
    /// operator: `PostgresReady` says the pods take it only when deleted; every other workload
    /// unchanged.
    NotRolled { workload: &'static str },
    /// Applied: these workloads go, and `LatencyMet`/`AvailabilityMet` say `NotMeasurable`
    /// with these words.
    NotMeasurable {
        deleted: &'static [&'static str],
        words: &'static str,
    },
}

struct Row {
    what: &'static str,
    base: Value,
    /// A JSON merge patch of `spec`.
    change: Value,
    /// Written to the status before the change, as the HA engines would have (the primary or
    /// master the change must not delete).
    status: Option<Value>,
    expect: Expect,
}

fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(base.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

/// A spec with only `enabled` of the components on (the others off from creation, so there is
/// nothing of theirs to confirm), plus `extra`.
fn only(enabled: &[&str], extra: Value) -> Value {
    let mut spec = json!({
        "objectives": {"rpo": "5s"},
        "monitoring": {"podMonitors": false, "prometheusRules": false, "grafanaDashboards": false},
    });
    for component in ["postgres", "redis", "kafka", "haproxy"] {
        spec[component] = json!({"enabled": enabled.contains(&component)});
    }
    merge(&mut spec, &extra);
    spec
}

fn backup() -> Value {
    json!({
        "endpoint": "https://s3.example.com:9000",
        "bucket": "payments-backups",
        "credentials": {"secretName": "payments-s3"},
    })
}

fn rows() -> Vec<Row> {
    let row = |what, base, change, expect| Row {
        what,
        base,
        change,
        status: None,
        expect,
    };
    let topics = |partitions: i32, replication_factor: i32| json!({"kafka": {"brokers": 4, "topics": [{"name": "payments", "partitions": partitions, "replicationFactor": replication_factor}]}});
    let redis_cluster =
        |instances: i32| json!({"redis": {"mode": "cluster", "instances": instances}});
    vec![
        // The four transitions of issue 24.
        row(
            "renaming the bootstrap database",
            only(&["postgres"], json!({})),
            json!({"postgres": {"bootstrap": {"database": "ledger"}}}),
            Expect::Refused("spec.postgres.bootstrap.database"),
        ),
        row(
            "more replicas per shard in a formed Redis Cluster",
            only(&["redis"], redis_cluster(6)),
            json!({"redis": {"replicasPerShard": 2}}),
            Expect::Refused("spec.redis.replicasPerShard"),
        ),
        row(
            "PostgreSQL off while backups are configured",
            only(&["postgres"], json!({"backup": backup()})),
            json!({"postgres": {"enabled": false}}),
            Expect::Refused("spec.postgres.enabled"),
        ),
        row(
            "HAProxy off while latency and availability objectives are set",
            only(&["postgres", "haproxy"], json!({})),
            json!({"haproxy": {"enabled": false}}),
            Expect::NotMeasurable {
                deleted: &["haproxy"],
                words: "spec.haproxy.enabled: false",
            },
        ),
        // Every other immutable field.
        row(
            "renaming the bootstrap owner",
            only(&["postgres"], json!({})),
            json!({"postgres": {"bootstrap": {"owner": "ledger"}}}),
            Expect::Refused("spec.postgres.bootstrap.owner"),
        ),
        row(
            "resizing PostgreSQL storage",
            only(&["postgres"], json!({})),
            json!({"postgres": {"storage": {"size": "20Gi"}}}),
            Expect::Refused("spec.postgres.storage.size"),
        ),
        row(
            "setting a PostgreSQL storage class",
            only(&["postgres"], json!({})),
            json!({"postgres": {"storage": {"storageClassName": "fast"}}}),
            Expect::Refused("spec.postgres.storage.storageClassName"),
        ),
        row(
            "resizing Redis storage",
            only(&["redis"], json!({})),
            json!({"redis": {"storage": {"size": "6Gi"}}}),
            Expect::Refused("spec.redis.storage.size"),
        ),
        row(
            "setting a Redis storage class",
            only(&["redis"], json!({})),
            json!({"redis": {"storage": {"storageClassName": "fast"}}}),
            Expect::Refused("spec.redis.storage.storageClassName"),
        ),
        row(
            "moving Redis to cluster mode",
            only(&["redis"], json!({})),
            redis_cluster(6),
            Expect::Refused("spec.redis.mode"),
        ),
        row(
            "shrinking a Redis Cluster",
            only(&["redis"], redis_cluster(8)),
            json!({"redis": {"instances": 6}}),
            Expect::Refused("spec.redis.instances"),
        ),
        row(
            "resizing Kafka storage",
            only(&["kafka"], json!({})),
            json!({"kafka": {"storage": {"size": "30Gi"}}}),
            Expect::Refused("spec.kafka.storage.size"),
        ),
        row(
            "setting a Kafka storage class",
            only(&["kafka"], json!({})),
            json!({"kafka": {"storage": {"storageClassName": "fast"}}}),
            Expect::Refused("spec.kafka.storage.storageClassName"),
        ),
        row(
            "removing a Kafka broker",
            only(&["kafka"], json!({"kafka": {"brokers": 4}})),
            json!({"kafka": {"brokers": 3}}),
            Expect::Refused("spec.kafka.brokers"),
        ),
        row(
            "changing the KRaft voters",
            only(&["kafka"], json!({})),
            json!({"kafka": {"controllers": 5}}),
            Expect::Refused("spec.kafka.controllers"),
        ),
        row(
            "removing partitions",
            only(&["kafka"], topics(12, 3)),
            topics(6, 3),
            Expect::Refused("spec.kafka.topics[0].partitions"),
        ),
        row(
            "changing a topic's replication factor",
            only(&["kafka"], topics(12, 3)),
            topics(12, 4),
            Expect::Refused("spec.kafka.topics[0].replicationFactor"),
        ),
        row(
            "adding a recovery to a running cluster",
            only(&["postgres"], json!({"backup": backup()})),
            json!({"bootstrap": {"recovery": {"source": "ledger", "latest": true}}}),
            Expect::Refused("spec.bootstrap.recovery"),
        ),
        // Destructive changes wait for their confirmation.
        row(
            "PostgreSQL off",
            only(&["postgres"], json!({})),
            json!({"postgres": {"enabled": false}}),
            Expect::HeldUntilConfirmed {
                field: "spec.postgres.enabled",
                confirm: "postgres",
                deleted: &["pg"],
            },
        ),
        row(
            "Redis off",
            only(&["redis"], json!({})),
            json!({"redis": {"enabled": false}}),
            Expect::HeldUntilConfirmed {
                field: "spec.redis.enabled",
                confirm: "postgres,redis",
                deleted: &["redis"],
            },
        ),
        row(
            "Kafka off",
            only(&["kafka"], json!({})),
            json!({"kafka": {"enabled": false}}),
            Expect::HeldUntilConfirmed {
                field: "spec.kafka.enabled",
                confirm: "kafka",
                deleted: &["kafka-broker", "kafka-controller"],
            },
        ),
        Row {
            what: "a PostgreSQL scale-in that deletes the primary",
            base: only(&["postgres"], json!({})),
            change: json!({"postgres": {"instances": 2}}),
            status: Some(json!({"postgres": {"currentPrimary": "{name}-pg-2"}})),
            expect: Expect::Held("spec.postgres.instances"),
        },
        Row {
            what: "a Redis scale-in that deletes the master",
            base: only(&["redis"], json!({})),
            change: json!({"redis": {"instances": 2}}),
            status: Some(json!({"redis": {"currentMaster": "{name}-redis-2"}})),
            expect: Expect::Held("spec.redis.instances"),
        },
        // Changes the running cluster takes.
        row(
            "a new PostgreSQL image",
            only(&["postgres"], json!({})),
            json!({"postgres": {"image": "ghcr.io/shanraq-org/shanraq-postgres:15-next"}}),
            Expect::NotRolled { workload: "pg" },
        ),
        row(
            "more PostgreSQL instances",
            only(&["postgres"], json!({})),
            json!({"postgres": {"instances": 5}}),
            Expect::Scaled {
                workload: "pg",
                replicas: 5,
            },
        ),
        row(
            "a Redis Cluster grows by a shard",
            only(&["redis"], redis_cluster(6)),
            json!({"redis": {"instances": 8}}),
            Expect::Scaled {
                workload: "redis",
                replicas: 8,
            },
        ),
        row(
            "more HAProxy replicas",
            only(&["postgres", "haproxy"], json!({})),
            json!({"haproxy": {"replicas": 3}}),
            Expect::Scaled {
                workload: "haproxy",
                replicas: 3,
            },
        ),
    ]
}

/// One workload as far as a change is concerned: its generation, replicas and pod template.
#[derive(Clone, Debug, PartialEq)]
struct Shape {
    generation: Option<i64>,
    replicas: Option<i32>,
    template: Value,
}

/// Every StatefulSet and Deployment of cluster `name`, by name.
async fn workloads(client: &Client, namespace: &str, name: &str) -> BTreeMap<String, Shape> {
    let selector = Names::new(name).instance_selector();
    let params = ListParams::default().labels(&selector);
    let mut shapes = BTreeMap::new();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    for set in sets.list(&params).await.expect("list StatefulSets").items {
        let spec = &set.spec;
        shapes.insert(
            set.name_any(),
            Shape {
                generation: set.metadata.generation,
                replicas: spec.replicas,
                template: serde_json::to_value(&spec.template).expect("template"),
            },
        );
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    for deployment in deployments
        .list(&params)
        .await
        .expect("list Deployments")
        .items
    {
        let spec = &deployment.spec;
        shapes.insert(
            deployment.name_any(),
            Shape {
                generation: deployment.metadata.generation,
                replicas: spec.replicas,
                template: serde_json::to_value(&spec.template).expect("template"),
            },
        );
    }
    shapes
}

/// The cluster once the operator has reconciled its current generation.
async fn reconciled(clusters: &Api<ShanraqCluster>, name: &str, what: &str) -> ShanraqCluster {
    wait_for(
        &format!("{what}: generation reconciled"),
        LONG,
        || async move {
            let cluster = clusters.get(name).await.ok()?;
            let generation = cluster.metadata.generation;
            let stalled = condition(&cluster, STALLED)?;
            (cluster.status.as_ref()?.observed_generation == generation
                && stalled.observed_generation == generation)
                .then_some(cluster)
        },
    )
    .await
}

#[track_caller]
fn assert_unchanged(what: &str, before: &BTreeMap<String, Shape>, after: &BTreeMap<String, Shape>) {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "{what}: the same workloads"
    );
    for (name, shape) in before {
        assert_eq!(Some(shape), after.get(name), "{what}: {name} unchanged");
    }
}

#[tokio::test]
async fn every_spec_change_is_refused_held_or_applied() {
    let Some(client) = client().await else { return };
    let namespace = TestNamespace::create(&client, "transitions").await;
    let ns = namespace.name.clone();
    let operator = OperatorProcess::start_alone(&client, &ns).await;
    let raw: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::erase::<ShanraqCluster>(&()),
    );
    let clusters: Api<ShanraqCluster> = Api::namespaced(client.clone(), &ns);
    let rows = rows();
    let name = |index: usize| format!("t{index:02}");

    // Every base cluster, created at once, then reconciled with its workloads in place.
    for (index, row) in rows.iter().enumerate() {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "shanraq.org/v1alpha1",
            "kind": "ShanraqCluster",
            "metadata": {"name": name(index), "namespace": ns},
            "spec": row.base,
        }))
        .expect("an object");
        raw.create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|error| panic!("{}: the base spec is accepted: {error}", row.what));
    }
    let mut before = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let cluster = reconciled(&clusters, &name(index), row.what).await;
        assert_eq!(
            condition(&cluster, STALLED).map(|c| c.status).as_deref(),
            Some("False"),
            "{}: the base spec is valid",
            row.what
        );
        if let Some(status) = &row.status {
            let text = status.to_string().replace("{name}", &name(index));
            let status: Value = serde_json::from_str(&text).expect("status JSON");
            clusters
                .patch_status(
                    &name(index),
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"status": status})),
                )
                .await
                .unwrap_or_else(|error| panic!("{}: status written: {error}", row.what));
        }
        let shapes = wait_for(&format!("{}: workloads", row.what), LONG, || {
            let client = client.clone();
            let ns = ns.clone();
            let cluster = name(index);
            async move {
                let shapes = workloads(&client, &ns, &cluster).await;
                (!shapes.is_empty()).then_some(shapes)
            }
        })
        .await;
        before.push((cluster, shapes));
    }

    // Each change, then what must follow it.
    let mut results = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let cluster_name = name(index);
        let (stored, shapes) = &before[index];
        let patched = raw
            .patch(
                &cluster_name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": row.change})),
            )
            .await;
        let what = row.what;
        match &row.expect {
            Expect::Refused(field) => {
                let message = match patched {
                    Ok(_) => panic!("{what}: the API server accepted it"),
                    Err(kube::Error::Api(status)) => {
                        assert!(status.is_invalid(), "{what}: 422 Invalid, got {status:?}");
                        status.message
                    }
                    Err(other) => panic!("{what}: expected an admission error, got {other}"),
                };
                assert!(
                    message.contains(field),
                    "{what}: the refusal names {field}: {message}"
                );
                let now = clusters.get(&cluster_name).await.expect("still there");
                assert_eq!(
                    now.metadata.generation, stored.metadata.generation,
                    "{what}: the stored object is unchanged"
                );
                assert_eq!(
                    now.spec, stored.spec,
                    "{what}: the stored spec is unchanged"
                );
                assert_unchanged(what, shapes, &workloads(&client, &ns, &cluster_name).await);
                results.push(format!("{what}: refused, naming {field}"));
            }
            Expect::Held(field) | Expect::HeldUntilConfirmed { field, .. } => {
                patched.unwrap_or_else(|error| panic!("{what}: admitted: {error}"));
                let held = reconciled(&clusters, &cluster_name, what).await;
                let stalled = condition(&held, STALLED).expect("Stalled");
                assert_eq!(stalled.status, "True", "{what}: Stalled: {stalled:?}");
                assert!(
                    stalled.message.contains(field),
                    "{what}: Stalled names {field}: {}",
                    stalled.message
                );
                assert_unchanged(what, shapes, &workloads(&client, &ns, &cluster_name).await);
                results.push(format!("{what}: Stalled, naming {field}, nothing touched"));
            }
            Expect::Scaled { workload, replicas } => {
                patched.unwrap_or_else(|error| panic!("{what}: admitted: {error}"));
                let target = format!("{cluster_name}-{workload}");
                let after = wait_for(&format!("{what}: {target} scaled"), LONG, || {
                    let client = client.clone();
                    let ns = ns.clone();
                    let cluster = cluster_name.clone();
                    let target = target.clone();
                    async move {
                        let shapes = workloads(&client, &ns, &cluster).await;
                        (shapes.get(&target)?.replicas == Some(*replicas)).then_some(shapes)
                    }
                })
                .await;
                let applied = reconciled(&clusters, &cluster_name, what).await;
                assert_eq!(
                    condition(&applied, STALLED).map(|c| c.status).as_deref(),
                    Some("False"),
                    "{what}: not stalled"
                );
                let mut others = shapes.clone();
                others.remove(&target);
                let mut rest = after.clone();
                rest.remove(&target);
                assert_unchanged(what, &others, &rest);
                assert_eq!(
                    shapes.get(&target).map(|s| &s.template),
                    after.get(&target).map(|s| &s.template),
                    "{what}: scaling keeps the pod template"
                );
                results.push(format!("{what}: applied, {target} at {replicas} replicas"));
            }
            Expect::NotRolled { workload } => {
                patched.unwrap_or_else(|error| panic!("{what}: admitted: {error}"));
                let target = format!("{cluster_name}-{workload}");
                let pending = wait_for(&format!("{what}: PostgresReady says so"), LONG, || {
                    let clusters = clusters.clone();
                    let cluster = cluster_name.clone();
                    async move {
                        let now = clusters.get(&cluster).await.ok()?;
                        let ready = condition(&now, POSTGRES_READY)?;
                        (ready.observed_generation == now.metadata.generation
                            && ready.message.contains("only when deleted"))
                        .then_some(ready)
                    }
                })
                .await;
                assert_eq!(
                    (pending.status.as_str(), pending.reason.as_str()),
                    ("False", "Progressing"),
                    "{what}: {pending:?}"
                );
                let after = workloads(&client, &ns, &cluster_name).await;
                assert_ne!(
                    shapes.get(&target).map(|s| &s.template),
                    after.get(&target).map(|s| &s.template),
                    "{what}: {target} has the new pod template"
                );
                let mut others = shapes.clone();
                others.remove(&target);
                let mut rest = after.clone();
                rest.remove(&target);
                assert_unchanged(what, &others, &rest);
                results.push(format!(
                    "{what}: applied to {target}'s template, not rolled: PostgresReady Progressing, \"{}\"",
                    pending.message
                ));
            }
            Expect::NotMeasurable { deleted, words } => {
                patched.unwrap_or_else(|error| panic!("{what}: admitted: {error}"));
                let gone: Vec<String> = deleted
                    .iter()
                    .map(|suffix| format!("{cluster_name}-{suffix}"))
                    .collect();
                wait_for(&format!("{what}: {gone:?} deleted"), LONG, || {
                    let client = client.clone();
                    let ns = ns.clone();
                    let cluster = cluster_name.clone();
                    let gone = gone.clone();
                    async move {
                        let shapes = workloads(&client, &ns, &cluster).await;
                        gone.iter().all(|g| !shapes.contains_key(g)).then_some(())
                    }
                })
                .await;
                let applied = reconciled(&clusters, &cluster_name, what).await;
                for type_ in [LATENCY_MET, AVAILABILITY_MET] {
                    let objective = condition(&applied, type_).expect(type_);
                    assert_eq!(
                        (objective.status.as_str(), objective.reason.as_str()),
                        ("Unknown", "NotMeasurable"),
                        "{what}: {type_}: {objective:?}"
                    );
                    assert!(
                        objective.message.contains(words) && !objective.message.contains("Ready"),
                        "{what}: {type_} says why: {}",
                        objective.message
                    );
                }
                assert_eq!(
                    condition(&applied, HAPROXY_READY)
                        .map(|c| c.reason)
                        .as_deref(),
                    Some("Disabled")
                );
                results.push(format!(
                    "{what}: applied, {gone:?} deleted, LatencyMet and AvailabilityMet NotMeasurable"
                ));
            }
        }
    }

    // The confirmation lets each held deletion through, and only then are the pods deleted.
    for (index, row) in rows.iter().enumerate() {
        let Expect::HeldUntilConfirmed {
            confirm, deleted, ..
        } = &row.expect
        else {
            continue;
        };
        let what = row.what;
        let cluster_name = name(index);
        clusters
            .patch(
                &cluster_name,
                &PatchParams::default(),
                &Patch::Merge(
                    &json!({"metadata": {"annotations": {ANNOTATION_CONFIRM_DELETE: confirm}}}),
                ),
            )
            .await
            .expect("annotated");
        let gone: Vec<String> = deleted
            .iter()
            .map(|suffix| format!("{cluster_name}-{suffix}"))
            .collect();
        wait_for(
            &format!("{what}: {gone:?} deleted once confirmed"),
            LONG,
            || {
                let client = client.clone();
                let ns = ns.clone();
                let cluster = cluster_name.clone();
                let gone = gone.clone();
                async move {
                    let shapes = workloads(&client, &ns, &cluster).await;
                    gone.iter().all(|g| !shapes.contains_key(g)).then_some(())
                }
            },
        )
        .await;
        let settled = wait_for(&format!("{what}: no longer stalled"), LONG, || {
            let clusters = clusters.clone();
            let cluster = cluster_name.clone();
            async move {
                let now = clusters.get(&cluster).await.ok()?;
                (condition(&now, STALLED)?.status == "False").then_some(now)
            }
        })
        .await;
        assert!(
            !settled
                .annotations()
                .contains_key(ANNOTATION_CONFIRM_DELETE),
            "{what}: the confirmation is consumed"
        );
        if *confirm == "postgres" {
            assert_eq!(
                condition(&settled, POSTGRES_READY)
                    .map(|c| c.reason)
                    .as_deref(),
                Some("Disabled")
            );
        }
        results.push(format!(
            "{what}: once annotated {ANNOTATION_CONFIRM_DELETE}={confirm}, {gone:?} deleted and the annotation consumed"
        ));
    }
    for line in &results {
        println!("{line}");
    }
    operator.assert_no_forbidden();
    operator.stop().await;
}
