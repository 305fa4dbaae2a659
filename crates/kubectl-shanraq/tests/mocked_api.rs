//! Every plugin command against a mocked API server (`tower_test::mock::pair`): the requests
//! it makes, in order, and what it prints or which error it names. A request the script does
//! not expect fails the test, and so does a scripted request that was never made.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodCondition, PodStatus};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::client::Body;
use kubectl_shanraq::actions::{self, Waiting};
use kubectl_shanraq::cli::{Command, Format};
use kubectl_shanraq::error::{ClusterRef, PluginError};
use serde_json::{Value, json};
use shanraq_api::names::{
    ANNOTATION_DRILL, ANNOTATION_SWITCHOVER, LABEL_CLUSTER, LABEL_COMPONENT, LABEL_ROLE,
};
use shanraq_api::status::{
    DrillStatus, FailoverRecord, ObjectiveStatus, ObjectivesStatus, PostgresInstanceStatus,
    PostgresStatus, RedisStatus, WorkloadStatus,
};
use shanraq_api::{ShanraqCluster, ShanraqClusterSpec, ShanraqClusterStatus};
use tower_test::mock::{self, Handle};

const NAMESPACE: &str = "fintech";
const NAME: &str = "payments";
const CLUSTER_PATH: &str = "/apis/shanraq.org/v1alpha1/namespaces/fintech/shanraqclusters/payments";
const PODS_PATH: &str = "/api/v1/namespaces/fintech/pods";

#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    query: String,
    body: Option<Value>,
}

type Reply = Box<dyn FnOnce(&Seen) -> (StatusCode, Value) + Send>;

/// The scripted API server: each step is a method, a path and the answer.
#[derive(Default)]
struct Script {
    steps: VecDeque<(Method, String, Reply)>,
}

impl Script {
    fn then(
        mut self,
        method: Method,
        path: &str,
        reply: impl FnOnce(&Seen) -> (StatusCode, Value) + Send + 'static,
    ) -> Self {
        self.steps
            .push_back((method, path.to_owned(), Box::new(reply)));
        self
    }

    fn get_cluster(self, cluster: &ShanraqCluster) -> Self {
        let object = serde_json::to_value(cluster).expect("cluster serialises");
        self.then(Method::GET, CLUSTER_PATH, move |_| (StatusCode::OK, object))
    }

    fn patch_cluster(self, cluster: &ShanraqCluster) -> Self {
        let object = serde_json::to_value(cluster).expect("cluster serialises");
        self.then(Method::PATCH, CLUSTER_PATH, move |_| {
            (StatusCode::OK, object)
        })
    }

    fn serve(
        self,
        handle: Handle<Request<Body>, Response<Body>>,
    ) -> tokio::task::JoinHandle<Vec<Seen>> {
        tokio::spawn(async move {
            let mut handle = handle;
            let mut steps = self.steps;
            let mut seen = Vec::new();
            let mut problems = Vec::new();
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let request = Seen {
                    method: parts.method.clone(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or_default().to_owned(),
                    body: serde_json::from_slice(&bytes).ok(),
                };
                let (code, reply) = match steps.pop_front() {
                    Some((method, path, reply))
                        if method == request.method && path == request.path =>
                    {
                        reply(&request)
                    }
                    expected => {
                        problems.push(format!(
                            "expected {:?}, got {} {}",
                            expected.map(|(m, p, _)| format!("{m} {p}")),
                            request.method,
                            request.path
                        ));
                        (StatusCode::INTERNAL_SERVER_ERROR, json!({}))
                    }
                };
                seen.push(request);
                let response = Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&reply).expect("json")))
                    .expect("response");
                send.send_response(response);
            }
            assert!(problems.is_empty(), "API server verifier: {problems:#?}");
            let missed: Vec<String> = steps.iter().map(|(m, p, _)| format!("{m} {p}")).collect();
            assert!(missed.is_empty(), "requests never made: {missed:#?}");
            seen
        })
    }
}

