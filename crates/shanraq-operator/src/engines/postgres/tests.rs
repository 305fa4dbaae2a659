//! The Kubernetes wiring of the HA engine against the mocked API server (`crate::fixtures`):
//! the state store's resourceVersion-guarded writes and conflict rules, the router's label
//! patches; and, as plain data, the status mapping, the task configuration, pod signals and
//! the measured objectives.

use std::time::Duration;

use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::{Value, json};
use shanraq_api::conditions::Truth;
use shanraq_api::{LiveState, ShanraqCluster, ShanraqClusterSpec, ValidCluster};
use shanraq_ha::driver::state_store::{StateStore, StateStoreError, Stored, decode, encode};
use shanraq_ha::objectives::RpoMeasurement;
use shanraq_ha::postgres::{
    FailoverKind, FailoverRecord, HaState, Millis, NodeId, Phase, ReplicationMode,
};
use shanraq_ha::wire::{InstanceRole, InstanceStatus, Lsn, ReplicationPeer};

use super::objectives::{rpo_condition, rpo_measurement, rto_condition};
use super::pods::PodTracker;
use super::router::KubeRouter;
use super::spec::{HaSettings, task_spec};
use super::status_map::{postgres_patch, strip_ha_fields};
use crate::engines::state_store::{HA_FIELD_MANAGER, KubeStateStore, PostgresSlot};
use crate::fixtures::{self, Scenario, status_body};

const NAMESPACE: &str = "fintech";
const NAME: &str = "payments";
const CLUSTER_PATH: &str = "/apis/shanraq.org/v1alpha1/namespaces/fintech/shanraqclusters/payments";
const STATUS_PATH: &str =
    "/apis/shanraq.org/v1alpha1/namespaces/fintech/shanraqclusters/payments/status";

fn object(resource_version: &str, state: Option<(u64, &HaState)>) -> Value {
    let mut cluster = ShanraqCluster::new(NAME, ShanraqClusterSpec::default());
    cluster.metadata.namespace = Some(NAMESPACE.into());
    cluster.metadata.uid = Some("uid-payments".into());
    cluster.metadata.resource_version = Some(resource_version.into());
    let mut value = serde_json::to_value(&cluster).expect("serialises");
    if let Some((revision, state)) = state {
        value["status"] = json!({
            "postgres": {
                "epoch": state.epoch,
                "haState": encode(revision, state).expect("state serialises"),
            }
        });
    }
    value
}

fn valid(spec: ShanraqClusterSpec) -> ValidCluster {
    let mut cluster = ShanraqCluster::new(NAME, spec);
    cluster.metadata.namespace = Some(NAMESPACE.into());
    cluster.metadata.uid = Some("uid-payments".into());
    shanraq_api::validate(&cluster, &LiveState::default()).expect("valid")
}

fn state(epoch: u64, primary: &str) -> HaState {
    HaState {
        epoch,
        owner: Some("operator-a".into()),
        current_primary: Some(NodeId::new(primary)),
        phase: Phase::Healthy,
        ..HaState::default()
    }
}

fn store(
    scenario: Scenario,
) -> (
    KubeStateStore<PostgresSlot>,
    tokio::task::JoinHandle<fixtures::Report>,
) {
    let (ctx, handle) = fixtures::context(Some(false));
    let server = scenario.serve(handle);
    let api: Api<ShanraqCluster> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    (KubeStateStore::new(api, NAME), server)
}

