//! The status, computed from what the API server returned for the children this round, and
//! written only when it differs from what is already there.
//!
//! kstatus: `Ready=True` only when every enabled data-plane component (PostgreSQL, Redis, Kafka,
//! HAProxy) reports ready for its own current generation; until then `Reconciling=True`. An
//! invalid spec is `Stalled=True`. Objectives are reported honestly: the RTO can be projected
//! from the failover timings, the rest say `Unknown` until the HA engine measures them.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DynamicObject;
use serde_json::json;
use shanraq_api::conditions::{READY, REASON_INVALID_SPEC, RECONCILING, STALLED};
use shanraq_api::names::{API_VERSION, FIELD_MANAGER, KIND};
use shanraq_api::status::{ObjectiveStatus, ObjectivesStatus};
use shanraq_api::{InvalidSpec, ShanraqCluster, ShanraqClusterStatus, ValidCluster};

use super::error::StatusError;

mod objectives;
#[cfg(test)]
mod tests;
mod workloads;

use objectives::measured_objective_conditions;
pub use objectives::measuring_probes;
pub use objectives::{
    REASON_PROBE_FAILING, REASON_PROBE_NOT_RUNNING, RpoByComponent, objective_conditions,
    projected_rto, rpo_parts, rto_parts,
};
use workloads::monitoring_condition;
pub use workloads::{Workload, WorkloadKind, component_condition, counts};

/// What promoting a replica costs, from the measured floor (`pg_promote()` ~120 ms, first write
/// ~20 ms) with a margin: used only for the projected RTO.
pub const PROMOTION_ALLOWANCE: Duration = Duration::from_millis(300);

/// Reason of conditions about objectives nothing has measured yet.
pub const REASON_NOT_MEASURED_YET: &str = "NotMeasuredYet";
/// Reason of objective conditions that cannot be measured while a component is turned off.
pub const REASON_NOT_MEASURABLE: &str = "NotMeasurable";
pub const REASON_DISABLED: &str = "Disabled";
pub const REASON_PROMETHEUS_OPERATOR_MISSING: &str = "PrometheusOperatorMissing";

pub use shanraq_api::conditions::{Desired as Want, Truth, merge};

/// Everything observed this round that the conditions depend on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub workloads: Vec<Workload>,
    pub monitoring_available: bool,
    /// What bounds data loss in each component, from its engine's last sample; `None` while
    /// not measured.
    pub rpo: RpoByComponent,
    /// The last unplanned failover's measured RTO (`status.postgres.lastFailover`).
    pub last_failover_rto: Option<Duration>,
    /// The last unplanned Redis failover's measured RTO (`status.redis.lastFailover`).
    pub last_redis_failover_rto: Option<Duration>,
    /// PostgreSQL under `dataDurability: preferred` has fallen back to fewer synchronous
    /// standbys: a failover now waits out the old primary's lease.
    pub postgres_fallen_back: bool,
    /// Latency, availability and client-seen outages from the probes of every critical path.
    pub probes: crate::engines::probes::ProbeVerdicts,
    /// WAL archiving and backups, from the primary's last sampled status (`spec.backup`).
    pub archive: Option<super::backup_status::ArchiveObservation>,
    /// The newest finished ShanraqBackup of the cluster (name, status), when listed.
    pub last_backup: Option<(String, shanraq_api::backup_request::ShanraqBackupStatus)>,
    /// What each engine saw that only the engines read (their own Ready conditions).
    pub engines: crate::engines::observed::EngineViews,
}

impl Observed {
    pub fn from_applied(objects: &[DynamicObject], monitoring_available: bool) -> Self {
        Observed {
            workloads: objects.iter().filter_map(Workload::from_object).collect(),
            monitoring_available,
            rpo: RpoByComponent::default(),
            last_failover_rto: None,
            last_redis_failover_rto: None,
            postgres_fallen_back: false,
            probes: crate::engines::probes::ProbeVerdicts::default(),
            archive: None,
            last_backup: None,
            engines: crate::engines::observed::EngineViews::default(),
        }
    }
}

