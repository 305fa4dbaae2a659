//! One reconcile of one ShanraqCluster, as a short pipeline: validate -> render -> secrets ->
//! apply (server-side apply + orphan clean-up) -> status -> events. Only the ends do IO; the
//! decisions (what to render, which conditions, which events) are pure functions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use shanraq_api::conditions::{self, READY};
use shanraq_api::{LiveState, ShanraqCluster, ValidCluster};
use shanraq_render::Inputs;
use tracing::instrument;

use super::error::{Error, NotLeader};
use super::events::{self, Notice};
use super::status::{self, Observed};
use super::{Context, applied, apply, failover_drill, secrets, switchover};
use crate::engines::postgres::objectives as ha_objectives;
use crate::engines::postgres::task::Deps;
use crate::metrics::{ComponentLabels, ObjectiveLabels};
use shanraq_api::ShanraqClusterStatus;
use shanraq_ha::objectives::RpoMeasurement;

/// Requeue of a cluster that is Ready: a periodic check that nothing drifted.
pub const STEADY_REQUEUE: Duration = Duration::from_secs(60);
/// Requeue while a rollout is in progress (child watches usually trigger sooner).
pub const PROGRESS_REQUEUE: Duration = Duration::from_secs(15);
/// Requeue while a failover drill waits for its failover (status writes usually trigger sooner).
pub const DRILL_REQUEUE: Duration = Duration::from_secs(5);

#[instrument(skip(cluster, ctx), fields(name = %cluster.name_any(), namespace = cluster.namespace().unwrap_or_default()))]
pub async fn reconcile(cluster: Arc<ShanraqCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = run(&cluster, &ctx).await;
    ctx.metrics.count_reconcile(started.elapsed());
    if result.is_ok() {
        ctx.forget_failures(&cluster);
    }
    result
}

/// A reconcile writes only while this replica leads, checked right before each write (a
/// lease says a process *was* leader): a replica paused past its Lease that wakes mid-reconcile
/// writes nothing.
fn leading(ctx: &Context) -> Result<(), NotLeader> {
    use shanraq_ha::driver::custody::Authority as _;
    ctx.ha.settings().leadership.check().map_err(NotLeader)
}

