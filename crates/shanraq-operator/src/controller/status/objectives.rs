//! The objective conditions (`RTOMet`, `RPOMet`, `LatencyMet`, `AvailabilityMet`). RPO, RTO and
//! latency are judged per enabled component against that component's target
//! (`spec.<component>.objectives`, else `spec.objectives`): each condition's message names
//! every component's measured value beside its target, and the worst decides. A target the
//! chosen settings cannot meet is False at once (`Unattainable`, naming the field to change);
//! an objective whose measurement path is turned off or cannot run says why (`NotMeasurable`,
//! `ProbeNotRunning`, `ProbeFailing`) instead of promising a measurement that cannot come.

use std::time::Duration;

use shanraq_api::conditions::{AVAILABILITY_MET, LATENCY_MET, READY, RPO_MET, RTO_MET};
use shanraq_api::objectives::{ObjectiveComponent, TargetSource, unattainable_rpo};
use shanraq_api::redis::RedisMode;
use shanraq_api::{ShanraqClusterStatus, ValidCluster};
use shanraq_ha::objectives::{self as verdicts, Combined, ObjectiveStatus, Part, RpoMeasurement};

use super::{Observed, PROMOTION_ALLOWANCE, REASON_NOT_MEASURABLE, Truth, Want};
use crate::engines::postgres::objectives as ha_objectives;

/// Why a probe objective has no figure although its path is on: the probes cannot start
/// (`ProbeNotRunning`) or every probe of the window failed (`ProbeFailing`).
pub const REASON_PROBE_NOT_RUNNING: &str = "ProbeNotRunning";
pub const REASON_PROBE_FAILING: &str = "ProbeFailing";

/// How long Redis Cluster takes to replace a failed master: `cluster-node-timeout` before the
/// node is marked failed, then the replica's election (500 ms plus up to 500 ms at random for
/// the first replica, in Redis's `clusterGetReplicaRank` delay).
pub const REDIS_CLUSTER_ELECTION: Duration = Duration::from_secs(1);

/// The RTO the configured timings allow: detection (probe period x failure threshold), the
/// failover delay, promotion, and one routing check (HAProxy checks at the probe period).
/// The PostgreSQL and Redis (replication) engines share these timings.
pub fn projected_rto(cluster: &ValidCluster) -> Duration {
    let failover = &cluster.spec.failover;
    let probe = failover.probe_period.as_std();
    let threshold = u32::try_from(failover.failure_threshold.max(0)).unwrap_or(0);
    probe * threshold + failover.failover_delay.as_std() + PROMOTION_ALLOWANCE + probe
}

pub(super) fn seconds_text(duration: Duration) -> String {
    shanraq_api::Duration::from(duration).to_string()
}

/// Whether the probe objectives are judged: once the cluster has been `Ready`, and from then on
/// (a probe objective that left `Unknown` keeps being judged when `Ready` later turns False).
pub fn measuring_probes(previous: &ShanraqClusterStatus) -> bool {
    previous.conditions.iter().any(|c| {
        (c.type_ == READY && c.status == "True")
            || ((c.type_ == AVAILABILITY_MET || c.type_ == LATENCY_MET) && c.status != "Unknown")
    })
}

/// Why the probe objectives (latency, availability) cannot be measured: their probes are
/// PostgreSQL reads and writes through HAProxy, so either one turned off leaves nothing to time.
pub(super) fn probes_unmeasurable(cluster: &ValidCluster) -> Option<&'static str> {
    if !cluster.spec.haproxy.enabled {
        Some("the probes go through HAProxy, which is disabled (spec.haproxy.enabled: false)")
    } else if !cluster.spec.postgres.enabled {
        Some(
            "the probes are PostgreSQL reads and writes, and PostgreSQL is disabled (spec.postgres.enabled: false)",
        )
    } else {
        None
    }
}

fn want(type_: &'static str, combined: Combined) -> Want {
    let truth = match combined.met {
        Some(met) => Truth::of(met),
        None => Truth::Unknown,
    };
    Want::new(type_, truth, combined.reason, combined.message)
}

