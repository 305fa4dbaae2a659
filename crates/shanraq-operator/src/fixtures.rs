//! Test fixtures: a mocked Kubernetes API server on `tower_test::mock::pair` that answers a
//! scripted scenario, the exact requests a reconcile makes, in order, and records every request.
//! A request that does not match the next step, or any request after the script ended, fails
//! the test; so does a step that was never reached.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::core::ApiResource;
use kube::runtime::events::Reporter;
use serde_json::{Value, json};
use shanraq_api::ShanraqCluster;
use shanraq_api::names::FIELD_MANAGER;
use shanraq_render::{Child, SecretTemplate};
use tower_test::mock::{self, Handle};

use crate::controller::Context;
use crate::controller::discovery::{Discovery, POD_MONITORS_CRD, PROMETHEUS_RULES_CRD};
use crate::metrics::Metrics;

/// One request as the mocked API server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub body: Option<Value>,
}

impl Recorded {
    /// `kind/name` of a server-side apply, from its body.
    pub fn applied(&self) -> Option<(String, String)> {
        let body = self.body.as_ref()?;
        Some((
            body.get("kind")?.as_str()?.to_owned(),
            body.pointer("/metadata/name")?.as_str()?.to_owned(),
        ))
    }
}

type Reply = Box<dyn FnOnce(&Recorded) -> (StatusCode, Value) + Send>;

struct Step {
    what: String,
    method: Method,
    path: String,
    reply: Reply,
}

/// What the test learns once the client is dropped.
#[derive(Debug)]
pub struct Report {
    pub requests: Vec<Recorded>,
}

impl Report {
    pub fn with_method(&self, method: &Method) -> Vec<&Recorded> {
        self.requests
            .iter()
            .filter(|r| r.method == *method)
            .collect()
    }

    /// Server-side applies of children (not of `/status`).
    pub fn child_applies(&self) -> Vec<&Recorded> {
        self.requests
            .iter()
            .filter(|r| r.method == Method::PATCH && r.query.contains_key("fieldManager"))
            .filter(|r| !r.path.ends_with("/status") && !r.path.contains("/events"))
            .collect()
    }

    pub fn status_patches(&self) -> Vec<&Recorded> {
        self.requests
            .iter()
            .filter(|r| r.method == Method::PATCH && r.path.ends_with("/status"))
            .collect()
    }

    pub fn deletes(&self) -> Vec<&Recorded> {
        self.with_method(&Method::DELETE)
    }

    /// Reasons of the events published.
    pub fn event_reasons(&self) -> Vec<String> {
        self.requests
            .iter()
            .filter(|r| r.path.contains("/apis/events.k8s.io/"))
            .filter_map(|r| r.body.as_ref()?.get("reason")?.as_str().map(str::to_owned))
            .collect()
    }
}

/// The URL path of a namespaced resource collection or object.
pub fn path_of(resource: &ApiResource, namespace: &str, name: Option<&str>) -> String {
    let prefix = if resource.group.is_empty() {
        format!("/api/{}", resource.version)
    } else {
        format!("/apis/{}/{}", resource.group, resource.version)
    };
    let mut path = format!("{prefix}/namespaces/{namespace}/{}", resource.plural);
    if let Some(name) = name {
        path.push('/');
        path.push_str(name);
    }
    path
}

pub fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    })
}

pub fn partial_metadata(name: &str) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": { "name": name, "uid": format!("uid-{name}"), "resourceVersion": "1" },
    })
}

/// How the workloads answer a server-side apply: their status as the API server returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// Every replica ready and updated, the current generation observed.
    Ready,
    /// The workload controller has not yet observed the new spec; nothing ready.
    Pending,
}

/// The generation the API server gives a workload after an apply.
const WORKLOAD_GENERATION: i64 = 7;

