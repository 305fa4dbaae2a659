//! Planned switchover on request: the annotation `shanraq.org/switchover: <instance>|any` on a
//! ShanraqCluster asks its HA task for a switchover (to that instance, or to the best replica
//! for `any`). The outcome becomes an Event (`SwitchoverRequested`, or `SwitchoverRefused`
//! naming why) and the annotation is removed either way, so one request is acted on once.

use shanraq_api::ShanraqCluster;
use shanraq_api::names::ANNOTATION_SWITCHOVER;

use super::HaRegistry;
use crate::controller::error::SwitchoverError;
use crate::controller::events::Notice;
use crate::engines::request;

pub const SWITCHOVER_REQUESTED: &str = "SwitchoverRequested";
pub const SWITCHOVER_REFUSED: &str = "SwitchoverRefused";

/// Acts on the annotation when present; returns the Event to publish.
pub async fn handle(
    client: &kube::Client,
    ha: &HaRegistry,
    object: &ShanraqCluster,
    postgres_enabled: bool,
) -> Result<Option<Notice>, SwitchoverError> {
    let Some(value) = request::value(object, ANNOTATION_SWITCHOVER) else {
        return Ok(None);
    };
    let key = request::key(object);
    let wanted = request::target(&value);
    let described = request::described(wanted.as_ref());
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
    tracing::info!(cluster = %key, reason = %notice.reason, note = %notice.note, "switchover request");
    request::remove(client, object, ANNOTATION_SWITCHOVER).await?;
    Ok(Some(notice))
}
