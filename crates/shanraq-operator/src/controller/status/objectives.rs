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
use crate::engines::probes::{ProbeTrouble, plan};

/// Why a probe objective has no figure although its path is on: the probes cannot start
/// (`ProbeNotRunning`) or every probe of the window failed (`ProbeFailing`).
pub const REASON_PROBE_NOT_RUNNING: &str = "ProbeNotRunning";
pub const REASON_PROBE_FAILING: &str = "ProbeFailing";

/// How long Redis Cluster takes to replace a failed master: `cluster-node-timeout` before the
/// node is marked failed, then the replica's election (500 ms plus up to 500 ms at random for
/// the first replica, in Redis's `clusterGetReplicaRank` delay).
pub const REDIS_CLUSTER_ELECTION: Duration = Duration::from_secs(1);

/// The RTO the configured timings allow the PostgreSQL engine: detection (probe period x
/// failure threshold), the failover delay, promotion, and one routing check (HAProxy checks at
/// the probe period). When nothing but the old primary's lease stops it from committing
/// (asynchronous replication, or `dataDurability: preferred` while fallen back), nobody is
/// promoted before that lease ran out: the engine waits the lease, the replies' slack and one
/// probe period from the start of the failover (`lease_wait`).
pub fn projected_rto(cluster: &ValidCluster, fallen_back: bool) -> Duration {
    let failover = &cluster.spec.failover;
    let probe = failover.probe_period.as_std();
    let lease = if waits_for_lease(cluster, fallen_back) {
        lease_wait(cluster)
    } else {
        Duration::ZERO
    };
    detection(cluster) + failover.failover_delay.as_std() + lease + PROMOTION_ALLOWANCE + probe
}

/// What the PostgreSQL engine waits for the old primary's lease once the failover started:
/// the lease, `shanraq_ha::wire::REPLY_SLACK`, one probe period (`cannot_commit`).
fn lease_wait(cluster: &ValidCluster) -> Duration {
    let failover = &cluster.spec.failover;
    failover.lease() + shanraq_ha::wire::REPLY_SLACK + failover.probe_period.as_std()
}

fn detection(cluster: &ValidCluster) -> Duration {
    let failover = &cluster.spec.failover;
    let threshold = u32::try_from(failover.failure_threshold.max(0)).unwrap_or(0);
    failover.probe_period.as_std() * threshold
}

/// Whether PostgreSQL's failover waits out the old primary's lease before promoting: always
/// without synchronous standbys, and under `dataDurability: preferred` while fallen back.
fn waits_for_lease(cluster: &ValidCluster, fallen_back: bool) -> bool {
    !cluster.spec.postgres.synchronous.is_synchronous() || fallen_back
}

/// Redis replication's projection: the same timings, without a lease wait (a master's writes
/// stop with its replicas, `min-replicas-to-write`).
fn projected_redis_rto(cluster: &ValidCluster) -> Duration {
    let failover = &cluster.spec.failover;
    detection(cluster)
        + failover.failover_delay.as_std()
        + PROMOTION_ALLOWANCE
        + failover.probe_period.as_std()
}

/// How long Kafka's controllers take to move a lost broker's partition leadership: the broker
/// session timeout the controllers are rendered with, then the election (the controller picks
/// an in-sync replica at once; one second is allowed for it and the producers' metadata
/// refresh).
pub const KAFKA_ELECTION: Duration = Duration::from_secs(1);

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