#[tokio::test]
async fn a_write_carries_the_resource_version_it_loaded_the_next_revision_and_the_readable_fields()
{
    let stored = state(1, "payments-pg-0");
    let scenario = Scenario::new(NAMESPACE)
        .field_manager(HA_FIELD_MANAGER)
        .expect("GET cluster", Method::GET, CLUSTER_PATH, {
            let body = object("41", Some((6, &stored)));
            move |_| (StatusCode::OK, body)
        })
        .expect("PATCH status", Method::PATCH, STATUS_PATH, |_| {
            (StatusCode::OK, object("42", None))
        })
        .expect("PATCH status again", Method::PATCH, STATUS_PATH, |_| {
            (StatusCode::OK, object("43", None))
        });
    let (store, server) = store(scenario);
    assert_eq!(
        store.load().await.expect("loads"),
        Some(Stored {
            revision: 6,
            state: stored.clone()
        })
    );

    let mut next = state(2, "payments-pg-1");
    next.last_failover = Some(FailoverRecord {
        kind: FailoverKind::Failover,
        epoch: 2,
        from: NodeId::new("payments-pg-0"),
        to: Some(NodeId::new("payments-pg-1")),
        detected_at: Millis(1_700_000_000_000),
        started_at: Millis(1_700_000_000_100),
        fenced_at: None,
        promoted_at: Some(Millis(1_700_000_000_400)),
        routed_at: Some(Millis(1_700_000_000_900)),
        rto_ms: Some(900),
        lost_bytes: Some(0),
        detached: Vec::new(),
        refusal: None,
        aborted: None,
        detail: shanraq_ha::postgres::RecordDetail::default(),
    });
    assert_eq!(store.compare_and_swap(6, &next).await.expect("saves"), 7);
    assert_eq!(
        store
            .compare_and_swap(7, &state(2, "payments-pg-1"))
            .await
            .expect("saves again"),
        8
    );
    drop(store);
    let report = fixtures::finish(server).await;

    let patches = report.status_patches();
    assert_eq!(patches.len(), 2);
    let first = patches[0].body.as_ref().expect("body");
    assert_eq!(
        first["metadata"]["resourceVersion"], "41",
        "the version loaded"
    );
    assert_eq!(
        patches[0].query.get("fieldManager").map(String::as_str),
        Some(HA_FIELD_MANAGER)
    );
    let postgres = &first["status"]["postgres"];
    assert_eq!(postgres["currentPrimary"], "payments-pg-1");
    assert_eq!(postgres["epoch"], 2);
    assert_eq!(postgres["phase"], "Healthy");
    assert_eq!(postgres["targetPrimary"], Value::Null, "cleared explicitly");
    assert_eq!(postgres["lastFailover"]["from"], "payments-pg-0");
    assert_eq!(
        postgres["lastFailover"]["detectedAt"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(
        postgres["lastFailover"]["routedAt"],
        "2023-11-14T22:13:20.9Z"
    );
    assert_eq!(postgres["lastFailover"]["rtoMs"], 900);
    assert_eq!(postgres["lastFailover"]["lostBytes"], 0);
    let persisted: Stored<HaState> =
        decode(postgres["haState"].as_str().expect("a string")).expect("parses");
    assert_eq!(
        persisted,
        Stored {
            revision: 7,
            state: next
        }
    );
    // The next save uses the version the API server returned for the last write.
    let second = patches[1].body.as_ref().expect("body");
    assert_eq!(second["metadata"]["resourceVersion"], "42");
}

/// The paused-operator case: another operator wrote the state while this one slept. Even at
/// the same epoch (the stale one's `epoch + 1` is what the other already holds), the write is
/// refused, and not retried: this operator never saw the revision now stored.
#[tokio::test]
async fn a_write_over_a_revision_it_never_saw_is_refused_whatever_the_epoch() {
    let mut theirs = state(2, "payments-pg-1");
    theirs.owner = Some("operator-b".into());
    let scenario = Scenario::new(NAMESPACE)
        .field_manager(HA_FIELD_MANAGER)
        .expect("GET cluster", Method::GET, CLUSTER_PATH, |_| {
            (
                StatusCode::OK,
                object("7", Some((3, &state(1, "payments-pg-0")))),
            )
        })
        .expect("PATCH status", Method::PATCH, STATUS_PATH, |_| {
            (
                StatusCode::CONFLICT,
                status_body(409, "Conflict", "the object has been modified"),
            )
        })
        .expect(
            "GET cluster after the conflict",
            Method::GET,
            CLUSTER_PATH,
            move |_| (StatusCode::OK, object("9", Some((4, &theirs)))),
        );
    let (store, server) = store(scenario);
    store.load().await.expect("loads");
    let error = store
        .compare_and_swap(3, &state(2, "payments-pg-2"))
        .await
        .expect_err("operator-b wrote revision 4");
    match &error {
        StateStoreError::Conflict {
            expected: 3,
            found: 4,
            epoch: 2,
            owner: Some(owner),
        } if owner == "operator-b" => {}
        other => panic!("expected a conflict naming operator-b, got {other:?}"),
    }
    assert!(error.to_string().contains("operator-b"), "{error}");
    drop(store);
    let report = fixtures::finish(server).await;
    assert_eq!(
        report.status_patches().len(),
        1,
        "no retry over another engine's write"
    );
}

#[tokio::test]
async fn a_conflict_with_another_status_writer_retries_with_the_fresh_version() {
    let scenario = Scenario::new(NAMESPACE)
        .field_manager(HA_FIELD_MANAGER)
        .expect("GET cluster", Method::GET, CLUSTER_PATH, |_| {
            (
                StatusCode::OK,
                object("7", Some((5, &state(1, "payments-pg-0")))),
            )
        })
        .expect("PATCH status", Method::PATCH, STATUS_PATH, |_| {
            (
                StatusCode::CONFLICT,
                status_body(409, "Conflict", "the object has been modified"),
            )
        })
        .expect(
            "GET cluster after the conflict: only the conditions moved",
            Method::GET,
            CLUSTER_PATH,
            |_| {
                (
                    StatusCode::OK,
                    object("8", Some((5, &state(1, "payments-pg-0")))),
                )
            },
        )
        .expect("PATCH status retried", Method::PATCH, STATUS_PATH, |_| {
            (StatusCode::OK, object("9", None))
        });
    let (store, server) = store(scenario);
    store.load().await.expect("loads");
    assert_eq!(
        store
            .compare_and_swap(5, &state(2, "payments-pg-1"))
            .await
            .expect("saved after one retry"),
        6
    );
    drop(store);
    let report = fixtures::finish(server).await;
    let patches = report.status_patches();
    assert_eq!(patches.len(), 2);
    let versions: Vec<&Value> = patches
        .iter()
        .map(|p| &p.body.as_ref().expect("body")["metadata"]["resourceVersion"])
        .collect();
    assert_eq!(versions, vec![&json!("7"), &json!("8")]);
}

#[tokio::test]
async fn route_labels_the_others_replica_then_the_new_primary() {
    let pod_path = |name: &str| format!("/api/v1/namespaces/{NAMESPACE}/pods/{name}");
    let answer = |name: &'static str| {
        move |_: &fixtures::Recorded| {
            (
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}}),
            )
        }
    };
    let scenario = Scenario::new(NAMESPACE)
        .field_manager(HA_FIELD_MANAGER)
        .expect(
            "label pg-0 replica",
            Method::PATCH,
            &pod_path("payments-pg-0"),
            answer("payments-pg-0"),
        )
        .expect(
            "pg-2 is gone",
            Method::PATCH,
            &pod_path("payments-pg-2"),
            |_| {
                (
                    StatusCode::NOT_FOUND,
                    status_body(404, "NotFound", "pods \"payments-pg-2\" not found"),
                )
            },
        )
        .expect(
            "label pg-1 primary",
            Method::PATCH,
            &pod_path("payments-pg-1"),
            answer("payments-pg-1"),
        );
    let (ctx, handle) = fixtures::context(Some(false));
    let server = scenario.serve(handle);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    let members = ["payments-pg-0", "payments-pg-1", "payments-pg-2"]
        .into_iter()
        .map(NodeId::new)
        .collect();
    let router = KubeRouter::new(pods, members, Default::default());
    router
        .relabel(&NodeId::new("payments-pg-1"))
        .await
        .expect("relabelled");
    drop(router);
    drop(ctx);
    let report = fixtures::finish(server).await;
    let labels: Vec<(String, Value)> = report
        .with_method(&Method::PATCH)
        .iter()
        .map(|r| {
            (
                r.path.rsplit('/').next().unwrap_or_default().to_owned(),
                r.body.as_ref().expect("body")["metadata"]["labels"]["shanraq.org/role"].clone(),
            )
        })
        .collect();
    assert_eq!(
        labels,
        vec![
            ("payments-pg-0".to_owned(), json!("replica")),
            ("payments-pg-2".to_owned(), json!("replica")),
            ("payments-pg-1".to_owned(), json!("primary")),
        ]
    );
}

