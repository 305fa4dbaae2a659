//! An invalid spec stops the reconcile: the status says `Stalled` with the field named, the
//! transition is published as Events, and nothing already running is touched.

use kube::ResourceExt;
use shanraq_api::{InvalidSpec, ShanraqCluster};

use super::dereference::Known;
use super::error::Error;
use super::{Context, events, leading, status};

/// Reports `invalid` and returns the error the reconcile ends with (it waits for a change).
pub async fn report(
    ctx: &Context,
    object: &ShanraqCluster,
    known: &Known,
    invalid: InvalidSpec,
) -> Error {
    let next = status::stalled(
        &known.previous,
        object.metadata.generation,
        &invalid,
        &known.now,
    );
    if let Err(error) = leading(ctx) {
        return error.into();
    }
    if let Err(error) = status::write(&ctx.client, object, &known.previous, &next).await {
        return error.into();
    }
    let notices = events::transitions(&known.previous.conditions, &next.conditions);
    events::publish(&ctx.recorder, &known.reference, &notices).await;
    Error::InvalidSpec {
        namespace: object.namespace().unwrap_or_default(),
        name: object.name_any(),
        source: invalid,
    }
}
