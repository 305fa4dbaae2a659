//! `kubectl shanraq status`: what a ShanraqCluster's status and its Pods say, gathered into one
//! report (pure: a cluster object and a Pod list in, a report out) and printed as tables or as
//! JSON. Nothing is estimated here: a value the operator does not report yet is shown as `-`
//! (`null` in JSON), never made up.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use serde::Serialize;
use shanraq_api::ShanraqCluster;
use shanraq_api::conditions::{
    AVAILABILITY_MET, HAPROXY_READY, KAFKA_READY, LATENCY_MET, POSTGRES_READY, READY, REDIS_READY,
    RPO_MET, RTO_MET,
};
use shanraq_api::names::{LABEL_COMPONENT, LABEL_ROLE};
use shanraq_api::status::{DrillStatus, FailoverRecord, ObjectiveStatus};

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub observed_generation: Option<i64>,
    pub ready: Option<ConditionSummary>,
    pub components: Vec<ComponentReport>,
    pub objectives: Vec<ObjectiveReport>,
    /// Each probed critical path's latency and last client-seen outage.
    pub probe_paths: Vec<shanraq_api::status::ProbePathStatus>,
    pub last_failover: Option<FailoverRecord>,
    pub drill: Option<DrillStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionSummary {
    pub status: String,
    pub reason: String,
    pub message: String,
}