fn at() -> ClusterRef {
    ClusterRef {
        namespace: NAMESPACE.into(),
        name: NAME.into(),
    }
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: Some(4),
        last_transition_time: Time(
            jiff::Timestamp::from_second(1_764_583_200).expect("valid time"),
        ),
    }
}

/// A member as the operator reports it: it leaves `lagBytes` empty (the RPO condition
/// carries the lag), so the plugin shows `-` rather than a number nobody measured.
fn member(name: &str, role: &str, synchronous: bool) -> PostgresInstanceStatus {
    PostgresInstanceStatus {
        name: name.into(),
        role: role.into(),
        ready: true,
        timeline: Some(4),
        lag_bytes: None,
        synchronous,
    }
}

fn objective(target: &str, measured: &str, met: bool) -> ObjectiveStatus {
    ObjectiveStatus {
        target: target.into(),
        measured: measured.into(),
        met,
        component: None,
    }
}

/// A 3-instance cluster after one failover, as the operator reports it.
fn healthy_cluster() -> ShanraqCluster {
    let mut cluster = ShanraqCluster::new(NAME, ShanraqClusterSpec::default());
    cluster.metadata.namespace = Some(NAMESPACE.into());
    cluster.metadata.uid = Some("uid-payments".into());
    cluster.metadata.generation = Some(4);
    cluster.status = Some(ShanraqClusterStatus {
        observed_generation: Some(4),
        conditions: vec![
            condition("Ready", "True", "Ready", "All components ready"),
            condition("PostgresReady", "True", "Ready", "3/3 ready"),
            condition(
                "RPOMet",
                "True",
                "Met",
                "RPO 0s (synchronous standby payments-pg-2 streaming) <= target 0s",
            ),
            condition(
                "RedisReady",
                "False",
                "Progressing",
                "Redis 2/3 instances ready",
            ),
        ],
        postgres: Some(PostgresStatus {
            current_primary: Some("payments-pg-1".into()),
            epoch: 4,
            phase: Some("Healthy".into()),
            ready_instances: 3,
            instances: vec![
                member("payments-pg-0", "replica", false),
                member("payments-pg-1", "primary", false),
                member("payments-pg-2", "replica", true),
            ],
            last_failover: Some(FailoverRecord {
                kind: "failover".into(),
                from: "payments-pg-0".into(),
                to: "payments-pg-1".into(),
                detected_at: "2026-12-01T10:00:00.100Z".into(),
                promoted_at: Some("2026-12-01T10:00:00.700Z".into()),
                routed_at: Some("2026-12-01T10:00:00.900Z".into()),
                rto_ms: Some(900),
                lost_bytes: Some(0),
                data_lost: None,
                possible_loss: None,
            }),
            ..PostgresStatus::default()
        }),
        redis: Some(RedisStatus {
            current_master: Some("payments-redis-1".into()),
            epoch: 3,
            phase: Some("Healthy".into()),
            ready_instances: 2,
            ..RedisStatus::default()
        }),
        kafka: Some(shanraq_api::kafka::KafkaStatus {
            ready_replicas: 6,
            replicas: 6,
            ..Default::default()
        }),
        haproxy: Some(WorkloadStatus {
            ready_replicas: 2,
            replicas: 2,
        }),
        objectives: Some(ObjectivesStatus {
            rpo: Some(objective("0s", "0s", true)),
            rto: Some(objective("30s", "last failover 900ms", true)),
            latency_p99: Some(objective("1ms", "0.8ms", true)),
            availability: Some(objective("99.99%", "99.9998%", true)),
            dr_rpo: None,
            error_budget_remaining: Some("98.3%".into()),
            availability_ledger: None,
            probe_paths: vec![shanraq_api::status::ProbePathStatus {
                path: "postgres-write".into(),
                component: "PostgreSQL".into(),
                p50: Some("1.2ms".into()),
                p99: Some("2.5ms".into()),
                target: "10ms".into(),
                samples: 300,
                failures: 1,
                met: true,
                last_outage: Some(shanraq_api::status::ProbeOutageStatus {
                    started: "2026-12-08T01:00:00Z".into(),
                    duration_ms: 1250,
                }),
            }],
        }),
        drill: None,
        backup: None,
    });
    cluster
}