#[tokio::test]
async fn routing_to_a_missing_pod_fails() {
    let scenario = Scenario::new(NAMESPACE)
        .field_manager(HA_FIELD_MANAGER)
        .expect(
            "pg-1 is gone",
            Method::PATCH,
            "/api/v1/namespaces/fintech/pods/payments-pg-1",
            |_| {
                (
                    StatusCode::NOT_FOUND,
                    status_body(404, "NotFound", "not found"),
                )
            },
        );
    let (ctx, handle) = fixtures::context(Some(false));
    let server = scenario.serve(handle);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    let router = KubeRouter::new(pods, vec![NodeId::new("payments-pg-1")], Default::default());
    let error = router
        .relabel(&NodeId::new("payments-pg-1"))
        .await
        .expect_err("no pod to route to");
    let error = error.to_string();
    assert!(error.contains("payments-pg-1"), "{error}");
    drop(router);
    drop(ctx);
    fixtures::finish(server).await;
}

#[test]
fn the_reconcile_body_never_carries_the_ha_fields() {
    let mut status = json!({
        "observedGeneration": 3,
        "postgres": {
            "currentPrimary": "payments-pg-1",
            "targetPrimary": null,
            "epoch": 4,
            "phase": "Healthy",
            "lastFailover": {"kind": "failover"},
            "haState": "{}",
            "readyInstances": 3,
        },
    });
    strip_ha_fields(&mut status);
    assert_eq!(
        status,
        json!({"observedGeneration": 3, "postgres": {"readyInstances": 3}})
    );
}

