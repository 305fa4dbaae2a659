//! The operator's Kubernetes wiring of the failover engine (`KubeStateStore`, `KubeRouter`)
//! driving real PostgreSQL instance managers, with an in-memory API server that keeps one
//! ShanraqCluster and its pods and enforces `metadata.resourceVersion` preconditions like the
//! real one: a killed primary is failed over with the state and the role labels written where
//! the Services and a restarted operator read them, and no acknowledged commit is lost; an
//! operator that finds a newer epoch in the status executes nothing; a requested failover drill
//! deletes the primary's Pod and records the RTO of the failover that follows.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::client::Body;
use serde_json::{Value, json};
use shanraq_api::ShanraqCluster;
use shanraq_ha::adapters::driver::{DriverConfig, DriverEvent, DriverMember, system_clock};
use shanraq_ha::adapters::instance_client::{BearerToken, ClientTimeouts, InstanceClient};
use shanraq_ha::driver::state_store::{Stored, decode, encode};
use shanraq_ha::postgres::{HaState, Member, NodeId, Phase, PostgresHaConfig, ReplicationMode};
use shanraq_operator::engines::postgres::router::KubeRouter;
use shanraq_operator::engines::state_store::{HA_FIELD_MANAGER, KubeStateStore, PostgresSlot};
use shanraq_testkit::{LocalTopology, TopologyOptions};
use sqlx::{Connection, PgConnection};
use tower_test::mock;

const NAMESPACE: &str = "fintech";
const NAME: &str = "payments";
const BOUND: Duration = Duration::from_secs(60);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shanraq-drill"))
}

/// What the in-memory API server holds.
#[derive(Debug)]
struct ApiState {
    cluster: Value,
    resource_version: u64,
    /// Pod name -> labels.
    pods: BTreeMap<String, BTreeMap<String, String>>,
    /// Field managers of every PATCH.
    managers: Vec<String>,
    conflicts: usize,
    /// Pods deleted through the API, in order (the test plays the kubelet and kills them).
    deleted: Vec<String>,
}

type Shared = Arc<Mutex<ApiState>>;

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Some(object) = target.as_object_mut() {
                for (key, value) in fields {
                    if value.is_null() {
                        object.remove(key);
                    } else {
                        merge(object.entry(key.clone()).or_insert(Value::Null), value);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn failure(code: u16, reason: &str) -> (StatusCode, Value) {
    (
        StatusCode::from_u16(code).expect("status code"),
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": reason, "message": reason, "code": code}),
    )
}

fn cluster_with_version(state: &ApiState) -> Value {
    let mut cluster = state.cluster.clone();
    cluster["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
    cluster
}

fn answer(
    state: &mut ApiState,
    method: &Method,
    path: &str,
    query: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let cluster_path =
        format!("/apis/shanraq.org/v1alpha1/namespaces/{NAMESPACE}/shanraqclusters/{NAME}");
    let pods_prefix = format!("/api/v1/namespaces/{NAMESPACE}/pods/");
    if *method == Method::PATCH
        && let Some(manager) = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("fieldManager="))
    {
        state.managers.push(manager.to_owned());
    }
    if *method == Method::GET && path == cluster_path {
        return (StatusCode::OK, cluster_with_version(state));
    }
    if *method == Method::PATCH && path == format!("{cluster_path}/status") {
        if let Some(expected) = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && expected != state.resource_version.to_string()
        {
            state.conflicts += 1;
            return failure(409, "Conflict");
        }
        if let Some(status) = body.get("status") {
            merge(&mut state.cluster["status"], status);
        }
        state.resource_version += 1;
        return (StatusCode::OK, cluster_with_version(state));
    }
    if *method == Method::PATCH && path == cluster_path {
        if let Some(metadata) = body.get("metadata") {
            merge(&mut state.cluster["metadata"], metadata);
        }
        state.resource_version += 1;
        return (StatusCode::OK, cluster_with_version(state));
    }
    if *method == Method::DELETE
        && let Some(pod) = path.strip_prefix(&pods_prefix)
    {
        if !state.pods.contains_key(pod) {
            return failure(404, "NotFound");
        }
        state.deleted.push(pod.to_owned());
        return (
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "Status", "status": "Success"}),
        );
    }
    if *method == Method::PATCH
        && let Some(pod) = path.strip_prefix(&pods_prefix)
    {
        let Some(labels) = state.pods.get_mut(pod) else {
            return failure(404, "NotFound");
        };
        if let Some(patch) = body.pointer("/metadata/labels").and_then(Value::as_object) {
            for (key, value) in patch {
                match value.as_str() {
                    Some(value) => labels.insert(key.clone(), value.to_owned()),
                    None => labels.remove(key),
                };
            }
        }
        return (
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": NAMESPACE, "labels": labels}}),
        );
    }
    failure(404, "NotFound")
}

/// A client of the in-memory API server, and the server's state.
fn api_server(pods: &[String]) -> (kube::Client, Shared) {
    let mut cluster = serde_json::to_value(ShanraqCluster::new(NAME, Default::default()))
        .expect("cluster serialises");
    cluster["metadata"]["namespace"] = json!(NAMESPACE);
    cluster["metadata"]["uid"] = json!("uid-payments");
    let shared: Shared = Arc::new(Mutex::new(ApiState {
        cluster,
        resource_version: 1,
        pods: pods.iter().map(|p| (p.clone(), BTreeMap::new())).collect(),
        managers: Vec::new(),
        conflicts: 0,
        deleted: Vec::new(),
    }));
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let state = shared.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (code, reply) = {
                let mut state = state.lock().expect("api state");
                answer(
                    &mut state,
                    &parts.method,
                    parts.uri.path(),
                    parts.uri.query().unwrap_or_default(),
                    &body,
                )
            };
            let response = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&reply).unwrap_or_default()))
                .expect("response");
            send.send_response(response);
        }
    });
    (kube::Client::new(service, "default"), shared)
}