fn pod(name: &str, component: &str, ready: bool, role: Option<&str>) -> Pod {
    let mut labels = BTreeMap::from([
        (LABEL_COMPONENT.to_owned(), component.to_owned()),
        (LABEL_CLUSTER.to_owned(), NAME.to_owned()),
    ]);
    if let Some(role) = role {
        labels.insert(LABEL_ROLE.to_owned(), role.to_owned());
    }
    let mut pod = Pod::default();
    pod.metadata.name = Some(name.into());
    pod.metadata.namespace = Some(NAMESPACE.into());
    pod.metadata.labels = Some(labels);
    pod.status = Some(PodStatus {
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..PodCondition::default()
        }]),
        ..PodStatus::default()
    });
    pod
}

fn pod_list() -> Value {
    let mut pods = vec![
        pod("payments-pg-0", "postgres", true, Some("replica")),
        pod("payments-pg-1", "postgres", true, Some("primary")),
        pod("payments-pg-2", "postgres", true, Some("replica")),
        pod("payments-redis-0", "redis", true, None),
        pod("payments-redis-1", "redis", true, None),
        pod("payments-redis-2", "redis", false, None),
        pod("payments-haproxy-7d9f-abcde", "haproxy", true, None),
        pod("payments-haproxy-7d9f-fghij", "haproxy", true, None),
    ];
    for n in 0..3 {
        pods.push(pod(
            &format!("payments-kafka-controller-{n}"),
            "kafka-controller",
            true,
            None,
        ));
        pods.push(pod(
            &format!("payments-kafka-broker-{n}"),
            "kafka-broker",
            true,
            None,
        ));
    }
    json!({
        "apiVersion": "v1",
        "kind": "PodList",
        "metadata": { "resourceVersion": "1" },
        "items": pods,
    })
}

fn not_found() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound",
        "message": "shanraqclusters.shanraq.org \"payments\" not found", "code": 404,
    })
}

fn forbidden() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Forbidden",
        "message": "pods is forbidden: User \"dev\" cannot list resource \"pods\" in API group \"\" in the namespace \"fintech\"",
        "code": 403,
    })
}

/// Runs `command` against `script`; returns the result, what it printed and the requests.
async fn run(
    script: Script,
    command: Command,
    input: &str,
) -> (Result<(), PluginError>, String, Vec<Seen>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let server = script.serve(handle);
    let client = kube::Client::new(service, NAMESPACE);
    let mut out = Vec::new();
    let mut input = input.as_bytes();
    let result = kubectl_shanraq::run(&client, NAMESPACE, &command, &mut input, &mut out).await;
    drop(client);
    let seen = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("verifier finishes")
        .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
    (result, String::from_utf8(out).expect("utf-8 output"), seen)
}

fn status(output: Format) -> Command {
    Command::Status {
        name: NAME.into(),
        output,
    }
}

