//! Every reconcile branch against the mocked API server (`crate::fixtures`): a new cluster, an
//! invalid spec, a deleted child, an orphan, a spec change, and a reconcile with nothing to do.

use std::collections::BTreeSet;
use std::sync::Arc;

use http::Method;
use kube::core::ApiResource;
use kube::runtime::controller::Action;
use shanraq_api::conditions::{READY, RECONCILING, STALLED};
use shanraq_api::names::{ANNOTATION_CONFIRM_DELETE, Component, FIELD_MANAGER, KIND, Names};
use shanraq_api::{LiveState, ShanraqCluster, ShanraqClusterSpec, ShanraqClusterStatus};
use shanraq_render::{Inputs, Rendered};

use super::{Error, error_policy, events, reconcile};
use crate::fixtures::{self, Report, Rollout, Scenario};

const NAMESPACE: &str = "fintech";
const NAME: &str = "payments";

fn cluster(spec: ShanraqClusterSpec, generation: i64) -> ShanraqCluster {
    let mut object = ShanraqCluster::new(NAME, spec);
    object.metadata.namespace = Some(NAMESPACE.into());
    object.metadata.uid = Some("uid-payments".into());
    object.metadata.generation = Some(generation);
    object.metadata.resource_version = Some("1".into());
    object
}

fn render(object: &ShanraqCluster, monitoring_available: bool) -> Rendered {
    let valid = shanraq_api::validate(object, &LiveState::default()).expect("valid");
    shanraq_render::build(
        &valid,
        &Inputs {
            monitoring_available,
            postgres_primary: None,
        },
    )
    .expect("renders")
}

fn secret_names(rendered: &Rendered) -> Vec<&str> {
    rendered.secrets.iter().map(|s| s.name.as_str()).collect()
}

fn owned() -> Vec<ApiResource> {
    shanraq_render::child::owned_kinds()
}

fn condition<'a>(
    status: &'a ShanraqClusterStatus,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} in {:#?}", status.conditions))
}

fn patched_status(report: &Report) -> ShanraqClusterStatus {
    let patches = report.status_patches();
    assert_eq!(patches.len(), 1, "exactly one status write");
    let body = patches[0].body.as_ref().expect("status body");
    assert_eq!(body["kind"], KIND);
    assert_eq!(
        patches[0].query.get("fieldManager").map(String::as_str),
        Some(FIELD_MANAGER)
    );
    assert_eq!(
        patches[0].query.get("force").map(String::as_str),
        Some("true")
    );
    serde_json::from_value(body["status"].clone()).expect("a ShanraqClusterStatus")
}

/// Runs one reconcile against `scenario` and returns its result with the verifier's report.
async fn run_once(
    object: &ShanraqCluster,
    scenario: Scenario,
    monitoring: Option<bool>,
) -> (Result<Action, Error>, Report, Action) {
    let (ctx, handle) = fixtures::context(monitoring);
    let server = scenario.serve(handle);
    let result = reconcile::reconcile(Arc::new(object.clone()), ctx.clone()).await;
    let action = match &result {
        Ok(action) => action.clone(),
        Err(error) => error_policy(Arc::new(object.clone()), error, ctx.clone()),
    };
    drop(ctx);
    let report = fixtures::finish(server).await;
    (result, report, action)
}

/// A reconcile that stalls on an invalid spec: the error, a wait for the next change, nothing
/// applied or deleted, and one status write with `Stalled=True`, which is returned.
fn assert_stalled_untouched(
    result: &Result<Action, Error>,
    report: &Report,
    action: &Action,
) -> ShanraqClusterStatus {
    assert!(
        matches!(result, Err(Error::InvalidSpec { .. })),
        "{result:?}"
    );
    assert_eq!(*action, Action::await_change());
    assert!(report.child_applies().is_empty(), "nothing applied");
    assert!(report.deletes().is_empty(), "nothing deleted");
    let status = patched_status(report);
    assert_eq!(condition(&status, STALLED).status, "True");
    status
}

/// The status a cluster has after a reconcile in which every workload was ready.
async fn ready_status(object: &ShanraqCluster) -> ShanraqClusterStatus {
    let rendered = render(object, false);
    let scenario = Scenario::new(NAMESPACE)
        .secrets(&rendered.secrets, &secret_names(&rendered))
        .apply(&rendered.children, Rollout::Ready)
        .collect(&owned(), false, &[], &rendered.children)
        .status_patch(object)
        .events(1);
    let (result, report, _) = run_once(object, scenario, Some(false)).await;
    result.expect("reconcile");
    assert_eq!(report.event_reasons(), vec![events::CLUSTER_READY]);
    let status = patched_status(&report);
    assert_eq!(condition(&status, READY).status, "True");
    status
}

