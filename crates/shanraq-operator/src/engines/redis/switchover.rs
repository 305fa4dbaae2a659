//! Planned Redis switchover on request: the annotation `shanraq.org/redis-switchover:
//! <pod>|any` on a ShanraqCluster asks its Redis HA task for a switchover (pause writes on the
//! master, wait until the target has its offset, promote, demote). The outcome becomes an Event
//! (`RedisSwitchoverRequested`, or `RedisSwitchoverRefused` naming why) and the annotation is
//! removed either way, so one request is acted on once.

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use shanraq_api::ShanraqCluster;
use shanraq_api::names::FIELD_MANAGER;

use super::task::RedisHaRegistry;
use crate::controller::error::SwitchoverError;
use crate::controller::events::Notice;
use crate::controller::switchover::target;

pub const ANNOTATION_REDIS_SWITCHOVER: &str = "shanraq.org/redis-switchover";
pub const REDIS_SWITCHOVER_REQUESTED: &str = "RedisSwitchoverRequested";
pub const REDIS_SWITCHOVER_REFUSED: &str = "RedisSwitchoverRefused";

/// Acts on the annotation when present; returns the Event to publish.
pub async fn handle(
    client: &kube::Client,
    registry: &RedisHaRegistry,
    object: &ShanraqCluster,
) -> Result<Option<Notice>, SwitchoverError> {
    let Some(value) = object
        .annotations()
        .get(ANNOTATION_REDIS_SWITCHOVER)
        .cloned()
    else {
        return Ok(None);
    };
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let key = format!("{namespace}/{name}");
    let wanted = target(&value);
    let described = wanted
        .as_ref()
        .map_or_else(|| "the best replica".to_owned(), ToString::to_string);
    let notice = match registry.handle(&key) {
        None => Notice::warning(
            REDIS_SWITCHOVER_REFUSED,
            format!(
                "Redis switchover to {described} refused: no Redis HA task runs (Redis disabled, in cluster mode, or starting)"
            ),
        ),
        Some(handle) => match handle.request_switchover(wanted).await {
            Ok(chosen) => Notice::normal(
                REDIS_SWITCHOVER_REQUESTED,
                format!(
                    "Redis switchover to {chosen} requested ({ANNOTATION_REDIS_SWITCHOVER}={value})"
                ),
            ),
            Err(error) => Notice::warning(
                REDIS_SWITCHOVER_REFUSED,
                format!("Redis switchover to {described} refused: {error}"),
            ),
        },
    };
    let api: Api<ShanraqCluster> = Api::namespaced(client.clone(), &namespace);
    let body = json!({
        "metadata": {
            "uid": object.meta().uid,
            "annotations": { ANNOTATION_REDIS_SWITCHOVER: null },
        },
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(&name, &params, &Patch::Merge(&body))
        .await
        .map_err(|source| SwitchoverError::RemoveAnnotation {
            namespace,
            name,
            source,
        })?;
    Ok(Some(notice))
}
