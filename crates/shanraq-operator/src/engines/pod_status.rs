//! What every engine reads of a member pod as the API server shows it: whether it is ready or
//! being deleted, and which configuration it runs (its `shanraq.org/config-hash`, to restart
//! the stale ones).

use k8s_openapi::api::core::v1::Pod;
use shanraq_api::names::ANNOTATION_CONFIG_HASH;

/// `(ready, deleted)` of a pod.
pub fn pod_state(pod: &Pod) -> (bool, bool) {
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
    (ready, pod.metadata.deletion_timestamp.is_some())
}

/// The configuration hash the pod was created with.
pub fn config_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION_CONFIG_HASH)
        .map(String::as_str)
}