/// Each enabled component's RPO part: unattainable by its settings, judged from its last
/// measurement, still to be measured, or not covered (Redis Cluster's replica offsets are not
/// sampled).
pub fn rpo_parts(cluster: &ValidCluster, observed: &Observed) -> Vec<Part> {
    let spec = &cluster.spec;
    let unattainable = unattainable_rpo(spec);
    spec.objective_components()
        .into_iter()
        .map(|component| {
            let title = component.title();
            let targets = spec.objective_targets(component);
            if let Some(found) = unattainable.iter().find(|u| u.component == component) {
                return Part::Unattainable {
                    component: title,
                    target: targets.rpo.to_string(),
                    reason: found.reason.clone(),
                };
            }
            match observed.rpo.get(component) {
                Some(measurement) => {
                    let mut status = verdicts::rpo(targets.rpo.as_std(), measurement);
                    if targets.rpo_source == TargetSource::RedisDefault {
                        status.message.push_str(
                            " (Redis's default, minReplicasMaxLag; spec.redis.objectives.rpo sets another)",
                        );
                    }
                    Part::Judged {
                        component: title,
                        weight: measurement.weight(),
                        status,
                    }
                }
                None => match component {
                    ObjectiveComponent::Redis if spec.redis.mode == RedisMode::Cluster => {
                        Part::Uncovered {
                            component: title,
                            why: format!(
                                "target {}; the replica offsets of a Redis Cluster are not sampled",
                                targets.rpo
                            ),
                        }
                    }
                    ObjectiveComponent::Postgres => Part::Pending {
                        component: title,
                        why: format!(
                            "target {}; replication has not been sampled yet",
                            targets.rpo
                        ),
                    },
                    ObjectiveComponent::Redis => Part::Pending {
                        component: title,
                        why: format!(
                            "target {}; the Redis engine has not designated a master yet",
                            targets.rpo
                        ),
                    },
                    ObjectiveComponent::Kafka => Part::Pending {
                        component: title,
                        why: format!(
                            "target {}; the admin API has not reported every topic's min.insync.replicas yet",
                            targets.rpo
                        ),
                    },
                },
            }
        })
        .collect()
}

/// Each enabled component's RTO part: the projection from its timings and, once there was
/// one, its last unplanned failover's measured duration; Kafka's partition leadership moves by
/// Kafka's own election, which the operator does not project.
pub fn rto_parts(cluster: &ValidCluster, observed: &Observed) -> Vec<Part> {
    let spec = &cluster.spec;
    let projected = projected_rto(cluster);
    spec.objective_components()
        .into_iter()
        .map(|component| {
            let title = component.title();
            let target = spec.objective_targets(component).rto;
            let (projected, how, actual) = match component {
                ObjectiveComponent::Postgres => (
                    projected,
                    engine_projection(cluster),
                    observed.last_failover_rto,
                ),
                ObjectiveComponent::Redis if spec.redis.mode == RedisMode::Cluster => {
                    let node_timeout =
                        Duration::from_millis(shanraq_render::redis::CLUSTER_NODE_TIMEOUT_MS);
                    (
                        node_timeout + REDIS_CLUSTER_ELECTION,
                        format!(
                            "Redis Cluster node timeout {}, replica election {}",
                            seconds_text(node_timeout),
                            seconds_text(REDIS_CLUSTER_ELECTION)
                        ),
                        None,
                    )
                }
                ObjectiveComponent::Redis => (
                    projected,
                    engine_projection(cluster),
                    observed.last_redis_failover_rto,
                ),
                ObjectiveComponent::Kafka => {
                    return Part::Uncovered {
                        component: title,
                        why: format!(
                            "target {target}; partition leadership moves by Kafka's own controller election, which is not projected"
                        ),
                    };
                }
            };
            let target_std = target.as_std();
            let mut met = projected <= target_std;
            let mut measured = projected;
            let mut basis = format!("projected {}: {how}", seconds_text(projected));
            match actual {
                Some(actual) => {
                    met &= actual <= target_std;
                    measured = measured.max(actual);
                    // As `shanraq_ha::objectives::human` writes it, like every failover figure.
                    basis.push_str(&format!("; last failover {}", verdicts::human(actual)));
                }
                None => basis.push_str("; no failover measured yet"),
            }
            let message = format!(
                "RTO {} {} target {target} ({basis})",
                seconds_text(measured),
                if met { "<=" } else { ">" }
            );
            Part::Judged {
                component: title,
                weight: measured,
                status: ObjectiveStatus {
                    met,
                    measured: match actual {
                        Some(_) => seconds_text(measured),
                        None => format!("{} (projected)", seconds_text(measured)),
                    },
                    target: target.to_string(),
                    message,
                },
            }
        })
        .collect()
}

fn engine_projection(cluster: &ValidCluster) -> String {
    let failover = &cluster.spec.failover;
    format!(
        "detection {} x {}, failover delay {}, promotion {}, one routing check {}",
        failover.probe_period,
        failover.failure_threshold,
        failover.failover_delay,
        seconds_text(PROMOTION_ALLOWANCE),
        failover.probe_period,
    )
}

/// Each enabled component's latency part. Only PostgreSQL's path is probed (a `SELECT 1`
/// through HAProxy's `pg-rw`); Redis and Kafka are named as not probed.
fn latency_parts(cluster: &ValidCluster, observed: &Observed) -> Vec<Part> {
    let spec = &cluster.spec;
    spec.objective_components()
        .into_iter()
        .map(|component| {
            let title = component.title();
            let target = spec.objective_targets(component).latency_p99;
            match component {
                ObjectiveComponent::Postgres => match &observed.probes.latency {
                    Some(verdict) => Part::Judged {
                        component: title,
                        weight: observed.probes.p99.unwrap_or_default(),
                        status: verdict.clone(),
                    },
                    None => Part::Pending {
                        component: title,
                        why: format!(
                            "target p99 {target}; probe latency is measured once the cluster has first been Ready"
                        ),
                    },
                },
                ObjectiveComponent::Redis | ObjectiveComponent::Kafka => Part::Uncovered {
                    component: title,
                    why: format!(
                        "target p99 {target}; the operator's latency probe times PostgreSQL reads only"
                    ),
                },
            }
        })
        .collect()
}

