//! The reconcile's reads, in one place: what the object itself says (its previous status, the
//! primary and master it records, the moment of this reconcile) and, for a stateful component
//! the spec turns off without confirmation, whether its StatefulSets still run, before
//! validation; and what the API must be asked (are the Prometheus Operator CRDs installed) once
//! the spec is valid.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::{Resource, ResourceExt};
use shanraq_api::conditions::{KAFKA_READY, POSTGRES_READY, REDIS_READY};
use shanraq_api::names::Names;
use shanraq_api::transition::{Stateful, unconfirmed_disabled};
use shanraq_api::{LiveState, ShanraqCluster, ShanraqClusterStatus};
use shanraq_render::Inputs;

use super::Context;
use super::error::{ApplyError, Error};
use super::status::REASON_DISABLED;

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
        current_redis_master: previous
            .redis
            .as_ref()
            .and_then(|r| r.current_master.clone()),
        running: Default::default(),
    };
    Known {
        previous,
        live,
        now: Time(Timestamp::now()),
        reference: object.object_ref(&()),
    }
}

/// Whether the last status already reported `component` off: the reconcile that wrote it had
/// deleted its workloads, so there is nothing left to confirm and nothing to read.
fn reported_off(previous: &ShanraqClusterStatus, component: Stateful) -> bool {
    let type_ = match component {
        Stateful::Postgres => POSTGRES_READY,
        Stateful::Redis => REDIS_READY,
        Stateful::Kafka => KAFKA_READY,
    };
    previous
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True" && c.reason == REASON_DISABLED)
}

/// Fills `known.live.running` with the StatefulSets that still exist of each stateful component
/// the spec turns off without a confirmation. A spec that changes nothing of the kind reads
/// nothing.
pub async fn running(
    ctx: &Context,
    object: &ShanraqCluster,
    known: &mut Known,
) -> Result<(), Error> {
    let namespace = object.namespace().unwrap_or_default();
    let names = Names::new(&object.name_any());
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    for component in unconfirmed_disabled(&object.spec, object.annotations()) {
        if reported_off(&known.previous, component) {
            continue;
        }
        let mut found = Vec::new();
        for workload in component.workloads() {
            let name = names.workload(*workload);
            let existing =
                api.get_metadata_opt(&name)
                    .await
                    .map_err(|source| ApplyError::Read {
                        kind: "StatefulSet".to_owned(),
                        namespace: namespace.clone(),
                        name: name.clone(),
                        source,
                    })?;
            // One already being deleted was confirmed before: nothing is left to confirm.
            if existing.is_some_and(|set| set.metadata.deletion_timestamp.is_none()) {
                found.push(name);
            }
        }
        known.live.running.insert(component, found);
    }
    Ok(())
}

/// The renderer's inputs: what the API offers (cached 60 s) and the recorded primary.
pub async fn inputs(ctx: &Context, known: &Known) -> Result<Inputs, Error> {
    Ok(Inputs {
        monitoring_available: ctx.discovery.monitoring_available(&ctx.client).await?,
        postgres_primary: known.live.current_postgres_primary.clone(),
    })
}