#[tokio::test]
async fn status_prints_every_component_and_objective() {
    let script =
        Script::default()
            .get_cluster(&healthy_cluster())
            .then(Method::GET, PODS_PATH, |_| (StatusCode::OK, pod_list()));
    let (result, out, seen) = run(script, status(Format::Table), "").await;
    result.expect("status succeeds");
    println!("{out}");
    assert!(
        seen[1]
            .query
            .contains("labelSelector=shanraq.org%2Fcluster%3Dpayments"),
        "the Pods are found by the cluster label: {}",
        seen[1].query
    );
    let expected = "\
ShanraqCluster fintech/payments: Ready=True (All components ready); generation 4, observed 4

PostgreSQL: 3/3 ready, primary payments-pg-1, epoch 4, phase Healthy
  INSTANCE       ROLE     READY  SYNC  LAG  TIMELINE
  payments-pg-0  replica  yes    no    -    4
  payments-pg-1  primary  yes    no    -    4
  payments-pg-2  replica  yes    yes   -    4

Redis: 2/3 ready, master payments-redis-1, epoch 3, phase Healthy (Redis 2/3 instances ready)
  INSTANCE          ROLE     READY  OFFSET
  payments-redis-0  replica  yes    -
  payments-redis-1  master   yes    -
  payments-redis-2  replica  no     -

Kafka: 6/6 ready
  INSTANCE                     ROLE        READY
  payments-kafka-broker-0      broker      yes
  payments-kafka-broker-1      broker      yes
  payments-kafka-broker-2      broker      yes
  payments-kafka-controller-0  controller  yes
  payments-kafka-controller-1  controller  yes
  payments-kafka-controller-2  controller  yes

HAProxy: 2/2 ready
  INSTANCE                     ROLE  READY
  payments-haproxy-7d9f-abcde  -     yes
  payments-haproxy-7d9f-fghij  -     yes

Objectives:
  OBJECTIVE     TARGET            MEASURED                            MET
  rpo           0s                0s                                  yes
  rto           30s               last failover 900ms                 yes
  latency p99   1ms               0.8ms                               yes
  availability  99.99% over 720h  99.9998% (error budget 98.3% left)  yes

Probe paths (last 5 minutes):
  PATH            P50    P99    TARGET  OK       MET  LAST OUTAGE
  postgres-write  1.2ms  2.5ms  10ms    299/300  yes  1250ms at 2026-12-08T01:00:00Z

Last failover: payments-pg-0 -> payments-pg-1 detected 2026-12-01T10:00:00.100Z, RTO 900ms, lost 0B
";
    assert_eq!(out, expected);
}

#[tokio::test]
async fn status_json_carries_the_same_measurements() {
    let script =
        Script::default()
            .get_cluster(&healthy_cluster())
            .then(Method::GET, PODS_PATH, |_| (StatusCode::OK, pod_list()));
    let (result, out, _) = run(script, status(Format::Json), "").await;
    result.expect("status succeeds");
    let report: Value = serde_json::from_str(&out).expect("JSON output");
    assert_eq!(report["name"], "payments");
    let postgres = &report["components"][0];
    assert_eq!(postgres["component"], "postgres");
    assert_eq!(postgres["primary"], "payments-pg-1");
    assert_eq!(postgres["members"][2]["lagBytes"], Value::Null);
    assert_eq!(postgres["members"][2]["synchronous"], true);
    assert_eq!(postgres["members"][2]["timeline"], 4);
    let redis = &report["components"][1];
    assert_eq!(redis["members"][2]["ready"], false);
    assert_eq!(redis["primary"], "payments-redis-1");
    assert_eq!(redis["members"][1]["role"], "master");
    assert_eq!(redis["members"][0]["role"], "replica");
    assert_eq!(
        redis["members"][0]["offset"],
        Value::Null,
        "no offset is reported, so none is shown"
    );
    let rpo = &report["objectives"][0];
    assert_eq!(rpo["met"], true);
    assert!(
        rpo["detail"]
            .as_str()
            .is_some_and(|d| d.contains("synchronous standby payments-pg-2")),
        "{rpo}"
    );
    assert_eq!(
        report["objectives"][3]["measured"],
        "99.9998% (error budget 98.3% left)"
    );
    assert_eq!(report["objectives"][3]["target"], "99.99% over 720h");
    assert_eq!(report["lastFailover"]["rtoMs"], 900);
}