fn with_workload_status(mut body: Value, rollout: Rollout) -> Value {
    let kind = body
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let replicas = body
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let (ready, observed) = match rollout {
        Rollout::Ready => (replicas, WORKLOAD_GENERATION),
        Rollout::Pending => (0, WORKLOAD_GENERATION - 1),
    };
    let status = match kind.as_str() {
        "StatefulSet" => Some(json!({
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": ready,
            "currentReplicas": ready,
            "observedGeneration": observed,
        })),
        "Deployment" => Some(json!({
            "replicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "updatedReplicas": ready,
            "observedGeneration": observed,
        })),
        "Job" => Some(match rollout {
            Rollout::Ready => json!({ "succeeded": 1 }),
            Rollout::Pending => json!({ "active": 1 }),
        }),
        _ => None,
    };
    if let Some(object) = body.as_object_mut() {
        if let Some(status) = status {
            object.insert("status".to_owned(), status);
        }
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("generation".to_owned(), WORKLOAD_GENERATION.into());
            metadata.insert("resourceVersion".to_owned(), "10".into());
        }
    }
    body
}

/// A listed object of `resource` named `name` with the given labels.
pub fn listed(resource: &ApiResource, name: &str, labels: &BTreeMap<String, String>) -> Value {
    json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": { "name": name, "labels": labels, "uid": format!("uid-{name}") },
    })
}

/// A scripted conversation with the API server.
pub struct Scenario {
    namespace: String,
    steps: VecDeque<Step>,
    /// The field manager every PATCH must carry.
    manager: String,
}

impl Scenario {
    pub fn new(namespace: &str) -> Self {
        Scenario {
            namespace: namespace.to_owned(),
            steps: VecDeque::new(),
            manager: FIELD_MANAGER.to_owned(),
        }
    }

    /// Expects `manager` instead of the reconcile's field manager on every PATCH.
    pub fn field_manager(mut self, manager: &str) -> Self {
        self.manager = manager.to_owned();
        self
    }

    /// Any request, answered by `reply`.
    pub fn expect(
        self,
        what: &str,
        method: Method,
        path: &str,
        reply: impl FnOnce(&Recorded) -> (StatusCode, Value) + Send + 'static,
    ) -> Self {
        self.step(what.to_owned(), method, path.to_owned(), Box::new(reply))
    }

    fn step(mut self, what: String, method: Method, path: String, reply: Reply) -> Self {
        self.push(what, method, path, reply);
        self
    }

    fn push(&mut self, what: String, method: Method, path: String, reply: Reply) {
        self.steps.push_back(Step {
            what,
            method,
            path,
            reply,
        });
    }