async fn run(object: &ShanraqCluster, ctx: &Context) -> Result<Action, Error> {
    let namespace = object.namespace().ok_or(Error::MissingNamespace)?;
    // Being deleted: the garbage collector removes the children (in foreground deletion while
    // the cluster object still exists). Applying them again would undo the deletion, so the
    // cluster's last reconcile is its HA task's stop.
    if object.metadata.deletion_timestamp.is_some() {
        let key = format!("{namespace}/{}", object.name_any());
        ctx.ha.stop(&key);
        ctx.applied.forget(&key);
        return Ok(Action::await_change());
    }
    let previous = object.status.clone().unwrap_or_default();
    let now = Time(Timestamp::now());
    let reference = object.object_ref(&());

    let live = LiveState {
        current_postgres_primary: previous
            .postgres
            .as_ref()
            .and_then(|p| p.current_primary.clone()),
    };
    let cluster = match shanraq_api::validate(object, &live) {
        Ok(cluster) => cluster,
        Err(invalid) => {
            let next = status::stalled(&previous, object.metadata.generation, &invalid, &now);
            leading(ctx)?;
            status::write(&ctx.client, object, &previous, &next).await?;
            let notices = events::transitions(&previous.conditions, &next.conditions);
            events::publish(&ctx.recorder, &reference, &notices).await;
            return Err(Error::InvalidSpec {
                namespace,
                name: object.name_any(),
                source: invalid,
            });
        }
    };

    let inputs = Inputs {
        monitoring_available: ctx.discovery.monitoring_available(&ctx.client).await?,
        postgres_primary: live.current_postgres_primary.clone(),
    };
    let rendered = shanraq_render::build(&cluster, &inputs).map_err(|source| Error::Render {
        name: cluster.name.clone(),
        source,
    })?;
    leading(ctx)?;
    let (created, applied) =
        apply_or_read(ctx, &cluster, &rendered, inputs.monitoring_available).await?;

    // The engine of this cluster: started, restarted on a changed configuration, or stopped.
    ctx.ha.ensure(&cluster, || Deps {
        client: ctx.client.clone(),
        recorder: ctx.recorder.clone(),
        metrics: ctx.metrics.clone(),
        reference: cluster_reference(object),
        identity: ctx.ha.settings().identity.clone(),
        leadership: ctx.ha.settings().leadership.clone(),
    });
    ctx.redis_ha.ensure(&cluster, || Deps {
        client: ctx.client.clone(),
        recorder: ctx.recorder.clone(),
        metrics: ctx.metrics.clone(),
        reference: cluster_reference(object),
        identity: ctx.ha.settings().identity.clone(),
        leadership: ctx.ha.settings().leadership.clone(),
    });
    ctx.kafka.ensure(
        &cluster,
        managed_topics(&previous),
        kafka_config_hash(&cluster, &rendered),
        || ctx.client.clone(),
    );
    ctx.ha
        .set_desired_hash(&key_of(&cluster), postgres_config_hash(&cluster, &rendered));
    ctx.redis_ha.set_desired_hash(
        &key_of(&cluster),
        crate::engines::redis::restart::desired_hash(&cluster, &rendered),
    );
    let switchover =
        switchover::handle(&ctx.client, &ctx.ha, object, cluster.spec.postgres.enabled).await?;
    let engine = ctx
        .ha
        .handle(&key_of(&cluster))
        .map(|handle| handle.state())
        .map(|state| failover_drill::EngineView {
            phase: state.phase.to_string(),
            primary: state.current_primary.map(|p| p.0),
        });
    let drill = failover_drill::handle(
        &ctx.client,
        &ctx.drills,
        object,
        &cluster,
        &previous,
        engine.as_ref(),
        Timestamp::now(),
    )
    .await?;
    let redis_switchover =
        crate::engines::redis::switchover::handle(&ctx.client, &ctx.redis_ha, object).await?;

    let mut observed = Observed::from_applied(&applied.objects, inputs.monitoring_available);
    observed.last_failover_rto = ha_objectives::last_failover_rto(
        previous
            .postgres
            .as_ref()
            .and_then(|p| p.last_failover.as_ref()),
    );
    observed.rpo = crate::engines::redis::objectives::worse(
        measure_rpo(ctx, &cluster, &previous),
        ctx.redis_ha
            .handle(&key_of(&cluster))
            .and_then(|handle| crate::engines::redis::objectives::measure(&handle)),
    );
    observed.kafka = ctx.kafka.view(&key_of(&cluster));
    if let Some(crate::engines::kafka::health::AdminView::Seen { figures, .. }) = &observed.kafka {
        observed.rpo = crate::engines::redis::objectives::worse(
            observed.rpo.take(),
            crate::engines::kafka::health::rpo(figures),
        );
    }
    observed.postgres_instances = sampled_instances(ctx, &cluster, &previous);
    observed.archive = sampled_archive(ctx, &cluster, &previous);
    if cluster.spec.backup.is_some() {
        observed.last_backup = super::backup_schedule::last_finished(&ctx.client, object).await;
    }
    if cluster.spec.redis.mode == shanraq_api::redis::RedisMode::Cluster {
        observed.redis_cluster = previous.redis.as_ref().and_then(|r| r.cluster.clone());
    }
    if let Some(window) = ctx.ha.probe_window(&key_of(&cluster)) {
        window.count_into(ctx.metrics.probe_counter(&cluster.name, &cluster.namespace));
        let fresh = ha_objectives::probe_verdicts(&cluster, &window);
        observed.probes = ctx.ha.publishable_probes(&key_of(&cluster), fresh);
    }
    let mut next = status::desired(&previous, &cluster, &observed, &now);
    if let Some(backup) = &cluster.spec.backup {
        let mut slots = next.backup.take().unwrap_or_default();
        super::backup_schedule::run(&ctx.client, &cluster, backup, &mut slots, now.0).await;
        next.backup = Some(slots);
    }
    if let Some(record) = &drill.drill {
        next.drill = Some(record.clone());
    }
    let drill_running = drill.running(&previous);
    leading(ctx)?;
    let written = status::write(&ctx.client, object, &previous, &next).await?;
    publish_objectives(ctx, &cluster, &observed);
    publish_components(ctx, &cluster, &observed);

    let mut notices: Vec<Notice> = created
        .iter()
        .map(|name| {
            Notice::normal(
                events::SECRET_CREATED,
                format!("created Secret {name} with generated values"),
            )
            .about(related("v1", "Secret", name, &cluster.namespace))
        })
        .collect();
    notices.extend(applied.deleted.iter().map(|deleted| {
        Notice::normal(
            events::ORPHAN_DELETED,
            format!(
                "deleted {} {}: no longer part of the rendered cluster",
                deleted.kind, deleted.name
            ),
        )
        .about(related(
            &deleted.api_version,
            &deleted.kind,
            &deleted.name,
            &cluster.namespace,
        ))
    }));
    notices.extend(switchover);
    notices.extend(drill.notices);
    notices.extend(redis_switchover);
    notices.extend(events::transitions(&previous.conditions, &next.conditions));
    events::publish(&ctx.recorder, &reference, &notices).await;

    tracing::debug!(
        workloads = applied.objects.len(),
        orphans_deleted = applied.deleted.len(),
        status_written = written,
        "reconciled"
    );
    let ready = conditions::is_true(&next.conditions, READY) == Some(true);
    Ok(Action::requeue(if drill_running {
        DRILL_REQUEUE
    } else if ready {
        STEADY_REQUEUE
    } else {
        PROGRESS_REQUEUE
    }))
}

