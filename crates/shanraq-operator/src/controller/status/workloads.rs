//! The applied workloads' readiness, read from their own status as the API server returned it,
//! and the `<Component>Ready` and `MonitoringReady` conditions made from it.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::core::DynamicObject;
use shanraq_api::ValidCluster;
use shanraq_api::conditions::MONITORING_READY;
use shanraq_api::names::{Component, LABEL_COMPONENT};
use shanraq_api::status::WorkloadStatus;

use super::{Observed, REASON_DISABLED, REASON_PROMETHEUS_OPERATOR_MISSING, Truth, Want};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    StatefulSet,
    Deployment,
    /// One-shot work a component needs before it serves (forming a Redis Cluster, creating
    /// Kafka topics): ready once it succeeded.
    Job,
}

/// One applied workload's readiness, read from its own status as the API server returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub component: Component,
    pub kind: WorkloadKind,
    pub name: String,
    pub desired: i32,
    /// StatefulSet `readyReplicas`, Deployment `availableReplicas`, Job `succeeded`.
    pub ready: i32,
    pub updated: i32,
    /// `status.observedGeneration` has caught up with `metadata.generation`: the workload
    /// controller has seen the spec this reconcile applied.
    pub current: bool,
    /// A StatefulSet with `updateStrategy: OnDelete`: its pods take a new template only when
    /// deleted, so a change the operator does not roll itself waits for the user.
    pub on_delete: bool,
}

pub(super) fn component_of(object: &DynamicObject) -> Option<Component> {
    let value = object.labels().get(LABEL_COMPONENT)?;
    [
        Component::Postgres,
        Component::Redis,
        Component::KafkaController,
        Component::KafkaBroker,
        Component::HAProxy,
        Component::Monitoring,
    ]
    .into_iter()
    .find(|component| component.as_str() == value)
}

pub(super) fn caught_up(generation: Option<i64>, observed: Option<i64>) -> bool {
    match (generation, observed) {
        (Some(generation), Some(observed)) => observed >= generation,
        (None, _) => true,
        (Some(_), None) => false,
    }
}