#[tokio::test]
async fn new_cluster_gets_every_child_its_secrets_and_a_progressing_status() {
    let object = cluster(ShanraqClusterSpec::default(), 1);
    let rendered = render(&object, false);
    let scenario = Scenario::new(NAMESPACE)
        .crds(false)
        .secrets(&rendered.secrets, &[])
        .apply(&rendered.children, Rollout::Pending)
        .collect(&owned(), false, &[], &rendered.children)
        .status_patch(&object)
        .events(rendered.secrets.len());
    let (result, report, action) = run_once(&object, scenario, None).await;
    result.expect("reconcile succeeds");
    assert_eq!(action, Action::requeue(reconcile::PROGRESS_REQUEUE));

    // Every rendered child, and nothing else, was applied with our field manager, forced.
    let applied: BTreeSet<(String, String)> = report
        .child_applies()
        .iter()
        .filter_map(|r| r.applied())
        .collect();
    let expected: BTreeSet<(String, String)> = rendered
        .children
        .iter()
        .map(|c| (c.kind(), c.name().to_owned()))
        .collect();
    assert_eq!(applied, expected);
    assert_eq!(report.child_applies().len(), rendered.children.len());
    let names = Names::new(NAME);
    for (kind, name) in [
        ("StatefulSet", names.workload(Component::Postgres)),
        ("Service", names.pg_rw()),
        ("StatefulSet", names.workload(Component::Redis)),
        ("StatefulSet", names.workload(Component::KafkaBroker)),
        ("Deployment", names.workload(Component::HAProxy)),
    ] {
        assert!(
            applied.contains(&(kind.to_owned(), name.clone())),
            "{kind} {name} applied: {applied:#?}"
        );
    }
    for request in report.child_applies() {
        assert_eq!(
            request.query.get("fieldManager").map(String::as_str),
            Some(FIELD_MANAGER)
        );
        assert_eq!(request.query.get("force").map(String::as_str), Some("true"));
        let body = request.body.as_ref().expect("body");
        assert_eq!(body["metadata"]["namespace"], NAMESPACE);
        let owners = body["metadata"]["ownerReferences"]
            .as_array()
            .expect("owner references");
        assert!(
            owners.iter().any(|o| o["uid"] == "uid-payments"
                && o["kind"] == KIND
                && o["controller"] == true),
            "{:?} is owned by the cluster",
            request.applied()
        );
    }

    // Every Secret was created once, with generated values that go nowhere else.
    let created = report.with_method(&Method::POST);
    let created: Vec<_> = created
        .iter()
        .filter(|r| r.path.ends_with("/secrets"))
        .collect();
    assert_eq!(created.len(), rendered.secrets.len());
    let mut values = Vec::new();
    for (request, template) in created.iter().zip(&rendered.secrets) {
        let body = request.body.as_ref().expect("secret body");
        assert_eq!(body["metadata"]["name"], template.name.as_str());
        for (key, length) in &template.generated {
            let value = body["stringData"][key].as_str().expect("generated value");
            assert_eq!(value.len(), *length, "{} {key}", template.name);
            assert!(value.chars().all(|c| c.is_ascii_alphanumeric()));
            values.push(value.to_owned());
        }
    }
    let elsewhere: String = report
        .requests
        .iter()
        .filter(|r| !r.path.ends_with("/secrets"))
        .filter_map(|r| r.body.as_ref().map(|b| b.to_string()))
        .collect();
    for value in &values {
        assert!(!elsewhere.contains(value.as_str()), "a secret value leaked");
    }

    // Status: the current generation, rolling out.
    let status = patched_status(&report);
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(condition(&status, READY).status, "False");
    assert_eq!(condition(&status, RECONCILING).status, "True");
    assert_eq!(condition(&status, STALLED).status, "False");
    for c in &status.conditions {
        assert_eq!(c.observed_generation, Some(1), "{}", c.type_);
    }
    assert_eq!(
        report.event_reasons(),
        vec![events::SECRET_CREATED; rendered.secrets.len()]
    );
    assert!(report.deletes().is_empty());
}

#[tokio::test]
async fn invalid_spec_stalls_and_touches_nothing() {
    let mut spec = ShanraqClusterSpec::default();
    spec.kafka.controllers = 2;
    let object = cluster(spec, 3);
    let scenario = Scenario::new(NAMESPACE).status_patch(&object).events(1);
    let (result, report, action) = run_once(&object, scenario, None).await;
    let status = assert_stalled_untouched(&result, &report, &action);
    let stalled = condition(&status, STALLED);
    assert_eq!(stalled.reason, "InvalidSpec");
    assert!(
        stalled.message.contains("kafka.controllers"),
        "{}",
        stalled.message
    );
    assert_eq!(stalled.observed_generation, Some(3));
    assert_eq!(condition(&status, READY).status, "False");
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(report.event_reasons(), vec![events::INVALID_SPEC]);

    // The same invalid spec again: no second write, no second event.
    let mut again = object.clone();
    again.status = Some(status);
    let (result, report, _) = run_once(&again, Scenario::new(NAMESPACE), None).await;
    assert!(matches!(result, Err(Error::InvalidSpec { .. })));
    assert!(report.requests.is_empty(), "{:#?}", report.requests);
}

/// Turning a running PostgreSQL off: its StatefulSet is read, and without the confirmation
/// annotation the cluster stalls naming `spec.postgres.enabled`, nothing applied or deleted.
#[tokio::test]
async fn turning_a_running_database_off_waits_for_its_confirmation() {
    let mut object = cluster(ShanraqClusterSpec::default(), 1);
    object.status = Some(ready_status(&object).await);
    object.spec.postgres.enabled = false;
    object.metadata.generation = Some(2);
    let postgres = Names::new(NAME).workload(Component::Postgres);
    let path = format!("/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets/{postgres}");
    let found = postgres.clone();
    let scenario = Scenario::new(NAMESPACE)
        .expect(
            "the PostgreSQL StatefulSet read",
            Method::GET,
            &path,
            move |_| (http::StatusCode::OK, fixtures::partial_metadata(&found)),
        )
        .status_patch(&object)
        .events(1);
    let (result, report, action) = run_once(&object, scenario, None).await;
    let status = assert_stalled_untouched(&result, &report, &action);
    let stalled = condition(&status, STALLED);
    assert!(
        stalled.message.contains("spec.postgres.enabled")
            && stalled.message.contains(&postgres)
            && stalled
                .message
                .contains("shanraq.org/confirm-delete=postgres"),
        "{}",
        stalled.message
    );
    assert_eq!(
        condition(&status, "PostgresReady").status,
        "True",
        "the running component's condition is kept"
    );
}