/// Why the probe objectives (latency, availability) cannot be measured at all: no enabled
/// component has a probed path (each one's reason is named).
pub(super) fn probes_unmeasurable(cluster: &ValidCluster) -> Option<String> {
    let plan = plan::plan(cluster, "");
    if !plan.is_empty() {
        return None;
    }
    let reasons: Vec<String> = plan
        .unprobed
        .iter()
        .map(|(component, why)| format!("{}: {why}", component.title()))
        .collect();
    Some(if reasons.is_empty() {
        "no component is enabled".to_owned()
    } else {
        reasons.join("; ")
    })
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
                        Part::Pending {
                            component: title,
                            why: format!(
                                "target {}; the Redis Cluster's shards have not been sampled yet",
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

/// Each enabled component's RTO part: the projection from its timings, its engine's last
/// unplanned failover as measured, and the last outage a client of its write path saw through
/// the Service (from the first failed probe to the next successful write). The worst of the
/// three is its figure, and every one must be within the target.
pub fn rto_parts(cluster: &ValidCluster, observed: &Observed) -> Vec<Part> {
    let spec = &cluster.spec;
    spec.objective_components()
        .into_iter()
        .map(|component| {
            let title = component.title();
            let target = spec.objective_targets(component).rto;
            let (projected, how, actual) = match component {
                ObjectiveComponent::Postgres => (
                    projected_rto(cluster, observed.postgres_fallen_back),
                    engine_projection(
                        cluster,
                        waits_for_lease(cluster, observed.postgres_fallen_back),
                    ),
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
                    projected_redis_rto(cluster),
                    engine_projection(cluster, false),
                    observed.last_redis_failover_rto,
                ),
                ObjectiveComponent::Kafka => {
                    let session =
                        Duration::from_millis(shanraq_render::kafka::BROKER_SESSION_TIMEOUT_MS);
                    (
                        session + KAFKA_ELECTION,
                        format!(
                            "broker session timeout {}, leader election {}",
                            seconds_text(session),
                            seconds_text(KAFKA_ELECTION)
                        ),
                        None,
                    )
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
                None if component != ObjectiveComponent::Kafka
                    && !(component == ObjectiveComponent::Redis
                        && spec.redis.mode == RedisMode::Cluster) =>
                {
                    basis.push_str("; no failover measured yet");
                }
                None => {}
            }
            let client = observed.probes.last_outage(component);
            if let Some((path, outage)) = client {
                met &= outage.duration <= target_std;
                measured = measured.max(outage.duration);
                let at = jiff::Timestamp::try_from(outage.started)
                    .map(|t| format!(" at {}", t.round(jiff::Unit::Second).unwrap_or(t)))
                    .unwrap_or_default();
                basis.push_str(&format!(
                    "; last outage a client saw {} ({}{at})",
                    verdicts::human(outage.duration),
                    path.name()
                ));
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
                    measured: if actual.is_some() || client.is_some() {
                        seconds_text(measured)
                    } else {
                        format!("{} (projected)", seconds_text(measured))
                    },
                    target: target.to_string(),
                    message,
                },
            }
        })
        .collect()
}

fn engine_projection(cluster: &ValidCluster, lease: bool) -> String {
    let failover = &cluster.spec.failover;
    let wait = if lease {
        let why = if cluster.spec.postgres.synchronous.is_synchronous() {
            "dataDurability preferred has fallen back"
        } else {
            "no synchronous standby fences it"
        };
        format!(
            ", the old primary's lease {} + reply slack {} + one probe {} ({why})",
            seconds_text(failover.lease()),
            seconds_text(shanraq_ha::wire::REPLY_SLACK),
            failover.probe_period,
        )
    } else {
        String::new()
    };
    format!(
        "detection {} x {}, failover delay {}{wait}, promotion {}, one routing check {}",
        failover.probe_period,
        failover.failure_threshold,
        failover.failover_delay,
        seconds_text(PROMOTION_ALLOWANCE),
        failover.probe_period,
    )
}

/// Each enabled component's latency part: every probed path of it against its read or write
/// target (the worst path decides), still to be measured, or not probed (and why).
pub(super) fn latency_parts(cluster: &ValidCluster, observed: &Observed) -> Vec<Part> {
    let spec = &cluster.spec;
    let plan = plan::plan(cluster, "");
    spec.objective_components()
        .into_iter()
        .map(|component| {
            let title = component.title();
            let targets = spec.objective_targets(component);
            if let Some(why) = plan.unprobed(component) {
                return Part::Uncovered {
                    component: title,
                    why: format!("target p99 {}; {why}", targets.latency_p99),
                };
            }
            let paths: Vec<_> = observed.probes.of(component).collect();
            let Some(worst) = paths.iter().max_by_key(|p| p.weight()) else {
                return Part::Pending {
                    component: title,
                    why: format!(
                        "target p99 {} for reads, {} for writes; probe latency is measured once the cluster has first been Ready",
                        targets.latency_p99, targets.latency_write_p99
                    ),
                };
            };
            let met = paths.iter().all(|p| p.met);
            Part::Judged {
                component: title,
                weight: worst.weight(),
                status: ObjectiveStatus {
                    met,
                    measured: worst
                        .figures
                        .p99
                        .map_or_else(|| "none".to_owned(), verdicts::human),
                    target: verdicts::human(worst.target),
                    message: paths
                        .iter()
                        .map(|p| p.text())
                        .collect::<Vec<_>>()
                        .join(", "),
                },
            }
        })
        .collect()
}

/// A probe objective some of whose components' probes cannot give a figure, with the reason:
/// their probes did not start, or every probe of the window failed. The components that do
/// measure are named after them.
fn probe_trouble(observed: &Observed, type_: &'static str, rest: &str) -> Option<Want> {
    // Probes that run and all fail are what a client would see (False); probes the operator
    // cannot run say nothing about the cluster (Unknown).
    let failing: Vec<String> = observed
        .probes
        .trouble
        .iter()
        .filter_map(|(component, trouble)| match trouble {
            ProbeTrouble::Failing(why) => Some(format!(
                "{}: every probe of the window failed: {why}",
                component.title()
            )),
            ProbeTrouble::NotRunning(_) => None,
        })
        .collect();
    let not_running: Vec<String> = observed
        .probes
        .trouble
        .iter()
        .filter_map(|(component, trouble)| match trouble {
            ProbeTrouble::NotRunning(why) => Some(format!(
                "{}: the probes cannot run: {why}",
                component.title()
            )),
            ProbeTrouble::Failing(_) => None,
        })
        .collect();
    let (truth, reason, mut text) = if !failing.is_empty() {
        let mut all = failing;
        all.extend(not_running);
        (Truth::False, REASON_PROBE_FAILING, all.join("; "))
    } else if !not_running.is_empty() {
        (
            Truth::Unknown,
            REASON_PROBE_NOT_RUNNING,
            not_running.join("; "),
        )
    } else {
        return None;
    };
    if !rest.is_empty() {
        text.push_str("; ");
        text.push_str(rest);
    }
    Some(Want::new(type_, truth, reason, text))
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
    // A verdict left from before the paths were turned off is not a measurement of now.
    let (latency, availability) = match probes_unmeasurable(cluster) {
        Some(why) => (
            Want::new(
                LATENCY_MET,
                Truth::Unknown,
                REASON_NOT_MEASURABLE,
                format!(
                    "target p99 {}; not measurable: {why}",
                    objectives.latency.p99
                ),
            ),
            Want::new(
                AVAILABILITY_MET,
                Truth::Unknown,
                REASON_NOT_MEASURABLE,
                format!("target {}%; not measurable: {why}", objectives.availability),
            ),
        ),
        None => {
            let combined = verdicts::combine(&latency_parts(cluster, observed));
            let latency = probe_trouble(observed, LATENCY_MET, &combined.message)
                .unwrap_or_else(|| want(LATENCY_MET, combined));
            let availability = match &observed.probes.availability {
                Some(verdict) => Want::new(
                    AVAILABILITY_MET,
                    Truth::of(verdict.met),
                    if verdict.met {
                        verdicts::REASON_MEASURED
                    } else {
                        verdicts::REASON_OVER_TARGET
                    },
                    verdict.message.clone(),
                ),
                None => probe_trouble(
                    observed,
                    AVAILABILITY_MET,
                    &format!("target {}%", objectives.availability),
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
