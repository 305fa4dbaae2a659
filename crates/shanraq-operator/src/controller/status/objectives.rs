//! The objective conditions (`RTOMet`, `RPOMet`, `LatencyMet`, `AvailabilityMet`): the RTO
//! projected from the configured timings, the rest `Unknown` until measured, then judged from
//! the measurements. An objective whose measurement path is turned off says so
//! (`NotMeasurable`, naming the component) instead of promising a measurement that cannot come.

use std::time::Duration;

use shanraq_api::conditions::{AVAILABILITY_MET, LATENCY_MET, READY, RPO_MET, RTO_MET};
use shanraq_api::{ShanraqClusterStatus, ValidCluster};

use super::{
    Observed, PROMOTION_ALLOWANCE, REASON_NOT_MEASURABLE, REASON_NOT_MEASURED_YET, Truth, Want,
};
use crate::engines::postgres::objectives as ha_objectives;

/// The RTO the configured timings allow: detection (probe period x failure threshold), the
/// failover delay, promotion, and one routing check (HAProxy checks at the probe period).
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
pub(super) fn measuring_probes(previous: &ShanraqClusterStatus) -> bool {
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

/// Why the RPO cannot be measured: it is sampled by the PostgreSQL HA engine.
fn rpo_unmeasurable(cluster: &ValidCluster) -> Option<&'static str> {
    (!cluster.spec.postgres.enabled).then_some(
        "it is measured by the PostgreSQL HA engine, and PostgreSQL is disabled (spec.postgres.enabled: false)",
    )
}

/// The objective conditions. Only the RTO can be judged without a measurement (from the
/// configured timings); the others are `Unknown` until the HA engine measures them, or for
/// good, with the reason, while what would measure them is turned off.
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
        match rpo_unmeasurable(cluster) {
            Some(why) => Want::new(
                RPO_MET,
                Truth::Unknown,
                REASON_NOT_MEASURABLE,
                format!("target {}; not measurable: {why}", objectives.rpo),
            ),
            None => Want::new(
                RPO_MET,
                Truth::Unknown,
                REASON_NOT_MEASURED_YET,
                format!(
                    "target {}; replication lag has not been measured yet",
                    objectives.rpo
                ),
            ),
        },
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
        match probes_unmeasurable(cluster) {
            Some(why) => Want::new(
                LATENCY_MET,
                Truth::Unknown,
                REASON_NOT_MEASURABLE,
                format!(
                    "target p99 {}; not measurable: {why}",
                    objectives.latency.p99
                ),
            ),
            None => Want::new(
                LATENCY_MET,
                Truth::Unknown,
                REASON_NOT_MEASURED_YET,
                format!(
                    "target p99 {}; probe latency is measured once the cluster has first been Ready",
                    objectives.latency.p99
                ),
            ),
        },
        match probes_unmeasurable(cluster) {
            Some(why) => Want::new(
                AVAILABILITY_MET,
                Truth::Unknown,
                REASON_NOT_MEASURABLE,
                format!("target {}%; not measurable: {why}", objectives.availability),
            ),
            None => Want::new(
                AVAILABILITY_MET,
                Truth::Unknown,
                REASON_NOT_MEASURED_YET,
                format!(
                    "target {}%; write probes are measured once the cluster has first been Ready",
                    objectives.availability
                ),
            ),
        },
    ]
}

/// The objective conditions, with RPO and RTO judged from measurements when there are some.
pub(super) fn measured_objective_conditions(
    cluster: &ValidCluster,
    observed: &Observed,
) -> Vec<Want> {
    let mut wants = objective_conditions(cluster);
    // A verdict left from before the path was turned off is not a measurement of now.
    let probes = probes_unmeasurable(cluster).is_none();
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
            && probes
            && let Some(verdict) = &observed.probes.latency
        {
            *want = ha_objectives::probe_condition(LATENCY_MET, verdict);
        }
        if want.type_ == AVAILABILITY_MET
            && probes
            && let Some(verdict) = &observed.probes.availability
        {
            *want = ha_objectives::probe_condition(AVAILABILITY_MET, verdict);
        }
    }
    wants
}