#[tokio::test]
async fn a_deleted_child_is_applied_again_and_readiness_follows_it() {
    let mut object = cluster(ShanraqClusterSpec::default(), 1);
    object.status = Some(ready_status(&object).await);
    let rendered = render(&object, false);
    let postgres = Names::new(NAME).workload(Component::Postgres);

    // The PostgreSQL StatefulSet was deleted: server-side apply creates it again, empty.
    let scenario = Scenario::new(NAMESPACE)
        .secrets(&rendered.secrets, &secret_names(&rendered))
        .apply_with(&rendered.children, |child| {
            if child.kind() == "StatefulSet" && child.name() == postgres {
                Rollout::Pending
            } else {
                Rollout::Ready
            }
        })
        .collect(&owned(), false, &[], &rendered.children)
        .status_patch(&object)
        .events(1);
    let (result, report, _) = run_once(&object, scenario, Some(false)).await;
    result.expect("reconcile");
    assert!(
        report
            .child_applies()
            .iter()
            .any(|r| r.applied() == Some(("StatefulSet".into(), postgres.clone()))),
        "the deleted StatefulSet is applied again"
    );
    let status = patched_status(&report);
    assert_eq!(condition(&status, READY).status, "False");
    assert_eq!(condition(&status, "PostgresReady").status, "False");
    assert!(
        condition(&status, "PostgresReady")
            .message
            .contains(&postgres)
    );
    assert_eq!(report.event_reasons(), vec![events::CLUSTER_NOT_READY]);
}

#[tokio::test]
async fn orphans_are_deleted_but_secrets_and_volumes_are_not() {
    let mut spec = ShanraqClusterSpec::default();
    spec.kafka.enabled = false;
    let mut object = cluster(spec, 2);
    // Turning Kafka off deletes its pods: confirmed, so nothing is read before the apply.
    object.metadata.annotations = Some(
        [(ANNOTATION_CONFIRM_DELETE.to_owned(), "kafka".to_owned())]
            .into_iter()
            .collect(),
    );
    let rendered = render(&object, false);
    let names = Names::new(NAME);
    let resource = |kind: &str| {
        owned()
            .into_iter()
            .find(|r| r.kind == kind)
            .unwrap_or_else(|| panic!("{kind} is owned"))
    };
    let orphans = [
        (
            resource("StatefulSet"),
            names.workload(Component::KafkaBroker),
        ),
        (
            resource("StatefulSet"),
            names.workload(Component::KafkaController),
        ),
        (resource("Service"), names.kafka_bootstrap()),
        (resource("ConfigMap"), names.kafka_config()),
    ];
    let mut present: Vec<(ApiResource, String)> = rendered
        .children
        .iter()
        .map(|c| (c.api_resource(), c.name().to_owned()))
        .collect();
    present.extend(orphans.iter().cloned());
    let cluster_path =
        format!("/apis/shanraq.org/v1alpha1/namespaces/{NAMESPACE}/shanraqclusters/{NAME}");
    let answer = serde_json::to_value(&object).expect("serialises");
    let scenario = Scenario::new(NAMESPACE)
        .secrets(&rendered.secrets, &secret_names(&rendered))
        .apply(&rendered.children, Rollout::Ready)
        .collect(&owned(), false, &present, &rendered.children)
        .expect(
            "PATCH removal of the consumed confirmation",
            Method::PATCH,
            &cluster_path,
            move |_| (http::StatusCode::OK, answer),
        )
        .status_patch(&object)
        .events(orphans.len() + 1);
    let (result, report, _) = run_once(&object, scenario, Some(false)).await;
    result.expect("reconcile");
    let removal = report
        .with_method(&Method::PATCH)
        .into_iter()
        .find(|r| r.path == cluster_path)
        .and_then(|r| r.body.clone())
        .expect("annotation patch");
    assert_eq!(
        removal["metadata"]["annotations"][ANNOTATION_CONFIRM_DELETE],
        serde_json::Value::Null,
        "the confirmation is consumed by the reconcile that acted on it"
    );

    let deleted: BTreeSet<String> = report.deletes().iter().map(|r| r.path.clone()).collect();
    let expected: BTreeSet<String> = orphans
        .iter()
        .map(|(r, name)| fixtures::path_of(r, NAMESPACE, Some(name)))
        .collect();
    assert_eq!(deleted, expected);
    for request in &report.requests {
        assert!(
            !request.path.contains("/secrets") || request.method != Method::DELETE,
            "a Secret was deleted"
        );
        assert!(
            !request.path.contains("persistentvolumeclaims"),
            "PersistentVolumeClaims are never listed nor deleted: {}",
            request.path
        );
    }
    let mut reasons = report.event_reasons();
    reasons.sort();
    let mut expected_reasons = vec![events::ORPHAN_DELETED.to_owned(); orphans.len()];
    expected_reasons.push(events::CLUSTER_READY.to_owned());
    expected_reasons.sort();
    assert_eq!(reasons, expected_reasons);
    let status = patched_status(&report);
    assert_eq!(condition(&status, "KafkaReady").reason, "Disabled");
    assert_eq!(condition(&status, READY).status, "True");
}