/// A probe objective whose probes cannot give a figure, with the reason: the probes did not
/// start, or every probe of the window failed.
fn probe_trouble(observed: &Observed, type_: &'static str, target: &str) -> Option<Want> {
    let trouble = observed.probes.trouble.as_ref()?;
    // Probes the operator cannot run say nothing about the cluster (Unknown); probes that run
    // and all fail are what a client would see (False).
    let (truth, reason, text) = match trouble {
        ha_objectives::ProbeTrouble::NotRunning(why) => (
            Truth::Unknown,
            REASON_PROBE_NOT_RUNNING,
            format!("the probes cannot run: {why}"),
        ),
        ha_objectives::ProbeTrouble::Failing(why) => (
            Truth::False,
            REASON_PROBE_FAILING,
            format!("every probe of the window failed: {why}"),
        ),
    };
    Some(Want::new(
        type_,
        truth,
        reason,
        format!("target {target}; {text}"),
    ))
}

/// The objective conditions before anything was measured: RPO targets the settings cannot
/// meet are already False, the RTO is projected, the rest wait for their measurement (or say
/// why none can come).
pub fn objective_conditions(cluster: &ValidCluster) -> Vec<Want> {
    measured_objective_conditions(cluster, &Observed::default())
}

/// The objective conditions from this round's measurements.
pub(super) fn measured_objective_conditions(
    cluster: &ValidCluster,
    observed: &Observed,
) -> Vec<Want> {
    let objectives = &cluster.spec.objectives;
    let rpo = verdicts::combine(&rpo_parts(cluster, observed));
    let rto_parts = rto_parts(cluster, observed);
    let measured_failover =
        observed.last_failover_rto.is_some() || observed.last_redis_failover_rto.is_some();
    let mut rto = want(RTO_MET, verdicts::combine(&rto_parts));
    if !measured_failover {
        // Only projections so far: the reason says so.
        rto.reason = match rto.truth {
            Truth::True => "ProjectedWithinTarget".to_owned(),
            Truth::False => "ProjectedOverTarget".to_owned(),
            Truth::Unknown => rto.reason,
        };
    }
    let pg_p99 = cluster
        .spec
        .objective_targets(ObjectiveComponent::Postgres)
        .latency_p99;
    // A verdict left from before the path was turned off is not a measurement of now.
    let (latency, availability) = match probes_unmeasurable(cluster) {
        Some(why) => (
            Want::new(
                LATENCY_MET,
                Truth::Unknown,
                REASON_NOT_MEASURABLE,
                format!("target p99 {pg_p99}; not measurable: {why}"),
            ),
            Want::new(
                AVAILABILITY_MET,
                Truth::Unknown,
                REASON_NOT_MEASURABLE,
                format!("target {}%; not measurable: {why}", objectives.availability),
            ),
        ),
        None => {
            let latency = match (&observed.probes.latency, &observed.probes.trouble) {
                (None, Some(_)) => probe_trouble(observed, LATENCY_MET, &format!("p99 {pg_p99}")),
                _ => None,
            }
            .unwrap_or_else(|| {
                want(
                    LATENCY_MET,
                    verdicts::combine(&latency_parts(cluster, observed)),
                )
            });
            let availability = match &observed.probes.availability {
                Some(verdict) => ha_objectives::probe_condition(AVAILABILITY_MET, verdict),
                None => probe_trouble(
                    observed,
                    AVAILABILITY_MET,
                    &format!("{}%", objectives.availability),
                )
                .unwrap_or_else(|| {
                    Want::new(
                        AVAILABILITY_MET,
                        Truth::Unknown,
                        verdicts::REASON_NOT_MEASURED_YET,
                        format!(
                            "target {}% over {}; write probes are measured once the cluster has first been Ready",
                            objectives.availability, objectives.availability_window
                        ),
                    )
                }),
            };
            (latency, availability)
        }
    };
    vec![want(RPO_MET, rpo), rto, latency, availability]
}

/// The RPO measurements of every engine, one per component.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RpoByComponent {
    pub postgres: Option<RpoMeasurement>,
    pub redis: Option<RpoMeasurement>,
    pub kafka: Option<RpoMeasurement>,
}

impl RpoByComponent {
    pub fn get(&self, component: ObjectiveComponent) -> Option<&RpoMeasurement> {
        match component {
            ObjectiveComponent::Postgres => self.postgres.as_ref(),
            ObjectiveComponent::Redis => self.redis.as_ref(),
            ObjectiveComponent::Kafka => self.kafka.as_ref(),
        }
    }
}
