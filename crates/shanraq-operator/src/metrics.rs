//! The operator's Prometheus metrics (prefix `shanraq_`): reconcile counts, durations and failures
//! by step, one gauge per objective so that alerts can fire on what the status reports, the
//! critical-path probes by result (the availability burn-rate rules' input), and each
//! component's ready and desired instances (the only Kafka health the operator can see).

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    pub cluster: String,
    pub namespace: String,
    /// `postgres-read`, `postgres-write`, `redis-get`, `redis-set` or `kafka-produce`.
    pub path: String,
    /// `read` or `write`: availability and its burn-rate alerts count the writes.
    pub kind: String,
    /// `success` or `failure`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbePathLabels {
    pub cluster: String,
    pub namespace: String,
    /// `postgres-read`, `postgres-write`, `redis-get`, `redis-set` or `kafka-produce`.
    pub path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChildRoundLabels {
    /// `apply` (every child applied, orphans collected) or `read` (the rendering unchanged
    /// since the last full apply: only the workloads read back).
    pub mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub cluster: String,
    pub namespace: String,
    /// `postgres`, `redis`, `kafka-controller`, `kafka-broker` or `haproxy`.
    pub component: String,
}

/// Counts one cluster's probe rounds into `shanraq_probe_total`.
#[derive(Clone, Debug)]
pub struct ProbeCounter {
    family: Family<ProbeLabels, Counter>,
    cluster: String,
    namespace: String,
}

impl ProbeCounter {
    /// One probe of `path` (of `kind`) that succeeded or not.
    pub fn count(&self, path: &str, kind: &str, ok: bool) {
        self.family
            .get_or_create(&ProbeLabels {
                cluster: self.cluster.clone(),
                namespace: self.namespace.clone(),
                path: path.to_owned(),
                kind: kind.to_owned(),
                result: if ok { "success" } else { "failure" }.to_owned(),
            })
            .inc();
    }
}