#[tokio::test]
async fn a_spec_change_goes_through_reconciling_to_ready() {
    let before = cluster(ShanraqClusterSpec::default(), 1);
    let ready = ready_status(&before).await;
    assert_eq!(ready.observed_generation, Some(1));

    let mut spec = ShanraqClusterSpec::default();
    spec.haproxy.replicas = 3;
    let mut changed = cluster(spec, 2);
    changed.status = Some(ready.clone());
    let rendered = render(&changed, false);

    // The workload controllers have not seen the new spec yet.
    let scenario = Scenario::new(NAMESPACE)
        .secrets(&rendered.secrets, &secret_names(&rendered))
        .apply(&rendered.children, Rollout::Pending)
        .collect(&owned(), false, &[], &rendered.children)
        .status_patch(&changed)
        .events(1);
    let (result, report, _) = run_once(&changed, scenario, Some(false)).await;
    result.expect("reconcile");
    let rolling = patched_status(&report);
    assert_eq!(rolling.observed_generation, Some(2));
    assert_eq!(condition(&rolling, READY).status, "False");
    assert_eq!(condition(&rolling, READY).observed_generation, Some(2));
    assert_eq!(condition(&rolling, RECONCILING).status, "True");
    assert_eq!(report.event_reasons(), vec![events::CLUSTER_NOT_READY]);
    let haproxy = report
        .child_applies()
        .into_iter()
        .find(|r| {
            r.applied()
                == Some((
                    "Deployment".into(),
                    Names::new(NAME).workload(Component::HAProxy),
                ))
        })
        .and_then(|r| r.body.clone())
        .expect("HAProxy applied");
    assert_eq!(
        haproxy["spec"]["replicas"], 3,
        "the new spec is what was applied"
    );

    // Then they catch up.
    changed.status = Some(rolling);
    let scenario = Scenario::new(NAMESPACE)
        .secrets(&rendered.secrets, &secret_names(&rendered))
        .apply(&rendered.children, Rollout::Ready)
        .collect(&owned(), false, &[], &rendered.children)
        .status_patch(&changed)
        .events(1);
    let (result, report, action) = run_once(&changed, scenario, Some(false)).await;
    result.expect("reconcile");
    assert_eq!(action, Action::requeue(reconcile::STEADY_REQUEUE));
    let done = patched_status(&report);
    assert_eq!(done.observed_generation, Some(2));
    assert_eq!(condition(&done, READY).status, "True");
    assert_eq!(condition(&done, READY).observed_generation, Some(2));
    assert_eq!(condition(&done, RECONCILING).status, "False");
    assert_eq!(report.event_reasons(), vec![events::CLUSTER_READY]);
}

#[tokio::test]
async fn nothing_changed_writes_no_status_and_publishes_no_event() {
    let mut object = cluster(ShanraqClusterSpec::default(), 4);
    object.status = Some(ready_status(&object).await);
    let rendered = render(&object, false);
    let scenario = Scenario::new(NAMESPACE)
        .secrets(&rendered.secrets, &secret_names(&rendered))
        .apply(&rendered.children, Rollout::Ready)
        .collect(&owned(), false, &[], &rendered.children);
    let (result, report, action) = run_once(&object, scenario, Some(false)).await;
    result.expect("reconcile");
    assert_eq!(action, Action::requeue(reconcile::STEADY_REQUEUE));
    assert!(report.status_patches().is_empty(), "no status write");
    assert!(report.event_reasons().is_empty(), "no event");
    assert!(
        !report
            .requests
            .iter()
            .any(|r| r.method == Method::POST && r.path.ends_with("/secrets")),
        "existing Secrets are never re-created"
    );
}

#[tokio::test]
async fn a_cluster_being_deleted_is_left_to_the_garbage_collector() {
    let mut object = cluster(ShanraqClusterSpec::default(), 2);
    object.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).expect("a time"),
        ));
    let (result, report, action) = run_once(&object, Scenario::new(NAMESPACE), Some(false)).await;
    result.expect("reconcile");
    assert_eq!(action, Action::await_change());
    assert!(
        report.requests.is_empty(),
        "a cluster in (foreground) deletion gets no child applied again, no status, no event: {:?}",
        report
            .requests
            .iter()
            .map(|r| (&r.method, &r.path))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn failed_calls_back_off_and_are_counted() {
    let object = cluster(ShanraqClusterSpec::default(), 1);
    // The CRD lookup fails with a server error: the scenario expects it and answers 500.
    let (ctx, handle) = fixtures::context(None);
    let server = Scenario::new(NAMESPACE).serve(handle);
    let result = reconcile::reconcile(Arc::new(object.clone()), ctx.clone()).await;
    let error = result.expect_err("the API server refuses");
    assert_eq!(error.metric_label(), "discovery");
    let first = error_policy(Arc::new(object.clone()), &error, ctx.clone());
    let second = error_policy(Arc::new(object.clone()), &error, ctx.clone());
    assert_eq!(first, Action::requeue(super::retry_delay(1)));
    assert_eq!(second, Action::requeue(super::retry_delay(2)));
    let text = {
        let mut registry = prometheus_client::registry::Registry::with_prefix("shanraq");
        ctx.metrics.register(&mut registry);
        crate::metrics::encode(&registry).expect("encode")
    };
    assert!(
        text.contains("shanraq_reconcile_errors_total{error=\"discovery\"} 2"),
        "{text}"
    );
    drop(ctx);
    // The verifier saw one unexpected request; that is this test's point, so only join it.
    let joined = tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("verifier finishes");
    assert!(joined.is_err(), "the verifier flags the unscripted request");
}

#[test]
fn retries_back_off_exponentially_and_are_bounded() {
    assert_eq!(super::retry_delay(1), super::RETRY_BASE);
    assert_eq!(super::retry_delay(2), super::RETRY_BASE * 2);
    assert_eq!(super::retry_delay(3), super::RETRY_BASE * 4);
    assert_eq!(super::retry_delay(40), super::RETRY_MAX);
    assert_eq!(super::retry_delay(u32::MAX), super::RETRY_MAX);
}

#[tokio::test]
async fn production_example_with_the_prometheus_operator_installed() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/examples/production.yaml");
    let text = std::fs::read_to_string(&path).expect("production example");
    let mut object: ShanraqCluster = serde_saphyr::from_str(&text).expect("a ShanraqCluster");
    object.metadata.uid = Some("uid-payments".into());
    object.metadata.generation = Some(1);
    assert_eq!(object.metadata.namespace.as_deref(), Some(NAMESPACE));
    let rendered = render(&object, true);
    let scenario = Scenario::new(NAMESPACE)
        .crds(true)
        .secrets(&rendered.secrets, &[])
        .apply(&rendered.children, Rollout::Ready)
        .collect(&owned(), true, &[], &rendered.children)
        .status_patch(&object)
        .events(rendered.secrets.len() + 1);
    let (result, report, _) = run_once(&object, scenario, None).await;
    result.expect("reconcile");
    let kinds: BTreeSet<String> = report
        .child_applies()
        .iter()
        .filter_map(|r| r.applied().map(|(kind, _)| kind))
        .collect();
    for kind in [
        "PodMonitor",
        "PrometheusRule",
        "Job",
        "StatefulSet",
        "Deployment",
    ] {
        assert!(kinds.contains(kind), "{kind} applied: {kinds:?}");
    }
    assert!(
        report
            .requests
            .iter()
            .any(|r| r.method == Method::GET && r.path.ends_with("/prometheusrules")),
        "orphaned PrometheusRules are looked for when the CRD exists"
    );
    let status = patched_status(&report);
    assert_eq!(condition(&status, "MonitoringReady").reason, "Applied");
    assert_eq!(condition(&status, READY).status, "True");
    assert_eq!(
        report.event_reasons().last().map(String::as_str),
        Some(events::CLUSTER_READY)
    );
}