#[tokio::test]
async fn errors_name_the_resource_and_the_reason() {
    let script = Script::default().then(Method::GET, CLUSTER_PATH, |_| {
        (StatusCode::NOT_FOUND, not_found())
    });
    let (result, _, _) = run(script, status(Format::Table), "").await;
    let error = result.expect_err("not found");
    assert_eq!(
        error.to_string(),
        "ShanraqCluster fintech/payments not found"
    );

    let script =
        Script::default()
            .get_cluster(&healthy_cluster())
            .then(Method::GET, PODS_PATH, |_| {
                (StatusCode::FORBIDDEN, forbidden())
            });
    let (result, _, _) = run(script, status(Format::Table), "").await;
    let message = result.expect_err("forbidden").to_string();
    assert!(
        message.starts_with(
            "cannot list the Pods of ShanraqCluster fintech/payments: pods is forbidden"
        ) && message.ends_with("(HTTP 403)"),
        "{message}"
    );
}

#[tokio::test]
async fn switchover_sets_the_annotation_the_operator_acts_on() {
    let cluster = healthy_cluster();
    let script = Script::default()
        .get_cluster(&cluster)
        .patch_cluster(&cluster);
    let command = Command::Switchover {
        name: NAME.into(),
        to: Some("payments-pg-2".into()),
        no_wait: true,
        timeout: 0,
    };
    let (result, out, seen) = run(script, command, "").await;
    result.expect("switchover requested");
    let patch = seen[1].body.clone().expect("patch body");
    assert_eq!(
        patch["metadata"]["annotations"][ANNOTATION_SWITCHOVER],
        "payments-pg-2"
    );
    assert_eq!(patch["metadata"]["uid"], "uid-payments");
    assert!(
        seen[1].query.contains("fieldManager=kubectl-shanraq"),
        "{}",
        seen[1].query
    );
    assert!(
        out.contains("switchover from payments-pg-1 to payments-pg-2 requested"),
        "{out}"
    );

    // Without --to: the operator picks the best replica.
    let script = Script::default()
        .get_cluster(&cluster)
        .patch_cluster(&cluster);
    let command = Command::Switchover {
        name: NAME.into(),
        to: None,
        no_wait: true,
        timeout: 0,
    };
    let (result, _, seen) = run(script, command, "").await;
    result.expect("switchover requested");
    let patch = seen[1].body.clone().expect("patch body");
    assert_eq!(
        patch["metadata"]["annotations"][ANNOTATION_SWITCHOVER],
        "any"
    );
}

#[tokio::test]
async fn switchover_to_an_unknown_or_current_primary_is_refused_without_writing() {
    for (to, why) in [
        (
            "payments-pg-9",
            "ShanraqCluster fintech/payments: payments-pg-9 is not one of its PostgreSQL instances (payments-pg-0, payments-pg-1, payments-pg-2)",
        ),
        (
            "payments-pg-1",
            "ShanraqCluster fintech/payments: payments-pg-1 is already the primary",
        ),
    ] {
        let script = Script::default().get_cluster(&healthy_cluster());
        let command = Command::Switchover {
            name: NAME.into(),
            to: Some(to.into()),
            no_wait: true,
            timeout: 0,
        };
        let (result, _, seen) = run(script, command, "").await;
        assert_eq!(result.expect_err("refused").to_string(), why);
        assert_eq!(seen.len(), 1, "nothing is written");
    }
}

/// An Event the operator published about the cluster `seconds_ago` seconds ago.
fn event(reason: &str, note: &str, seconds_ago: i64) -> Event {
    let at = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(seconds_ago);
    Event {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("payments.{seconds_ago}")),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        event_time: Some(MicroTime(at)),
        reason: Some(reason.into()),
        note: Some(note.into()),
        type_: Some("Normal".into()),
        regarding: Some(ObjectReference {
            kind: Some("ShanraqCluster".into()),
            name: Some(NAME.into()),
            namespace: Some(NAMESPACE.into()),
            ..ObjectReference::default()
        }),
        ..Event::default()
    }
}

fn event_list(events: Vec<Event>) -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "EventList",
        "metadata": { "resourceVersion": "1" },
        "items": events,
    })
}

const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/fintech/events";

