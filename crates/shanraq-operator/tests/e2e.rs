//! Cluster end-to-end suite: install the CRD, run the operator in-process against a real API
//! server, apply every example from `deploy/examples/` into a fresh namespace and check what a
//! user relies on: children with owner references and labels, the status and printer columns,
//! admission errors naming the field, a deleted child coming back, children going with the
//! cluster, and `Ready` for the current generation.
//!
//! Runs only when `SHANRAQ_E2E_KUBECONFIG` points at a kubeconfig; otherwise every test prints
//! why it did nothing. Every wait is bounded.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{DynamicObject, ObjectMeta};
use kube::runtime::events::Reporter;
use kube::{Client, ResourceExt};
use serde_json::json;
use shanraq_api::conditions::{READY, RECONCILING, STALLED};
use shanraq_api::names::{CRD_NAME, FIELD_MANAGER, KIND};
use shanraq_api::{LiveState, ShanraqCluster};
use shanraq_operator::controller::{self, Context, discovery::Discovery};
use shanraq_operator::ha::HaSettings;
use shanraq_operator::metrics::Metrics;
use shanraq_render::Inputs;
use tokio::sync::watch;

const ENV: &str = "SHANRAQ_E2E_KUBECONFIG";
/// How long `Ready=True` may take (images are pulled, volumes bound); override in seconds with
/// `SHANRAQ_E2E_READY_TIMEOUT`.
const READY_TIMEOUT: Duration = Duration::from_secs(900);
const SHORT: Duration = Duration::from_secs(60);
const GC_TIMEOUT: Duration = Duration::from_secs(180);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn client() -> Option<Client> {
    let Some(path) = std::env::var_os(ENV).filter(|p| !p.is_empty()) else {
        println!("skipped: {ENV} is not set");
        return None;
    };
    let kubeconfig = Kubeconfig::read_from(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", PathBuf::from(&path).display()));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    Some(Client::try_from(config).expect("a Kubernetes client"))
}

/// Polls `check` every second until it returns `Some`, or fails the test after `timeout`.
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn install_crd(client: &Client) {
    let text = std::fs::read_to_string(repo_root().join(shanraq_api::crd::CRD_FILE))
        .expect("the generated CRD file");
    let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).expect("a CRD");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        CRD_NAME,
        &PatchParams::apply("shanraq-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("CRD applied");
    wait_for("the CRD to be Established", SHORT, || {
        let api = api.clone();
        async move {
            let crd = api.get(CRD_NAME).await.ok()?;
            let established = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        }
    })
    .await;
}

/// A fresh namespace, deleted when dropped (best effort).
struct TestNamespace {
    client: Client,
    name: String,
}

impl TestNamespace {
    async fn create(client: &Client, prefix: &str) -> Self {
        let name = format!(
            "shanraq-e2e-{prefix}-{}",
            shanraq_operator::controller::secrets::generate(6).to_lowercase()
        );
        let api: Api<Namespace> = Api::all(client.clone());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        api.create(&PostParams::default(), &namespace)
            .await
            .expect("namespace created");
        TestNamespace {
            client: client.clone(),
            name,
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let client = self.client.clone();
        let name = self.name.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let api: Api<Namespace> = Api::all(client);
                let _ = api.delete(&name, &DeleteParams::default()).await;
            });
        }
    }
}

/// The operator, in-process, watching one namespace without leader election.
struct Operator {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Operator {
    fn start(client: &Client, namespace: &str) -> Self {
        Self::start_with(client, namespace, None)
    }

    /// With the PostgreSQL HA tasks running: the test process must resolve the cluster's DNS
    /// (`<pod>.<cluster>-pg.<namespace>.svc.<domain>`), as it does when run inside the cluster.
    fn start_with_ha(client: &Client, namespace: &str) -> Self {
        let domain = std::env::var("SHANRAQ_E2E_CLUSTER_DOMAIN")
            .ok()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "cluster.local".to_owned());
        Self::start_with(
            client,
            namespace,
            Some(HaSettings {
                enabled: true,
                cluster_domain: domain,
            }),
        )
    }

    fn start_with(client: &Client, namespace: &str, ha: Option<HaSettings>) -> Self {
        let mut context = Context::new(
            client.clone(),
            Metrics::default(),
            Reporter {
                controller: "shanraq-operator".into(),
                instance: Some("e2e".into()),
            },
            Discovery::default(),
        );
        if let Some(settings) = ha {
            context = context.with_ha(settings);
        }
        let ctx = Arc::new(context);
        let (stop, stopped) = watch::channel(false);
        let namespaces = vec![namespace.to_owned()];
        let task = tokio::spawn(async move {
            controller::run(ctx, &namespaces, Arc::new(AtomicBool::new(false)), stopped).await;
        });
        Operator { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(SHORT, self.task)
            .await
            .expect("controllers stop within a minute")
            .expect("controller task");
    }
}

fn examples() -> Vec<(PathBuf, ShanraqCluster)> {
    let dir = repo_root().join("deploy/examples");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("deploy/examples") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
            let text = std::fs::read_to_string(&path).expect("example");
            let cluster: ShanraqCluster = serde_saphyr::from_str(&text)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            found.push((path, cluster));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!found.is_empty(), "no example in {}", dir.display());
    found
}