/// The topics this cluster manages: those its status lists (declared or retained).
fn managed_topics(previous: &ShanraqClusterStatus) -> std::collections::BTreeSet<String> {
    previous
        .kafka
        .iter()
        .flat_map(|kafka| kafka.topics.iter().map(|topic| topic.name.clone()))
        .collect()
}

/// The children applied in full (with the generated Secrets ensured first), or only the
/// workloads read back when the last full apply of this same rendering still holds. Returns the
/// Secrets created and what was applied or read.
async fn apply_or_read(
    ctx: &Context,
    cluster: &ValidCluster,
    rendered: &shanraq_render::Rendered,
    monitoring_available: bool,
) -> Result<(Vec<String>, apply::Applied), Error> {
    let key = key_of(cluster);
    let secret_names: Vec<String> = rendered.secrets.iter().map(|t| t.name.clone()).collect();
    let digest = applied::digest(&rendered.children, &secret_names, monitoring_available);
    if let Some(workloads) = ctx
        .applied
        .holds(&key, &cluster.uid, digest, Instant::now())
        && let Some(read) = apply::read_workloads(
            &ctx.client,
            cluster,
            &ctx.owned_kinds,
            &workloads,
            |object| ctx.applied.still_ours(&key, object),
        )
        .await?
    {
        ctx.metrics.count_child_round("read");
        return Ok((Vec::new(), read));
    }
    // A full apply replaces the mark; one that fails leaves none that holds, so the next round
    // applies in full again.
    ctx.applied.begin(&key);
    let ensured = secrets::ensure(&ctx.client, cluster, &rendered.secrets).await?;
    let applied = apply::run(
        &ctx.client,
        cluster,
        &rendered.children,
        &ctx.owned_kinds,
        monitoring_available,
    )
    .await?;
    ctx.applied.record(
        &key,
        &cluster.uid,
        digest,
        &applied.objects,
        &ensured.versions,
        Instant::now(),
    );
    ctx.metrics.count_child_round("apply");
    // Only the workloads' status is read from here on; the rest (ConfigMaps with whole
    // configurations and dashboards among them) need not stay in memory until the status write.
    let mut applied = applied;
    applied.objects.retain(|object| {
        object
            .types
            .as_ref()
            .is_some_and(|t| applied::WORKLOAD_KINDS.contains(&t.kind.as_str()))
    });
    Ok((ensured.created, applied))
}

fn related(api_version: &str, kind: &str, name: &str, namespace: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.to_owned()),
        kind: Some(kind.to_owned()),
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        ..ObjectReference::default()
    }
}