/// Waits for the operator: polls until it removed the annotation, then reads its answer.
async fn switchover_waiting(script: Script) -> (Result<(), PluginError>, String, Vec<Seen>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let server = script.serve(handle);
    let client = kube::Client::new(service, NAMESPACE);
    let mut out = Vec::new();
    let waiting = Waiting {
        timeout: Some(Duration::from_secs(5)),
        interval: Duration::from_millis(5),
    };
    let result =
        actions::switchover(&client, &at(), Some("payments-pg-2"), waiting, &mut out).await;
    drop(client);
    let seen = server.await.expect("verifier");
    (result, String::from_utf8(out).expect("utf-8"), seen)
}

#[tokio::test]
async fn switchover_waits_for_the_operators_answer_and_reports_a_refusal() {
    let cluster = healthy_cluster();
    let mut pending = cluster.clone();
    pending
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ANNOTATION_SWITCHOVER.into(), "payments-pg-2".into());
    let refused = "switchover to payments-pg-2 refused: payments-pg-2 is not a streaming replica";
    let events = event_list(vec![
        // An older answer, to an earlier request, is not this one's.
        event(
            "SwitchoverRequested",
            "switchover to payments-pg-0 requested",
            3600,
        ),
        event("SwitchoverRefused", refused, 1),
        event("FailoverCompleted", "not an answer", 0),
    ]);
    let script = Script::default()
        .get_cluster(&cluster)
        .patch_cluster(&cluster)
        .get_cluster(&pending)
        .get_cluster(&cluster)
        .then(Method::GET, EVENTS_PATH, move |_| (StatusCode::OK, events));
    let (result, _, seen) = switchover_waiting(script).await;
    assert_eq!(
        result.expect_err("refused").to_string(),
        format!("ShanraqCluster fintech/payments: {refused}")
    );
    assert!(
        seen[4]
            .query
            .contains("fieldSelector=regarding.name%3Dpayments"),
        "{}",
        seen[4].query
    );

    let accepted = "switchover to payments-pg-2 requested (shanraq.org/switchover=payments-pg-2)";
    let events = event_list(vec![event("SwitchoverRequested", accepted, 0)]);
    let script = Script::default()
        .get_cluster(&cluster)
        .patch_cluster(&cluster)
        .get_cluster(&cluster)
        .then(Method::GET, EVENTS_PATH, move |_| (StatusCode::OK, events));
    let (result, out, _) = switchover_waiting(script).await;
    result.expect("accepted");
    assert!(out.contains(accepted), "{out}");
}

fn drill(yes: bool) -> Command {
    Command::Drill {
        name: NAME.into(),
        yes,
        no_wait: true,
        timeout: 0,
    }
}

#[tokio::test]
async fn a_drill_asks_for_confirmation_and_stops_without_it() {
    let script = Script::default().get_cluster(&healthy_cluster());
    let (result, out, seen) = run(script, drill(false), "no\n").await;
    assert_eq!(
        result.expect_err("not confirmed").to_string(),
        "failover drill of ShanraqCluster fintech/payments not confirmed (answer yes, or pass --yes)"
    );
    assert!(
        out.contains("This deletes Pod fintech/payments-pg-1, the primary"),
        "the question names the Pod: {out}"
    );
    assert_eq!(seen.len(), 1, "nothing is written");

    let cluster = healthy_cluster();
    let script = Script::default()
        .get_cluster(&cluster)
        .patch_cluster(&cluster);
    let (result, _, seen) = run(script, drill(false), "yes\n").await;
    result.expect("confirmed");
    let patch = seen[1].body.clone().expect("patch body");
    assert!(
        patch["metadata"]["annotations"][ANNOTATION_DRILL]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{patch}"
    );
}

