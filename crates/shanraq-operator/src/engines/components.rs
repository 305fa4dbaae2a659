//! Each component's part of the status: its `<Component>Ready` condition (from its workloads,
//! and what its engine adds: Redis cluster mode's slots, Kafka's admin API view), its
//! `status.<component>` counts, and the fields its engine's task owns (never sent by the
//! reconcile's status writer). The controller's status computation takes them all from here,
//! so a new component is added here and in its engine's folder, not under `controller/`.

use serde_json::Value;
use shanraq_api::conditions::{HAPROXY_READY, KAFKA_READY, POSTGRES_READY, REDIS_READY};
use shanraq_api::names::Component;
use shanraq_api::status::RedisStatus;
use shanraq_api::{ShanraqClusterStatus, ValidCluster};

use crate::controller::status::{Observed, Want, component_condition, counts};

/// The `<Component>Ready` conditions, in the order `Ready` lists what it waits for.
pub fn ready_conditions(cluster: &ValidCluster, observed: &Observed) -> Vec<Want> {
    let spec = &cluster.spec;
    vec![
        component_condition(
            POSTGRES_READY,
            "PostgreSQL",
            "postgres",
            spec.postgres.enabled,
            &[Component::Postgres],
            observed,
        ),
        super::redis::objectives::cluster_condition(
            component_condition(
                REDIS_READY,
                "Redis",
                "redis",
                spec.redis.enabled,
                &[Component::Redis],
                observed,
            ),
            observed.engines.redis_cluster.as_ref(),
        ),
        super::kafka::health::kafka_condition(
            component_condition(
                KAFKA_READY,
                "Kafka",
                "kafka",
                spec.kafka.enabled,
                &[Component::KafkaController, Component::KafkaBroker],
                observed,
            ),
            cluster,
            observed.engines.kafka.as_ref(),
        ),
        component_condition(
            HAPROXY_READY,
            "HAProxy",
            "haproxy",
            spec.haproxy.enabled,
            &[Component::HAProxy],
            observed,
        ),
    ]
}

/// Each enabled component's `status.<component>` counts into `next`; a disabled one's slot is
/// cleared. What an engine's task writes itself (PostgreSQL's and Redis's HA state) is kept.
pub fn status(
    next: &mut ShanraqClusterStatus,
    previous: &ShanraqClusterStatus,
    cluster: &ValidCluster,
    observed: &Observed,
) {
    if cluster.spec.postgres.enabled
        && let Some(counts) = counts(observed, &[Component::Postgres])
    {
        next.postgres
            .get_or_insert_with(Default::default)
            .ready_instances = counts.ready_replicas;
    }
    if cluster.spec.postgres.enabled
        && let Some(instances) = &observed.engines.postgres_instances
    {
        next.postgres.get_or_insert_with(Default::default).instances = instances.clone();
    }
    next.redis = if cluster.spec.redis.enabled {
        // The Redis engine owns everything but the counts (it writes them with its state).
        counts(observed, &[Component::Redis]).map(|counts| RedisStatus {
            ready_instances: counts.ready_replicas,
            ..previous.redis.clone().unwrap_or_default()
        })
    } else {
        None
    };
    next.kafka = if cluster.spec.kafka.enabled {
        counts(
            observed,
            &[Component::KafkaController, Component::KafkaBroker],
        )
        .map(|counts| {
            super::kafka::health::kafka_status(
                counts,
                observed.engines.kafka.as_ref(),
                previous.kafka.as_ref(),
            )
        })
    } else {
        None
    };
    next.haproxy = if cluster.spec.haproxy.enabled {
        counts(observed, &[Component::HAProxy])
    } else {
        None
    };
}

/// Removes from a `status` JSON object (the reconcile's server-side apply body) the fields the
/// engines' tasks own, so the reconcile never takes ownership of them or writes a stale copy.
pub fn strip_engine_fields(status: &mut Value) {
    super::postgres::status_map::strip_ha_fields(status);
    super::redis::status_map::strip_ha_fields(status);
}