/// Applies `cluster` into `namespace` the way a user would (server-side apply).
async fn apply_cluster(
    client: &Client,
    namespace: &str,
    cluster: &ShanraqCluster,
) -> ShanraqCluster {
    let mut object = cluster.clone();
    object.metadata.namespace = Some(namespace.to_owned());
    object.metadata.resource_version = None;
    let api: Api<ShanraqCluster> = Api::namespaced(client.clone(), namespace);
    api.patch(
        &object.name_any(),
        &PatchParams::apply("shanraq-e2e").force(),
        &Patch::Apply(&object),
    )
    .await
    .expect("ShanraqCluster applied")
}

fn condition_status(cluster: &ShanraqCluster, type_: &str) -> Option<(String, Option<i64>)> {
    cluster
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.observed_generation))
}

#[tokio::test]
async fn examples_get_their_children_status_and_printer_columns() {
    let Some(client) = client().await else { return };
    install_crd(&client).await;
    let monitoring = Discovery::default()
        .monitoring_available(&client)
        .await
        .expect("CRD discovery");

    for (path, example) in examples() {
        let namespace = TestNamespace::create(&client, "example").await;
        let ns = namespace.name.clone();
        let operator = Operator::start(&client, &ns);
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
async fn invalid_resource_is_rejected_at_admission_naming_the_field() {
    let Some(client) = client().await else { return };
    install_crd(&client).await;
    let namespace = TestNamespace::create(&client, "invalid").await;
    let (_, example) = examples().into_iter().next().expect("an example");
    let mut invalid = example.clone();
    invalid.metadata.namespace = Some(namespace.name.clone());
    invalid.spec.kafka.controllers = 2;
    let api: Api<ShanraqCluster> = Api::namespaced(client.clone(), &namespace.name);
    let error = api
        .create(&PostParams::default(), &invalid)
        .await
        .expect_err("the API server refuses an even KRaft quorum");
    match error {
        kube::Error::Api(status) => {
            assert!(status.is_invalid(), "{status:?}");
            assert!(
                status.message.contains("kafka.controllers"),
                "{}",
                status.message
            );
        }
        other => panic!("expected an admission error, got {other}"),
    }
}

#[tokio::test]
async fn a_deleted_child_comes_back_and_children_go_with_the_cluster() {
    let Some(client) = client().await else { return };
    install_crd(&client).await;
    let namespace = TestNamespace::create(&client, "lifecycle").await;
    let ns = namespace.name.clone();
    let operator = Operator::start(&client, &ns);
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
    wait_for("every child to be garbage-collected", GC_TIMEOUT, || {
        let client = client.clone();
        let ns = ns.clone();
        let selector = selector.clone();
        let kinds = rendered_kinds.clone();
        async move {
            for kind in &kinds {
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, kind);
                match api.list(&ListParams::default().labels(&selector)).await {
                    Ok(list) if !list.items.is_empty() => return None,
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.is_not_found() => {}
                    Err(_) => return None,
                }
            }
            Some(())
        }
    })
    .await;
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
    install_crd(&client).await;
    let namespace = TestNamespace::create(&client, "ready").await;
    let ns = namespace.name.clone();
    let operator = Operator::start(&client, &ns);
    let (_, example) = examples().into_iter().next().expect("an example");
    let created = apply_cluster(&client, &ns, &example).await;
    let name = created.name_any();
    let timeout = std::env::var("SHANRAQ_E2E_READY_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(READY_TIMEOUT);
    let clusters: Api<ShanraqCluster> = Api::namespaced(client.clone(), &ns);
    let ready = wait_for(&format!("{ns}/{name} Ready=True"), timeout, || {
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

/// The IPs behind a Service, from its EndpointSlices.
async fn endpoint_ips(client: &Client, namespace: &str, service: &str) -> Vec<String> {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let slices = api
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .map(|list| list.items)
        .unwrap_or_default();
    let mut ips: Vec<String> = slices
        .iter()
        .flat_map(|slice| slice.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
        .flat_map(|e| e.addresses.clone())
        .collect();
    ips.sort();
    ips
}

async fn pod_ip(client: &Client, namespace: &str, pod: &str) -> Option<String> {
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    api.get(pod).await.ok()?.status?.pod_ip
}

/// Deleting the primary's pod fails over: a new primary in the status, the failover's
/// timeline recorded, Events on the cluster, and `-rw` sending writes to the new primary.
#[tokio::test]
async fn deleting_the_primary_pod_fails_over_to_a_replica() {
    let Some(client) = client().await else { return };
    install_crd(&client).await;
    let namespace = TestNamespace::create(&client, "failover").await;
    let ns = namespace.name.clone();
    let operator = Operator::start_with_ha(&client, &ns);
    let manifest = "apiVersion: shanraq.org/v1alpha1\nkind: ShanraqCluster\nmetadata:\n  name: ledger\nspec:\n  postgres:\n    instances: 3\n    synchronous:\n      number: 1\n  redis:\n    enabled: false\n  kafka:\n    enabled: false\n";
    let cluster: ShanraqCluster = serde_saphyr::from_str(manifest).expect("manifest");
    apply_cluster(&client, &ns, &cluster).await;
    let clusters: Api<ShanraqCluster> = Api::namespaced(client.clone(), &ns);
    let timeout = std::env::var("SHANRAQ_E2E_READY_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(READY_TIMEOUT);
    let first = wait_for("a healthy primary with 3 ready instances", timeout, || {
        let clusters = clusters.clone();
        async move {
            let postgres = clusters.get("ledger").await.ok()?.status?.postgres?;
            (postgres.phase.as_deref() == Some("Healthy") && postgres.ready_instances == 3)
                .then_some(postgres.current_primary?)
        }
    })
    .await;
    let first_ip = wait_for("the first primary's IP", SHORT, || {
        pod_ip(&client, &ns, &first)
    })
    .await;
    wait_for("-rw to select the first primary", SHORT, || {
        let client = client.clone();
        let (ns, ip) = (ns.clone(), first_ip.clone());
        async move { (endpoint_ips(&client, &ns, "ledger-pg-rw").await == vec![ip]).then_some(()) }
    })
    .await;

    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    pods.delete(&first, &DeleteParams::default())
        .await
        .expect("primary pod deleted");
    let failed_over = wait_for(
        "a new primary after the failover",
        Duration::from_secs(180),
        || {
            let clusters = clusters.clone();
            let first = first.clone();
            async move {
                let postgres = clusters.get("ledger").await.ok()?.status?.postgres?;
                let last = postgres.last_failover.clone()?;
                (postgres.current_primary.as_deref() != Some(first.as_str())
                    && postgres.phase.as_deref() == Some("Healthy")
                    && last.from == first)
                    .then_some(postgres)
            }
        },
    )
    .await;
    let second = failed_over.current_primary.clone().expect("a primary");
    let record = failed_over.last_failover.clone().expect("recorded");
    assert_eq!(record.kind, "failover");
    assert_eq!(record.to, second);
    assert!(
        record.rto_ms.is_some() && record.routed_at.is_some(),
        "{record:?}"
    );
    assert_eq!(
        record.lost_bytes,
        Some(0),
        "synchronous replication loses nothing"
    );
    assert!(failed_over.epoch >= 2, "the failover bumped the epoch");

    let second_ip = wait_for("the new primary's IP", SHORT, || {
        pod_ip(&client, &ns, &second)
    })
    .await;
    wait_for("-rw to select the new primary only", SHORT, || {
        let client = client.clone();
        let (ns, ip) = (ns.clone(), second_ip.clone());
        async move { (endpoint_ips(&client, &ns, "ledger-pg-rw").await == vec![ip]).then_some(()) }
    })
    .await;

    let reasons = wait_for(
        "FailoverStarted and FailoverCompleted Events",
        SHORT,
        || {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client, &ns);
                let events = api.list(&ListParams::default()).await.ok()?;
                let reasons: Vec<String> = events
                    .items
                    .iter()
                    .filter(|e| {
                        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("ledger")
                    })
                    .filter_map(|e| e.reason.clone())
                    .collect();
                (reasons.iter().any(|r| r == "FailoverStarted")
                    && reasons.iter().any(|r| r == "FailoverCompleted"))
                .then_some(reasons)
            }
        },
    )
    .await;
    assert!(!reasons.is_empty());

    // A planned switchover on request: the annotation is consumed and the primary moves.
    let annotate = json!({"metadata": {"annotations": {"shanraq.org/switchover": "any"}}});
    clusters
        .patch("ledger", &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .expect("annotated");
    let switched = wait_for(
        "the switchover to complete",
        Duration::from_secs(180),
        || {
            let clusters = clusters.clone();
            let second = second.clone();
            async move {
                let cluster = clusters.get("ledger").await.ok()?;
                let annotated = cluster
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key("shanraq.org/switchover"));
                let postgres = cluster.status?.postgres?;
                let last = postgres.last_failover.clone()?;
                (!annotated
                    && last.kind == "switchover"
                    && last.from == second
                    && postgres.phase.as_deref() == Some("Healthy"))
                .then_some(postgres)
            }
        },
    )
    .await;
    assert_ne!(switched.current_primary.as_deref(), Some(second.as_str()));
    assert_eq!(
        switched.last_failover.and_then(|l| l.lost_bytes),
        Some(0),
        "a switchover loses nothing"
    );
    operator.stop().await;
}
