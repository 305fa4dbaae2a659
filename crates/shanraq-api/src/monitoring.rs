//! Monitoring: PodMonitors, a PrometheusRule and Grafana dashboards, for clusters that run the
//! Prometheus Operator.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    #[serde(default = "crate::default_true")]
    pub pod_monitors: bool,
    #[serde(default = "crate::default_true")]
    pub prometheus_rules: bool,
    /// ConfigMaps labelled `grafana_dashboard: "1"` for Grafana's sidecar.
    #[serde(default = "crate::default_true")]
    pub grafana_dashboards: bool,
    /// Extra labels on every monitoring object, e.g. `release: kube-prometheus-stack`, which
    /// kube-prometheus-stack requires before it selects PodMonitors and rules.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub labels: BTreeMap<String, String>,
}

impl Default for MonitoringSpec {
    fn default() -> Self {
        MonitoringSpec {
            pod_monitors: true,
            prometheus_rules: true,
            grafana_dashboards: true,
            labels: BTreeMap::new(),
        }
    }
}

impl MonitoringSpec {
    pub fn any_enabled(&self) -> bool {
        self.pod_monitors || self.prometheus_rules || self.grafana_dashboards
    }
}