/// The failover fields belong to the HA task: the reconcile keeps them in the status it
/// computes, never sends them in its own status write, judges RTOMet with the last measured
/// failover, and (the cluster having had a primary) renders no pod that could bootstrap a
/// second primary.
#[tokio::test]
async fn the_reconcile_keeps_the_ha_fields_and_uses_the_last_failover() {
    use shanraq_api::conditions::RTO_MET;
    use shanraq_api::status::{FailoverRecord, PostgresStatus};

    let mut object = cluster(ShanraqClusterSpec::default(), 4);
    let mut status = ready_status(&object).await;
    status.postgres = Some(PostgresStatus {
        current_primary: Some("payments-pg-1".into()),
        epoch: 4,
        phase: Some("Healthy".into()),
        ready_instances: status.postgres.as_ref().map_or(0, |p| p.ready_instances),
        last_failover: Some(FailoverRecord {
            kind: "failover".into(),
            from: "payments-pg-0".into(),
            to: "payments-pg-1".into(),
            detected_at: "2026-11-22T05:00:00Z".into(),
            rto_ms: Some(900),
            lost_bytes: Some(0),
            ..FailoverRecord::default()
        }),
        ha_state: Some("{\"epoch\":4}".into()),
        ..PostgresStatus::default()
    });
    object.status = Some(status);
    let valid = shanraq_api::validate(
        &object,
        &LiveState {
            current_postgres_primary: Some("payments-pg-1".into()),
            ..LiveState::default()
        },
    )
    .expect("valid");
    let rendered = shanraq_render::build(
        &valid,
        &Inputs {
            monitoring_available: false,
            postgres_primary: Some("payments-pg-1".into()),
        },
    )
    .expect("renders");
    let scenario = Scenario::new(NAMESPACE)
        .secrets(&rendered.secrets, &secret_names(&rendered))
        .apply(&rendered.children, Rollout::Ready)
        .collect(&owned(), false, &[], &rendered.children)
        .status_patch(&object);
    let (result, report, _) = run_once(&object, scenario, Some(false)).await;
    result.expect("reconcile");

    let body = report.status_patches()[0]
        .body
        .clone()
        .expect("status body");
    let postgres = body["status"]["postgres"].as_object().expect("postgres");
    for key in crate::engines::postgres::status_map::HA_FIELDS {
        assert!(
            !postgres.contains_key(key),
            "{key} sent by the reconcile: {postgres:?}"
        );
    }
    let written = patched_status(&report);
    let rto = condition(&written, RTO_MET);
    assert_eq!(rto.status, "True");
    assert!(
        rto.message.contains("last failover 900ms"),
        "{}",
        rto.message
    );

    // The known primary reaches the pods through the config ConfigMap (an emptied volume
    // clones, whatever its ordinal), not through the pod template.
    let config = report
        .child_applies()
        .into_iter()
        .find(|r| r.applied() == Some(("ConfigMap".into(), "payments-pg-config".into())))
        .and_then(|r| r.body.clone())
        .expect("the PostgreSQL ConfigMap applied");
    assert_eq!(
        config
            .pointer("/data/primary-known")
            .and_then(|v| v.as_str()),
        Some("true"),
        "{config}"
    );

    // What the reconcile computes still holds them (so comparing with the previous status
    // does not see a change that is not there).
    let observed = super::status::Observed::default();
    let next = super::status::desired(
        object.status.as_ref().expect("status"),
        &valid,
        &observed,
        &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    let kept = next.postgres.expect("postgres");
    assert_eq!(kept.current_primary.as_deref(), Some("payments-pg-1"));
    assert_eq!(kept.epoch, 4);
    assert_eq!(kept.ha_state.as_deref(), Some("{\"epoch\":4}"));
}

/// `shanraq.org/switchover` is acted on once: the outcome is an Event naming why, and the
/// annotation is removed.
#[tokio::test]
async fn a_switchover_request_is_answered_and_its_annotation_removed() {
    use shanraq_api::names::ANNOTATION_SWITCHOVER;

    let mut object = cluster(ShanraqClusterSpec::default(), 4);
    object.status = Some(ready_status(&object).await);
    object
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ANNOTATION_SWITCHOVER.into(), "payments-pg-2".into());
    let rendered = render(&object, false);
    let cluster_path =
        format!("/apis/shanraq.org/v1alpha1/namespaces/{NAMESPACE}/shanraqclusters/{NAME}");
    let answer = serde_json::to_value(&object).expect("serialises");
    let scenario = Scenario::new(NAMESPACE)
        .secrets(&rendered.secrets, &secret_names(&rendered))
        .apply(&rendered.children, Rollout::Ready)
        .collect(&owned(), false, &[], &rendered.children)
        .expect(
            "PATCH annotation removal",
            Method::PATCH,
            &cluster_path,
            move |_| (http::StatusCode::OK, answer),
        )
        .events(1);
    let (result, report, _) = run_once(&object, scenario, Some(false)).await;
    result.expect("reconcile");
    assert_eq!(
        report.event_reasons(),
        vec![crate::engines::postgres::switchover::SWITCHOVER_REFUSED]
    );
    let event = report
        .requests
        .iter()
        .find(|r| r.path.contains("/events"))
        .and_then(|r| r.body.clone())
        .expect("event");
    let note = event["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("payments-pg-2") && note.contains("not running"),
        "the Event names the target and why: {note}"
    );
    let removal = report
        .with_method(&Method::PATCH)
        .into_iter()
        .find(|r| r.path == cluster_path)
        .and_then(|r| r.body.clone())
        .expect("annotation patch");
    assert_eq!(
        removal["metadata"]["annotations"][ANNOTATION_SWITCHOVER],
        serde_json::Value::Null
    );
    assert_eq!(removal["metadata"]["uid"], "uid-payments");
    assert!(report.status_patches().is_empty(), "nothing else changed");
}

