//! `shanraq crdgen` and `shanraq render`: offline tools that print what the operator would apply.
//! `render` validates exactly as the operator does and prints every child as multi-document YAML;
//! Secrets are shown with placeholders instead of values, because values are generated only
//! when the operator creates them in the cluster.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde_json::{Value, json};
use shanraq_api::{LiveState, ShanraqCluster};
use shanraq_render::{Inputs, SecretTemplate};

/// What a generated Secret value is shown as.
pub const GENERATED_PLACEHOLDER: &str = "<generated at apply time>";

/// Flags of `shanraq render`.
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// A file holding one ShanraqCluster manifest (YAML).
    pub manifest: std::path::PathBuf,
}

/// Prints the ShanraqCluster CRD, or with `backup` the ShanraqBackup CRD.
pub fn crdgen(backup: bool) -> anyhow::Result<()> {
    if backup {
        print!("{}", shanraq_api::crd::backup_crd_yaml()?);
    } else {
        print!("{}", shanraq_api::crd::crd_yaml()?);
    }
    Ok(())
}

pub fn render(args: RenderArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.manifest)
        .with_context(|| format!("cannot read {}", args.manifest.display()))?;
    print!("{}", render_text(&text)?);
    Ok(())
}

/// A Secret as `render` prints it: fixed values as they are, generated ones as placeholders.
pub fn secret_preview(template: &SecretTemplate, namespace: &str) -> Value {
    let mut data: BTreeMap<&str, &str> = template
        .fixed
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for key in template.generated.keys() {
        data.insert(key, GENERATED_PLACEHOLDER);
    }
    if template.authority.is_some() {
        data.insert(shanraq_render::secrets::CA_CERT_KEY, GENERATED_PLACEHOLDER);
        data.insert(shanraq_render::secrets::CA_KEY_KEY, GENERATED_PLACEHOLDER);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": template.name,
            "namespace": namespace,
            "labels": template.labels,
        },
        "type": "Opaque",
        "stringData": data,
    })
}

/// Validates one ShanraqCluster manifest and renders it to multi-document YAML. An invalid
/// manifest is an error listing every field error.
pub fn render_text(manifest: &str) -> anyhow::Result<String> {
    let object: ShanraqCluster =
        serde_saphyr::from_str(manifest).context("the manifest is not a ShanraqCluster (YAML)")?;
    let cluster = shanraq_api::validate(&object, &LiveState::default()).map_err(|invalid| {
        let lines: Vec<String> = invalid
            .errors
            .iter()
            .map(|error| format!("  {error}"))
            .collect();
        anyhow::anyhow!("invalid ShanraqCluster:\n{}", lines.join("\n"))
    })?;
    let rendered = shanraq_render::build(
        &cluster,
        &Inputs {
            monitoring_available: true,
            postgres_primary: None,
        },
    )
    .with_context(|| format!("cannot render ShanraqCluster {}", cluster.name))?;

    let mut documents: Vec<Value> = rendered
        .secrets
        .iter()
        .map(|template| secret_preview(template, &cluster.namespace))
        .collect();
    for child in &rendered.children {
        let mut value = child
            .to_json()
            .with_context(|| format!("cannot serialise {} {}", child.kind(), child.name()))?;
        if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata
                .entry("namespace")
                .or_insert_with(|| cluster.namespace.clone().into());
        }
        documents.push(value);
    }
    let mut out = String::new();
    for document in &documents {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(document).context("cannot write YAML")?);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_manifest_lists_every_field() {
        let manifest = r#"
apiVersion: shanraq.org/v1alpha1
kind: ShanraqCluster
metadata: { name: payments, namespace: fintech }
spec:
  kafka: { controllers: 2 }
  postgres: { instances: 3, synchronous: { number: 3 } }
"#;
        let error = render_text(manifest).expect_err("invalid").to_string();
        assert!(error.contains("kafka.controllers"), "{error}");
        assert!(error.contains("synchronous.number"), "{error}");
    }

    #[test]
    fn secrets_never_show_a_value() {
        let template = SecretTemplate {
            name: "payments-pg-app".into(),
            labels: BTreeMap::new(),
            fixed: BTreeMap::from([("username".into(), "app".into())]),
            generated: BTreeMap::from([("password".into(), 32)]),
            authority: None,
        };
        let preview = secret_preview(&template, "fintech");
        assert_eq!(preview["stringData"]["password"], GENERATED_PLACEHOLDER);
        assert_eq!(preview["stringData"]["username"], "app");
        assert!(preview.get("data").is_none());
    }

    #[test]
    fn every_example_renders() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("deploy/examples") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            let out =
                render_text(&text).unwrap_or_else(|error| panic!("{}: {error:#}", path.display()));
            let object: ShanraqCluster = serde_saphyr::from_str(&text).expect("parse");
            let cluster =
                shanraq_api::validate(&object, &LiveState::default()).expect("valid example");
            let rendered = shanraq_render::build(
                &cluster,
                &Inputs {
                    monitoring_available: true,
                    postgres_primary: None,
                },
            )
            .expect("render");
            let documents = out.matches("---\n").count();
            assert_eq!(
                documents,
                rendered.children.len() + rendered.secrets.len(),
                "{}: one document per object",
                path.display()
            );
            for child in &rendered.children {
                assert!(
                    out.contains(&format!("name: {}", child.name())),
                    "{}: {} {} missing",
                    path.display(),
                    child.kind(),
                    child.name()
                );
            }
            seen += 1;
        }
        assert!(seen >= 2, "expected the examples in {}", dir.display());
    }
}
