//! Planned Redis switchover on request: the annotation `shanraq.org/redis-switchover:
//! <pod>|any` on a ShanraqCluster asks its Redis HA task for a switchover (pause writes on the
//! master, wait until the target has its offset, promote, demote). The outcome becomes an Event
//! (`RedisSwitchoverRequested`, or `RedisSwitchoverRefused` naming why) and the annotation is
//! removed either way, so one request is acted on once.

use shanraq_api::ShanraqCluster;

use super::task::RedisHaRegistry;
use crate::controller::error::SwitchoverError;
use crate::controller::events::Notice;
use crate::engines::request;

pub const ANNOTATION_REDIS_SWITCHOVER: &str = "shanraq.org/redis-switchover";
pub const REDIS_SWITCHOVER_REQUESTED: &str = "RedisSwitchoverRequested";
pub const REDIS_SWITCHOVER_REFUSED: &str = "RedisSwitchoverRefused";

/// Acts on the annotation when present; returns the Event to publish.
pub async fn handle(
    client: &kube::Client,
    registry: &RedisHaRegistry,
    object: &ShanraqCluster,
) -> Result<Option<Notice>, SwitchoverError> {
    let Some(value) = request::value(object, ANNOTATION_REDIS_SWITCHOVER) else {
        return Ok(None);
    };
    let wanted = request::target(&value);
    let described = request::described(wanted.as_ref());
    let notice = match registry.handle(&request::key(object)) {
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
    request::remove(client, object, ANNOTATION_REDIS_SWITCHOVER).await?;
    Ok(Some(notice))
}
