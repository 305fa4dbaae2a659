//! One ShanraqCluster as the benchmark writes it (the minimal example's spec, applied
//! server-side under the benchmark's own field manager) and waits for it (its status having
//! observed the generation).

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait;
use shanraq_api::ShanraqCluster;
use shanraq_api::names::{API_VERSION, KIND};

use super::client::kube_error;
use super::{MANAGER, MINIMAL_EXAMPLE};
use crate::error::DrillError;

/// The spec of `deploy/examples/minimal.yaml`, as JSON.
pub(super) fn minimal_spec() -> Result<serde_json::Value, DrillError> {
    let example: serde_json::Value =
        serde_saphyr::from_str(MINIMAL_EXAMPLE).map_err(|error| DrillError::InvalidOption {
            option: "the minimal example",
            reason: format!("deploy/examples/minimal.yaml does not parse: {error}"),
        })?;
    Ok(example
        .get("spec")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({})))
}

fn manifest(name: &str, spec: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": { "name": name },
        "spec": spec,
    })
}

pub(super) fn converged(cluster: &ShanraqCluster) -> bool {
    let generation = cluster.metadata.generation;
    generation.is_some()
        && cluster.status.as_ref().and_then(|s| s.observed_generation) == generation
}

pub(super) async fn apply(
    clusters: &Api<ShanraqCluster>,
    name: &str,
    spec: &serde_json::Value,
) -> Result<ShanraqCluster, DrillError> {
    clusters
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&manifest(name, spec)),
        )
        .await
        .map_err(kube_error(format!(
            "applying the ShanraqCluster {}/{name}",
            clusters.namespace().unwrap_or_default()
        )))
}

/// Waits, on a watch, until the cluster's status has observed `generation`.
pub(super) async fn await_observed(
    clusters: &Api<ShanraqCluster>,
    name: &str,
    generation: i64,
    timeout: Duration,
) -> Result<(), DrillError> {
    let observed = wait::await_condition(
        clusters.clone(),
        name,
        move |cluster: Option<&ShanraqCluster>| {
            cluster
                .and_then(|c| c.status.as_ref())
                .and_then(|s| s.observed_generation)
                .is_some_and(|seen| seen >= generation)
        },
    );
    tokio::time::timeout(timeout, observed)
        .await
        .map_err(|_| {
            DrillError::timeout(
                format!("status.observedGeneration {generation} of the ShanraqCluster {name}"),
                timeout,
            )
        })?
        .map_err(|error| DrillError::Watch {
            what: format!("the ShanraqCluster {name}"),
            detail: error.to_string(),
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use kube::ResourceExt;

    use super::*;

    #[test]
    fn the_minimal_example_is_what_is_applied() {
        let spec = minimal_spec().expect("the example parses");
        let manifest = manifest("bench-0000", &spec);
        let cluster: ShanraqCluster = serde_json::from_value(manifest).expect("a ShanraqCluster");
        assert_eq!(cluster.name_any(), "bench-0000");
    }
}