/// The ShanraqCluster as the subject of Events (no resourceVersion: it changes every write).
fn cluster_reference(object: &ShanraqCluster) -> ObjectReference {
    ObjectReference {
        resource_version: None,
        ..object.object_ref(&())
    }
}

/// What bounds data loss now, from the HA task's last sample of the instances; `None` while
/// nothing was sampled.
fn measure_rpo(
    ctx: &Context,
    cluster: &ValidCluster,
    previous: &ShanraqClusterStatus,
) -> Option<RpoMeasurement> {
    if !cluster.spec.postgres.enabled {
        return None;
    }
    let key = format!("{}/{}", cluster.namespace, cluster.name);
    let sample = ctx.ha.sample(&key)?;
    if sample.is_empty() {
        return None;
    }
    let primary = designated_primary(ctx, &key, previous);
    let mode = crate::engines::postgres::spec::engine_config(cluster).replication;
    let fresh = ha_objectives::rpo_measurement(mode, primary.as_deref(), &sample);
    Some(ctx.ha.publishable_rpo(&key, cluster, fresh))
}

/// The `shanraq.org/config-hash` of the rendered PostgreSQL pod template.
fn postgres_config_hash(
    cluster: &ValidCluster,
    rendered: &shanraq_render::Rendered,
) -> Option<String> {
    template_hash(cluster, rendered, shanraq_api::names::Component::Postgres)
}

/// The configuration hash of the Kafka pods' template (controllers and brokers share it).
fn kafka_config_hash(
    cluster: &ValidCluster,
    rendered: &shanraq_render::Rendered,
) -> Option<String> {
    template_hash(
        cluster,
        rendered,
        shanraq_api::names::Component::KafkaBroker,
    )
}

fn template_hash(
    cluster: &ValidCluster,
    rendered: &shanraq_render::Rendered,
    component: shanraq_api::names::Component,
) -> Option<String> {
    let workload = cluster.names.workload(component);
    rendered.children.iter().find_map(|child| match child {
        shanraq_render::Child::StatefulSet(set)
            if set.metadata.name.as_deref() == Some(&workload) =>
        {
            set.spec
                .template
                .metadata
                .as_ref()?
                .annotations
                .as_ref()?
                .get(shanraq_api::names::ANNOTATION_CONFIG_HASH)
                .cloned()
        }
        _ => None,
    })
}

fn key_of(cluster: &ValidCluster) -> String {
    format!("{}/{}", cluster.namespace, cluster.name)
}

/// The designated primary: the running engine's, else the recorded one.
fn designated_primary(ctx: &Context, key: &str, previous: &ShanraqClusterStatus) -> Option<String> {
    ctx.ha
        .handle(key)
        .and_then(|h| h.state().current_primary.map(|p| p.0))
        .or_else(|| {
            previous
                .postgres
                .as_ref()
                .and_then(|p| p.current_primary.clone())
        })
}

/// What the designated primary last said about WAL archiving and its backups (`spec.backup`).
fn sampled_archive(
    ctx: &Context,
    cluster: &ValidCluster,
    previous: &ShanraqClusterStatus,
) -> Option<super::backup_status::ArchiveObservation> {
    if cluster.spec.backup.is_none() || !cluster.spec.postgres.enabled {
        return None;
    }
    let key = format!("{}/{}", cluster.namespace, cluster.name);
    let primary = designated_primary(ctx, &key, previous)?;
    ctx.ha
        .sample(&key)?
        .iter()
        .find(|status| status.name == primary)
        .map(super::backup_status::ArchiveObservation::of)
}

/// `status.postgres.instances[]` from the HA task's last sample; `None` before the first.
fn sampled_instances(
    ctx: &Context,
    cluster: &ValidCluster,
    previous: &ShanraqClusterStatus,
) -> Option<Vec<shanraq_api::status::PostgresInstanceStatus>> {
    if !cluster.spec.postgres.enabled {
        return None;
    }
    let key = format!("{}/{}", cluster.namespace, cluster.name);
    let sample = ctx.ha.sample(&key)?;
    if sample.is_empty() {
        return None;
    }
    let members: Vec<String> = (0..cluster.spec.postgres.instances)
        .map(|n| {
            cluster
                .names
                .pod(shanraq_api::names::Component::Postgres, n)
        })
        .collect();
    let primary = designated_primary(ctx, &key, previous);
    Some(ha_objectives::instances(
        &members,
        primary.as_deref(),
        &sample,
    ))
}

