//! Fixture clusters for the render tests: the repository's examples, validated exactly as the
//! operator validates them, with a fixed uid so owner references and the Kafka cluster id are
//! stable.

#![allow(dead_code)]

use std::path::PathBuf;

use shanraq_api::{LiveState, ShanraqCluster, ValidCluster, validate};
use shanraq_render::{Child, Inputs, Rendered};

pub const UID: &str = "8d3e7c56-2f4b-4d1a-9b2e-5f6a7c8d9e0f";

pub fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// Parses and validates a manifest, then gives it `UID`.
pub fn from_yaml(text: &str) -> ValidCluster {
    let mut cluster: ShanraqCluster = serde_saphyr::from_str(text).expect("manifest parses");
    cluster.metadata.uid = Some(UID.to_owned());
    validate(&cluster, &LiveState::default()).expect("manifest is valid")
}

/// A cluster named `demo` in namespace `fintech` with `spec` (YAML, indented under `spec:`).
pub fn with_spec(spec: &str) -> ValidCluster {
    from_yaml(&format!(
        "apiVersion: shanraq.org/v1alpha1\nkind: ShanraqCluster\nmetadata:\n  name: demo\n  namespace: fintech\nspec:\n{spec}\n"
    ))
}

/// `spec: {}`: every default.
pub fn minimal() -> ValidCluster {
    with_spec("  {}")
}

/// Every default plus `spec.backup` (the backup alerts' fixture, `fintech/demo`).
pub fn backup() -> ValidCluster {
    with_spec(
        "  backup:\n    endpoint: https://s3.example.com\n    bucket: demo-backups\n    credentials:\n      secretName: demo-s3",
    )
}

pub fn production() -> ValidCluster {
    let text = std::fs::read_to_string(repo_file("deploy/examples/production.yaml"))
        .expect("deploy/examples/production.yaml");
    from_yaml(&text)
}

pub fn render(cluster: &ValidCluster, monitoring_available: bool) -> Rendered {
    shanraq_render::build(
        cluster,
        &Inputs {
            monitoring_available,
            postgres_primary: None,
        },
    )
    .expect("renders")
}

/// `Kind/name` of every child, sorted.
pub fn kinds_and_names(rendered: &Rendered) -> Vec<String> {
    let mut names: Vec<String> = rendered
        .children
        .iter()
        .map(|child| format!("{}/{}", child.kind(), child.name()))
        .collect();
    names.sort();
    names
}

pub fn find<'a>(rendered: &'a Rendered, kind: &str, name: &str) -> &'a Child {
    rendered
        .children
        .iter()
        .find(|child| child.kind() == kind && child.name() == name)
        .unwrap_or_else(|| panic!("{kind}/{name} not rendered"))
}

/// A key of a rendered ConfigMap.
pub fn config_file(rendered: &Rendered, config_map: &str, key: &str) -> String {
    match find(rendered, "ConfigMap", config_map) {
        Child::ConfigMap(map) => map
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .unwrap_or_else(|| panic!("ConfigMap {config_map} has no {key}"))
            .clone(),
        other => panic!("{} is not a ConfigMap", other.name()),
    }
}
