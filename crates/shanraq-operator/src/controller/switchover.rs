//! Planned switchover on request: the annotation `shanraq.org/switchover: <instance>|any` on a
//! ShanraqCluster asks its HA task for a switchover (to that instance, or to the best replica
//! for `any`). The outcome becomes an Event (`SwitchoverRequested`, or `SwitchoverRefused`
//! naming why) and the annotation is removed either way, so one request is acted on once.

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use shanraq_api::ShanraqCluster;
use shanraq_api::names::{ANNOTATION_SWITCHOVER, FIELD_MANAGER};
use shanraq_ha::postgres::NodeId;

use super::error::SwitchoverError;
use super::events::Notice;
use crate::engines::postgres::HaRegistry;

pub const SWITCHOVER_REQUESTED: &str = "SwitchoverRequested";
pub const SWITCHOVER_REFUSED: &str = "SwitchoverRefused";

/// The requested target: `None` for `any` (or an empty value).
pub fn target(value: &str) -> Option<NodeId> {
    let value = value.trim();
    (!value.is_empty() && !value.eq_ignore_ascii_case("any")).then(|| NodeId::new(value))
}

/// Acts on the annotation when present; returns the Event to publish.
pub async fn handle(
    client: &kube::Client,
    ha: &HaRegistry,
    object: &ShanraqCluster,
    postgres_enabled: bool,
) -> Result<Option<Notice>, SwitchoverError> {
    let Some(value) = object.annotations().get(ANNOTATION_SWITCHOVER).cloned() else {
        return Ok(None);
    };
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let key = format!("{namespace}/{name}");
    let wanted = target(&value);
    let described = wanted
        .as_ref()
        .map_or_else(|| "the best replica".to_owned(), ToString::to_string);
    let notice = if !postgres_enabled {
        Notice::warning(
            SWITCHOVER_REFUSED,
            format!("switchover to {described} refused: PostgreSQL is not enabled"),
        )
    } else {
        match ha.request_switchover(&key, wanted).await {
            Ok(chosen) => Notice::normal(
                SWITCHOVER_REQUESTED,
                format!("switchover to {chosen} requested ({ANNOTATION_SWITCHOVER}={value})"),
            ),
            Err(error) => Notice::warning(
                SWITCHOVER_REFUSED,
                format!("switchover to {described} refused: {error}"),
            ),
        }
    };
    tracing::info!(cluster = %key, reason = notice.reason, note = %notice.note, "switchover request");
    remove_annotation(client, object).await?;
    Ok(Some(notice))
}

/// Removes the annotation (a merge patch guarded by the object's uid).
async fn remove_annotation(
    client: &kube::Client,
    object: &ShanraqCluster,
) -> Result<(), SwitchoverError> {
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let api: Api<ShanraqCluster> = Api::namespaced(client.clone(), &namespace);
    let body = json!({
        "metadata": {
            "uid": object.meta().uid,
            "annotations": { ANNOTATION_SWITCHOVER: null },
        },
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(&name, &params, &Patch::Merge(&body))
        .await
        .map(|_| ())
        .map_err(|source| SwitchoverError::RemoveAnnotation {
            namespace,
            name,
            source,
        })
}
