//! Routing by label, for every engine whose writes go through a Service selecting on the pods'
//! `shanraq.org/role`: the new primary (or master) is labelled only after every other member
//! was labelled `replica`, so the Service never selects two pods for writes.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use shanraq_api::names::{LABEL_ROLE, ROLE_REPLICA};
use shanraq_ha::adapters::route::RouteError;
use shanraq_ha::postgres::NodeId;

use crate::engines::state_store::HA_FIELD_MANAGER;

/// Sets `role` on pod `name`. A pod that does not exist is `Ok(false)`.
pub async fn label_role(pods: &Api<Pod>, name: &str, role: &str) -> Result<bool, kube::Error> {
    let body = json!({ "metadata": { "labels": { LABEL_ROLE: role } } });
    let params = PatchParams {
        field_manager: Some(HA_FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    match pods.patch(name, &params, &Patch::Merge(&body)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

/// Labels every member but `chosen` `replica`, then `chosen` with `role`: never two pods
/// labelled for writes. A missing replica pod (being recreated) gets its label when it comes
/// back; a missing `chosen` pod is an error (nothing would receive the writes).
pub async fn relabel(
    pods: &Api<Pod>,
    members: &[NodeId],
    chosen: &NodeId,
    role: &str,
) -> Result<(), RouteError> {
    for member in members.iter().filter(|m| *m != chosen) {
        label_role(pods, member.as_str(), ROLE_REPLICA)
            .await
            .map_err(|error| {
                RouteError::change(format!("label pod {member} {ROLE_REPLICA}"), error)
            })?;
    }
    match label_role(pods, chosen.as_str(), role).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(RouteError::Missing {
            member: chosen.clone(),
            what: "its pod",
        }),
        Err(error) => Err(RouteError::change(
            format!("label pod {chosen} {role}"),
            error,
        )),
    }
}