impl Workload {
    /// Reads a StatefulSet or Deployment; `None` for any other kind or an unlabelled object.
    pub fn from_object(object: &DynamicObject) -> Option<Workload> {
        let kind = object.types.as_ref()?.kind.as_str();
        let component = component_of(object)?;
        let value = serde_json::to_value(object).ok()?;
        match kind {
            "StatefulSet" => {
                let set: StatefulSet = serde_json::from_value(value).ok()?;
                let desired = set.spec.replicas.unwrap_or(1);
                let on_delete = set
                    .spec
                    .update_strategy
                    .as_ref()
                    .and_then(|s| s.type_.as_deref())
                    == Some("OnDelete");
                let status = set.status.unwrap_or_default();
                Some(Workload {
                    component,
                    kind: WorkloadKind::StatefulSet,
                    name: set.metadata.name.unwrap_or_default(),
                    desired,
                    ready: status.ready_replicas.unwrap_or(0),
                    updated: status.updated_replicas.unwrap_or(0),
                    current: caught_up(set.metadata.generation, status.observed_generation),
                    on_delete,
                })
            }
            "Deployment" => {
                let deployment: Deployment = serde_json::from_value(value).ok()?;
                let desired = deployment.spec.replicas.unwrap_or(1);
                let status = deployment.status.unwrap_or_default();
                Some(Workload {
                    component,
                    kind: WorkloadKind::Deployment,
                    name: deployment.metadata.name.unwrap_or_default(),
                    desired,
                    ready: status.available_replicas.unwrap_or(0),
                    updated: status.updated_replicas.unwrap_or(0),
                    current: caught_up(deployment.metadata.generation, status.observed_generation),
                    on_delete: false,
                })
            }
            "Job" => {
                let job: Job = serde_json::from_value(value).ok()?;
                let status = job.status.unwrap_or_default();
                let succeeded = status.succeeded.unwrap_or(0).min(1);
                Some(Workload {
                    component,
                    kind: WorkloadKind::Job,
                    name: job.metadata.name.unwrap_or_default(),
                    desired: 1,
                    ready: succeeded,
                    updated: succeeded,
                    current: true,
                    on_delete: false,
                })
            }
            _ => None,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.current && self.ready >= self.desired && self.updated >= self.desired
    }

    fn describe(&self) -> String {
        if self.kind == WorkloadKind::Job {
            let state = if self.is_ready() {
                "complete"
            } else {
                "not complete yet"
            };
            return format!("Job {}: {state}", self.name);
        }
        let kind = match self.kind {
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::Job => "Job",
        };
        let ready_word = match self.kind {
            WorkloadKind::Deployment => "available",
            WorkloadKind::StatefulSet | WorkloadKind::Job => "ready",
        };
        let mut text = format!(
            "{kind} {}: {}/{} {ready_word}, {}/{} updated",
            self.name, self.ready, self.desired, self.updated, self.desired
        );
        if !self.current {
            text.push_str(", new spec not yet observed");
        } else if self.on_delete && self.updated < self.desired {
            // Said, so that a change nobody rolls (an image, resources) is not pending silently.
            text.push_str(
                ", a pod not updated takes the new template only when deleted (updateStrategy OnDelete)",
            );
        }
        text
    }
}

pub fn component_condition(
    type_: &'static str,
    label: &str,
    field: &str,
    enabled: bool,
    components: &[Component],
    observed: &Observed,
) -> Want {
    if !enabled {
        return Want::new(
            type_,
            Truth::True,
            REASON_DISABLED,
            format!("{label} is disabled ({field}.enabled: false)"),
        );
    }
    let workloads: Vec<&Workload> = observed
        .workloads
        .iter()
        .filter(|w| components.contains(&w.component))
        .collect();
    if workloads.is_empty() {
        return Want::new(
            type_,
            Truth::False,
            "WorkloadMissing",
            format!("no {label} workload has been applied yet"),
        );
    }
    let waiting: Vec<String> = workloads
        .iter()
        .filter(|w| !w.is_ready())
        .map(|w| w.describe())
        .collect();
    if waiting.is_empty() {
        let all: Vec<String> = workloads.iter().map(|w| w.describe()).collect();
        Want::new(type_, Truth::True, "Ready", all.join("; "))
    } else {
        Want::new(type_, Truth::False, "Progressing", waiting.join("; "))
    }
}

pub(super) fn monitoring_condition(cluster: &ValidCluster, observed: &Observed) -> Want {
    let spec = &cluster.spec.monitoring;
    if !spec.any_enabled() {
        return Want::new(
            MONITORING_READY,
            Truth::True,
            REASON_DISABLED,
            "monitoring is disabled (podMonitors, prometheusRules and grafanaDashboards are false)",
        );
    }
    let needs_operator = spec.pod_monitors || spec.prometheus_rules;
    if needs_operator && !observed.monitoring_available {
        return Want::new(
            MONITORING_READY,
            Truth::False,
            REASON_PROMETHEUS_OPERATOR_MISSING,
            "the Prometheus Operator CRDs (podmonitors.monitoring.coreos.com, prometheusrules.monitoring.coreos.com) are not installed, so no PodMonitor or PrometheusRule was created",
        );
    }
    Want::new(
        MONITORING_READY,
        Truth::True,
        "Applied",
        "monitoring objects are applied",
    )
}

/// The ready and desired instances of `components`' workloads (Jobs are not instances);
/// `None` when none was applied.
pub fn counts(observed: &Observed, components: &[Component]) -> Option<WorkloadStatus> {
    let matching: Vec<&Workload> = observed
        .workloads
        .iter()
        .filter(|w| components.contains(&w.component) && w.kind != WorkloadKind::Job)
        .collect();
    (!matching.is_empty()).then(|| WorkloadStatus {
        ready_replicas: matching.iter().map(|w| w.ready).sum(),
        replicas: matching.iter().map(|w| w.desired).sum(),
    })
}