/// Each component's ready and desired instances in the `shanraq_component_*` gauges, from the
/// workloads just applied (Jobs are not instances).
fn publish_components(ctx: &Context, cluster: &ValidCluster, observed: &Observed) {
    let mut totals: std::collections::BTreeMap<&'static str, (i32, i32)> = Default::default();
    for workload in observed
        .workloads
        .iter()
        .filter(|w| w.kind != status::WorkloadKind::Job)
    {
        let entry = totals.entry(workload.component.as_str()).or_default();
        entry.0 += workload.ready;
        entry.1 += workload.desired;
    }
    for (component, (ready, desired)) in totals {
        ctx.metrics.set_component(
            ComponentLabels {
                cluster: cluster.name.clone(),
                namespace: cluster.namespace.clone(),
                component: component.to_owned(),
            },
            ready,
            desired,
        );
    }
}

/// Mirrors the objective conditions in the `shanraq_objective_*` gauges.
fn publish_objectives(ctx: &Context, cluster: &ValidCluster, observed: &Observed) {
    let labels = |objective: &str| ObjectiveLabels {
        cluster: cluster.name.clone(),
        namespace: cluster.namespace.clone(),
        objective: objective.to_owned(),
    };
    let objectives = &cluster.spec.objectives;
    let projected = status::projected_rto(cluster);
    let rto_target = objectives.rto.as_std();
    let (rto_met, rto_measured) = match observed.last_failover_rto {
        Some(actual) => (
            projected <= rto_target && actual <= rto_target,
            Some(actual.max(projected)),
        ),
        None => (projected <= rto_target, None),
    };
    ctx.metrics
        .set_objective(labels("rto"), Some(rto_target), Some(rto_met), rto_measured);
    let (rpo_met, rpo_measured) = match &observed.rpo {
        Some(measurement) => {
            let verdict = ha_objectives::rpo_condition(cluster, measurement).1;
            let measured = match measurement {
                RpoMeasurement::Synchronous { .. } if verdict.met => Some(Duration::ZERO),
                RpoMeasurement::Asynchronous { lag, .. } => Some(*lag),
                _ => None,
            };
            (Some(verdict.met), measured)
        }
        None => (None, None),
    };
    ctx.metrics.set_objective(
        labels("rpo"),
        Some(objectives.rpo.as_std()),
        rpo_met,
        rpo_measured,
    );
    ctx.metrics.set_objective(
        labels("latency_p99"),
        Some(objectives.latency.p99.as_std()),
        observed.probes.latency.as_ref().map(|v| v.met),
        observed.probes.p99,
    );
    let dr_labels = labels("dr_rpo");
    let archiving = ComponentLabels {
        cluster: cluster.name.clone(),
        namespace: cluster.namespace.clone(),
        component: "postgres".to_owned(),
    };
    if cluster.spec.backup.is_some() {
        let measured = observed
            .archive
            .as_ref()
            .and_then(|archive| super::backup_status::dr_rpo(archive, jiff::Timestamp::now()));
        let target = objectives.dr.rpo.as_std();
        ctx.metrics.set_objective(
            dr_labels,
            Some(target),
            measured.map(|measured| measured <= target),
            measured,
        );
        match observed
            .archive
            .as_ref()
            .and_then(|archive| archive.archiver.as_ref())
        {
            Some(archiver) => {
                ctx.metrics
                    .wal_archiving
                    .get_or_create(&archiving)
                    .set(i64::from(archiver.healthy()));
            }
            None => {
                ctx.metrics.wal_archiving.remove(&archiving);
            }
        }
    } else {
        ctx.metrics.set_objective(dr_labels, None, None, None);
        ctx.metrics.wal_archiving.remove(&archiving);
    }
    // A percentage, not seconds: only whether it is met.
    ctx.metrics.set_objective(
        labels("availability"),
        None,
        observed.probes.availability.as_ref().map(|v| v.met),
        None,
    );
}
