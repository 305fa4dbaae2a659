//! What a reconcile tells the world once the status is written: the objective and component
//! gauges of `/metrics`, and the Events (Secrets created, orphans deleted, the engines'
//! requests, condition transitions).

use k8s_openapi::api::core::v1::ObjectReference;
use shanraq_api::{ShanraqClusterStatus, ValidCluster};

use super::dereference::Known;
use super::events::{self, Notice};
use super::status::{self, Observed};
use super::{Context, apply};
use crate::metrics::{ComponentLabels, ObjectiveLabels};

/// The gauges of this cluster.
pub fn metrics(ctx: &Context, cluster: &ValidCluster, observed: &Observed) {
    publish_objectives(ctx, cluster, observed);
    publish_components(ctx, cluster, observed);
}

/// The Events of this reconcile, about the cluster or the object concerned: the Secrets
/// `created`, the orphans `applied` deleted, the engines' `requested` ones, and the condition
/// transitions from the previous status to `next`.
pub async fn events(
    ctx: &Context,
    known: &Known,
    cluster: &ValidCluster,
    created: &[String],
    applied: &apply::Applied,
    requested: Vec<Notice>,
    next: &ShanraqClusterStatus,
) {
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
    notices.extend(requested);
    notices.extend(events::transitions(
        &known.previous.conditions,
        &next.conditions,
    ));
    events::publish(&ctx.recorder, &known.reference, &notices).await;
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
    // The worst component's target and figure, as the condition's status figure.
    let rto = shanraq_ha::objectives::combine(&status::rto_parts(cluster, observed));
    let worst_target = |combined: &shanraq_ha::objectives::Combined| {
        combined
            .decisive
            .as_ref()
            .and_then(|(_, verdict)| verdict.target.parse::<shanraq_api::Duration>().ok())
            .map(shanraq_api::Duration::as_std)
    };
    ctx.metrics.set_objective(
        labels("rto"),
        worst_target(&rto).or(Some(objectives.rto.as_std())),
        rto.met,
        rto.measured,
    );
    let rpo = shanraq_ha::objectives::combine(&status::rpo_parts(cluster, observed));
    ctx.metrics.set_objective(
        labels("rpo"),
        worst_target(&rpo).or(Some(objectives.rpo.as_std())),
        rpo.met,
        rpo.measured,
    );
    ctx.metrics.set_objective(
        labels("latency_p99"),
        Some(objectives.latency.p99.as_std()),
        observed.probes.latency_met(),
        observed.probes.worst_p99(),
    );
    for path in crate::engines::probes::ProbePath::ALL {
        let p99 = observed
            .probes
            .paths
            .iter()
            .find(|p| p.path == path)
            .and_then(|p| p.figures.p99);
        ctx.metrics
            .set_probe_p99(&cluster.name, &cluster.namespace, path.name(), p99);
    }
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
    // A percentage, not seconds: whether it is met, and the SLO's ratio and budget left.
    ctx.metrics.set_objective(
        labels("availability"),
        None,
        observed.probes.availability.as_ref().map(|v| v.met),
        None,
    );
    let measured = observed.probes.availability.is_some();
    ctx.metrics.set_availability_slo(
        &labels("availability"),
        observed.probes.availability_ratio.filter(|_| measured),
        observed.probes.budget_remaining.filter(|_| measured),
    );
}
