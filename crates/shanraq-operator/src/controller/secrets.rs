//! Generated Secrets (passwords, the instance-manager token): created once with random
//! alphanumeric values when absent, and never patched, regenerated or deleted afterwards, so a
//! running database never loses its credentials to a reconcile. They carry no owner reference:
//! like the PersistentVolumeClaims whose data they unlock, they outlive the ShanraqCluster.
//! Values never appear in logs, events, errors or status.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use rand::RngExt;
use rand::distr::Alphanumeric;
use shanraq_api::ValidCluster;
use shanraq_api::names::FIELD_MANAGER;
use shanraq_render::SecretTemplate;
use shanraq_render::secrets::{CA_CERT_KEY, CA_KEY_KEY};

use super::error::SecretError;

/// A random alphanumeric value of `length` characters from the thread-local CSPRNG.
pub fn generate(length: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(length)
        .map(char::from)
        .collect()
}

/// The Secret for `template` with fresh values for its generated keys (and a new certificate
/// authority, when it asks for one).
pub fn build(template: &SecretTemplate, namespace: &str) -> Result<Secret, SecretError> {
    let mut values: BTreeMap<String, String> = template.fixed.clone();
    for (key, length) in &template.generated {
        values.insert(key.clone(), generate(*length));
    }
    if let Some(subject) = &template.authority {
        let authority = shanraq_instance::backup_tls::new_authority(subject).map_err(|error| {
            SecretError::Generate {
                namespace: namespace.to_owned(),
                name: template.name.clone(),
                problem: error.to_string(),
            }
        })?;
        values.insert(CA_CERT_KEY.to_owned(), authority.cert_pem);
        values.insert(CA_KEY_KEY.to_owned(), authority.key_pem);
    }
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(template.name.clone()),
            namespace: Some(namespace.to_owned()),
            labels: Some(template.labels.clone()),
            ..ObjectMeta::default()
        },
        string_data: Some(values),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    })
}

/// What [`ensure`] found or made.
#[derive(Clone, Debug, Default)]
pub struct Ensured {
    /// The names of the Secrets created this round.
    pub created: Vec<String>,
    /// Every template's Secret as it now stands: name and resourceVersion.
    pub versions: Vec<(String, Option<String>)>,
}

/// Creates every Secret of `templates` that does not exist yet.
pub async fn ensure(
    client: &kube::Client,
    cluster: &ValidCluster,
    templates: &[SecretTemplate],
) -> Result<Ensured, SecretError> {
    let namespace = &cluster.namespace;
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut ensured = Ensured::default();
    for template in templates {
        // Metadata only: the operator has no reason to hold existing values in memory.
        let existing = api
            .get_metadata_opt(&template.name)
            .await
            .map_err(|source| SecretError::Get {
                namespace: namespace.clone(),
                name: template.name.clone(),
                source,
            })?;
        if let Some(existing) = existing {
            ensured
                .versions
                .push((template.name.clone(), existing.metadata.resource_version));
            continue;
        }
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        match api.create(&params, &build(template, namespace)?).await {
            Ok(secret) => {
                tracing::info!(secret = %template.name, "created generated Secret");
                ensured.created.push(template.name.clone());
                ensured
                    .versions
                    .push((template.name.clone(), secret.metadata.resource_version));
            }
            // Created in between by another writer: theirs stays (its version unknown here,
            // so the next round applies in full again).
            Err(kube::Error::Api(status)) if status.is_already_exists() => {
                ensured.versions.push((template.name.clone(), None));
            }
            Err(source) => {
                return Err(SecretError::Create {
                    namespace: namespace.clone(),
                    name: template.name.clone(),
                    source,
                });
            }
        }
    }
    Ok(ensured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_values_are_alphanumeric_and_fresh() {
        let template = SecretTemplate {
            name: "payments-pg-app".into(),
            labels: BTreeMap::from([("app.kubernetes.io/instance".into(), "payments".into())]),
            fixed: BTreeMap::from([("username".into(), "app".into())]),
            generated: BTreeMap::from([("password".into(), 32)]),
            authority: None,
        };
        let first = build(&template, "fintech").expect("built");
        let second = build(&template, "fintech").expect("built");
        let password = |s: &Secret| {
            s.string_data
                .as_ref()
                .and_then(|d| d.get("password").cloned())
                .expect("password")
        };
        assert_eq!(password(&first).len(), 32);
        assert!(password(&first).chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(password(&first), password(&second));
        assert_eq!(
            first.string_data.as_ref().and_then(|d| d.get("username")),
            Some(&"app".to_owned())
        );
        assert_eq!(first.metadata.namespace.as_deref(), Some("fintech"));
        assert!(first.metadata.owner_references.is_none());
    }

    #[test]
    fn an_authority_template_gets_a_fresh_ca_each_time_it_is_built() {
        let template = SecretTemplate {
            name: "payments-pg-backup-tls".into(),
            labels: BTreeMap::new(),
            fixed: BTreeMap::new(),
            generated: BTreeMap::new(),
            authority: Some("payments".into()),
        };
        let value = |secret: &Secret, key: &str| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key).cloned())
                .expect("key")
        };
        let first = build(&template, "fintech").expect("built");
        let second = build(&template, "fintech").expect("built");
        assert!(value(&first, CA_CERT_KEY).starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(value(&first, CA_KEY_KEY).contains("PRIVATE KEY"));
        assert_ne!(value(&first, CA_KEY_KEY), value(&second, CA_KEY_KEY));
        // What an instance issues itself from it chains to it.
        let authority = shanraq_instance::backup_tls::Pair {
            cert_pem: value(&first, CA_CERT_KEY),
            key_pem: value(&first, CA_KEY_KEY),
        };
        shanraq_instance::backup_tls::issue(&authority, "10.78.0.5").expect("issues");
    }
}
