//! A rendered child object, typed where Kubernetes has a type and dynamic where the kind comes
//! from a CRD the operator does not own (Prometheus Operator). The controller applies each one
//! with server-side apply and garbage-collects the kinds listed in [`owned_kinds`].

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};

/// The Prometheus Operator kinds, which are only rendered when their CRDs exist.
pub fn pod_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PodMonitor"),
        "podmonitors",
    )
}

pub fn prometheus_rule_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PrometheusRule"),
        "prometheusrules",
    )
}

/// Every kind the operator creates and therefore garbage-collects (Secrets are not in the list:
/// generated passwords are never deleted by the operator; PersistentVolumeClaims neither).
pub fn owned_kinds() -> Vec<ApiResource> {
    vec![
        ApiResource::erase::<StatefulSet>(&()),
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<ConfigMap>(&()),
        ApiResource::erase::<PodDisruptionBudget>(&()),
        ApiResource::erase::<Job>(&()),
        pod_monitor_resource(),
        prometheus_rule_resource(),
    ]
}

// A cluster has a few dozen children, built once per reconcile: boxing the large variants
// would complicate every match for no measurable gain.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Child {
    StatefulSet(StatefulSet),
    Deployment(Deployment),
    Service(Service),
    ConfigMap(ConfigMap),
    PodDisruptionBudget(PodDisruptionBudget),
    /// One-shot work: forming the Redis Cluster (Kafka topics go through the admin API). A
    /// Job's pod template is immutable, so a Job whose work changes gets a new name.
    Job(Job),
    PodMonitor(DynamicObject),
    PrometheusRule(DynamicObject),
}

impl Child {
    pub fn api_resource(&self) -> ApiResource {
        match self {
            Child::StatefulSet(_) => ApiResource::erase::<StatefulSet>(&()),
            Child::Deployment(_) => ApiResource::erase::<Deployment>(&()),
            Child::Service(_) => ApiResource::erase::<Service>(&()),
            Child::ConfigMap(_) => ApiResource::erase::<ConfigMap>(&()),
            Child::PodDisruptionBudget(_) => ApiResource::erase::<PodDisruptionBudget>(&()),
            Child::Job(_) => ApiResource::erase::<Job>(&()),
            Child::PodMonitor(_) => pod_monitor_resource(),
            Child::PrometheusRule(_) => prometheus_rule_resource(),
        }
    }

    pub fn kind(&self) -> String {
        self.api_resource().kind
    }

    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Child::StatefulSet(o) => o.meta(),
            Child::Deployment(o) => o.meta(),
            Child::Service(o) => o.meta(),
            Child::ConfigMap(o) => o.meta(),
            Child::PodDisruptionBudget(o) => o.meta(),
            Child::Job(o) => o.meta(),
            Child::PodMonitor(o) | Child::PrometheusRule(o) => &o.metadata,
        }
    }

    /// The object as JSON with `apiVersion` and `kind` set, ready for server-side apply.
    pub fn to_json(&self) -> serde_json::Result<serde_json::Value> {
        let resource = self.api_resource();
        let mut value = match self {
            Child::StatefulSet(o) => serde_json::to_value(o)?,
            Child::Deployment(o) => serde_json::to_value(o)?,
            Child::Service(o) => serde_json::to_value(o)?,
            Child::ConfigMap(o) => serde_json::to_value(o)?,
            Child::PodDisruptionBudget(o) => serde_json::to_value(o)?,
            Child::Job(o) => serde_json::to_value(o)?,
            Child::PodMonitor(o) | Child::PrometheusRule(o) => serde_json::to_value(o)?,
        };
        if let Some(object) = value.as_object_mut() {
            object.insert("apiVersion".to_owned(), resource.api_version.into());
            object.insert("kind".to_owned(), resource.kind.into());
        }
        Ok(value)
    }
}
