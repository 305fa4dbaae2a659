//! Whether the Prometheus Operator's CRDs are installed, which decides if PodMonitors and
//! PrometheusRules are rendered. Cached briefly: every reconcile needs the answer, and a CRD
//! installed later is picked up within a minute.

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use tokio::sync::Mutex;

use super::error::DiscoveryError;

pub const POD_MONITORS_CRD: &str = "podmonitors.monitoring.coreos.com";
pub const PROMETHEUS_RULES_CRD: &str = "prometheusrules.monitoring.coreos.com";

/// How long a CRD lookup is trusted.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Discovery {
    cached: Mutex<Option<(Instant, bool)>>,
}

impl Discovery {
    /// A discovery whose answer is already known (tests, offline tools).
    pub fn known(monitoring_available: bool) -> Self {
        Discovery {
            cached: Mutex::new(Some((Instant::now(), monitoring_available))),
        }
    }

    /// True when both Prometheus Operator CRDs exist.
    pub async fn monitoring_available(
        &self,
        client: &kube::Client,
    ) -> Result<bool, DiscoveryError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, available)) = *cached
            && at.elapsed() < CACHE_TTL
        {
            return Ok(available);
        }
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        let mut available = true;
        for name in [POD_MONITORS_CRD, PROMETHEUS_RULES_CRD] {
            let found = api
                .get_metadata_opt(name)
                .await
                .map_err(|source| DiscoveryError::Crd {
                    name: name.to_owned(),
                    source,
                })?;
            if found.is_none() {
                available = false;
                break;
            }
        }
        *cached = Some((Instant::now(), available));
        Ok(available)
    }
}
