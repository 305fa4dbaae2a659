//! What a user relies on for every cluster, with the operator process and the chart's RBAC:
//! each example gets its children (owned, labelled, applied by the operator's field manager),
//! a kstatus status for its generation and the printer columns; a deleted child comes back;
//! children go with the cluster while generated Secrets stay; `Ready=True` for the current
//! generation. Pods are bound to the kwok nodes, which mark them Running and Ready; the
//! PostgreSQL HA tasks are off here, as no instance runs behind these pods.

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use kube::core::DynamicObject;
use shanraq_api::conditions::{READY, RECONCILING, STALLED};
use shanraq_api::names::{FIELD_MANAGER, KIND};
use shanraq_api::{LiveState, ShanraqCluster};
use shanraq_operator::controller::discovery::Discovery;
use shanraq_render::Inputs;

use super::operator::OperatorProcess;
use super::pods::PodHost;
use super::{
    GC_TIMEOUT, LONG, SHORT, TestNamespace, apply_cluster, client, condition_status, examples,
    wait_for,
};

#[tokio::test]
async fn examples_get_their_children_status_and_printer_columns() {
    let Some(client) = client().await else { return };
    let monitoring = Discovery::default()
        .monitoring_available(&client)
        .await
        .expect("CRD discovery");

    for (path, example) in examples() {
        let namespace = TestNamespace::create(&client, "example").await;
        let ns = namespace.name.clone();
        let _pods = PodHost::start(&client, &ns);
        let operator = OperatorProcess::start_alone(&client, &ns).await;
        let created = apply_cluster(&client, &ns, &example).await;
        let name = created.name_any();
        let uid = created.uid().expect("uid");
        let what = format!("{} as {ns}/{name}", path.display());

        // Every child the renderer makes for it, owned by the cluster and labelled.
        let valid = shanraq_api::validate(&created, &LiveState::default()).expect("valid example");
        let rendered = shanraq_render::build(
            &valid,
            &Inputs {
                monitoring_available: monitoring,
                postgres_primary: None,
            },
        )
        .expect("renders");
        for child in &rendered.children {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &ns, &child.api_resource());
            let child_name = child.name().to_owned();
            let object = wait_for(
                &format!("{} {child_name} of {what}", child.kind()),
                SHORT,
                || {
                    let api = api.clone();
                    let child_name = child_name.clone();
                    async move { api.get_opt(&child_name).await.ok().flatten() }
                },
            )
            .await;
            let owned = object
                .owner_references()
                .iter()
                .any(|o| o.uid == uid && o.kind == KIND && o.controller == Some(true));
            assert!(owned, "{} {child_name} is owned by {what}", child.kind());
            for (key, value) in valid.names.instance_labels() {
                assert_eq!(
                    object.labels().get(&key),
                    Some(&value),
                    "{} {child_name}: label {key}",
                    child.kind()
                );
            }
            let managed = object
                .managed_fields()
                .iter()
                .any(|f| f.manager.as_deref() == Some(FIELD_MANAGER));
            assert!(
                managed,
                "{} {child_name} is applied by {FIELD_MANAGER}",
                child.kind()
            );
        }
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        for template in &rendered.secrets {
            let name = template.name.clone();
            wait_for(&format!("Secret {name} of {what}"), SHORT, || {
                let secrets = secrets.clone();
                let name = name.clone();
                async move { secrets.get_metadata_opt(&name).await.ok().flatten() }
            })
            .await;
        }

        // Status for the current generation, kstatus-consistent.
        let clusters: Api<ShanraqCluster> = Api::namespaced(client.clone(), &ns);
        let current = wait_for(&format!("status of {what}"), SHORT, || {
            let clusters = clusters.clone();
            let name = name.clone();
            async move {
                let cluster = clusters.get(&name).await.ok()?;
                let generation = cluster.metadata.generation;
                (cluster.status.as_ref()?.observed_generation == generation).then_some(cluster)
            }
        })
        .await;
        let generation = current.metadata.generation;
        for type_ in [READY, RECONCILING, STALLED] {
            let (_, observed) = condition_status(&current, type_)
                .unwrap_or_else(|| panic!("{what}: no {type_} condition"));
            assert_eq!(observed, generation, "{what}: {type_} observedGeneration");
        }
        let ready = condition_status(&current, READY).map(|c| c.0);
        let reconciling = condition_status(&current, RECONCILING).map(|c| c.0);
        assert_ne!(
            ready, reconciling,
            "{what}: Ready and Reconciling are opposites"
        );
        assert_eq!(
            condition_status(&current, STALLED).map(|c| c.0).as_deref(),
            Some("False")
        );

        // The printer columns, as kubectl gets them.
        let request = http::Request::get(format!(
            "/apis/shanraq.org/v1alpha1/namespaces/{ns}/shanraqclusters/{name}"
        ))
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .expect("request");
        let table: serde_json::Value = client.request(request).await.expect("Table");
        let columns: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .expect("columns")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        for column in ["Name", "Ready", "Primary", "RPO", "RTO", "P99", "Age"] {
            assert!(
                columns.contains(&column),
                "{what}: column {column} in {columns:?}"
            );
        }
        let ready_index = columns
            .iter()
            .position(|c| *c == "Ready")
            .expect("Ready column");
        let cell = &table["rows"][0]["cells"][ready_index];
        assert!(
            cell == "True" || cell == "False",
            "{what}: the Ready column shows the condition, got {cell}"
        );

        operator.stop().await;
        drop(namespace);
    }
}

