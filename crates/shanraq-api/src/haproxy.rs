//! HAProxy: routes clients to the current PostgreSQL and Redis primaries, and optionally
//! load-balances application HTTP backends with health checks and per-client rate limits.

use k8s_openapi::api::core::v1::ResourceRequirements;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HAProxySpec {
    #[serde(default = "crate::default_true")]
    pub enabled: bool,
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 20))]
    pub replicas: i32,
    /// Image: HAProxy 2.6 LTS with its Prometheus exporter (images/haproxy/Dockerfile).
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Application HTTP backends balanced by HAProxy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub backends: Vec<HttpBackend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpBackend {
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]{0,30}$"))]
    pub name: String,
    /// Port HAProxy listens on for this backend.
    #[schemars(range(min = 1024, max = 65535))]
    pub port: i32,
    /// Servers as `host:port` (Service DNS names or addresses).
    #[schemars(length(min = 1, max = 64))]
    pub servers: Vec<BackendServer>,
    /// HTTP path that answers 2xx when a server is healthy.
    #[serde(default = "default_health_path")]
    #[schemars(regex(pattern = r"^/[A-Za-z0-9._~/-]{0,255}$"))]
    pub health_path: String,
    #[serde(default)]
    pub balance: Balance,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendServer {
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"))]
    pub host: String,
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Only receives traffic when every non-backup server is down.
    #[serde(default)]
    pub backup: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Balance {
    #[default]
    Roundrobin,
    Leastconn,
}

/// Per-client (source address) request rate limit: more than `requests` in `period` is denied
/// with HTTP 429.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    #[schemars(range(min = 1, max = 1000000))]
    pub requests: i32,
    #[serde(default = "default_rate_period")]
    pub period: Duration,
}

fn default_replicas() -> i32 {
    2
}
fn default_image() -> String {
    crate::images::default_image("haproxy")
}
fn default_health_path() -> String {
    "/health".to_owned()
}
fn default_rate_period() -> Duration {
    Duration::from_secs(10)
}

impl Default for HAProxySpec {
    fn default() -> Self {
        HAProxySpec {
            enabled: true,
            replicas: default_replicas(),
            image: default_image(),
            backends: Vec::new(),
            resources: None,
        }
    }
}