#[test]
fn a_state_in_flight_shows_its_target_and_phase() {
    let mut in_flight = state(6, "payments-pg-0");
    in_flight.target_primary = Some(NodeId::new("payments-pg-2"));
    in_flight.phase = Phase::Promoting;
    let patch = postgres_patch(&in_flight).expect("maps");
    assert_eq!(patch["targetPrimary"], "payments-pg-2");
    assert_eq!(patch["phase"], "Promoting");
    assert_eq!(patch["epoch"], 6);
    assert_eq!(patch["lastFailover"], Value::Null);
}

#[test]
fn members_are_the_statefulset_pods_behind_the_headless_service() {
    let mut spec = ShanraqClusterSpec::default();
    spec.postgres.instances = 3;
    spec.postgres.synchronous.number = 1;
    let cluster = valid(spec.clone());
    let settings = HaSettings {
        enabled: true,
        cluster_domain: "corp.example".into(),
        ..HaSettings::default()
    };
    let task = task_spec(&cluster, &settings).expect("PostgreSQL enabled");
    assert_eq!(task.key(), "fintech/payments");
    assert_eq!(task.token_secret, "payments-instance-token");
    let urls: Vec<&str> = task
        .members
        .iter()
        .map(|m| m.manager_url.as_str())
        .collect();
    assert_eq!(
        urls,
        vec![
            "http://payments-pg-0.payments-pg.fintech.svc.corp.example:8000",
            "http://payments-pg-1.payments-pg.fintech.svc.corp.example:8000",
            "http://payments-pg-2.payments-pg.fintech.svc.corp.example:8000",
        ]
    );
    assert_eq!(
        task.members[1].member.pg_host,
        "payments-pg-1.payments-pg.fintech.svc.corp.example"
    );
    assert_eq!(task.members[1].member.pg_port, 5432);
    assert_eq!(
        task.engine.replication,
        ReplicationMode::Synchronous { number: 1 }
    );
    assert_eq!(
        task.engine.probe_period,
        cluster.spec.failover.probe_period.as_std()
    );

    // A changed timing is a different task (restarted); PostgreSQL off is no task.
    spec.failover.failure_threshold += 1;
    assert_ne!(task_spec(&valid(spec.clone()), &settings), Some(task));
    spec.postgres.enabled = false;
    assert_eq!(task_spec(&valid(spec), &settings), None);
}

fn pod(name: &str, ready: bool, deleting: bool) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "deletionTimestamp": deleting.then_some("2026-01-01T00:00:00Z"),
        },
        "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
    }))
    .expect("a pod")
}

#[test]
fn only_pod_transitions_become_signals() {
    let mut tracker = PodTracker::new(vec![NodeId::new("payments-pg-0")]);
    let first = tracker
        .seen(&pod("payments-pg-0", true, false), Millis(1))
        .expect("first sight");
    assert!(first.ready && !first.deleted);
    assert_eq!(
        tracker.seen(&pod("payments-pg-0", true, false), Millis(2)),
        None,
        "unchanged: no signal (each not-ready signal counts as a failed probe)"
    );
    let terminating = tracker
        .seen(&pod("payments-pg-0", false, true), Millis(3))
        .expect("terminating");
    assert!(terminating.deleted && !terminating.ready);
    assert_eq!(
        tracker.gone(&pod("payments-pg-0", false, true), Millis(4)),
        None
    );
    assert_eq!(
        tracker.seen(&pod("other-pg-0", false, false), Millis(5)),
        None,
        "not a member"
    );
}

