//! One-shot requests made by annotating a ShanraqCluster (`shanraq.org/switchover`,
//! `shanraq.org/redis-switchover`, `shanraq.org/drill`): the engine acts on the value once, and
//! the annotation is removed (a merge patch guarded by the object's uid) so that the next
//! reconcile does not act on it again. Every engine's requests go through here.

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use shanraq_api::ShanraqCluster;
use shanraq_api::names::FIELD_MANAGER;
use shanraq_ha::postgres::NodeId;

/// The annotation's value, when the cluster carries it.
pub fn value(object: &ShanraqCluster, annotation: &str) -> Option<String> {
    object.annotations().get(annotation).cloned()
}

/// The member a switchover request names: `None` for `any` (or an empty value).
pub fn target(value: &str) -> Option<NodeId> {
    let value = value.trim();
    (!value.is_empty() && !value.eq_ignore_ascii_case("any")).then(|| NodeId::new(value))
}

/// How a request's target reads in an Event.
pub fn described(wanted: Option<&NodeId>) -> String {
    wanted.map_or_else(|| "the best replica".to_owned(), ToString::to_string)
}

/// The `namespace/name` key engines are registered under.
pub fn key(object: &ShanraqCluster) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

#[derive(Debug, thiserror::Error)]
#[error("cannot remove the {annotation} annotation of ShanraqCluster {namespace}/{name}: {source}")]
pub struct RemoveAnnotationError {
    pub annotation: &'static str,
    pub namespace: String,
    pub name: String,
    #[source]
    pub source: kube::Error,
}

/// Removes `annotation`, so the request is acted on once.
pub async fn remove(
    client: &kube::Client,
    object: &ShanraqCluster,
    annotation: &'static str,
) -> Result<(), RemoveAnnotationError> {
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let api: Api<ShanraqCluster> = Api::namespaced(client.clone(), &namespace);
    let body = json!({
        "metadata": {
            "uid": object.meta().uid,
            "annotations": { annotation: null },
        },
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(&name, &params, &Patch::Merge(&body))
        .await
        .map(|_| ())
        .map_err(|source| RemoveAnnotationError {
            annotation,
            namespace,
            name,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_or_nothing_asks_for_the_best_replica() {
        assert_eq!(target("any"), None);
        assert_eq!(target(" ANY "), None);
        assert_eq!(target(""), None);
        assert_eq!(target(" pg-2 "), Some(NodeId::new("pg-2")));
        assert_eq!(described(None), "the best replica");
        assert_eq!(described(Some(&NodeId::new("pg-2"))), "pg-2");
    }
}