/// Handles on every metric; cheap to clone (each metric is an `Arc` inside).
#[derive(Clone, Debug)]
pub struct Metrics {
    pub reconciles: Counter,
    pub reconcile_duration: Histogram,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub child_rounds: Family<ChildRoundLabels, Counter>,
    pub objective_met: Family<ObjectiveLabels, Gauge>,
    pub objective_target_seconds: Family<ObjectiveLabels, Gauge<f64, AtomicU64>>,
    pub objective_measured_seconds: Family<ObjectiveLabels, Gauge<f64, AtomicU64>>,
    /// The availability SLO over `objectives.availabilityWindow`, from the persisted counts.
    pub availability_ratio: Family<ObjectiveLabels, Gauge<f64, AtomicU64>>,
    pub error_budget_remaining: Family<ObjectiveLabels, Gauge<f64, AtomicU64>>,
    pub failovers: Family<FailoverLabels, Counter>,
    pub failover_duration: Family<FailoverLabels, Histogram>,
    pub probes: Family<ProbeLabels, Counter>,
    /// Each probed path's P99 over the latency window (5 minutes).
    pub probe_p99_seconds: Family<ProbePathLabels, Gauge<f64, AtomicU64>>,
    pub component_ready: Family<ComponentLabels, Gauge>,
    pub component_desired: Family<ComponentLabels, Gauge>,
    /// 1 while the primary's `archive_command` succeeds, 0 while it fails (`spec.backup`).
    pub wal_archiving: Family<ComponentLabels, Gauge>,
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
            child_rounds: Family::default(),
            objective_met: Family::default(),
            objective_target_seconds: Family::default(),
            objective_measured_seconds: Family::default(),
            availability_ratio: Family::default(),
            error_budget_remaining: Family::default(),
            failovers: Family::default(),
            failover_duration: Family::new_with_constructor(failover_buckets),
            probes: Family::default(),
            probe_p99_seconds: Family::default(),
            component_ready: Family::default(),
            component_desired: Family::default(),
            wal_archiving: Family::default(),
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
            "reconcile_child_rounds",
            "How each successful reconcile handled the children: applied in full, or read back",
            self.child_rounds.clone(),
        );
        registry.register(
            "wal_archiving",
            "1 while the PostgreSQL primary archives WAL to the object store, 0 while archiving fails; absent without spec.backup",
            self.wal_archiving.clone(),
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
            "objective_availability_ratio",
            "Success ratio of the write probes over objectives.availabilityWindow (the counts the status persists); absent while not measured",
            self.availability_ratio.clone(),
        );
        registry.register(
            "objective_error_budget_remaining_ratio",
            "Share of the availability objective's error budget left over objectives.availabilityWindow (1 untouched, 0 spent, negative overspent); absent while not measured",
            self.error_budget_remaining.clone(),
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
        registry.register(
            "probe",
            "Critical-path probes (a read or write of each path, through the Services clients use), by result",
            self.probes.clone(),
        );
        registry.register_with_unit(
            "probe_p99",
            "P99 of each probed path's successful probes over the last 5 minutes; absent while none succeeded",
            Unit::Seconds,
            self.probe_p99_seconds.clone(),
        );
        registry.register(
            "component_ready_instances",
            "Ready instances of each component, from its workload's status",
            self.component_ready.clone(),
        );
        registry.register(
            "component_desired_instances",
            "Desired instances of each component, from its workload's status",
            self.component_desired.clone(),
        );
    }

    /// The probe counter of one cluster.
    pub fn probe_counter(&self, cluster: &str, namespace: &str) -> ProbeCounter {
        ProbeCounter {
            family: self.probes.clone(),
            cluster: cluster.to_owned(),
            namespace: namespace.to_owned(),
        }
    }

    /// Publishes each probed path's P99 (`None`: removed, nothing measured now).
    pub fn set_probe_p99(&self, cluster: &str, namespace: &str, path: &str, p99: Option<Duration>) {
        let labels = ProbePathLabels {
            cluster: cluster.to_owned(),
            namespace: namespace.to_owned(),
            path: path.to_owned(),
        };
        match p99 {
            Some(p99) => {
                self.probe_p99_seconds
                    .get_or_create(&labels)
                    .set(p99.as_secs_f64());
            }
            None => {
                self.probe_p99_seconds.remove(&labels);
            }
        }
    }

    /// Publishes one component's ready and desired instances.
    pub fn set_component(&self, labels: ComponentLabels, ready: i32, desired: i32) {
        self.component_ready
            .get_or_create(&labels)
            .set(i64::from(ready));
        self.component_desired
            .get_or_create(&labels)
            .set(i64::from(desired));
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

    /// A completed failover or switchover of `component`, from the engine's record.
    pub fn count_completed<D>(
        &self,
        cluster: &str,
        namespace: &str,
        component: &str,
        record: &shanraq_ha::record::FailoverRecord<D>,
    ) {
        let labels = FailoverLabels {
            cluster: cluster.to_owned(),
            namespace: namespace.to_owned(),
            component: component.to_owned(),
            kind: record.kind.as_str().to_owned(),
        };
        self.count_failover(labels, record.rto_ms.map(Duration::from_millis));
    }

    pub fn count_reconcile(&self, took: Duration) {
        self.reconciles.inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// Counts one reconcile's handling of the children (`apply` or `read`).
    pub fn count_child_round(&self, mode: &str) {
        self.child_rounds
            .get_or_create(&ChildRoundLabels {
                mode: mode.to_owned(),
            })
            .inc();
    }

    pub fn count_error(&self, label: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                error: label.to_owned(),
            })
            .inc();
    }

    /// Publishes the availability SLO's ratio and error budget left (`None` removes them).
    pub fn set_availability_slo(
        &self,
        labels: &ObjectiveLabels,
        ratio: Option<f64>,
        budget_remaining: Option<f64>,
    ) {
        for (family, value) in [
            (&self.availability_ratio, ratio),
            (&self.error_budget_remaining, budget_remaining),
        ] {
            match value {
                Some(value) => {
                    family.get_or_create(labels).set(value);
                }
                None => {
                    family.remove(labels);
                }
            }
        }
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
        let probes = metrics.probe_counter("payments", "fintech");
        probes.count("postgres-write", "write", false);
        probes.count("postgres-write", "write", true);
        probes.count("postgres-write", "write", true);
        metrics.set_component(
            ComponentLabels {
                cluster: "payments".into(),
                namespace: "fintech".into(),
                component: "kafka-broker".into(),
            },
            2,
            3,
        );
        let text = encode(&registry).expect("encodes");
        for name in [
            "shanraq_probe_total{cluster=\"payments\",namespace=\"fintech\",path=\"postgres-write\",kind=\"write\",result=\"failure\"} 1",
            "shanraq_probe_total{cluster=\"payments\",namespace=\"fintech\",path=\"postgres-write\",kind=\"write\",result=\"success\"} 2",
            "shanraq_component_ready_instances{cluster=\"payments\",namespace=\"fintech\",component=\"kafka-broker\"} 2",
            "shanraq_component_desired_instances{cluster=\"payments\",namespace=\"fintech\",component=\"kafka-broker\"} 3",
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

    #[test]
    fn probe_rounds_are_counted_once_a_counter_is_attached() {
        use crate::engines::probes::ProbePath;
        use std::time::Instant;
        let (metrics, registry) = Metrics::registered();
        let window = crate::engines::probes::ProbeWindow::default();
        let ms = Some(Duration::from_millis(1));
        window.record(ProbePath::PostgresWrite, Instant::now(), ms);
        window.count_into(metrics.probe_counter("payments", "fintech"));
        window.record(ProbePath::PostgresRead, Instant::now(), ms);
        window.record(ProbePath::PostgresRead, Instant::now(), None);
        window.record(ProbePath::KafkaProduce, Instant::now(), None);
        let text = encode(&registry).expect("encodes");
        for (path, kind, result, count) in [
            ("postgres-read", "read", "success", 1),
            ("postgres-read", "read", "failure", 1),
            ("kafka-produce", "write", "failure", 1),
        ] {
            let line = format!(
                "shanraq_probe_total{{cluster=\"payments\",namespace=\"fintech\",path=\"{path}\",kind=\"{kind}\",result=\"{result}\"}} {count}"
            );
            assert!(text.contains(&line), "missing {line:?} in:\n{text}");
        }
        assert!(
            !text.contains("path=\"postgres-write\""),
            "the round before the counter was attached is not counted: {text}"
        );
    }
}