fn primary_status(rows: &[(&str, &str, &str, u64)], current: u64) -> InstanceStatus {
    InstanceStatus {
        epoch_owner: None,
        name: "payments-pg-0".into(),
        role: InstanceRole::Primary,
        epoch: 1,
        primary_epoch: Some(1),
        fenced: false,
        running: true,
        in_recovery: Some(false),
        timeline: Some(1),
        current_lsn: Some(Lsn(current)),
        received_lsn: None,
        replayed_lsn: None,
        replay_paused: None,
        streaming: None,
        detached: false,
        writable: None,
        replay_lag_seconds: None,
        replication: rows
            .iter()
            .map(|(name, state, sync, flush)| ReplicationPeer {
                application_name: (*name).into(),
                state: (*state).into(),
                sync_state: (*sync).into(),
                sent_lsn: Some(Lsn(*flush)),
                write_lsn: Some(Lsn(*flush)),
                flush_lsn: Some(Lsn(*flush)),
                replay_lsn: Some(Lsn(*flush)),
            })
            .collect(),
        synchronous_standby_names: None,
        final_lsn: None,
        message: None,
        archiver: None,
        repository: None,
        backup_peer: None,
    }
}

#[test]
fn rpo_is_zero_only_while_enough_synchronous_standbys_stream() {
    let cluster = valid(ShanraqClusterSpec::default());
    let sync = ReplicationMode::Synchronous { number: 1 };
    let streaming = primary_status(
        &[
            ("payments-pg-1", "streaming", "quorum", 100),
            ("payments-pg-2", "catchup", "potential", 50),
        ],
        100,
    );
    let measured = rpo_measurement(sync, Some("payments-pg-0"), &members(), &[streaming]);
    let (condition, verdict) = rpo_condition(&cluster, &measured);
    assert_eq!(condition.truth, Truth::True);
    assert_eq!(verdict.measured, "0s");
    assert!(
        condition
            .message
            .contains("synchronous standby payments-pg-1 streaming"),
        "{}",
        condition.message
    );

    let none = primary_status(&[("payments-pg-1", "catchup", "potential", 50)], 100);
    let (condition, _) = rpo_condition(
        &cluster,
        &rpo_measurement(sync, Some("payments-pg-0"), &members(), &[none]),
    );
    assert_eq!(condition.truth, Truth::False);
    assert!(
        condition.message.contains("0 of 1 required"),
        "{}",
        condition.message
    );

    // The designated primary not answering as one: loss is unbounded, and the message says why.
    let (condition, _) = rpo_condition(
        &cluster,
        &rpo_measurement(sync, Some("payments-pg-0"), &members(), &[]),
    );
    assert_eq!(condition.truth, Truth::False);
    assert!(
        condition.message.contains("payments-pg-0"),
        "{}",
        condition.message
    );
}

fn members() -> Vec<String> {
    (0..3).map(|n| format!("payments-pg-{n}")).collect()
}

#[test]
fn a_primary_lowered_under_preferred_durability_is_measured_as_fallen_back() {
    let cluster = valid(ShanraqClusterSpec::default());
    let sync = ReplicationMode::Synchronous { number: 1 };
    // Fallen back with nobody streaming: unbounded, and the message says why.
    let mut alone = primary_status(&[], 100);
    alone.synchronous_standby_names = Some(String::new());
    let measured = rpo_measurement(sync, Some("payments-pg-0"), &members(), &[alone]);
    let (condition, verdict) = rpo_condition(&cluster, &measured);
    assert_eq!(condition.truth, Truth::False);
    assert_eq!(condition.reason, "OverTarget");
    assert_eq!(verdict.measured, "unbounded");
    assert!(
        condition
            .message
            .contains("dataDurability: preferred fell back to asynchronous")
            && condition
                .message
                .contains("payments-pg-1, payments-pg-2 not streaming"),
        "{}",
        condition.message
    );

    // A standby back but not yet restored to ANY 2: asynchronous towards the missing one, the
    // measured lag of the streaming one, never met under an RPO target of 0.
    let sync2 = ReplicationMode::Synchronous { number: 2 };
    let mut lowered = primary_status(&[("payments-pg-1", "streaming", "quorum", 90)], 100);
    lowered.synchronous_standby_names = Some("ANY 1 (\"payments-pg-1\")".into());
    let measured = rpo_measurement(sync2, Some("payments-pg-0"), &members(), &[lowered]);
    assert_eq!(
        measured,
        RpoMeasurement::FellBack {
            standby_names: "ANY 1 (\"payments-pg-1\")".into(),
            required: 2,
            missing: vec!["payments-pg-2".into()],
            replica: Some("payments-pg-1".into()),
            lag_bytes: 10,
            lag: Duration::ZERO,
        }
    );
    assert_eq!(rpo_condition(&cluster, &measured).0.truth, Truth::False);

    // Restored: the configured setting in effect, measured as synchronous again.
    let mut restored = primary_status(&[("payments-pg-1", "streaming", "quorum", 100)], 100);
    restored.synchronous_standby_names = Some("ANY 1 (*)".into());
    let measured = rpo_measurement(sync, Some("payments-pg-0"), &members(), &[restored]);
    assert!(
        matches!(measured, RpoMeasurement::Synchronous { .. }),
        "{measured:?}"
    );
    assert_eq!(rpo_condition(&cluster, &measured).0.truth, Truth::True);
}

