//! A rendered child object, typed where Kubernetes has a type and dynamic where the kind comes
//! from a CRD the operator does not own (Prometheus Operator). The controller applies each one
//! with server-side apply and garbage-collects the kinds listed in [`OWNED_KINDS`].

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::Resource;

/// The Prometheus Operator kinds, which are only rendered when their CRDs exist.
pub fn pod_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PodMonitor"), "podmonitors")
}

pub fn prometheus_rule_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PrometheusRule"), "prometheusrules")
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
        pod_monitor_resource(),
        prometheus_rule_resource(),
    ]
}

#[derive(Clone, Debug, PartialEq)]
pub enum Child {
    StatefulSet(StatefulSet),
    Deployment(Deployment),
    Service(Service),
    ConfigMap(ConfigMap),
    PodDisruptionBudget(PodDisruptionBudget),
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
            Child::PodMonitor(_) => pod_monitor_resource(),
            Child::PrometheusRule(_) => prometheus_rule_resource(),
        }
    }

    pub fn kind(&self) -> String {
        self.api_resource().kind
    }

    pub fn name(&self) -> &str {
        let meta = match self {
            Child::StatefulSet(o) => o.meta(),
            Child::Deployment(o) => o.meta(),
            Child::Service(o) => o.meta(),
            Child::ConfigMap(o) => o.meta(),
            Child::PodDisruptionBudget(o) => o.meta(),
            Child::PodMonitor(o) | Child::PrometheusRule(o) => &o.metadata,
        };
        meta.name.as_deref().unwrap_or_default()
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
            Child::PodMonitor(o) | Child::PrometheusRule(o) => serde_json::to_value(o)?,
        };
        if let Some(object) = value.as_object_mut() {
            object.insert("apiVersion".to_owned(), resource.api_version.into());
            object.insert("kind".to_owned(), resource.kind.into());
        }
        Ok(value)
    }
}
