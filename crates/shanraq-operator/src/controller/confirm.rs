//! The confirmation of a destructive change (`shanraq.org/confirm-delete`) is consumed by the
//! reconcile that acted on it: once the children were applied and the orphans deleted, the
//! annotation is removed, so that a later change (a component turned on again, then off) needs
//! a confirmation of its own instead of being carried by a stale one.

use kube::ResourceExt;
use shanraq_api::ShanraqCluster;
use shanraq_api::names::ANNOTATION_CONFIRM_DELETE;

use super::error::Error;
use super::{Context, leading};
use crate::engines::request;

/// Removes the confirmation annotation, when the cluster carries one.
pub async fn consume(ctx: &Context, object: &ShanraqCluster) -> Result<(), Error> {
    if !object.annotations().contains_key(ANNOTATION_CONFIRM_DELETE) {
        return Ok(());
    }
    leading(ctx)?;
    request::remove(&ctx.client, object, ANNOTATION_CONFIRM_DELETE)
        .await
        .map_err(Error::Confirmation)
}
