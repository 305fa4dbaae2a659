//! Why an engine's task cannot start yet, for every engine: a Secret it needs is missing or
//! incomplete, its pods cannot be listed or have no address yet, a client cannot be built, or
//! the driver could not load its state. The task logs the error and retries; the messages name
//! the object (never a Secret's value).

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read Secret {name}: {source}")]
    ReadSecret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("Secret {name} has no key {key}")]
    SecretKey { name: String, key: &'static str },
    #[error("cannot list the {component} pods of {cluster}: {source}")]
    ListPods {
        component: &'static str,
        cluster: String,
        #[source]
        source: kube::Error,
    },
    #[error("{component} pod {pod} has no IP yet")]
    NoPodIp {
        component: &'static str,
        pod: String,
    },
    #[error("cannot create the client of {member}: {source}")]
    Client {
        member: String,
        #[source]
        source: shanraq_ha::adapters::instance_client::InstanceClientError,
    },
    #[error("the driver cannot start: {source}")]
    Driver {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The non-empty UTF-8 value of `key` in Secret `name`.
pub async fn secret_value(
    secrets: &Api<Secret>,
    name: &str,
    key: &'static str,
) -> Result<String, StartError> {
    let secret = secrets
        .get(name)
        .await
        .map_err(|source| StartError::ReadSecret {
            name: name.to_owned(),
            source,
        })?;
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
        .filter(|value| !value.trim().is_empty())
        .ok_or_else(|| StartError::SecretKey {
            name: name.to_owned(),
            key,
        })
}