#[tokio::test]
async fn a_deleted_child_comes_back_and_children_go_with_the_cluster() {
    let Some(client) = client().await else { return };
    let namespace = TestNamespace::create(&client, "lifecycle").await;
    let ns = namespace.name.clone();
    let _pods = PodHost::start(&client, &ns);
    let operator = OperatorProcess::start_alone(&client, &ns).await;
    let (_, example) = examples().into_iter().next().expect("an example");
    let created = apply_cluster(&client, &ns, &example).await;
    let names = shanraq_api::names::Names::new(&created.name_any());
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let rw = names.pg_rw();

    let first = wait_for(&format!("Service {rw}"), SHORT, || {
        let services = services.clone();
        let rw = rw.clone();
        async move { services.get_opt(&rw).await.ok().flatten() }
    })
    .await;
    let first_uid = first.uid().expect("uid");
    services
        .delete(&rw, &DeleteParams::default())
        .await
        .expect("Service deleted");
    wait_for(&format!("Service {rw} to come back"), SHORT, || {
        let services = services.clone();
        let rw = rw.clone();
        let first_uid = first_uid.clone();
        async move {
            let service = services.get_opt(&rw).await.ok().flatten()?;
            (service.uid() != Some(first_uid)).then_some(())
        }
    })
    .await;

    // Deleting the cluster deletes its children through owner references; Secrets stay.
    let clusters: Api<ShanraqCluster> = Api::namespaced(client.clone(), &ns);
    clusters
        .delete(&created.name_any(), &DeleteParams::foreground())
        .await
        .expect("cluster deleted");
    let selector = names.instance_selector();
    let rendered_kinds = shanraq_render::child::owned_kinds();
    let remaining = std::sync::Mutex::new(Vec::<String>::new());
    let gone = tokio::time::timeout(GC_TIMEOUT, async {
        loop {
            let mut left = Vec::new();
            for kind in &rendered_kinds {
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, kind);
                match api.list(&ListParams::default().labels(&selector)).await {
                    Ok(list) => left.extend(
                        list.items
                            .iter()
                            .map(|item| format!("{}/{}", kind.kind, item.name_any())),
                    ),
                    // A kind whose CRD is not installed (the Prometheus Operator's).
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(error) => left.push(format!("{}: {error}", kind.kind)),
                }
            }
            if left.is_empty() {
                return;
            }
            *remaining.lock().expect("remaining") = left;
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    })
    .await;
    assert!(
        gone.is_ok(),
        "children not garbage-collected within {GC_TIMEOUT:?}: {:?}",
        remaining.lock().expect("remaining")
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let kept = secrets
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .expect("list Secrets");
    assert!(
        !kept.items.is_empty(),
        "generated Secrets outlive the cluster, like the volumes they unlock"
    );
    operator.stop().await;
}

#[tokio::test]
async fn a_cluster_becomes_ready_for_its_current_generation() {
    let Some(client) = client().await else { return };
    let namespace = TestNamespace::create(&client, "ready").await;
    let ns = namespace.name.clone();
    let _pods = PodHost::start(&client, &ns);
    let operator = OperatorProcess::start_alone(&client, &ns).await;
    let (_, example) = examples().into_iter().next().expect("an example");
    let created = apply_cluster(&client, &ns, &example).await;
    let name = created.name_any();
    let clusters: Api<ShanraqCluster> = Api::namespaced(client.clone(), &ns);
    let ready = wait_for(&format!("{ns}/{name} Ready=True"), LONG, || {
        let clusters = clusters.clone();
        let name = name.clone();
        async move {
            let cluster = clusters.get(&name).await.ok()?;
            let generation = cluster.metadata.generation;
            let (status, observed) = condition_status(&cluster, READY)?;
            (status == "True"
                && observed == generation
                && cluster.status.as_ref()?.observed_generation == generation)
                .then_some(cluster)
        }
    })
    .await;
    assert_eq!(
        condition_status(&ready, RECONCILING)
            .map(|c| c.0)
            .as_deref(),
        Some("False")
    );
    operator.stop().await;
}