/// Every condition of a valid cluster, from what was observed this round.
pub fn conditions(cluster: &ValidCluster, observed: &Observed, now: &Time) -> Vec<Want> {
    let components = crate::engines::components::ready_conditions(cluster, observed);
    let waiting: Vec<&str> = components
        .iter()
        .filter(|c| c.truth != Truth::True)
        .map(|c| c.type_)
        .collect();
    let generation = cluster
        .generation
        .map(|g| format!("generation {g}"))
        .unwrap_or_else(|| "the current generation".to_owned());
    let (ready, reconciling) = if waiting.is_empty() {
        (
            Want::new(
                READY,
                Truth::True,
                "Ready",
                format!("every enabled component is ready for {generation}"),
            ),
            Want::new(
                RECONCILING,
                Truth::False,
                "Reconciled",
                format!("{generation} is rolled out"),
            ),
        )
    } else {
        let list = waiting.join(", ");
        (
            Want::new(
                READY,
                Truth::False,
                "ComponentsNotReady",
                format!("waiting for {list}"),
            ),
            Want::new(
                RECONCILING,
                Truth::True,
                "Progressing",
                format!("rolling out {generation}: waiting for {list}"),
            ),
        )
    };
    let stalled = Want::new(
        STALLED,
        Truth::False,
        "SpecValid",
        "the spec passed validation",
    );
    let mut wants = vec![ready, reconciling, stalled];
    wants.extend(components);
    wants.push(monitoring_condition(cluster, observed));
    wants.extend(measured_objective_conditions(cluster, observed));
    wants.extend(super::backup_status::conditions(cluster, observed.archive.as_ref(), now.0).0);
    wants.extend(super::backup_status::last_backup_condition(
        cluster,
        observed.last_backup.as_ref(),
    ));
    wants
}