#[test]
fn asynchronous_rpo_is_the_best_replicas_lag() {
    let measured = rpo_measurement(
        ReplicationMode::Asynchronous,
        Some("payments-pg-0"),
        &members(),
        &[primary_status(
            &[
                ("payments-pg-1", "streaming", "async", 9_000),
                ("payments-pg-2", "streaming", "async", 9_900),
            ],
            10_000,
        )],
    );
    assert_eq!(
        measured,
        RpoMeasurement::Asynchronous {
            replica: "payments-pg-2".into(),
            lag_bytes: 100,
            lag: Duration::ZERO,
        }
    );
}

#[test]
fn rto_is_false_when_the_last_failover_took_longer_than_the_target() {
    let cluster = valid(ShanraqClusterSpec::default());
    let target = cluster.spec.objectives.rto.as_std();
    let (fast, _) = rto_condition(&cluster, Duration::from_millis(800));
    assert_eq!(fast.truth, Truth::True, "{}", fast.message);
    assert!(
        fast.message.contains("last failover 800ms"),
        "{}",
        fast.message
    );
    let (slow, verdict) = rto_condition(&cluster, target + Duration::from_secs(1));
    assert_eq!(slow.truth, Truth::False, "{}", slow.message);
    assert!(!verdict.met);
}

#[test]
fn an_unchanged_verdict_keeps_the_published_measurement_a_flip_replaces_it() {
    use super::objectives::Published;
    let mut spec = ShanraqClusterSpec::default();
    spec.objectives.rpo = "5s".parse().expect("a duration");
    let cluster = valid(spec);
    let lagging = |bytes: u64, seconds: u64| RpoMeasurement::Asynchronous {
        replica: "payments-pg-1".into(),
        lag_bytes: bytes,
        lag: Duration::from_secs(seconds),
    };
    let published = Published::default();
    let choose = |fresh: RpoMeasurement| {
        let met = shanraq_ha::objectives::rpo(cluster.spec.objectives.rpo.as_std(), &fresh).met;
        published.choose(met, fresh)
    };
    assert_eq!(choose(lagging(10, 1)), lagging(10, 1));
    assert_eq!(
        choose(lagging(20, 2)),
        lagging(10, 1),
        "still met: the status keeps what it shows"
    );
    assert_eq!(
        choose(lagging(900, 9)),
        lagging(900, 9),
        "the verdict flipped: published at once"
    );
}

#[test]
fn instances_show_each_members_reported_role_and_the_synchronous_standbys() {
    let primary = primary_status(&[("payments-pg-1", "streaming", "quorum", 100)], 100);
    let mut replica = primary_status(&[], 0);
    replica.name = "payments-pg-1".into();
    replica.role = InstanceRole::Replica;
    replica.streaming = Some(true);
    let members: Vec<String> = ["payments-pg-0", "payments-pg-1", "payments-pg-2"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let listed = super::objectives::instances(&members, Some("payments-pg-0"), &[primary, replica]);
    let summary: Vec<(&str, &str, bool, bool)> = listed
        .iter()
        .map(|i| (i.name.as_str(), i.role.as_str(), i.ready, i.synchronous))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("payments-pg-0", "primary", true, false),
            ("payments-pg-1", "replica", true, true),
            ("payments-pg-2", "unreachable", false, false),
        ]
    );
    assert!(listed.iter().all(|i| i.lag_bytes.is_none()));
}