/// `--yes` skips the question; the plugin waits until the operator records the drill's RTO.
#[tokio::test]
async fn a_drill_waits_for_the_rto_the_operator_records() {
    let cluster = healthy_cluster();
    let mut running = cluster.clone();
    let mut completed = cluster.clone();
    let record = |phase: &str, message: &str, rto: Option<i64>| DrillStatus {
        request: "2026-12-01T11:00:00Z".into(),
        phase: phase.into(),
        from: Some("payments-pg-1".into()),
        to: rto.map(|_| "payments-pg-2".into()),
        started_at: Some("2026-12-01T11:00:00.010Z".into()),
        rto_ms: rto,
        message: message.into(),
    };
    if let Some(status) = running.status.as_mut() {
        status.drill = Some(record("Running", "waiting for the failover", None));
    }
    let done = "failover drill: primary payments-pg-1 lost (Pod deleted), payments-pg-2 promoted and routed; RTO 812ms, within the RTO target 30s";
    if let Some(status) = completed.status.as_mut() {
        status.drill = Some(record("Completed", done, Some(812)));
    }
    let script = Script::default()
        .get_cluster(&cluster)
        .patch_cluster(&cluster)
        .get_cluster(&cluster)
        .get_cluster(&running)
        .get_cluster(&completed);
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let server = script.serve(handle);
    let client = kube::Client::new(service, NAMESPACE);
    let mut out = Vec::new();
    let waiting = Waiting {
        timeout: Some(Duration::from_secs(5)),
        interval: Duration::from_millis(5),
    };
    let mut no_input: &[u8] = b"";
    let result = actions::drill(
        &client,
        &at(),
        true,
        waiting,
        "2026-12-01T11:00:00Z",
        &mut no_input,
        &mut out,
    )
    .await;
    drop(client);
    let seen = server.await.expect("verifier");
    let drill = result.expect("drill completed").expect("a record");
    assert_eq!(drill.rto_ms, Some(812));
    let out = String::from_utf8(out).expect("utf-8");
    assert!(!out.contains("Continue?"), "--yes asks nothing: {out}");
    assert!(out.contains(done), "{out}");
    assert_eq!(
        seen[1].body.as_ref().expect("patch")["metadata"]["annotations"][ANNOTATION_DRILL],
        "2026-12-01T11:00:00Z"
    );
}

#[tokio::test]
async fn a_refused_drill_is_an_error_naming_the_operators_reason() {
    let cluster = healthy_cluster();
    let mut refused = cluster.clone();
    if let Some(status) = refused.status.as_mut() {
        status.drill = Some(DrillStatus {
            request: "r7".into(),
            phase: "Refused".into(),
            message: "failover drill r7 refused: a failover or switchover is in progress (phase Promoting)".into(),
            ..DrillStatus::default()
        });
    }
    let script = Script::default()
        .get_cluster(&cluster)
        .patch_cluster(&cluster)
        .get_cluster(&refused);
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let server = script.serve(handle);
    let client = kube::Client::new(service, NAMESPACE);
    let waiting = Waiting {
        timeout: Some(Duration::from_secs(5)),
        interval: Duration::from_millis(5),
    };
    let mut no_input: &[u8] = b"";
    let result = actions::drill(
        &client,
        &at(),
        true,
        waiting,
        "r7",
        &mut no_input,
        &mut Vec::new(),
    )
    .await;
    drop(client);
    server.await.expect("verifier");
    assert_eq!(
        result.expect_err("refused").to_string(),
        "failover drill of ShanraqCluster fintech/payments refused: failover drill r7 refused: a failover or switchover is in progress (phase Promoting)"
    );
}

#[test]
fn completions_are_generated_for_every_subcommand() {
    for (shell, flags) in [
        (clap_complete::Shell::Bash, ["--to", "--yes", "--output"]),
        (clap_complete::Shell::Zsh, ["--to", "--yes", "--output"]),
        (clap_complete::Shell::Fish, ["-l to", "-l yes", "-l output"]),
    ] {
        let script = String::from_utf8(kubectl_shanraq::cli::completion(shell)).expect("utf-8");
        for word in ["status", "switchover", "drill", "completion"]
            .into_iter()
            .chain(flags)
        {
            assert!(script.contains(word), "{shell:?} completion lacks {word}");
        }
    }
}
