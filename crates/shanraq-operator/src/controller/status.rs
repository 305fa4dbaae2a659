//! The status, computed from what the API server returned for the children this round, and
//! written only when it differs from what is already there.
//!
//! kstatus: `Ready=True` only when every enabled data-plane component (PostgreSQL, Redis, Kafka,
//! HAProxy) reports ready for its own current generation; until then `Reconciling=True`. An
//! invalid spec is `Stalled=True`. Objectives are reported honestly: the RTO can be projected
//! from the failover timings, the rest say `Unknown` until the HA engine measures them.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DynamicObject;
use serde_json::json;
use shanraq_api::conditions::{
    AVAILABILITY_MET, HAPROXY_READY, KAFKA_READY, LATENCY_MET, MONITORING_READY, POSTGRES_READY,
    READY, REASON_INVALID_SPEC, RECONCILING, REDIS_READY, RPO_MET, RTO_MET, STALLED,
};
use shanraq_api::names::{API_VERSION, Component, FIELD_MANAGER, KIND, LABEL_COMPONENT};
use shanraq_api::status::{
    ObjectiveStatus, ObjectivesStatus, PostgresInstanceStatus, RedisStatus, WorkloadStatus,
};
use shanraq_api::{InvalidSpec, ShanraqCluster, ShanraqClusterStatus, ValidCluster};

use super::error::StatusError;
use crate::engines::postgres::objectives as ha_objectives;
use crate::engines::postgres::status_map::strip_ha_fields;
use shanraq_ha::objectives::RpoMeasurement;

/// What promoting a replica costs, from the measured floor (`pg_promote()` ~120 ms, first write
/// ~20 ms) with a margin: used only for the projected RTO.
pub const PROMOTION_ALLOWANCE: Duration = Duration::from_millis(300);

/// Reason of conditions about objectives nothing has measured yet.
pub const REASON_NOT_MEASURED_YET: &str = "NotMeasuredYet";
pub const REASON_DISABLED: &str = "Disabled";
pub const REASON_PROMETHEUS_OPERATOR_MISSING: &str = "PrometheusOperatorMissing";

pub use shanraq_api::conditions::{Desired as Want, Truth, merge};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    StatefulSet,
    Deployment,
    /// One-shot work a component needs before it serves (forming a Redis Cluster, creating
    /// Kafka topics): ready once it succeeded.
    Job,
}

/// One applied workload's readiness, read from its own status as the API server returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub component: Component,
    pub kind: WorkloadKind,
    pub name: String,
    pub desired: i32,
    /// StatefulSet `readyReplicas`, Deployment `availableReplicas`, Job `succeeded`.
    pub ready: i32,
    pub updated: i32,
    /// `status.observedGeneration` has caught up with `metadata.generation`: the workload
    /// controller has seen the spec this reconcile applied.
    pub current: bool,
}

fn component_of(object: &DynamicObject) -> Option<Component> {
    let value = object.labels().get(LABEL_COMPONENT)?;
    [
        Component::Postgres,
        Component::Redis,
        Component::KafkaController,
        Component::KafkaBroker,
        Component::HAProxy,
        Component::Monitoring,
    ]
    .into_iter()
    .find(|component| component.as_str() == value)
}

fn caught_up(generation: Option<i64>, observed: Option<i64>) -> bool {
    match (generation, observed) {
        (Some(generation), Some(observed)) => observed >= generation,
        (None, _) => true,
        (Some(_), None) => false,
    }
}

