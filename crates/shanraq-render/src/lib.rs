//! PURE rendering: a validated ShanraqCluster becomes Kubernetes objects and configuration files.
//! No client, no clock, no randomness: the same cluster always renders the same bytes.
//!
//! One module per component (`postgres`, `redis`, `kafka`, `haproxy`, `monitoring`), the shared
//! builders in `meta`, and the Secrets to create in `secrets`. A disabled component renders
//! nothing.

pub mod backup;
pub mod child;
pub mod haproxy;
pub mod kafka;
pub mod meta;
pub mod monitoring;
pub mod postgres;
pub mod redis;
pub mod secrets;

pub use child::Child;
pub use secrets::SecretTemplate;

use shanraq_api::ValidCluster;

/// Facts about the target Kubernetes cluster that change what is rendered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inputs {
    /// The Prometheus Operator CRDs (PodMonitor, PrometheusRule) are installed.
    pub monitoring_available: bool,
    /// The PostgreSQL primary the cluster has had (`status.postgres.currentPrimary`), if any.
    /// Once set, no pod may bootstrap as a primary again: an emptied volume clones instead.
    pub postgres_primary: Option<String>,
}

/// Everything one cluster needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rendered {
    pub children: Vec<Child>,
    pub secrets: Vec<SecretTemplate>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot serialise {what}: {source}")]
    Serialise {
        what: String,
        source: serde_json::Error,
    },
    #[error("{field}: {reason}")]
    InvalidParameter { field: String, reason: String },
}

/// Renders every child object of `cluster`.
pub fn build(cluster: &ValidCluster, inputs: &Inputs) -> Result<Rendered, RenderError> {
    let mut children = postgres::render(cluster, inputs)?;
    children.extend(redis::render(cluster));
    children.extend(kafka::render(cluster)?);
    children.extend(haproxy::render(cluster));
    children.extend(monitoring::render(cluster, inputs)?);
    Ok(Rendered {
        children,
        secrets: secrets::templates(cluster),
    })
}