struct Running {
    topology: LocalTopology,
    api: Shared,
    /// A client of the in-memory API server, as the reconcile has one.
    client: kube::Client,
    handle: shanraq_ha::adapters::driver::DriverHandle,
    events: tokio::sync::broadcast::Receiver<DriverEvent>,
    run: tokio::task::JoinHandle<HaState>,
}

async fn start() -> Running {
    let topology = LocalTopology::start(binary(), TopologyOptions::default())
        .await
        .unwrap_or_else(|error| panic!("topology starts: {error}"));
    let names: Vec<String> = topology.members().iter().map(|m| m.name.clone()).collect();
    let (client, api) = api_server(&names);
    let api_client = client.clone();
    let engine = PostgresHaConfig {
        probe_period: Duration::from_millis(100),
        failure_threshold: 3,
        replication: ReplicationMode::Synchronous { number: 1 },
        ..PostgresHaConfig::default()
    };
    let timeouts = ClientTimeouts::for_probe_period(engine.probe_period);
    let token = BearerToken::new(topology.token());
    let members: Vec<DriverMember> = topology
        .members()
        .iter()
        .map(|m| DriverMember {
            member: Member::new(m.name.clone(), "127.0.0.1", m.pg_port),
            manager_url: m.http_url.clone(),
        })
        .collect();
    let clients: BTreeMap<NodeId, InstanceClient> = members
        .iter()
        .map(|m| {
            let client = InstanceClient::new(
                m.member.name.0.clone(),
                &m.manager_url,
                token.clone(),
                timeouts,
            )
            .expect("instance client");
            (m.member.name.clone(), client)
        })
        .collect();
    let store = KubeStateStore::<PostgresSlot>::new(
        Api::<ShanraqCluster>::namespaced(client.clone(), NAMESPACE),
        NAME,
    );
    let router = KubeRouter::new(
        Api::<Pod>::namespaced(client, NAMESPACE),
        members.iter().map(|m| m.member.name.clone()).collect(),
        clients,
    );
    let config = DriverConfig {
        ha: engine,
        members,
        token,
        timeouts,
        initial_state: HaState::default(),
        identity: "operator-a".to_owned(),
        authority: std::sync::Arc::new(shanraq_ha::driver::custody::Unconditional),
    };
    let (driver, handle) =
        shanraq_ha::adapters::driver::start(config, store, router, system_clock())
            .await
            .expect("the driver starts");
    let events = handle.subscribe();
    let run = tokio::spawn(driver.run());
    Running {
        topology,
        api,
        client: api_client,
        handle,
        events,
        run,
    }
}