impl Workload {
    /// Reads a StatefulSet or Deployment; `None` for any other kind or an unlabelled object.
    pub fn from_object(object: &DynamicObject) -> Option<Workload> {
        let kind = object.types.as_ref()?.kind.as_str();
        let component = component_of(object)?;
        let value = serde_json::to_value(object).ok()?;
        match kind {
            "StatefulSet" => {
                let set: StatefulSet = serde_json::from_value(value).ok()?;
                let desired = set.spec.replicas.unwrap_or(1);
                let status = set.status.unwrap_or_default();
                Some(Workload {
                    component,
                    kind: WorkloadKind::StatefulSet,
                    name: set.metadata.name.unwrap_or_default(),
                    desired,
                    ready: status.ready_replicas.unwrap_or(0),
                    updated: status.updated_replicas.unwrap_or(0),
                    current: caught_up(set.metadata.generation, status.observed_generation),
                })
            }
            "Deployment" => {
                let deployment: Deployment = serde_json::from_value(value).ok()?;
                let desired = deployment.spec.replicas.unwrap_or(1);
                let status = deployment.status.unwrap_or_default();
                Some(Workload {
                    component,
                    kind: WorkloadKind::Deployment,
                    name: deployment.metadata.name.unwrap_or_default(),
                    desired,
                    ready: status.available_replicas.unwrap_or(0),
                    updated: status.updated_replicas.unwrap_or(0),
                    current: caught_up(deployment.metadata.generation, status.observed_generation),
                })
            }
            "Job" => {
                let job: Job = serde_json::from_value(value).ok()?;
                let status = job.status.unwrap_or_default();
                let succeeded = status.succeeded.unwrap_or(0).min(1);
                Some(Workload {
                    component,
                    kind: WorkloadKind::Job,
                    name: job.metadata.name.unwrap_or_default(),
                    desired: 1,
                    ready: succeeded,
                    updated: succeeded,
                    current: true,
                })
            }
            _ => None,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.current && self.ready >= self.desired && self.updated >= self.desired
    }

    fn describe(&self) -> String {
        if self.kind == WorkloadKind::Job {
            let state = if self.is_ready() {
                "complete"
            } else {
                "not complete yet"
            };
            return format!("Job {}: {state}", self.name);
        }
        let kind = match self.kind {
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::Job => "Job",
        };
        let ready_word = match self.kind {
            WorkloadKind::Deployment => "available",
            WorkloadKind::StatefulSet | WorkloadKind::Job => "ready",
        };
        let mut text = format!(
            "{kind} {}: {}/{} {ready_word}, {}/{} updated",
            self.name, self.ready, self.desired, self.updated, self.desired
        );
        if !self.current {
            text.push_str(", new spec not yet observed");
        }
        text
    }
}

/// Everything observed this round that the conditions depend on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub workloads: Vec<Workload>,
    pub monitoring_available: bool,
    /// What bounds data loss, from the HA task's last sample; `None` while not measured.
    pub rpo: Option<RpoMeasurement>,
    /// The last unplanned failover's measured RTO (`status.postgres.lastFailover`).
    pub last_failover_rto: Option<Duration>,
    /// `status.postgres.instances[]` from the HA task's last sample; `None` while not sampled.
    pub postgres_instances: Option<Vec<PostgresInstanceStatus>>,
    /// Latency and availability from the probes through HAProxy.
    pub probes: ha_objectives::ProbeVerdicts,
    /// Redis cluster mode, as the Redis task last observed it (`status.redis.cluster`).
    pub redis_cluster: Option<shanraq_api::status::RedisClusterStatus>,
    /// WAL archiving and backups, from the primary's last sampled status (`spec.backup`).
    pub archive: Option<super::backup_status::ArchiveObservation>,
    /// The newest finished ShanraqBackup of the cluster (name, status), when listed.
    pub last_backup: Option<(String, shanraq_api::backup_request::ShanraqBackupStatus)>,
    /// What the Kafka task last learnt from the admin API.
    pub kafka: Option<crate::engines::kafka::health::AdminView>,
}

impl Observed {
    pub fn from_applied(objects: &[DynamicObject], monitoring_available: bool) -> Self {
        Observed {
            workloads: objects.iter().filter_map(Workload::from_object).collect(),
            monitoring_available,
            rpo: None,
            last_failover_rto: None,
            postgres_instances: None,
            probes: ha_objectives::ProbeVerdicts::default(),
            redis_cluster: None,
            archive: None,
            last_backup: None,
            kafka: None,
        }
    }
}