#[test]
fn a_settled_state_relabels_unlabelled_and_mislabelled_pods_only() {
    use super::pods::label_fix;
    let labelled = |name: &str, role: Option<&str>| {
        let mut pod = pod(name, true, false);
        if let Some(role) = role {
            pod.metadata.labels = Some([("shanraq.org/role".to_owned(), role.to_owned())].into());
        }
        pod
    };
    let healthy = state(3, "payments-pg-1");
    assert_eq!(
        label_fix(&labelled("payments-pg-0", None), &healthy),
        Some("replica")
    );
    assert_eq!(
        label_fix(&labelled("payments-pg-0", Some("primary")), &healthy),
        Some("replica"),
        "a stale primary label is corrected"
    );
    assert_eq!(
        label_fix(&labelled("payments-pg-1", Some("replica")), &healthy),
        Some("primary")
    );
    assert_eq!(
        label_fix(&labelled("payments-pg-1", Some("primary")), &healthy),
        None
    );
    assert_eq!(
        label_fix(&labelled("payments-pg-2", Some("replica")), &healthy),
        None
    );
    let mut failing_over = healthy.clone();
    failing_over.phase = Phase::Promoting;
    assert_eq!(
        label_fix(&labelled("payments-pg-0", None), &failing_over),
        None,
        "mid-failover only the router writes labels"
    );
    assert_eq!(
        label_fix(&pod("payments-pg-0", false, true), &healthy),
        None,
        "terminating"
    );
}

fn pod_with_hash(name: &str, hash: &str, ready: bool) -> Pod {
    let mut pod = pod(name, ready, false);
    pod.metadata.annotations =
        Some([("shanraq.org/config-hash".to_owned(), hash.to_owned())].into());
    pod
}

#[test]
fn a_new_configuration_restarts_replicas_first_then_switches_over() {
    use super::restart::{RestartStep, next_step};
    let members: Vec<String> = ["payments-pg-0", "payments-pg-1", "payments-pg-2"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let pods = |hashes: [(&str, bool); 3]| {
        members
            .iter()
            .zip(hashes)
            .map(|(name, (hash, ready))| (name.clone(), pod_with_hash(name, hash, ready)))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let mut primary = primary_status(
        &[
            ("payments-pg-1", "streaming", "quorum", 100),
            ("payments-pg-2", "streaming", "quorum", 100),
        ],
        100,
    );
    primary.name = "payments-pg-0".into();
    let sample = [primary];
    let healthy = state(2, "payments-pg-0");

    // Highest stale replica first.
    assert_eq!(
        next_step(
            &members,
            &pods([("old", true), ("old", true), ("old", true)]),
            &healthy,
            "new",
            1,
            &sample
        ),
        Some(RestartStep::DeleteReplica("payments-pg-2".into()))
    );
    // One at a time: nothing while a pod is not ready.
    assert_eq!(
        next_step(
            &members,
            &pods([("old", true), ("old", true), ("new", false)]),
            &healthy,
            "new",
            1,
            &sample
        ),
        None
    );
    assert_eq!(
        next_step(
            &members,
            &pods([("old", true), ("old", true), ("new", true)]),
            &healthy,
            "new",
            1,
            &sample
        ),
        Some(RestartStep::DeleteReplica("payments-pg-1".into()))
    );
    // Only the primary is stale: switch over rather than restart it.
    assert_eq!(
        next_step(
            &members,
            &pods([("old", true), ("new", true), ("new", true)]),
            &healthy,
            "new",
            1,
            &sample
        ),
        Some(RestartStep::Switchover {
            primary: "payments-pg-0".into()
        })
    );
    // Nothing stale, or mid-failover: nothing.
    assert_eq!(
        next_step(
            &members,
            &pods([("new", true), ("new", true), ("new", true)]),
            &healthy,
            "new",
            1,
            &sample
        ),
        None
    );
    let mut busy = healthy.clone();
    busy.phase = Phase::SwitchoverDraining;
    assert_eq!(
        next_step(
            &members,
            &pods([("old", true), ("old", true), ("old", true)]),
            &busy,
            "new",
            1,
            &sample
        ),
        None
    );
    // Restarting a replica must leave enough synchronous standbys streaming.
    assert_eq!(
        next_step(
            &members,
            &pods([("old", true), ("old", true), ("old", true)]),
            &healthy,
            "new",
            2,
            &sample
        ),
        None,
        "two required, two streaming: restarting one would block commits"
    );
}
