//! The reconcile's reads, in one place: what the object itself says (its previous status, the
//! primary it records, the moment of this reconcile) before validation, and what the API must
//! be asked (are the Prometheus Operator CRDs installed) once the spec is valid.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use shanraq_api::{LiveState, ShanraqCluster, ShanraqClusterStatus};
use shanraq_render::Inputs;

use super::Context;
use super::error::Error;

/// What the object says of itself.
#[derive(Clone, Debug)]
pub struct Known {
    pub previous: ShanraqClusterStatus,
    /// What validation checks the spec against (a primary that cannot be scaled away).
    pub live: LiveState,
    pub now: Time,
    /// The object as the subject of Events.
    pub reference: ObjectReference,
}

pub fn known(object: &ShanraqCluster) -> Known {
    let previous = object.status.clone().unwrap_or_default();
    let live = LiveState {
        current_postgres_primary: previous
            .postgres
            .as_ref()
            .and_then(|p| p.current_primary.clone()),
    };
    Known {
        previous,
        live,
        now: Time(Timestamp::now()),
        reference: object.object_ref(&()),
    }
}

/// The renderer's inputs: what the API offers (cached 60 s) and the recorded primary.
pub async fn inputs(ctx: &Context, known: &Known) -> Result<Inputs, Error> {
    Ok(Inputs {
        monitoring_available: ctx.discovery.monitoring_available(&ctx.client).await?,
        postgres_primary: known.live.current_postgres_primary.clone(),
    })
}