fn labels(api: &Shared) -> BTreeMap<String, Option<String>> {
    api.lock()
        .expect("api state")
        .pods
        .iter()
        .map(|(pod, labels)| (pod.clone(), labels.get("shanraq.org/role").cloned()))
        .collect()
}

fn roles(primary: &str) -> BTreeMap<String, Option<String>> {
    ["pg-0", "pg-1", "pg-2"]
        .into_iter()
        .map(|pod| {
            let role = if pod == primary { "primary" } else { "replica" };
            (pod.to_owned(), Some(role.to_owned()))
        })
        .collect()
}

async fn wait_labels(api: &Shared, primary: &str) {
    let deadline = Instant::now() + BOUND;
    while labels(api) != roles(primary) {
        assert!(
            Instant::now() < deadline,
            "pods never labelled for primary {primary}: {:?}",
            labels(api)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Adopted, routed (labels) and persisted, with the synchronous set learnt.
async fn healthy(running: &Running) -> HaState {
    let state = running
        .handle
        .wait_for_state(BOUND, |s| {
            s.phase == Phase::Healthy
                && s.current_primary.as_ref().map(NodeId::as_str) == Some("pg-0")
                && !s.detail.sync_set.is_empty()
        })
        .await
        .expect("pg-0 adopted as primary with its synchronous set");
    wait_labels(&running.api, "pg-0").await;
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_fails_over_through_the_status_and_the_role_labels() {
    let mut running = start().await;
    healthy(&running).await;
    let postgres = running.api.lock().expect("api state").cluster["status"]["postgres"].clone();
    assert_eq!(postgres["currentPrimary"], "pg-0");
    assert_eq!(postgres["phase"], "Healthy");

    // A commit acknowledged by the primary (synchronous: a standby has it too).
    let mut connection =
        PgConnection::connect_with(&running.topology.member_options(0).expect("pg-0"))
            .await
            .expect("connect to pg-0");
    sqlx::query("CREATE TABLE ledger (id int PRIMARY KEY)")
        .execute(&mut connection)
        .await
        .expect("create");
    sqlx::query("INSERT INTO ledger VALUES (42)")
        .execute(&mut connection)
        .await
        .expect("acknowledged insert");
    drop(connection);

    running.topology.kill(0).expect("kill pg-0");
    let after = running
        .handle
        .wait_for_state(BOUND, |s| {
            s.phase == Phase::Healthy && s.last_failover.is_some()
        })
        .await
        .unwrap_or_else(|| panic!("no failover; pg-1 log:\n{}", running.topology.log(1)));
    let new_primary = after.current_primary.clone().expect("a new primary");
    assert_ne!(new_primary.as_str(), "pg-0");
    wait_labels(&running.api, new_primary.as_str()).await;

    // What a restarted operator and `kubectl get sqc` read.
    let (postgres, managers) = {
        let api = running.api.lock().expect("api state");
        (
            api.cluster["status"]["postgres"].clone(),
            api.managers.clone(),
        )
    };
    assert_eq!(postgres["currentPrimary"], new_primary.as_str());
    assert_eq!(postgres["epoch"], after.epoch);
    assert_eq!(postgres["lastFailover"]["kind"], "failover");
    assert_eq!(postgres["lastFailover"]["from"], "pg-0");
    assert_eq!(postgres["lastFailover"]["to"], new_primary.as_str());
    assert!(postgres["lastFailover"]["rtoMs"].is_u64(), "{postgres}");
    assert!(
        postgres["lastFailover"]["routedAt"].is_string(),
        "{postgres}"
    );
    assert_eq!(postgres.get("targetPrimary"), None, "cleared once done");
    let persisted: HaState =
        serde_json::from_str(postgres["haState"].as_str().expect("haState")).expect("parses");
    assert_eq!(persisted, after);
    assert!(
        managers.iter().all(|m| m == HA_FIELD_MANAGER),
        "every write by {HA_FIELD_MANAGER}: {managers:?}"
    );

    // The acknowledged commit survived.
    let index = if new_primary.as_str() == "pg-1" { 1 } else { 2 };
    let mut connection =
        PgConnection::connect_with(&running.topology.member_options(index).expect("member"))
            .await
            .expect("connect to the new primary");
    let ids: Vec<i32> = sqlx::query_scalar("SELECT id FROM ledger")
        .fetch_all(&mut connection)
        .await
        .expect("select");
    assert_eq!(ids, vec![42]);

    // A planned switchover to the remaining replica moves the labels and is recorded too.
    let other = if new_primary.as_str() == "pg-1" {
        "pg-2"
    } else {
        "pg-1"
    };
    running
        .handle
        .wait_for_state(BOUND, |s| !s.detail.sync_set.is_empty())
        .await
        .expect("the new primary reports its standbys");
    running
        .handle
        .request_switchover(Some(NodeId::new(other)))
        .await
        .expect("switchover accepted");
    running
        .handle
        .wait_for_state(BOUND, |s| {
            s.phase == Phase::Healthy
                && s.current_primary.as_ref().map(NodeId::as_str) == Some(other)
        })
        .await
        .expect("switchover completes");
    wait_labels(&running.api, other).await;
    let postgres = running.api.lock().expect("api state").cluster["status"]["postgres"].clone();
    assert_eq!(postgres["currentPrimary"], other);
    assert_eq!(postgres["lastFailover"]["kind"], "switchover");
    assert_eq!(postgres["lastFailover"]["lostBytes"], 0, "{postgres}");

    running.handle.stop().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), &mut running.run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_that_finds_another_claim_in_the_status_stands_down_and_executes_nothing() {
    let mut running = start().await;
    let state = healthy(&running).await;
    assert_eq!(state.owner.as_deref(), Some("operator-a"));
    // What the driver did before: converging on pg-0.
    while running.events.try_recv().is_ok() {}

    // Another operator took over and persisted epoch 99 (the object's version moves too).
    let newer = HaState {
        epoch: 99,
        owner: Some("operator-b".to_owned()),
        ..state.clone()
    };
    {
        let mut api = running.api.lock().expect("api state");
        let text = api.cluster["status"]["postgres"]["haState"]
            .as_str()
            .expect("haState")
            .to_owned();
        let stored: Stored<HaState> = decode(&text).expect("parses");
        api.cluster["status"]["postgres"]["haState"] =
            json!(encode(stored.revision + 1, &newer).expect("serialises"));
        api.resource_version += 1;
    }
    // A step that began before this instant may have read the store back before the other
    // claim landed, and send what it decided (the instances still admit this operator's epoch
    // until they see the other's). A step that began after it reads the other claim and must
    // send nothing.
    let claimed_at = system_clock()();
    running.topology.kill(0).expect("kill pg-0");

    let deadline = Instant::now() + BOUND;
    let reason = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, running.events.recv()).await {
            Ok(Ok(DriverEvent::SteppedDown { reason, .. })) => break reason,
            Ok(Ok(DriverEvent::CommandStarted { command, at })) if at > claimed_at => {
                panic!("a command was sent after another operator's claim: {command}")
            }
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(error)) => panic!("driver events ended: {error}"),
            Err(_) => panic!("the operator never stood down"),
        }
    };
    assert!(
        reason.contains("epoch 99") && reason.contains("operator-b"),
        "{reason}"
    );
    assert_eq!(
        running.handle.stepped_down().as_deref(),
        Some(reason.as_str())
    );

    // However long this operator keeps trying, no replica is promoted by it.
    for _ in 0..20 {
        for index in [1, 2] {
            let status = running.topology.status(index).await.expect("status");
            assert_eq!(status["role"], "replica", "pg-{index}: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored =
        running.api.lock().expect("api state").cluster["status"]["postgres"]["haState"].clone();
    let stored: Stored<HaState> = decode(stored.as_str().expect("haState")).expect("parses");
    assert_eq!(
        stored.state.epoch, 99,
        "the newer state was never overwritten"
    );
    // The other claim is found by whichever comes first: a compare-and-swap refused (409), or
    // the read-back before a step's commands. Either way the reason above names it.
    println!(
        "compare-and-swap writes refused: {}",
        running.api.lock().expect("api state").conflicts
    );

    running.handle.stop().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), &mut running.run).await;
}

/// The latency/availability probes, through HAProxy with the application's credentials:
/// both succeed on a healthy cluster; the write probe fails while no synchronous standby can
/// acknowledge (as an application commit would hang) although reads still answer, and the
/// outage a client saw is timed from that failed write to the first write after a standby is
/// back; and a dead primary fails both, its broken connection not kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_through_haproxy_measure_what_an_application_sees() {
    use shanraq_operator::engines::probes::postgres::PostgresProber;
    use shanraq_operator::engines::probes::{ProbePath, ProbeWindow, RETRY_PERIOD};
    use std::time::Instant;
    let mut topology = LocalTopology::start(binary(), TopologyOptions::default())
        .await
        .unwrap_or_else(|error| panic!("topology starts: {error}"));
    let mut prober = PostgresProber::new(topology.app_rw_options());
    let (read, write) = (prober.read().await, prober.write().await);
    assert!(read.is_ok() && write.is_ok(), "healthy: {read:?} {write:?}");
    assert!(prober.connected(), "the connection is kept between rounds");

    topology.kill(1).expect("kill pg-1");
    topology.kill(2).expect("kill pg-2");
    let window = ProbeWindow::default();
    let failed_at = Instant::now();
    let (_, write) = (prober.read().await, prober.write().await);
    // The primary cannot commit, so it no longer answers /primary: HAProxy's rw takes it out,
    // reads through rw included, until a standby is back; the read's result is not asserted.
    assert!(
        write.is_err(),
        "no synchronous standby: a commit cannot be acknowledged"
    );
    window.record(ProbePath::PostgresWrite, failed_at, None);
    assert!(window.failing(ProbePath::PostgresWrite));
    // The standbys come back; the prober retries as its loop does until a write goes through.
    topology.restart(1).expect("restart pg-1");
    topology.restart(2).expect("restart pg-2");
    let restarted = failed_at.elapsed();
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while window.failing(ProbePath::PostgresWrite) {
        assert!(Instant::now() < deadline, "no write went through again");
        tokio::time::sleep(RETRY_PERIOD).await;
        let started = Instant::now();
        let ok = prober.write().await.is_ok();
        window.retried(ProbePath::PostgresWrite, started, ok);
    }
    let outage = window
        .last_outage(ProbePath::PostgresWrite)
        .expect("the outage ended");
    println!("outage a client saw: {:?}", outage.duration);
    assert!(
        outage.duration >= restarted,
        "the outage covers the time no standby ran: {outage:?}, standbys back after {restarted:?}"
    );

    topology.kill(0).expect("kill pg-0");
    let (read, write) = (prober.read().await, prober.write().await);
    assert!(read.is_err() && write.is_err(), "{read:?} {write:?}");
    assert!(!prober.connected(), "a broken connection is not kept");
}

/// `kubectl shanraq drill`: the annotation makes the operator delete the primary's Pod (here
/// the test plays the kubelet and kills the instance whose Pod was deleted), the engine fails
/// over by itself, and the drill is completed with the RTO the engine measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_deletes_the_primary_pod_and_records_the_rto_of_its_failover() {
    use shanraq_api::names::ANNOTATION_DRILL;
    use shanraq_api::status::PostgresInstanceStatus;
    use shanraq_operator::engines::postgres::drill::{
        self as failover_drill, EngineView, PHASE_COMPLETED, PHASE_RUNNING, Requests,
    };

    let mut running = start().await;
    healthy(&running).await;
    running.api.lock().expect("api state").cluster["metadata"]["annotations"] =
        json!({ ANNOTATION_DRILL: "r1" });
    let read = |api: &Shared| -> ShanraqCluster {
        serde_json::from_value(cluster_with_version(&api.lock().expect("api state")))
            .expect("a ShanraqCluster")
    };
    let object = read(&running.api);
    let valid = shanraq_api::validate(&object, &shanraq_api::LiveState::default()).expect("valid");
    // `status.postgres.instances` as the reconcile samples them: both replicas stream.
    let mut previous = object.status.clone().unwrap_or_default();
    let postgres = previous.postgres.get_or_insert_with(Default::default);
    postgres.instances = ["pg-0", "pg-1", "pg-2"]
        .into_iter()
        .map(|name| PostgresInstanceStatus {
            name: name.to_owned(),
            role: if name == "pg-0" { "primary" } else { "replica" }.to_owned(),
            ready: true,
            ..PostgresInstanceStatus::default()
        })
        .collect();
    let view = |handle: &shanraq_ha::adapters::driver::DriverHandle| {
        let state = handle.state();
        EngineView {
            phase: state.phase.to_string(),
            primary: state.current_primary.map(|p| p.0),
        }
    };
    let acted = Requests::default();
    let started = failover_drill::handle(
        &running.client,
        &acted,
        &object,
        &valid,
        &previous,
        Some(&view(&running.handle)),
        jiff::Timestamp::now(),
    )
    .await
    .expect("the drill starts");
    let drill = started.drill.expect("status.drill");
    assert_eq!(drill.phase, PHASE_RUNNING);
    assert_eq!(drill.from.as_deref(), Some("pg-0"));
    let deleted = running.api.lock().expect("api state").deleted.clone();
    assert_eq!(deleted, vec!["pg-0".to_owned()], "the primary's Pod, once");
    assert!(
        !read(&running.api)
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key(ANNOTATION_DRILL),
        "the request is cleared"
    );

    // The kubelet kills the deleted Pod's containers; the engine notices by itself.
    running.topology.kill(0).expect("kill pg-0");
    let after = running
        .handle
        .wait_for_state(BOUND, |s| {
            s.phase == Phase::Healthy && s.last_failover.is_some()
        })
        .await
        .unwrap_or_else(|| panic!("no failover; pg-1 log:\n{}", running.topology.log(1)));
    let new_primary = after.current_primary.clone().expect("a new primary");

    // The next reconcile reads the failover the engine recorded and completes the drill.
    let mut status = read(&running.api).status.unwrap_or_default();
    status.drill = Some(drill);
    let recorded = status
        .postgres
        .as_ref()
        .and_then(|p| p.last_failover.clone())
        .expect("lastFailover");
    let object = read(&running.api);
    let finished = failover_drill::handle(
        &running.client,
        &acted,
        &object,
        &valid,
        &status,
        Some(&view(&running.handle)),
        jiff::Timestamp::now(),
    )
    .await
    .expect("the drill is followed");
    let done = finished.drill.unwrap_or_else(|| {
        panic!(
            "the drill did not finish: {:?} against {recorded:?}",
            status.drill
        )
    });
    assert_eq!(done.phase, PHASE_COMPLETED, "{done:?}");
    assert_eq!(done.to.as_deref(), Some(new_primary.as_str()));
    assert_eq!(done.rto_ms, recorded.rto_ms);
    assert!(done.rto_ms.is_some_and(|ms| ms > 0), "{done:?}");
    let notice = &finished.notices[0];
    println!("{}: {}", notice.reason, notice.note);
    assert_eq!(notice.reason, failover_drill::DRILL_COMPLETED);
    assert!(
        notice
            .note
            .contains(&format!("RTO {}ms", done.rto_ms.unwrap_or_default())),
        "{}",
        notice.note
    );
    assert_eq!(
        running.api.lock().expect("api state").deleted.len(),
        1,
        "following the drill deletes nothing more"
    );

    running.handle.stop().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), &mut running.run).await;
}