impl ConditionSummary {
    fn of(condition: &Condition) -> Self {
        ConditionSummary {
            status: condition.status.clone(),
            reason: condition.reason.clone(),
            message: condition.message.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentReport {
    /// `postgres`, `redis`, `kafka` or `haproxy`.
    pub component: String,
    pub ready_instances: i32,
    pub instances: i32,
    /// The component's `<Component>Ready` condition.
    pub condition: Option<ConditionSummary>,
    /// PostgreSQL only: the designated primary, the fencing epoch and the HA phase.
    pub primary: Option<String>,
    pub epoch: Option<i64>,
    pub phase: Option<String>,
    pub members: Vec<InstanceReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceReport {
    pub name: String,
    /// PostgreSQL: the HA engine's view (`primary`, `replica`, `fenced`, ...); otherwise the
    /// `shanraq.org/role` label or the Kafka process role; `null` when nothing reports one.
    pub role: Option<String>,
    pub ready: bool,
    pub synchronous: Option<bool>,
    pub lag_bytes: Option<i64>,
    pub timeline: Option<i64>,
    /// Replication offset; no component reports one yet.
    pub offset: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectiveReport {
    pub objective: String,
    pub target: String,
    pub measured: Option<String>,
    pub met: Option<bool>,
    /// The `<Objective>Met` condition's message: the measurement in words.
    pub detail: Option<String>,
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pods_of<'a>(pods: &'a [Pod], components: &[&str]) -> Vec<&'a Pod> {
    let mut found: Vec<&Pod> = pods
        .iter()
        .filter(|pod| {
            pod.labels()
                .get(LABEL_COMPONENT)
                .is_some_and(|c| components.contains(&c.as_str()))
        })
        .collect();
    found.sort_by_key(|pod| pod.name_any());
    found
}

fn plain_member(pod: &Pod, role: Option<String>) -> InstanceReport {
    InstanceReport {
        name: pod.name_any(),
        role,
        ready: pod_ready(pod),
        synchronous: None,
        lag_bytes: None,
        timeline: None,
        offset: None,
    }
}

/// The report of `cluster` with its `pods` (those labelled `shanraq.org/cluster=<name>`).
pub fn build(cluster: &ShanraqCluster, pods: &[Pod]) -> StatusReport {
    let status = cluster.status.clone().unwrap_or_default();
    let spec = &cluster.spec;
    let conditions = status.conditions.as_slice();
    let summary = |type_: &str| condition(conditions, type_).map(ConditionSummary::of);
    let mut components = Vec::new();

    if spec.postgres.enabled {
        let pg = status.postgres.clone().unwrap_or_default();
        let pg_pods = pods_of(pods, &["postgres"]);
        let mut names: Vec<String> = pg_pods.iter().map(|p| p.name_any()).collect();
        names.extend(pg.instances.iter().map(|i| i.name.clone()));
        names.sort();
        names.dedup();
        let members = names
            .iter()
            .map(|name| {
                let pod = pg_pods.iter().find(|p| p.name_any() == *name);
                let seen = pg.instances.iter().find(|i| i.name == *name);
                InstanceReport {
                    name: name.clone(),
                    role: seen
                        .map(|i| i.role.clone())
                        .or_else(|| pod.and_then(|p| p.labels().get(LABEL_ROLE).cloned())),
                    ready: seen.map_or_else(|| pod.is_some_and(|p| pod_ready(p)), |i| i.ready),
                    synchronous: seen.map(|i| i.synchronous),
                    lag_bytes: seen.and_then(|i| i.lag_bytes),
                    timeline: seen.and_then(|i| i.timeline),
                    offset: None,
                }
            })
            .collect();
        components.push(ComponentReport {
            component: "postgres".into(),
            ready_instances: pg.ready_instances,
            instances: spec.postgres.instances,
            condition: summary(POSTGRES_READY),
            primary: pg.current_primary.clone(),
            epoch: Some(pg.epoch),
            phase: pg.phase.clone(),
            members,
        });
    }
    if spec.redis.enabled {
        let redis = status.redis.clone().unwrap_or_default();
        let redis_pods = pods_of(pods, &["redis"]);
        // Replication mode: the engine's current master, and every other pod is its replica
        // (the engine starts each pod as one). Cluster mode has a master per shard, known by
        // address only, so only a pod's own label says.
        let replication = spec.redis.mode != shanraq_api::redis::RedisMode::Cluster;
        let role_of = |pod: &Pod| -> Option<String> {
            if let Some(label) = pod.labels().get(LABEL_ROLE) {
                return Some(label.clone());
            }
            let master = redis.current_master.as_ref().filter(|_| replication)?;
            Some(
                if *master == pod.name_any() {
                    "master"
                } else {
                    "replica"
                }
                .to_owned(),
            )
        };
        components.push(ComponentReport {
            component: "redis".into(),
            ready_instances: redis.ready_instances,
            instances: i32::try_from(redis_pods.len()).unwrap_or(i32::MAX),
            condition: summary(REDIS_READY),
            primary: redis.current_master.clone(),
            epoch: (redis.epoch > 0).then_some(redis.epoch),
            phase: redis.phase.clone(),
            members: redis_pods
                .iter()
                .map(|pod| plain_member(pod, role_of(pod)))
                .collect(),
        });
    }
    if spec.kafka.enabled {
        let kafka = status.kafka.clone().unwrap_or_default();
        components.push(ComponentReport {
            component: "kafka".into(),
            ready_instances: kafka.ready_replicas,
            instances: kafka.replicas,
            condition: summary(KAFKA_READY),
            primary: None,
            epoch: None,
            phase: None,
            members: pods_of(pods, &["kafka-controller", "kafka-broker"])
                .iter()
                .map(|pod| {
                    let role = pod
                        .labels()
                        .get(LABEL_COMPONENT)
                        .map(|c| c.trim_start_matches("kafka-").to_owned());
                    plain_member(pod, role)
                })
                .collect(),
        });
    }
    if spec.haproxy.enabled {
        let haproxy = status.haproxy.clone().unwrap_or_default();
        components.push(ComponentReport {
            component: "haproxy".into(),
            ready_instances: haproxy.ready_replicas,
            instances: haproxy.replicas,
            condition: summary(HAPROXY_READY),
            primary: None,
            epoch: None,
            phase: None,
            members: pods_of(pods, &["haproxy"])
                .iter()
                .map(|pod| plain_member(pod, None))
                .collect(),
        });
    }

    let measured = status.objectives.clone().unwrap_or_default();
    let objective = |name: &str, target: String, seen: Option<&ObjectiveStatus>, type_: &str| {
        let detail = condition(conditions, type_).map(|c| c.message.clone());
        ObjectiveReport {
            objective: name.to_owned(),
            target: seen.map_or(target, |s| s.target.clone()),
            // The status's figure is the worst component's: name it.
            measured: seen.map(|s| match &s.component {
                Some(component) => format!("{} ({component})", s.measured),
                None => s.measured.clone(),
            }),
            met: seen.map(|s| s.met),
            detail,
        }
    };
    let objectives = vec![
        objective(
            "rpo",
            spec.objectives.rpo.to_string(),
            measured.rpo.as_ref(),
            RPO_MET,
        ),
        objective(
            "rto",
            spec.objectives.rto.to_string(),
            measured.rto.as_ref(),
            RTO_MET,
        ),
        objective(
            "latency p99",
            spec.objectives.latency.p99.to_string(),
            measured.latency_p99.as_ref(),
            LATENCY_MET,
        ),
        objective(
            "availability",
            format!("{}%", spec.objectives.availability),
            measured.availability.as_ref(),
            AVAILABILITY_MET,
        ),
    ];
    let mut objectives = objectives;
    // The availability SLO's window and the error budget it has left.
    if let Some(row) = objectives
        .iter_mut()
        .find(|o| o.objective == "availability")
    {
        row.target = format!(
            "{} over {}",
            row.target, spec.objectives.availability_window
        );
        if let (Some(figure), Some(budget)) = (
            row.measured.as_mut(),
            measured.error_budget_remaining.as_ref(),
        ) {
            figure.push_str(&format!(" (error budget {budget} left)"));
        }
    }

    StatusReport {
        namespace: cluster.namespace().unwrap_or_default(),
        name: cluster.name_any(),
        generation: cluster.metadata.generation,
        observed_generation: status.observed_generation,
        ready: summary(READY),
        components,
        probe_paths: measured.probe_paths.clone(),
        objectives,
        last_failover: status.postgres.and_then(|p| p.last_failover),
        drill: status.drill,
    }
}

/// Left-aligned columns separated by two spaces, each row indented by `indent`.
fn table(out: &mut String, indent: &str, headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut line = |cells: Vec<String>| {
        let mut text = String::from(indent);
        for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if index + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

fn title(component: &str) -> &str {
    match component {
        "postgres" => "PostgreSQL",
        "redis" => "Redis",
        "kafka" => "Kafka",
        "haproxy" => "HAProxy",
        other => other,
    }
}

/// The report as a person reads it.
pub fn text(report: &StatusReport) -> String {
    let mut out = String::new();
    let ready = report.ready.as_ref().map_or_else(
        || "no status yet".to_owned(),
        |c| format!("Ready={} ({})", c.status, c.message),
    );
    let _ = writeln!(
        out,
        "ShanraqCluster {}/{}: {ready}; generation {}, observed {}",
        report.namespace,
        report.name,
        dash(report.generation),
        dash(report.observed_generation),
    );
    for component in &report.components {
        out.push('\n');
        let mut heading = format!(
            "{}: {}/{} ready",
            title(&component.component),
            component.ready_instances,
            component.instances
        );
        if component.component == "postgres" {
            let _ = write!(
                heading,
                ", primary {}, epoch {}, phase {}",
                dash(component.primary.as_deref()),
                dash(component.epoch),
                dash(component.phase.as_deref())
            );
        }
        if component.component == "redis" && component.primary.is_some() {
            let _ = write!(
                heading,
                ", master {}, epoch {}, phase {}",
                dash(component.primary.as_deref()),
                dash(component.epoch),
                dash(component.phase.as_deref())
            );
        }
        if let Some(condition) = component
            .condition
            .as_ref()
            .filter(|c| c.status != "True" && !c.message.is_empty())
        {
            let _ = write!(heading, " ({})", condition.message);
        }
        out.push_str(&heading);
        out.push('\n');
        if component.members.is_empty() {
            out.push_str("  no Pods found\n");
            continue;
        }
        let rows: Vec<Vec<String>> = component
            .members
            .iter()
            .map(|m| match component.component.as_str() {
                "postgres" => vec![
                    m.name.clone(),
                    dash(m.role.as_deref()),
                    yes_no(m.ready),
                    dash(m.synchronous.map(yes_no)),
                    dash(m.lag_bytes.map(|b| format!("{b}B"))),
                    dash(m.timeline),
                ],
                "redis" => vec![
                    m.name.clone(),
                    dash(m.role.as_deref()),
                    yes_no(m.ready),
                    dash(m.offset),
                ],
                _ => vec![m.name.clone(), dash(m.role.as_deref()), yes_no(m.ready)],
            })
            .collect();
        let headers: &[&str] = match component.component.as_str() {
            "postgres" => &["INSTANCE", "ROLE", "READY", "SYNC", "LAG", "TIMELINE"],
            "redis" => &["INSTANCE", "ROLE", "READY", "OFFSET"],
            _ => &["INSTANCE", "ROLE", "READY"],
        };
        table(&mut out, "  ", headers, &rows);
    }
    out.push_str("\nObjectives:\n");
    let rows: Vec<Vec<String>> = report
        .objectives
        .iter()
        .map(|o| {
            vec![
                o.objective.clone(),
                o.target.clone(),
                o.measured
                    .clone()
                    .unwrap_or_else(|| "not measured".to_owned()),
                dash(o.met.map(yes_no)),
            ]
        })
        .collect();
    table(
        &mut out,
        "  ",
        &["OBJECTIVE", "TARGET", "MEASURED", "MET"],
        &rows,
    );
    if !report.probe_paths.is_empty() {
        out.push_str("\nProbe paths (last 5 minutes):\n");
        let rows: Vec<Vec<String>> = report
            .probe_paths
            .iter()
            .map(|p| {
                vec![
                    p.path.clone(),
                    dash(p.p50.clone()),
                    dash(p.p99.clone()),
                    p.target.clone(),
                    format!("{}/{}", p.samples - p.failures, p.samples),
                    yes_no(p.met),
                    dash(
                        p.last_outage
                            .as_ref()
                            .map(|o| format!("{}ms at {}", o.duration_ms, o.started)),
                    ),
                ]
            })
            .collect();
        table(
            &mut out,
            "  ",
            &["PATH", "P50", "P99", "TARGET", "OK", "MET", "LAST OUTAGE"],
            &rows,
        );
    }
    if let Some(last) = &report.last_failover {
        let _ = writeln!(
            out,
            "\nLast {}: {} -> {} detected {}, RTO {}, lost {}",
            last.kind,
            last.from,
            last.to,
            last.detected_at,
            dash(last.rto_ms.map(|ms| format!("{ms}ms"))),
            dash(last.lost_bytes.map(|b| format!("{b}B"))),
        );
    }
    if let Some(drill) = &report.drill {
        let _ = writeln!(
            out,
            "\nLast drill ({}): {}, {}",
            drill.request, drill.phase, drill.message
        );
    }
    out
}