/// The next status of a valid cluster: `previous` with conditions, workload counts and
/// objectives replaced. Fields this computation does not own (the failover state under
/// `postgres`) are carried over unchanged.
pub fn desired(
    previous: &ShanraqClusterStatus,
    cluster: &ValidCluster,
    observed: &Observed,
    now: &Time,
) -> ShanraqClusterStatus {
    // Availability and latency describe a serving cluster: before it was first Ready, failed
    // write probes measure the bootstrap, not an outage, and the objectives stay Unknown.
    let gated;
    let observed = if measuring_probes(previous) {
        observed
    } else {
        // Probes the operator cannot run at all are said at once, though: waiting for Ready
        // would not make them run.
        gated = Observed {
            probes: crate::engines::probes::ProbeVerdicts {
                trouble: observed
                    .probes
                    .trouble
                    .iter()
                    .filter(|(_, trouble)| {
                        matches!(trouble, crate::engines::probes::ProbeTrouble::NotRunning(_))
                    })
                    .cloned()
                    .collect(),
                ..crate::engines::probes::ProbeVerdicts::default()
            },
            ..observed.clone()
        };
        &gated
    };
    let wants = conditions(cluster, observed, now);
    let mut next = previous.clone();
    next.observed_generation = cluster.generation;
    next.conditions = merge(&previous.conditions, &wants, cluster.generation, now);

    crate::engines::components::status(&mut next, previous, cluster, observed);

    let mut objectives = previous.objectives.clone().unwrap_or_default();
    let decisive = |parts: Vec<shanraq_ha::objectives::Part>| {
        shanraq_ha::objectives::combine(&parts)
            .decisive
            .map(|(component, verdict)| ObjectiveStatus {
                target: verdict.target,
                measured: verdict.measured,
                met: verdict.met,
                component: Some(component.to_owned()),
            })
    };
    objectives.rto = decisive(objectives::rto_parts(cluster, observed));
    // The RPO figure is kept while nothing new was measured (a sample may be missed), and
    // dropped when no enabled component has one to give.
    match decisive(objectives::rpo_parts(cluster, observed)) {
        Some(rpo) => objectives.rpo = Some(rpo),
        None if cluster.spec.objective_components().is_empty() => objectives.rpo = None,
        None => {}
    }
    let shown = |verdict: &shanraq_ha::objectives::ObjectiveStatus| ObjectiveStatus {
        target: verdict.target.clone(),
        measured: verdict.measured.clone(),
        met: verdict.met,
        component: None,
    };
    if objectives::probes_unmeasurable(cluster).is_some() {
        // Nothing measures them any more: an old figure would read as a current one.
        objectives.latency_p99 = None;
        objectives.availability = None;
        objectives.error_budget_remaining = None;
        objectives.probe_paths.clear();
    } else {
        objectives.latency_p99 =
            decisive(objectives::latency_parts(cluster, observed)).or(objectives
                .latency_p99
                .filter(|_| observed.probes.paths.is_empty()));
        if !observed.probes.paths.is_empty() {
            objectives.probe_paths = observed.probes.to_status();
        }
        if let Some(verdict) = &observed.probes.availability {
            objectives.availability = Some(shown(verdict));
            objectives.error_budget_remaining = observed
                .probes
                .budget_remaining
                .map(shanraq_ha::objectives::percent_text);
        }
        // Counts are kept even while nothing measures: a path turned back on resumes them.
        if let Some(ledger) = &observed.probes.ledger {
            objectives.availability_ledger =
                Some(crate::engines::probes::verdicts::ledger_to_status(ledger));
        }
    }
    objectives.dr_rpo =
        super::backup_status::conditions(cluster, observed.archive.as_ref(), now.0).1;
    next.objectives = Some(ObjectivesStatus { ..objectives });
    next.backup =
        super::backup_status::status(cluster, previous.backup.as_ref(), observed.archive.as_ref());
    next
}

/// The status of a cluster whose spec was refused: `Stalled=True` with every field error,
/// `Ready=False`, `Reconciling=False`; every other condition is kept as it was.
pub fn stalled(
    previous: &ShanraqClusterStatus,
    generation: Option<i64>,
    invalid: &InvalidSpec,
    now: &Time,
) -> ShanraqClusterStatus {
    let message = format!("the spec is invalid: {invalid}");
    let wants = [
        Want::new(READY, Truth::False, REASON_INVALID_SPEC, message.clone()),
        Want::new(
            RECONCILING,
            Truth::False,
            REASON_INVALID_SPEC,
            "nothing is applied until the spec is fixed",
        ),
        Want::new(STALLED, Truth::True, REASON_INVALID_SPEC, message),
    ];
    let mut next = previous.clone();
    next.observed_generation = generation;
    next.conditions = merge(&previous.conditions, &wants, generation, now);
    next
}

/// Writes `next` to `/status` with server-side apply, unless it equals `previous`. Returns
/// whether a write happened.
pub async fn write(
    client: &kube::Client,
    cluster: &ShanraqCluster,
    previous: &ShanraqClusterStatus,
    next: &ShanraqClusterStatus,
) -> Result<bool, StatusError> {
    if next == previous {
        return Ok(false);
    }
    let name = cluster.name_any();
    let namespace = cluster.namespace().unwrap_or_default();
    let api: Api<ShanraqCluster> = Api::namespaced(client.clone(), &namespace);
    // The failover fields under `status.postgres` belong to the HA task (its own field
    // manager, resourceVersion-checked writes): this writer neither owns nor resends them.
    let mut status = serde_json::to_value(next).unwrap_or_else(|_| json!({}));
    crate::engines::components::strip_engine_fields(&mut status);
    let patch = json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| StatusError::Patch {
        namespace,
        name,
        source,
    })?;
    Ok(true)
}