#[test]
fn switchover_target_any_means_the_best_replica() {
    use crate::engines::request::target;
    assert_eq!(target("any"), None);
    assert_eq!(target(" ANY "), None);
    assert_eq!(target(""), None);
    assert_eq!(
        target("payments-pg-2").map(|n| n.0),
        Some("payments-pg-2".to_owned())
    );
}

/// `shanraq.org/drill` on a cluster whose HA engine does not run is refused: the Event and
/// `status.drill` say why, and the annotation is removed so the request is not retried.
#[tokio::test]
async fn a_drill_request_without_a_running_engine_is_refused_and_recorded() {
    use crate::engines::postgres::drill::{DRILL_REFUSED, PHASE_REFUSED};
    use shanraq_api::names::ANNOTATION_DRILL;

    let mut object = cluster(ShanraqClusterSpec::default(), 4);
    object.status = Some(ready_status(&object).await);
    object
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ANNOTATION_DRILL.into(), "2026-12-01T11:00:00Z".into());
    let rendered = render(&object, false);
    let cluster_path =
        format!("/apis/shanraq.org/v1alpha1/namespaces/{NAMESPACE}/shanraqclusters/{NAME}");
    let answer = serde_json::to_value(&object).expect("serialises");
    let scenario = Scenario::new(NAMESPACE)
        .secrets(&rendered.secrets, &secret_names(&rendered))
        .apply(&rendered.children, Rollout::Ready)
        .collect(&owned(), false, &[], &rendered.children)
        .expect(
            "PATCH annotation removal",
            Method::PATCH,
            &cluster_path,
            move |_| (http::StatusCode::OK, answer),
        )
        .status_patch(&object)
        .events(1);
    let (result, report, _) = run_once(&object, scenario, Some(false)).await;
    result.expect("reconcile");
    assert_eq!(report.event_reasons(), vec![DRILL_REFUSED]);
    assert!(report.deletes().is_empty(), "no Pod is deleted");
    let written = patched_status(&report);
    let drill = written.drill.expect("status.drill");
    assert_eq!(drill.phase, PHASE_REFUSED);
    assert_eq!(drill.request, "2026-12-01T11:00:00Z");
    assert!(drill.message.contains("HA engine"), "{}", drill.message);
    let removal = report
        .with_method(&Method::PATCH)
        .into_iter()
        .find(|r| r.path == cluster_path)
        .and_then(|r| r.body.clone())
        .expect("annotation patch");
    assert_eq!(
        removal["metadata"]["annotations"][ANNOTATION_DRILL],
        serde_json::Value::Null
    );
}

/// A running drill is completed by the failover it caused: `status.drill` gets the RTO the
/// engine measured and a `DrillCompleted` Event says it.
#[tokio::test]
async fn a_running_drill_records_the_rto_of_its_failover() {
    use crate::engines::postgres::drill::{DRILL_COMPLETED, PHASE_COMPLETED, PHASE_RUNNING};
    use shanraq_api::status::{DrillStatus, FailoverRecord};

    let mut object = cluster(ShanraqClusterSpec::default(), 4);
    let mut status = ready_status(&object).await;
    status.drill = Some(DrillStatus {
        request: "r1".into(),
        phase: PHASE_RUNNING.into(),
        from: Some("payments-pg-0".into()),
        started_at: Some("2026-12-01T11:00:00Z".into()),
        message: "waiting for the failover".into(),
        ..DrillStatus::default()
    });
    let postgres = status.postgres.get_or_insert_with(Default::default);
    postgres.current_primary = Some("payments-pg-1".into());
    postgres.last_failover = Some(FailoverRecord {
        kind: "failover".into(),
        from: "payments-pg-0".into(),
        to: "payments-pg-1".into(),
        detected_at: "2026-12-01T11:00:00.250Z".into(),
        promoted_at: Some("2026-12-01T11:00:00.700Z".into()),
        routed_at: Some("2026-12-01T11:00:00.810Z".into()),
        rto_ms: Some(810),
        lost_bytes: Some(0),
        data_lost: None,
        possible_loss: None,
    });
    object.status = Some(status);
    let rendered = render(&object, false);
    let scenario = Scenario::new(NAMESPACE)
        .secrets(&rendered.secrets, &secret_names(&rendered))
        .apply(&rendered.children, Rollout::Ready)
        .collect(&owned(), false, &[], &rendered.children)
        .status_patch(&object)
        .events(1);
    let (result, report, _) = run_once(&object, scenario, Some(false)).await;
    result.expect("reconcile");
    assert_eq!(report.event_reasons(), vec![DRILL_COMPLETED]);
    let drill = patched_status(&report).drill.expect("status.drill");
    assert_eq!(drill.phase, PHASE_COMPLETED);
    assert_eq!(drill.rto_ms, Some(810));
    assert_eq!(drill.to.as_deref(), Some("payments-pg-1"));
    let note = report
        .requests
        .iter()
        .find(|r| r.path.contains("/events"))
        .and_then(|r| r.body.as_ref()?.get("note")?.as_str().map(str::to_owned))
        .expect("event note");
    assert!(note.contains("RTO 810ms"), "{note}");
}