fn component_condition(
    type_: &'static str,
    label: &str,
    field: &str,
    enabled: bool,
    components: &[Component],
    observed: &Observed,
) -> Want {
    if !enabled {
        return Want::new(
            type_,
            Truth::True,
            REASON_DISABLED,
            format!("{label} is disabled ({field}.enabled: false)"),
        );
    }
    let workloads: Vec<&Workload> = observed
        .workloads
        .iter()
        .filter(|w| components.contains(&w.component))
        .collect();
    if workloads.is_empty() {
        return Want::new(
            type_,
            Truth::False,
            "WorkloadMissing",
            format!("no {label} workload has been applied yet"),
        );
    }
    let waiting: Vec<String> = workloads
        .iter()
        .filter(|w| !w.is_ready())
        .map(|w| w.describe())
        .collect();
    if waiting.is_empty() {
        let all: Vec<String> = workloads.iter().map(|w| w.describe()).collect();
        Want::new(type_, Truth::True, "Ready", all.join("; "))
    } else {
        Want::new(type_, Truth::False, "Progressing", waiting.join("; "))
    }
}

fn monitoring_condition(cluster: &ValidCluster, observed: &Observed) -> Want {
    let spec = &cluster.spec.monitoring;
    if !spec.any_enabled() {
        return Want::new(
            MONITORING_READY,
            Truth::True,
            REASON_DISABLED,
            "monitoring is disabled (podMonitors, prometheusRules and grafanaDashboards are false)",
        );
    }
    let needs_operator = spec.pod_monitors || spec.prometheus_rules;
    if needs_operator && !observed.monitoring_available {
        return Want::new(
            MONITORING_READY,
            Truth::False,
            REASON_PROMETHEUS_OPERATOR_MISSING,
            "the Prometheus Operator CRDs (podmonitors.monitoring.coreos.com, prometheusrules.monitoring.coreos.com) are not installed, so no PodMonitor or PrometheusRule was created",
        );
    }
    Want::new(
        MONITORING_READY,
        Truth::True,
        "Applied",
        "monitoring objects are applied",
    )
}

/// The RTO the configured timings allow: detection (probe period x failure threshold), the
/// failover delay, promotion, and one routing check (HAProxy checks at the probe period).
pub fn projected_rto(cluster: &ValidCluster) -> Duration {
    let failover = &cluster.spec.failover;
    let probe = failover.probe_period.as_std();
    let threshold = u32::try_from(failover.failure_threshold.max(0)).unwrap_or(0);
    probe * threshold + failover.failover_delay.as_std() + PROMOTION_ALLOWANCE + probe
}

fn seconds_text(duration: Duration) -> String {
    shanraq_api::Duration::from(duration).to_string()
}

/// Whether the probe objectives are judged: once the cluster has been `Ready`, and from then on
/// (a probe objective that left `Unknown` keeps being judged when `Ready` later turns False).
fn measuring_probes(previous: &ShanraqClusterStatus) -> bool {
    previous.conditions.iter().any(|c| {
        (c.type_ == READY && c.status == "True")
            || ((c.type_ == AVAILABILITY_MET || c.type_ == LATENCY_MET) && c.status != "Unknown")
    })
}

/// The objective conditions. Only the RTO can be judged without a measurement (from the
/// configured timings); the others are `Unknown` until the HA engine measures them.
pub fn objective_conditions(cluster: &ValidCluster) -> Vec<Want> {
    let objectives = &cluster.spec.objectives;
    let failover = &cluster.spec.failover;
    let projected = projected_rto(cluster);
    let target = objectives.rto.as_std();
    let rto_met = projected <= target;
    let rto_message = format!(
        "projected RTO {} (detection {} x {}, failover delay {}, promotion {}, one routing check {}) {} target {}; no failover measured yet",
        seconds_text(projected),
        failover.probe_period,
        failover.failure_threshold,
        failover.failover_delay,
        seconds_text(PROMOTION_ALLOWANCE),
        failover.probe_period,
        if rto_met { "<=" } else { ">" },
        objectives.rto,
    );
    vec![
        Want::new(
            RPO_MET,
            Truth::Unknown,
            REASON_NOT_MEASURED_YET,
            format!(
                "target {}; replication lag has not been measured yet",
                objectives.rpo
            ),
        ),
        Want::new(
            RTO_MET,
            Truth::of(rto_met),
            if rto_met {
                "ProjectedWithinTarget"
            } else {
                "ProjectedOverTarget"
            },
            rto_message,
        ),
        Want::new(
            LATENCY_MET,
            Truth::Unknown,
            REASON_NOT_MEASURED_YET,
            format!(
                "target p99 {}; probe latency is measured once the cluster has first been Ready",
                objectives.latency.p99
            ),
        ),
        Want::new(
            AVAILABILITY_MET,
            Truth::Unknown,
            REASON_NOT_MEASURED_YET,
            format!(
                "target {}%; write probes are measured once the cluster has first been Ready",
                objectives.availability
            ),
        ),
    ]
}

