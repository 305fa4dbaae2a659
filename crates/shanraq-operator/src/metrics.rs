//! The operator's Prometheus metrics (prefix `shanraq_`): reconcile counts, durations and failures
//! by step, and one gauge per objective so that alerts can fire on what the status reports.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectiveLabels {
    pub cluster: String,
    pub namespace: String,
    pub objective: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailoverLabels {
    pub cluster: String,
    pub namespace: String,
    pub component: String,
    /// `failover` (unplanned) or `switchover` (planned).
    pub kind: String,
}

/// Handles on every metric; cheap to clone (each metric is an `Arc` inside).
#[derive(Clone, Debug)]
pub struct Metrics {
    pub reconciles: Counter,
    pub reconcile_duration: Histogram,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub objective_met: Family<ObjectiveLabels, Gauge>,
    pub objective_target_seconds: Family<ObjectiveLabels, Gauge<f64, AtomicU64>>,
    pub objective_measured_seconds: Family<ObjectiveLabels, Gauge<f64, AtomicU64>>,
    pub failovers: Family<FailoverLabels, Counter>,
    pub failover_duration: Family<FailoverLabels, Histogram>,
}

fn failover_buckets() -> Histogram {
    // 50 ms .. ~100 s
    Histogram::new(exponential_buckets(0.05, 2.0, 12))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            reconciles: Counter::default(),
            // 1 ms .. ~65 s
            reconcile_duration: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            reconcile_errors: Family::default(),
            objective_met: Family::default(),
            objective_target_seconds: Family::default(),
            objective_measured_seconds: Family::default(),
            failovers: Family::default(),
            failover_duration: Family::new_with_constructor(failover_buckets),
        }
    }
}

impl Metrics {
    /// Creates the metrics and registers them in a new registry with the `shanraq` prefix.
    pub fn registered() -> (Metrics, Registry) {
        let mut registry = Registry::with_prefix("shanraq");
        let metrics = Metrics::default();
        metrics.register(&mut registry);
        (metrics, registry)
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "reconcile",
            "Reconciles of ShanraqCluster objects",
            self.reconciles.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Duration of one reconcile",
            Unit::Seconds,
            self.reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles, by the step that failed",
            self.reconcile_errors.clone(),
        );
        registry.register(
            "objective_met",
            "1 when the objective is met, 0 when it is not; absent while not measured",
            self.objective_met.clone(),
        );
        registry.register_with_unit(
            "objective_target",
            "The objective's target from the spec",
            Unit::Seconds,
            self.objective_target_seconds.clone(),
        );
        registry.register_with_unit(
            "objective_measured",
            "The objective's measured value; absent while not measured",
            Unit::Seconds,
            self.objective_measured_seconds.clone(),
        );
        registry.register(
            "failovers",
            "Completed failovers (unplanned) and switchovers (planned)",
            self.failovers.clone(),
        );
        registry.register_with_unit(
            "failover_duration",
            "Measured RTO of each failover or switchover: detection to routing",
            Unit::Seconds,
            self.failover_duration.clone(),
        );
    }

    /// Counts one completed failover or switchover and its measured RTO.
    pub fn count_failover(&self, labels: FailoverLabels, rto: Option<Duration>) {
        self.failovers.get_or_create(&labels).inc();
        if let Some(rto) = rto {
            self.failover_duration
                .get_or_create(&labels)
                .observe(rto.as_secs_f64());
        }
    }

    pub fn count_reconcile(&self, took: Duration) {
        self.reconciles.inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    pub fn count_error(&self, label: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                error: label.to_owned(),
            })
            .inc();
    }

    /// Publishes one objective. `met` and `measured` are `None` while nothing was measured, and
    /// the corresponding series are then removed rather than reporting a made-up value.
    pub fn set_objective(
        &self,
        labels: ObjectiveLabels,
        target: Option<Duration>,
        met: Option<bool>,
        measured: Option<Duration>,
    ) {
        match target {
            Some(target) => {
                self.objective_target_seconds
                    .get_or_create(&labels)
                    .set(target.as_secs_f64());
            }
            None => {
                self.objective_target_seconds.remove(&labels);
            }
        }
        match met {
            Some(met) => {
                self.objective_met
                    .get_or_create(&labels)
                    .set(i64::from(met));
            }
            None => {
                self.objective_met.remove(&labels);
            }
        }
        match measured {
            Some(measured) => {
                self.objective_measured_seconds
                    .get_or_create(&labels)
                    .set(measured.as_secs_f64());
            }
            None => {
                self.objective_measured_seconds.remove(&labels);
            }
        }
    }
}

/// The registry in OpenMetrics text.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_shanraq_prefix() {
        let (metrics, registry) = Metrics::registered();
        metrics.count_reconcile(Duration::from_millis(3));
        metrics.count_error("apply");
        metrics.set_objective(
            ObjectiveLabels {
                cluster: "payments".into(),
                namespace: "fintech".into(),
                objective: "rto".into(),
            },
            Some(Duration::from_secs(30)),
            Some(true),
            None,
        );
        metrics.count_failover(
            FailoverLabels {
                cluster: "payments".into(),
                namespace: "fintech".into(),
                component: "postgres".into(),
                kind: "failover".into(),
            },
            Some(Duration::from_millis(900)),
        );
        let text = encode(&registry).expect("encodes");
        for name in [
            "shanraq_failovers_total{cluster=\"payments\",namespace=\"fintech\",component=\"postgres\",kind=\"failover\"} 1",
            "shanraq_failover_duration_seconds_count{cluster=\"payments\",namespace=\"fintech\",component=\"postgres\",kind=\"failover\"} 1",
            "shanraq_reconcile_total 1",
            "shanraq_reconcile_duration_seconds_count 1",
            "shanraq_reconcile_errors_total{error=\"apply\"} 1",
            "shanraq_objective_met{cluster=\"payments\",namespace=\"fintech\",objective=\"rto\"} 1",
            "shanraq_objective_target_seconds{cluster=\"payments\",namespace=\"fintech\",objective=\"rto\"} 30.0",
        ] {
            assert!(text.contains(name), "missing {name:?} in:\n{text}");
        }
        assert!(
            !text.contains("shanraq_objective_measured_seconds{"),
            "nothing was measured, so no measured series: {text}"
        );
        assert!(
            text.ends_with("# EOF\n"),
            "OpenMetrics text ends with # EOF"
        );
    }
}