/// A drill admitted by the engine removes the annotation, then deletes the primary's Pod at
/// once; `status.drill` is Running with the primary it took down. The same request seen again
/// deletes nothing.
#[tokio::test]
async fn an_admitted_drill_deletes_the_primary_pod_with_no_grace_period() {
    use crate::engines::postgres::drill::{
        self as failover_drill, DRILL_STARTED, EngineView, PHASE_RUNNING,
    };
    use shanraq_api::names::ANNOTATION_DRILL;
    use shanraq_api::status::{PostgresInstanceStatus, PostgresStatus};

    let mut object = cluster(ShanraqClusterSpec::default(), 4);
    object
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ANNOTATION_DRILL.into(), "r2".into());
    let instance = |name: &str, role: &str| PostgresInstanceStatus {
        name: name.into(),
        role: role.into(),
        ready: true,
        ..PostgresInstanceStatus::default()
    };
    let previous = ShanraqClusterStatus {
        postgres: Some(PostgresStatus {
            current_primary: Some("payments-pg-0".into()),
            instances: vec![
                instance("payments-pg-0", "primary"),
                instance("payments-pg-1", "replica"),
            ],
            ..PostgresStatus::default()
        }),
        ..ShanraqClusterStatus::default()
    };
    let valid = shanraq_api::validate(&object, &LiveState::default()).expect("valid");
    let pod_path = format!("/api/v1/namespaces/{NAMESPACE}/pods/payments-pg-0");
    let cluster_path =
        format!("/apis/shanraq.org/v1alpha1/namespaces/{NAMESPACE}/shanraqclusters/{NAME}");
    let answer = serde_json::to_value(&object).expect("serialises");
    let answer_again = answer.clone();
    let scenario = Scenario::new(NAMESPACE)
        .expect(
            "PATCH annotation removal",
            Method::PATCH,
            &cluster_path,
            move |_| (http::StatusCode::OK, answer),
        )
        .expect("DELETE the primary Pod", Method::DELETE, &pod_path, |_| {
            (
                http::StatusCode::OK,
                serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Success"}),
            )
        })
        .expect(
            "PATCH annotation removal of the repeated request",
            Method::PATCH,
            &cluster_path,
            move |_| (http::StatusCode::OK, answer_again),
        );
    let (ctx, handle) = fixtures::context(Some(false));
    let server = scenario.serve(handle);
    let engine = EngineView {
        phase: "Healthy".into(),
        primary: Some("payments-pg-0".into()),
    };
    let now = k8s_openapi::jiff::Timestamp::now();
    let outcome = failover_drill::handle(
        &ctx.client,
        &ctx.engines.drills,
        &object,
        &valid,
        &previous,
        Some(&engine),
        now,
    )
    .await
    .expect("drill started");
    // The same request seen again (a cache that has not caught up) only clears the annotation.
    let again = failover_drill::handle(
        &ctx.client,
        &ctx.engines.drills,
        &object,
        &valid,
        &previous,
        Some(&engine),
        now,
    )
    .await
    .expect("repeat ignored");
    assert!(
        again.drill.is_none() && again.notices.is_empty(),
        "{again:?}"
    );
    drop(ctx);
    let report = fixtures::finish(server).await;
    assert_eq!(report.deletes().len(), 1, "one request deletes one Pod");
    let delete = report.deletes()[0].body.clone().expect("delete options");
    assert_eq!(delete["gracePeriodSeconds"], 0);
    let drill = outcome.drill.expect("status.drill");
    assert_eq!(drill.phase, PHASE_RUNNING);
    assert_eq!(drill.from.as_deref(), Some("payments-pg-0"));
    assert_eq!(outcome.notices[0].reason, DRILL_STARTED);
}

/// A primary Pod the operator may not delete fails the drill, naming the Pod and the reason;
/// the annotation is gone already, so the request is not retried.
#[tokio::test]
async fn a_drill_whose_pod_cannot_be_deleted_fails_and_says_why() {
    use crate::engines::postgres::drill::{
        self as failover_drill, DRILL_FAILED, EngineView, PHASE_FAILED,
    };
    use shanraq_api::names::ANNOTATION_DRILL;
    use shanraq_api::status::{PostgresInstanceStatus, PostgresStatus};

    let mut object = cluster(ShanraqClusterSpec::default(), 4);
    object
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ANNOTATION_DRILL.into(), "r3".into());
    let instance = |name: &str, role: &str| PostgresInstanceStatus {
        name: name.into(),
        role: role.into(),
        ready: true,
        ..PostgresInstanceStatus::default()
    };
    let previous = ShanraqClusterStatus {
        postgres: Some(PostgresStatus {
            instances: vec![
                instance("payments-pg-0", "primary"),
                instance("payments-pg-1", "replica"),
            ],
            ..PostgresStatus::default()
        }),
        ..ShanraqClusterStatus::default()
    };
    let valid = shanraq_api::validate(&object, &LiveState::default()).expect("valid");
    let cluster_path =
        format!("/apis/shanraq.org/v1alpha1/namespaces/{NAMESPACE}/shanraqclusters/{NAME}");
    let answer = serde_json::to_value(&object).expect("serialises");
    let scenario = Scenario::new(NAMESPACE)
        .expect(
            "PATCH annotation removal",
            Method::PATCH,
            &cluster_path,
            move |_| (http::StatusCode::OK, answer),
        )
        .expect(
            "DELETE the primary Pod",
            Method::DELETE,
            &format!("/api/v1/namespaces/{NAMESPACE}/pods/payments-pg-0"),
            |_| {
                (
                    http::StatusCode::FORBIDDEN,
                    fixtures::status_body(403, "Forbidden", "pods \"payments-pg-0\" is forbidden"),
                )
            },
        );
    let (ctx, handle) = fixtures::context(Some(false));
    let server = scenario.serve(handle);
    let engine = EngineView {
        phase: "Healthy".into(),
        primary: Some("payments-pg-0".into()),
    };
    let outcome = failover_drill::handle(
        &ctx.client,
        &ctx.engines.drills,
        &object,
        &valid,
        &previous,
        Some(&engine),
        k8s_openapi::jiff::Timestamp::now(),
    )
    .await
    .expect("a failed drill is an outcome, not a reconcile error");
    drop(ctx);
    fixtures::finish(server).await;
    let drill = outcome.drill.expect("status.drill");
    assert_eq!(drill.phase, PHASE_FAILED);
    assert_eq!(outcome.notices[0].reason, DRILL_FAILED);
    assert!(
        drill.message.contains("Pod fintech/payments-pg-0") && drill.message.contains("forbidden"),
        "{}",
        drill.message
    );
}