/// Every condition of a valid cluster, from what was observed this round.
pub fn conditions(cluster: &ValidCluster, observed: &Observed, now: &Time) -> Vec<Want> {
    let spec = &cluster.spec;
    let components = [
        component_condition(
            POSTGRES_READY,
            "PostgreSQL",
            "postgres",
            spec.postgres.enabled,
            &[Component::Postgres],
            observed,
        ),
        crate::engines::redis::objectives::cluster_condition(
            component_condition(
                REDIS_READY,
                "Redis",
                "redis",
                spec.redis.enabled,
                &[Component::Redis],
                observed,
            ),
            observed.redis_cluster.as_ref(),
        ),
        crate::engines::kafka::health::kafka_condition(
            component_condition(
                KAFKA_READY,
                "Kafka",
                "kafka",
                spec.kafka.enabled,
                &[Component::KafkaController, Component::KafkaBroker],
                observed,
            ),
            cluster,
            observed.kafka.as_ref(),
        ),
        component_condition(
            HAPROXY_READY,
            "HAProxy",
            "haproxy",
            spec.haproxy.enabled,
            &[Component::HAProxy],
            observed,
        ),
    ];
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

/// The objective conditions, with RPO and RTO judged from measurements when there are some.
fn measured_objective_conditions(cluster: &ValidCluster, observed: &Observed) -> Vec<Want> {
    let mut wants = objective_conditions(cluster);
    for want in &mut wants {
        if want.type_ == RPO_MET
            && cluster.spec.postgres.enabled
            && let Some(measurement) = &observed.rpo
        {
            *want = ha_objectives::rpo_condition(cluster, measurement).0;
        }
        if want.type_ == RTO_MET
            && let Some(actual) = observed.last_failover_rto
        {
            *want = ha_objectives::rto_condition(cluster, actual).0;
        }
        if want.type_ == LATENCY_MET
            && let Some(verdict) = &observed.probes.latency
        {
            *want = ha_objectives::probe_condition(LATENCY_MET, verdict);
        }
        if want.type_ == AVAILABILITY_MET
            && let Some(verdict) = &observed.probes.availability
        {
            *want = ha_objectives::probe_condition(AVAILABILITY_MET, verdict);
        }
    }
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
        gated = Observed {
            probes: ha_objectives::ProbeVerdicts::default(),
            ..observed.clone()
        };
        &gated
    };
    let wants = conditions(cluster, observed, now);
    let mut next = previous.clone();
    next.observed_generation = cluster.generation;
    next.conditions = merge(&previous.conditions, &wants, cluster.generation, now);

    let counts = |components: &[Component]| -> Option<WorkloadStatus> {
        let matching: Vec<&Workload> = observed
            .workloads
            .iter()
            .filter(|w| components.contains(&w.component) && w.kind != WorkloadKind::Job)
            .collect();
        (!matching.is_empty()).then(|| WorkloadStatus {
            ready_replicas: matching.iter().map(|w| w.ready).sum(),
            replicas: matching.iter().map(|w| w.desired).sum(),
        })
    };
    if cluster.spec.postgres.enabled
        && let Some(counts) = counts(&[Component::Postgres])
    {
        next.postgres
            .get_or_insert_with(Default::default)
            .ready_instances = counts.ready_replicas;
    }
    if cluster.spec.postgres.enabled
        && let Some(instances) = &observed.postgres_instances
    {
        next.postgres.get_or_insert_with(Default::default).instances = instances.clone();
    }
    next.redis = if cluster.spec.redis.enabled {
        // The Redis engine owns everything but the counts (it writes them with its state).
        counts(&[Component::Redis]).map(|counts| RedisStatus {
            ready_instances: counts.ready_replicas,
            ..previous.redis.clone().unwrap_or_default()
        })
    } else {
        None
    };
    next.kafka = if cluster.spec.kafka.enabled {
        counts(&[Component::KafkaController, Component::KafkaBroker]).map(|counts| {
            crate::engines::kafka::health::kafka_status(
                counts,
                observed.kafka.as_ref(),
                previous.kafka.as_ref(),
            )
        })
    } else {
        None
    };
    next.haproxy = if cluster.spec.haproxy.enabled {
        counts(&[Component::HAProxy])
    } else {
        None
    };

    let projected = projected_rto(cluster);
    let mut objectives = previous.objectives.clone().unwrap_or_default();
    objectives.rto = Some(match observed.last_failover_rto {
        Some(actual) => {
            let measured = ha_objectives::rto_condition(cluster, actual).1;
            ObjectiveStatus {
                target: cluster.spec.objectives.rto.to_string(),
                measured: measured.measured,
                met: measured.met,
            }
        }
        None => ObjectiveStatus {
            target: cluster.spec.objectives.rto.to_string(),
            measured: format!("{} (projected)", seconds_text(projected)),
            met: projected <= cluster.spec.objectives.rto.as_std(),
        },
    });
    if cluster.spec.postgres.enabled
        && let Some(measurement) = &observed.rpo
    {
        let measured = ha_objectives::rpo_condition(cluster, measurement).1;
        objectives.rpo = Some(ObjectiveStatus {
            target: cluster.spec.objectives.rpo.to_string(),
            measured: measured.measured,
            met: measured.met,
        });
    }
    let shown = |verdict: &shanraq_ha::objectives::ObjectiveStatus| ObjectiveStatus {
        target: verdict.target.clone(),
        measured: verdict.measured.clone(),
        met: verdict.met,
    };
    if let Some(verdict) = &observed.probes.latency {
        objectives.latency_p99 = Some(shown(verdict));
    }
    if let Some(verdict) = &observed.probes.availability {
        objectives.availability = Some(shown(verdict));
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
    strip_ha_fields(&mut status);
    crate::engines::redis::status_map::strip_ha_fields(&mut status);
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use shanraq_api::names::Names;
    use shanraq_api::{LiveState, ShanraqClusterSpec};

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid timestamp"))
    }

    fn cluster(spec: ShanraqClusterSpec, generation: i64) -> ValidCluster {
        let mut object = ShanraqCluster::new("payments", spec);
        object.metadata.namespace = Some("fintech".into());
        object.metadata.generation = Some(generation);
        shanraq_api::validate(&object, &LiveState::default()).expect("valid test cluster")
    }

    fn workload(component: Component, ready: i32, updated: i32, current: bool) -> Workload {
        let kind = if component == Component::HAProxy {
            WorkloadKind::Deployment
        } else {
            WorkloadKind::StatefulSet
        };
        Workload {
            component,
            kind,
            name: Names::new("payments").workload(component),
            desired: 3,
            ready,
            updated,
            current,
        }
    }

    fn all_ready() -> Vec<Workload> {
        [
            Component::Postgres,
            Component::Redis,
            Component::KafkaController,
            Component::KafkaBroker,
            Component::HAProxy,
        ]
        .into_iter()
        .map(|c| workload(c, 3, 3, true))
        .collect()
    }

    fn find<'a>(wants: &'a [Want], type_: &str) -> &'a Want {
        wants
            .iter()
            .find(|w| w.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition in {wants:#?}"))
    }

    #[test]
    fn readiness_table() {
        struct Case {
            name: &'static str,
            change: fn(&mut Vec<Workload>),
            spec: fn(&mut ShanraqClusterSpec),
            ready: Truth,
            component: (&'static str, Truth, &'static str),
        }
        let cases = [
            Case {
                name: "every workload ready",
                change: |_| {},
                spec: |_| {},
                ready: Truth::True,
                component: (POSTGRES_READY, Truth::True, "Ready"),
            },
            Case {
                name: "a PostgreSQL replica not ready",
                change: |w| w[0].ready = 2,
                spec: |_| {},
                ready: Truth::False,
                component: (POSTGRES_READY, Truth::False, "Progressing"),
            },
            Case {
                name: "rolling update: pods ready but not yet updated",
                change: |w| w[1].updated = 1,
                spec: |_| {},
                ready: Truth::False,
                component: (REDIS_READY, Truth::False, "Progressing"),
            },
            Case {
                name: "new spec not yet observed by the StatefulSet controller",
                change: |w| w[3].current = false,
                spec: |_| {},
                ready: Truth::False,
                component: (KAFKA_READY, Truth::False, "Progressing"),
            },
            Case {
                name: "HAProxy Deployment not available",
                change: |w| w[4].ready = 0,
                spec: |_| {},
                ready: Truth::False,
                component: (HAPROXY_READY, Truth::False, "Progressing"),
            },
            Case {
                name: "Redis Cluster not formed yet: its Job has not succeeded",
                change: |w| {
                    w.push(Workload {
                        component: Component::Redis,
                        kind: WorkloadKind::Job,
                        name: "payments-redis-cluster-init".into(),
                        desired: 1,
                        ready: 0,
                        updated: 0,
                        current: true,
                    })
                },
                spec: |_| {},
                ready: Truth::False,
                component: (REDIS_READY, Truth::False, "Progressing"),
            },
            Case {
                name: "Kafka workloads missing",
                change: |w| {
                    w.retain(|w| {
                        !matches!(
                            w.component,
                            Component::KafkaBroker | Component::KafkaController
                        )
                    })
                },
                spec: |_| {},
                ready: Truth::False,
                component: (KAFKA_READY, Truth::False, "WorkloadMissing"),
            },
            Case {
                name: "disabled Kafka is ready without workloads",
                change: |w| {
                    w.retain(|w| {
                        !matches!(
                            w.component,
                            Component::KafkaBroker | Component::KafkaController
                        )
                    })
                },
                spec: |s| s.kafka.enabled = false,
                ready: Truth::True,
                component: (KAFKA_READY, Truth::True, REASON_DISABLED),
            },
        ];
        for case in cases {
            let mut spec = ShanraqClusterSpec::default();
            (case.spec)(&mut spec);
            let mut workloads = all_ready();
            (case.change)(&mut workloads);
            let observed = Observed {
                workloads,
                monitoring_available: true,
                ..Observed::default()
            };
            let wants = conditions(
                &cluster(spec, 4),
                &observed,
                &Time(jiff::Timestamp::UNIX_EPOCH),
            );
            let ready = find(&wants, READY);
            assert_eq!(ready.truth, case.ready, "{}: Ready", case.name);
            let reconciling = find(&wants, RECONCILING);
            let expect_reconciling = if case.ready == Truth::True {
                Truth::False
            } else {
                Truth::True
            };
            assert_eq!(
                reconciling.truth, expect_reconciling,
                "{}: Reconciling is the opposite of Ready",
                case.name
            );
            assert_eq!(find(&wants, STALLED).truth, Truth::False, "{}", case.name);
            let (type_, truth, reason) = case.component;
            let condition = find(&wants, type_);
            assert_eq!(condition.truth, truth, "{}: {type_}", case.name);
            assert_eq!(condition.reason, reason, "{}: {type_}", case.name);
            if case.ready == Truth::False {
                assert!(
                    ready.message.contains(type_),
                    "{}: Ready names the waiting component: {}",
                    case.name,
                    ready.message
                );
            } else {
                assert!(ready.message.contains("generation 4"), "{}", ready.message);
            }
        }
    }

    #[test]
    fn monitoring_without_the_prometheus_operator() {
        let observed = Observed {
            workloads: all_ready(),
            monitoring_available: false,
            ..Observed::default()
        };
        let wants = conditions(
            &cluster(ShanraqClusterSpec::default(), 1),
            &observed,
            &Time(jiff::Timestamp::UNIX_EPOCH),
        );
        let monitoring = find(&wants, MONITORING_READY);
        assert_eq!(monitoring.truth, Truth::False);
        assert_eq!(monitoring.reason, REASON_PROMETHEUS_OPERATOR_MISSING);
        assert_eq!(
            find(&wants, READY).truth,
            Truth::True,
            "missing Prometheus Operator CRDs do not hold the data plane back"
        );

        let mut spec = ShanraqClusterSpec::default();
        spec.monitoring.pod_monitors = false;
        spec.monitoring.prometheus_rules = false;
        spec.monitoring.grafana_dashboards = false;
        let wants = conditions(
            &cluster(spec, 1),
            &observed,
            &Time(jiff::Timestamp::UNIX_EPOCH),
        );
        let monitoring = find(&wants, MONITORING_READY);
        assert_eq!(
            (monitoring.truth, monitoring.reason.as_str()),
            (Truth::True, REASON_DISABLED)
        );
    }

    #[test]
    fn objectives_are_projected_or_unknown_never_invented() {
        let wants = objective_conditions(&cluster(ShanraqClusterSpec::default(), 1));
        // 250ms x 3 + 0s + 300ms + 250ms
        let rto = find(&wants, RTO_MET);
        assert_eq!(rto.truth, Truth::True);
        assert!(
            rto.message.starts_with("projected RTO 1s300ms"),
            "{}",
            rto.message
        );
        assert!(rto.message.contains("target 30s"), "{}", rto.message);
        for type_ in [RPO_MET, LATENCY_MET, AVAILABILITY_MET] {
            let want = find(&wants, type_);
            assert_eq!(want.truth, Truth::Unknown, "{type_}");
            assert_eq!(want.reason, REASON_NOT_MEASURED_YET, "{type_}");
        }

        let mut spec = ShanraqClusterSpec::default();
        spec.objectives.rto = "1s".parse().expect("duration");
        spec.failover.failover_delay = "2s".parse().expect("duration");
        let wants = objective_conditions(&cluster(spec, 1));
        let rto = find(&wants, RTO_MET);
        assert_eq!(
            (rto.truth, rto.reason.as_str()),
            (Truth::False, "ProjectedOverTarget")
        );
        assert!(rto.message.contains("> target 1s"), "{}", rto.message);
    }

    #[test]
    fn probe_objectives_stay_unknown_until_the_cluster_was_first_ready() {
        let valid = cluster(ShanraqClusterSpec::default(), 1);
        let failing = ha_objectives::ProbeVerdicts {
            latency: None,
            availability: Some(shanraq_ha::objectives::ObjectiveStatus {
                target: "99.99%".into(),
                measured: "0 of 2 write probes succeeded".into(),
                met: false,
                message: "0 of 2 write probes succeeded (target 99.99%)".into(),
            }),
            p99: None,
        };
        let observed = |ready: bool| Observed {
            workloads: if ready {
                all_ready()
            } else {
                vec![workload(Component::Postgres, 0, 3, true)]
            },
            probes: failing.clone(),
            ..Observed::default()
        };
        let availability = |status: &ShanraqClusterStatus| {
            status
                .conditions
                .iter()
                .find(|c| c.type_ == AVAILABILITY_MET)
                .map(|c| c.status.clone())
        };
        // Bootstrapping: the failed probes are not an outage.
        let booting = desired(
            &ShanraqClusterStatus::default(),
            &valid,
            &observed(false),
            &at(10),
        );
        assert_eq!(availability(&booting).as_deref(), Some("Unknown"));
        assert!(
            booting
                .objectives
                .as_ref()
                .and_then(|o| o.availability.as_ref())
                .is_none()
        );
        // Ready once: from the next round on, probes are judged.
        let ready = desired(&booting, &valid, &observed(true), &at(20));
        assert_eq!(availability(&ready).as_deref(), Some("Unknown"));
        let judged = desired(&ready, &valid, &observed(true), &at(30));
        assert_eq!(availability(&judged).as_deref(), Some("False"));
        // ... and keep being judged when the cluster stops being Ready.
        let degraded = desired(&judged, &valid, &observed(false), &at(40));
        assert_eq!(availability(&degraded).as_deref(), Some("False"));
    }

    #[test]
    fn unchanged_observation_gives_an_identical_status() {
        let valid = cluster(ShanraqClusterSpec::default(), 2);
        let observed = Observed {
            workloads: all_ready(),
            monitoring_available: true,
            ..Observed::default()
        };
        let first = desired(&ShanraqClusterStatus::default(), &valid, &observed, &at(10));
        let second = desired(&first, &valid, &observed, &at(20));
        assert_eq!(
            first, second,
            "a later reconcile with nothing new changes nothing"
        );
        for condition in &first.conditions {
            assert_eq!(
                condition.observed_generation,
                Some(2),
                "{}",
                condition.type_
            );
        }
        assert_eq!(first.observed_generation, Some(2));
    }

    #[test]
    fn transition_time_moves_only_on_flips() {
        let valid = cluster(ShanraqClusterSpec::default(), 1);
        let mut workloads = all_ready();
        workloads[0].ready = 1;
        let waiting = Observed {
            workloads,
            monitoring_available: true,
            ..Observed::default()
        };
        let first = desired(&ShanraqClusterStatus::default(), &valid, &waiting, &at(10));
        let ready_at = |status: &ShanraqClusterStatus| {
            status
                .conditions
                .iter()
                .find(|c| c.type_ == READY)
                .map(|c| (c.status.clone(), c.last_transition_time.clone()))
        };
        let done = Observed {
            workloads: all_ready(),
            monitoring_available: true,
            ..Observed::default()
        };
        let second = desired(&first, &valid, &done, &at(20));
        assert_eq!(ready_at(&first), Some(("False".into(), at(10))));
        assert_eq!(ready_at(&second), Some(("True".into(), at(20))));
        let rto_time = |status: &ShanraqClusterStatus| {
            status
                .conditions
                .iter()
                .find(|c| c.type_ == RTO_MET)
                .map(|c| c.last_transition_time.clone())
        };
        assert_eq!(rto_time(&second), Some(at(10)), "RTOMet did not flip");
    }

    #[test]
    fn invalid_spec_stalls_and_keeps_other_conditions() {
        let valid = cluster(ShanraqClusterSpec::default(), 1);
        let before = desired(
            &ShanraqClusterStatus::default(),
            &valid,
            &Observed {
                workloads: all_ready(),
                monitoring_available: true,
                ..Observed::default()
            },
            &at(1),
        );
        let invalid = InvalidSpec {
            errors: vec![shanraq_api::admission::FieldError {
                field: "spec.kafka.controllers".into(),
                message: "kafka.controllers must be odd".into(),
            }],
        };
        let after = stalled(&before, Some(2), &invalid, &at(5));
        let get = |type_: &str| {
            after
                .conditions
                .iter()
                .find(|c| c.type_ == type_)
                .unwrap_or_else(|| panic!("{type_}"))
        };
        assert_eq!(get(STALLED).status, "True");
        assert_eq!(get(STALLED).reason, REASON_INVALID_SPEC);
        assert!(get(STALLED).message.contains("spec.kafka.controllers"));
        assert_eq!(get(READY).status, "False");
        assert_eq!(get(RECONCILING).status, "False");
        assert_eq!(get(STALLED).observed_generation, Some(2));
        assert_eq!(after.observed_generation, Some(2));
        assert_eq!(get(POSTGRES_READY).status, "True", "kept as it was");
    }

    #[test]
    fn workloads_are_read_from_their_own_status() {
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {
                "name": "payments-pg",
                "generation": 3,
                "labels": { LABEL_COMPONENT: "postgres" }
            },
            "spec": { "replicas": 3, "selector": {}, "template": {}, "serviceName": "payments-pg" },
            "status": { "replicas": 3, "readyReplicas": 3, "updatedReplicas": 3, "observedGeneration": 2 }
        }))
        .expect("object");
        let workload = Workload::from_object(&object).expect("a StatefulSet");
        assert_eq!(workload.component, Component::Postgres);
        assert!(!workload.current, "observedGeneration 2 < generation 3");
        assert!(!workload.is_ready());

        let deployment: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "payments-haproxy",
                "generation": 1,
                "labels": { LABEL_COMPONENT: "haproxy" }
            },
            "spec": { "replicas": 2, "selector": {}, "template": {} },
            "status": { "availableReplicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "observedGeneration": 1 }
        }))
        .expect("object");
        let workload = Workload::from_object(&deployment).expect("a Deployment");
        assert!(workload.is_ready());

        let job: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": { "name": "payments-redis-cluster-init-0a1b2c", "labels": { LABEL_COMPONENT: "redis" } },
            "spec": { "template": {} },
            "status": { "active": 1, "failed": 2 }
        }))
        .expect("object");
        let workload = Workload::from_object(&job).expect("a Job");
        assert_eq!(workload.component, Component::Redis);
        assert!(!workload.is_ready(), "a running Job is not done");
    }
}
