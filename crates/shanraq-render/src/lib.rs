//! PURE rendering: a validated ShanraqCluster becomes Kubernetes objects and configuration files.
//! No client, no clock, no randomness: the same cluster always renders the same bytes.

pub mod child;
pub mod secrets;

pub use child::Child;
pub use secrets::SecretTemplate;

use shanraq_api::ValidCluster;

/// Facts about the target Kubernetes cluster that change what is rendered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inputs {
    /// The Prometheus Operator CRDs (PodMonitor, PrometheusRule) are installed.
    pub monitoring_available: bool,
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
    Serialise { what: String, source: serde_json::Error },
}

/// Renders every child object of `cluster`.
pub fn build(cluster: &ValidCluster, inputs: &Inputs) -> Result<Rendered, RenderError> {
    let _ = (cluster, inputs);
    Ok(Rendered::default())
}