/// Reconciles `object` twice in one context (one operator's memory) against one script.
async fn reconcile_twice(
    object: &ShanraqCluster,
    script: Scenario,
    between: impl FnOnce(&super::Context),
) -> Report {
    let (ctx, handle) = fixtures::context(Some(false));
    let server = script.serve(handle);
    reconcile::reconcile(Arc::new(object.clone()), ctx.clone())
        .await
        .expect("first reconcile");
    between(&ctx);
    reconcile::reconcile(Arc::new(object.clone()), ctx.clone())
        .await
        .expect("second reconcile");
    drop(ctx);
    fixtures::finish(server).await
}

/// The first reconcile of a new cluster: every Secret created, every child applied, the
/// orphans collected, a Progressing status and one event per Secret.
fn first_round(object: &ShanraqCluster, rendered: &Rendered) -> Scenario {
    Scenario::new(NAMESPACE)
        .secrets(&rendered.secrets, &[])
        .apply(&rendered.children, Rollout::Pending)
        .collect(&owned(), false, &[], &rendered.children)
        .status_patch(object)
        .events(rendered.secrets.len())
}

#[tokio::test]
async fn an_unchanged_rendering_is_read_back_not_applied_again() {
    let object = cluster(ShanraqClusterSpec::default(), 1);
    let rendered = render(&object, false);
    // Second round: only the workloads read (now ready), no apply, no list, no Secret lookup;
    // the status turns Ready.
    let script = first_round(&object, &rendered)
        .read_workloads(&rendered.children, Rollout::Ready)
        .status_patch(&object)
        .events(1);
    let report = reconcile_twice(&object, script, |_| {}).await;
    assert_eq!(
        report.child_applies().len(),
        rendered.children.len(),
        "the children are applied once"
    );
    assert_eq!(report.status_patches().len(), 2);
    let ready: ShanraqClusterStatus = serde_json::from_value(
        report.status_patches()[1].body.as_ref().expect("body")["status"].clone(),
    )
    .expect("status");
    assert_eq!(condition(&ready, READY).status, "True");
}

#[tokio::test]
async fn a_child_changed_by_someone_else_is_applied_again_at_once() {
    let object = cluster(ShanraqClusterSpec::default(), 1);
    let rendered = render(&object, false);
    let config_map = rendered
        .children
        .iter()
        .find(|c| c.api_resource().kind == "ConfigMap")
        .expect("a ConfigMap child")
        .name()
        .to_owned();
    // Second round: a full apply again (Secrets looked up, every child applied, orphans
    // collected), because the ConfigMap's watch event carried another resourceVersion.
    let names = secret_names(&rendered);
    let script = first_round(&object, &rendered)
        .secrets(&rendered.secrets, &names)
        .apply(&rendered.children, Rollout::Ready)
        .collect(&owned(), false, &[], &rendered.children)
        .status_patch(&object)
        .events(1);
    let report = reconcile_twice(&object, script, |ctx| {
        ctx.applied.observe_child(
            &format!("{NAMESPACE}/{NAME}"),
            "ConfigMap",
            &config_map,
            None,
            Some("999"),
        );
    })
    .await;
    assert_eq!(report.child_applies().len(), 2 * rendered.children.len());
}

#[tokio::test]
async fn a_spec_change_is_applied_in_full() {
    let object = cluster(ShanraqClusterSpec::default(), 1);
    let rendered = render(&object, false);
    let mut changed = object.clone();
    changed.spec.postgres.instances = 5;
    changed.metadata.generation = Some(2);
    let changed_rendered = render(&changed, false);
    let names = secret_names(&changed_rendered);
    let script = first_round(&object, &rendered)
        .secrets(&changed_rendered.secrets, &names)
        .apply(&changed_rendered.children, Rollout::Pending)
        .collect(&owned(), false, &[], &changed_rendered.children)
        .status_patch(&changed);
    let (ctx, handle) = fixtures::context(Some(false));
    let server = script.serve(handle);
    reconcile::reconcile(Arc::new(object.clone()), ctx.clone())
        .await
        .expect("first reconcile");
    reconcile::reconcile(Arc::new(changed.clone()), ctx.clone())
        .await
        .expect("second reconcile");
    drop(ctx);
    let report = fixtures::finish(server).await;
    assert_eq!(
        report.child_applies().len(),
        rendered.children.len() + changed_rendered.children.len()
    );
}