    /// The Prometheus Operator CRD lookups.
    pub fn crds(self, available: bool) -> Self {
        let path =
            |name: &str| format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
        let reply = |name: &'static str, found: bool| -> Reply {
            Box::new(move |_| {
                if found {
                    (StatusCode::OK, partial_metadata(name))
                } else {
                    (
                        StatusCode::NOT_FOUND,
                        status_body(404, "NotFound", "customresourcedefinitions not found"),
                    )
                }
            })
        };
        let scenario = self.step(
            format!("GET CRD {POD_MONITORS_CRD}"),
            Method::GET,
            path(POD_MONITORS_CRD),
            reply(POD_MONITORS_CRD, available),
        );
        if available {
            scenario.step(
                format!("GET CRD {PROMETHEUS_RULES_CRD}"),
                Method::GET,
                path(PROMETHEUS_RULES_CRD),
                reply(PROMETHEUS_RULES_CRD, true),
            )
        } else {
            scenario
        }
    }

    /// For each template, a metadata GET, then a create when it is not in `existing`.
    pub fn secrets(mut self, templates: &[SecretTemplate], existing: &[&str]) -> Self {
        let resource = ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&());
        for template in templates {
            let name = template.name.clone();
            let exists = existing.contains(&name.as_str());
            let get_path = path_of(&resource, &self.namespace, Some(&name));
            let reply_name = name.clone();
            self.push(
                format!("GET Secret {name}"),
                Method::GET,
                get_path,
                Box::new(move |_| {
                    if exists {
                        (StatusCode::OK, partial_metadata(&reply_name))
                    } else {
                        (
                            StatusCode::NOT_FOUND,
                            status_body(404, "NotFound", "secrets not found"),
                        )
                    }
                }),
            );
            if !exists {
                let post_path = path_of(&resource, &self.namespace, None);
                self.push(
                    format!("POST Secret {name}"),
                    Method::POST,
                    post_path,
                    Box::new(|request| {
                        (
                            StatusCode::CREATED,
                            request.body.clone().unwrap_or(Value::Null),
                        )
                    }),
                );
            }
        }
        self
    }

    /// A server-side apply of each child, answered with the object and a workload status.
    pub fn apply(self, children: &[Child], rollout: Rollout) -> Self {
        self.apply_with(children, |_| rollout)
    }

    /// Like [`Scenario::apply`], with each child's rollout chosen by `rollout_of`.
    pub fn apply_with(
        mut self,
        children: &[Child],
        rollout_of: impl Fn(&Child) -> Rollout,
    ) -> Self {
        for child in children {
            let rollout = rollout_of(child);
            let resource = child.api_resource();
            let path = path_of(&resource, &self.namespace, Some(child.name()));
            self.push(
                format!("PATCH (apply) {} {}", resource.kind, child.name()),
                Method::PATCH,
                path,
                Box::new(move |request| {
                    let body = request.body.clone().unwrap_or(Value::Null);
                    (StatusCode::OK, with_workload_status(body, rollout))
                }),
            );
        }
        self
    }

    /// The read-back of an unchanged rendering: a GET of each workload child (StatefulSet,
    /// Deployment, Job) in (kind, name) order, answered as the last apply left it with a
    /// workload status.
    pub fn read_workloads(mut self, children: &[Child], rollout: Rollout) -> Self {
        let mut workloads: Vec<&Child> = children
            .iter()
            .filter(|c| {
                crate::controller::applied::WORKLOAD_KINDS.contains(&c.api_resource().kind.as_str())
            })
            .collect();
        workloads.sort_by_key(|c| (c.api_resource().kind, c.name().to_owned()));
        for child in workloads {
            let resource = child.api_resource();
            let path = path_of(&resource, &self.namespace, Some(child.name()));
            let body = child.to_json().unwrap_or(Value::Null);
            self.push(
                format!("GET {} {}", resource.kind, child.name()),
                Method::GET,
                path,
                Box::new(move |_| (StatusCode::OK, with_workload_status(body, rollout))),
            );
        }
        self
    }

    /// The orphan clean-up: a labelled list of each owned kind answering `present`, then a
    /// delete of each present object that is not in `applied`.
    pub fn collect(
        mut self,
        owned: &[ApiResource],
        monitoring_available: bool,
        present: &[(ApiResource, String)],
        applied: &[Child],
    ) -> Self {
        for resource in owned {
            if resource.group == "monitoring.coreos.com" && !monitoring_available {
                continue;
            }
            let items: Vec<(ApiResource, String)> = present
                .iter()
                .filter(|(r, _)| r.kind == resource.kind)
                .cloned()
                .collect();
            let list_items: Vec<Value> = items
                .iter()
                .map(|(r, name)| listed(r, name, &BTreeMap::new()))
                .collect();
            let list_resource = resource.clone();
            self.push(
                format!("LIST {}", resource.kind),
                Method::GET,
                path_of(resource, &self.namespace, None),
                Box::new(move |_| {
                    (
                        StatusCode::OK,
                        json!({
                            "apiVersion": list_resource.api_version,
                            "kind": format!("{}List", list_resource.kind),
                            "metadata": { "resourceVersion": "1" },
                            "items": list_items,
                        }),
                    )
                }),
            );
            for (resource, name) in items {
                let kept = applied
                    .iter()
                    .any(|c| c.kind() == resource.kind && c.name() == name);
                if kept {
                    continue;
                }
                let reply_name = name.clone();
                self.push(
                    format!("DELETE {} {name}", resource.kind),
                    Method::DELETE,
                    path_of(&resource, &self.namespace, Some(&name)),
                    Box::new(move |_| {
                        (
                            StatusCode::OK,
                            json!({
                                "apiVersion": "v1",
                                "kind": "Status",
                                "status": "Success",
                                "details": { "name": reply_name },
                            }),
                        )
                    }),
                );
            }
        }
        self
    }

    /// The server-side apply of `/status`, answered with the cluster carrying that status.
    pub fn status_patch(self, cluster: &ShanraqCluster) -> Self {
        let name = cluster.metadata.name.clone().unwrap_or_default();
        let object = serde_json::to_value(cluster).unwrap_or(Value::Null);
        let path = format!(
            "/apis/shanraq.org/v1alpha1/namespaces/{}/shanraqclusters/{name}/status",
            self.namespace
        );
        self.step(
            format!("PATCH status of {name}"),
            Method::PATCH,
            path,
            Box::new(move |request| {
                let mut object = object;
                if let (Some(target), Some(status)) = (
                    object.as_object_mut(),
                    request.body.as_ref().and_then(|b| b.get("status")),
                ) {
                    target.insert("status".to_owned(), status.clone());
                }
                (StatusCode::OK, object)
            }),
        )
    }

    /// `count` event publications (the test asserts their reasons from the report).
    pub fn events(mut self, count: usize) -> Self {
        for index in 0..count {
            self.push(
                format!("POST event #{index}"),
                Method::POST,
                format!(
                    "/apis/events.k8s.io/v1/namespaces/{}/events",
                    self.namespace
                ),
                Box::new(|request| {
                    (
                        StatusCode::CREATED,
                        request.body.clone().unwrap_or(Value::Null),
                    )
                }),
            );
        }
        self
    }

    /// Serves the scenario. The returned task ends once every client clone is dropped, and
    /// panics (failing the test) on the first unexpected request or an unfinished script.
    pub fn serve(
        self,
        handle: Handle<Request<Body>, Response<Body>>,
    ) -> tokio::task::JoinHandle<Report> {
        tokio::spawn(async move {
            let mut handle = handle;
            let mut steps = self.steps;
            let manager = self.manager;
            let mut requests = Vec::new();
            let mut failures = Vec::new();
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let recorded = Recorded {
                    method: parts.method.clone(),
                    path: parts.uri.path().to_owned(),
                    query: parts
                        .uri
                        .query()
                        .unwrap_or_default()
                        .split('&')
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                            (k.to_owned(), v.to_owned())
                        })
                        .collect(),
                    body: serde_json::from_slice(&bytes).ok(),
                };
                let (code, reply) = match steps.pop_front() {
                    Some(step) if step.method == recorded.method && step.path == recorded.path => {
                        if recorded.method == Method::PATCH
                            && recorded.query.contains_key("fieldManager")
                            && recorded.query.get("fieldManager") != Some(&manager)
                        {
                            failures.push(format!(
                                "{}: field manager {:?}",
                                step.what,
                                recorded.query.get("fieldManager")
                            ));
                        }
                        (step.reply)(&recorded)
                    }
                    Some(step) => {
                        failures.push(format!(
                            "expected {} ({} {}), got {} {}",
                            step.what, step.method, step.path, recorded.method, recorded.path
                        ));
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            status_body(500, "InternalError", "unexpected request"),
                        )
                    }
                    None => {
                        failures.push(format!(
                            "unexpected request after the script: {} {}",
                            recorded.method, recorded.path
                        ));
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            status_body(500, "InternalError", "unexpected request"),
                        )
                    }
                };
                requests.push(recorded);
                let bytes = serde_json::to_vec(&reply).unwrap_or_default();
                let response = Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(bytes))
                    .expect("response");
                send.send_response(response);
            }
            let missed: Vec<String> = steps.iter().map(|s| s.what.clone()).collect();
            assert!(failures.is_empty(), "API server verifier: {failures:#?}");
            assert!(missed.is_empty(), "requests never made: {missed:#?}");
            Report { requests }
        })
    }
}

/// A context whose client talks to the mocked API server. The Prometheus Operator CRD lookup is
/// left to the scenario unless `monitoring` pre-answers it.
pub fn context(monitoring: Option<bool>) -> (Arc<Context>, Handle<Request<Body>, Response<Body>>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let discovery = match monitoring {
        Some(known) => Discovery::known(known),
        None => Discovery::default(),
    };
    let reporter = Reporter {
        controller: "shanraq-operator".into(),
        instance: Some("test".into()),
    };
    (
        Arc::new(Context::new(
            client,
            Metrics::default(),
            reporter,
            discovery,
        )),
        handle,
    )
}

/// Waits for the verifier, re-raising its panic so the test fails with its message.
pub async fn finish(server: tokio::task::JoinHandle<Report>) -> Report {
    match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(Ok(report)) => report,
        Ok(Err(error)) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Ok(Err(error)) => panic!("verifier task failed: {error}"),
        Err(_) => panic!("verifier did not finish: a client clone is still alive"),
    }
}
