use super::*;
use k8s_openapi::jiff::Timestamp;
use shanraq_api::conditions::{AVAILABILITY_MET, LATENCY_MET, MONITORING_READY, RPO_MET, RTO_MET};
use shanraq_api::conditions::{HAPROXY_READY, KAFKA_READY, POSTGRES_READY, REDIS_READY};
use shanraq_api::names::Names;
use shanraq_api::names::{Component, LABEL_COMPONENT};
use shanraq_api::objectives::ObjectiveComponent;
use shanraq_api::{LiveState, ShanraqClusterSpec};
use shanraq_ha::objectives::RpoMeasurement;

use crate::engines::probes::verdicts::PathVerdict;
use crate::engines::probes::window::PathFigures;
use crate::engines::probes::{ProbePath, ProbeTrouble, ProbeVerdicts};

/// Verdicts with every listed path judged at `p99` microseconds against `target_us`.
fn judged_paths(paths: &[(ProbePath, u64, u64)]) -> ProbeVerdicts {
    let us = std::time::Duration::from_micros;
    ProbeVerdicts {
        paths: paths
            .iter()
            .map(|&(path, p99, target)| PathVerdict {
                path,
                figures: PathFigures {
                    p50: Some(us(p99 / 2)),
                    p99: Some(us(p99)),
                    samples: 300,
                    failures: 0,
                },
                target: us(target),
                met: p99 <= target,
                last_outage: None,
            })
            .collect(),
        ..ProbeVerdicts::default()
    }
}

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
        on_delete: false,
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
                    on_delete: false,
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
    // PostgreSQL and Redis 250ms x 3 + 0s + 300ms + 250ms; Kafka 9s + 1s.
    let rto = find(&wants, RTO_MET);
    assert_eq!(rto.truth, Truth::True);
    assert_eq!(rto.reason, "ProjectedWithinTarget");
    assert!(
        rto.message.starts_with(
            "Kafka: RTO 10s <= target 30s (projected 10s: broker session timeout 9s, leader election 1s); PostgreSQL: RTO 1s300ms <= target 30s (projected 1s300ms: detection 250ms x 3, failover delay 0s, promotion 300ms, one routing check 250ms; no failover measured yet)"
        ),
        "the slowest projection leads: {}",
        rto.message
    );
    assert!(
        rto.message.contains("; Redis: RTO 1s300ms <= target 30s"),
        "{}",
        rto.message
    );
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

    // Asynchronous PostgreSQL: nobody is promoted before the old primary's lease ran out.
    let mut spec = ShanraqClusterSpec::default();
    spec.postgres.synchronous.number = 0;
    spec.objectives.rpo = "5s".parse().expect("duration");
    let wants = objective_conditions(&cluster(spec, 1));
    let rto = find(&wants, RTO_MET);
    assert!(
        rto.message.contains(
            "PostgreSQL: RTO 5s50ms <= target 30s (projected 5s50ms: detection 250ms x 3, failover delay 0s, the old primary's lease 1s500ms + reply slack 2s + one probe 250ms (no synchronous standby fences it), promotion 300ms, one routing check 250ms"
        ),
        "{}",
        rto.message
    );
    assert!(
        rto.message.contains("Redis: RTO 1s300ms"),
        "{}",
        rto.message
    );

    // dataDurability preferred: the synchronous projection, and the lease wait while fallen
    // back.
    let mut spec = ShanraqClusterSpec::default();
    spec.postgres.synchronous.data_durability = shanraq_api::postgres::DataDurability::Preferred;
    let preferred = cluster(spec, 1);
    let rto = |fallen_back: bool| {
        let observed = Observed {
            postgres_fallen_back: fallen_back,
            ..Observed::default()
        };
        find(&conditions(&preferred, &observed, &at(10)), RTO_MET)
            .message
            .clone()
    };
    assert!(
        rto(false).contains("PostgreSQL: RTO 1s300ms"),
        "{}",
        rto(false)
    );
    assert!(
        rto(true).contains("PostgreSQL: RTO 5s50ms <= target 30s (projected 5s50ms: detection 250ms x 3, failover delay 0s, the old primary's lease 1s500ms + reply slack 2s + one probe 250ms (dataDurability preferred has fallen back)"),
        "{}",
        rto(true)
    );
}

/// An objective whose measurement paths are all turned off says which component is missing
/// and why, never that it will be measured once the cluster is Ready; a figure measured
/// before is dropped. A component without a path is named beside those that have one.
#[test]
fn objectives_without_their_measurement_path_are_not_measurable() {
    let judged = judged_paths(&[(ProbePath::PostgresRead, 800, 1000)]);
    let previous = ShanraqClusterStatus {
        objectives: Some(shanraq_api::status::ObjectivesStatus {
            latency_p99: Some(shanraq_api::status::ObjectiveStatus {
                target: "1ms".into(),
                measured: "800us".into(),
                met: true,
                component: None,
            }),
            ..Default::default()
        }),
        ..ShanraqClusterStatus::default()
    };
    for (what, off, component) in [
        ("HAProxy off", "haproxy", "spec.haproxy.enabled: false"),
        ("nothing to probe", "all", "no component is enabled"),
    ] {
        let mut spec = ShanraqClusterSpec::default();
        spec.kafka.enabled = false;
        match off {
            "haproxy" => spec.haproxy.enabled = false,
            _ => {
                spec.postgres.enabled = false;
                spec.redis.enabled = false;
            }
        }
        let valid = cluster(spec, 2);
        let observed = Observed {
            workloads: all_ready(),
            probes: judged.clone(),
            ..Observed::default()
        };
        let wants = conditions(&valid, &observed, &at(10));
        for type_ in [LATENCY_MET, AVAILABILITY_MET] {
            let want = find(&wants, type_);
            assert_eq!(
                (want.truth, want.reason.as_str()),
                (Truth::Unknown, REASON_NOT_MEASURABLE),
                "{what}: {type_}"
            );
            assert!(want.message.contains(component), "{what}: {}", want.message);
            assert!(!want.message.contains("Ready"), "{what}: {}", want.message);
        }
        let next = desired(&previous, &valid, &observed, &at(10));
        assert!(
            next.objectives
                .as_ref()
                .and_then(|o| o.latency_p99.as_ref())
                .is_none(),
            "{what}: the old latency figure is dropped"
        );
    }
    // HAProxy off with Kafka on: Kafka's produce decides, PostgreSQL and Redis are named.
    let mut spec = ShanraqClusterSpec::default();
    spec.haproxy.enabled = false;
    let valid = cluster(spec, 2);
    let observed = Observed {
        workloads: all_ready(),
        probes: judged_paths(&[(ProbePath::KafkaProduce, 4000, 10_000)]),
        ..Observed::default()
    };
    let latency = find(&conditions(&valid, &observed, &at(10)), LATENCY_MET).clone();
    assert_eq!(
        (latency.truth, latency.reason.as_str()),
        (Truth::True, "Measured")
    );
    assert!(
        latency.message.starts_with("Kafka: write p99 4ms (p50 2ms, 300 probes) <= 10ms; PostgreSQL: not measured (target p99 1ms; its probes go through HAProxy, which is disabled"),
        "{}",
        latency.message
    );
    // Without PostgreSQL the RPO is still measured, from the components that remain; with
    // none left, nothing can measure it.
    let mut spec = ShanraqClusterSpec::default();
    spec.postgres.enabled = false;
    let rpo = find(&objective_conditions(&cluster(spec.clone(), 1)), RPO_MET).clone();
    assert_eq!(rpo.reason, REASON_NOT_MEASURED_YET);
    assert!(!rpo.message.contains("PostgreSQL"), "{}", rpo.message);
    assert!(
        rpo.message.starts_with("Redis: not measured yet"),
        "{}",
        rpo.message
    );
    spec.redis.enabled = false;
    spec.kafka.enabled = false;
    let rpo = find(&objective_conditions(&cluster(spec, 1)), RPO_MET).clone();
    assert_eq!(
        (rpo.truth, rpo.reason.as_str()),
        (Truth::Unknown, REASON_NOT_MEASURABLE)
    );
    // With every path on, the objectives wait for their first measurement as before.
    let wants = objective_conditions(&cluster(ShanraqClusterSpec::default(), 1));
    assert_eq!(find(&wants, LATENCY_MET).reason, REASON_NOT_MEASURED_YET);
}

/// LatencyMet is True only when every path of every component is within its target; the
/// worst path decides the status figure, and each path is listed with its percentiles.
#[test]
fn latency_is_met_only_when_every_path_is() {
    let valid = cluster(ShanraqClusterSpec::default(), 1);
    let all_met = judged_paths(&[
        (ProbePath::PostgresRead, 700, 1000),
        (ProbePath::PostgresWrite, 3000, 10_000),
        (ProbePath::RedisGet, 400, 1000),
        (ProbePath::RedisSet, 500, 10_000),
        (ProbePath::KafkaProduce, 6000, 10_000),
    ]);
    let observed = |probes: ProbeVerdicts| Observed {
        workloads: all_ready(),
        probes,
        ..Observed::default()
    };
    let latency = find(
        &conditions(&valid, &observed(all_met.clone()), &at(10)),
        LATENCY_MET,
    )
    .clone();
    assert_eq!(
        (latency.truth, latency.reason.as_str()),
        (Truth::True, "Measured")
    );
    assert!(
        latency.message.starts_with("Kafka: write p99 6ms (p50 3ms, 300 probes) <= 10ms; PostgreSQL: read p99 0.7ms (p50 0.35ms, 300 probes) <= 1ms, write p99 3ms (p50 1.5ms, 300 probes) <= 10ms; Redis: "),
        "the slowest path leads while all are met: {}",
        latency.message
    );
    let mut slow_get = all_met;
    slow_get.paths[2].figures.p99 = Some(std::time::Duration::from_micros(1500));
    slow_get.paths[2].met = false;
    let wants = conditions(&valid, &observed(slow_get.clone()), &at(10));
    let latency = find(&wants, LATENCY_MET).clone();
    assert_eq!(
        (latency.truth, latency.reason.as_str()),
        (Truth::False, "OverTarget")
    );
    assert!(
        latency
            .message
            .starts_with("Redis: read p99 1.5ms (p50 0.2ms, 300 probes) > 1ms"),
        "the path over its target leads: {}",
        latency.message
    );
    let ready = ShanraqClusterStatus {
        conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: READY.to_owned(),
            status: "True".to_owned(),
            reason: "Ready".to_owned(),
            message: String::new(),
            last_transition_time: at(1),
            observed_generation: Some(1),
        }],
        ..ShanraqClusterStatus::default()
    };
    let next = desired(&ready, &valid, &observed(slow_get), &at(10));
    let objectives = next.objectives.expect("objectives");
    let figure = objectives.latency_p99.expect("latency figure");
    assert_eq!(
        (
            figure.component.as_deref(),
            figure.measured.as_str(),
            figure.met
        ),
        (Some("Redis"), "1.5ms", false)
    );
    let paths: Vec<(&str, Option<&str>, bool)> = objectives
        .probe_paths
        .iter()
        .map(|p| (p.path.as_str(), p.p99.as_deref(), p.met))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("postgres-read", Some("0.7ms"), true),
            ("postgres-write", Some("3ms"), true),
            ("redis-get", Some("1.5ms"), false),
            ("redis-set", Some("0.5ms"), true),
            ("kafka-produce", Some("6ms"), true),
        ]
    );
}

/// The last outage a client saw through the Service counts in the RTO beside the projection
/// and the engine's own measure: over the target, RTOMet is False and says why.
#[test]
fn an_outage_a_client_saw_counts_in_the_rto() {
    let valid = cluster(ShanraqClusterSpec::default(), 1);
    let mut probes = judged_paths(&[(ProbePath::PostgresWrite, 3000, 10_000)]);
    probes.paths[0].last_outage = Some(crate::engines::probes::window::Outage {
        started: std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
        duration: std::time::Duration::from_millis(31_500),
    });
    let observed = Observed {
        workloads: all_ready(),
        probes,
        last_failover_rto: Some(std::time::Duration::from_millis(640)),
        ..Observed::default()
    };
    let rto = find(&conditions(&valid, &observed, &at(10)), RTO_MET).clone();
    assert_eq!(
        (rto.truth, rto.reason.as_str()),
        (Truth::False, "OverTarget")
    );
    assert!(
        rto.message.starts_with("PostgreSQL: RTO 31s500ms > target 30s (projected 1s300ms: detection 250ms x 3, failover delay 0s, promotion 300ms, one routing check 250ms; last failover 640ms; last outage a client saw 31.5s (postgres-write at 2027-01-15T08:00:00Z))"),
        "{}",
        rto.message
    );
}

#[test]
fn probe_objectives_stay_unknown_until_the_cluster_was_first_ready() {
    let valid = cluster(ShanraqClusterSpec::default(), 1);
    let failing = ProbeVerdicts {
        availability: Some(shanraq_ha::objectives::ObjectiveStatus {
            target: "99.99%".into(),
            measured: "0 of 2 write probes succeeded".into(),
            met: false,
            message: "0 of 2 write probes succeeded (target 99.99%)".into(),
        }),
        ..Default::default()
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

    // An OnDelete StatefulSet whose template changed: the message says the pods wait to be
    // deleted, so a change nobody rolls is never pending silently.
    let stale: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": "payments-pg",
            "generation": 4,
            "labels": { LABEL_COMPONENT: "postgres" }
        },
        "spec": { "replicas": 3, "selector": {}, "template": {}, "serviceName": "payments-pg",
                  "updateStrategy": { "type": "OnDelete" } },
        "status": { "replicas": 3, "readyReplicas": 3, "updatedReplicas": 1, "observedGeneration": 4 }
    }))
    .expect("object");
    let workload = Workload::from_object(&stale).expect("a StatefulSet");
    assert!(workload.on_delete && !workload.is_ready());
    let condition = component_condition(
        POSTGRES_READY,
        "PostgreSQL",
        "postgres",
        true,
        &[Component::Postgres],
        &Observed {
            workloads: vec![workload],
            ..Observed::default()
        },
    );
    assert_eq!(condition.reason, "Progressing");
    assert!(
        condition.message.contains("1/3 updated")
            && condition.message.contains("only when deleted"),
        "{}",
        condition.message
    );
}

fn spec_of(yaml: &str) -> ShanraqClusterSpec {
    serde_saphyr::from_str(yaml).expect("test spec parses")
}

fn measured(
    postgres: Option<RpoMeasurement>,
    redis: Option<RpoMeasurement>,
    kafka: Option<RpoMeasurement>,
) -> Observed {
    Observed {
        workloads: all_ready(),
        rpo: RpoByComponent {
            postgres,
            redis,
            kafka,
        },
        ..Observed::default()
    }
}

fn synchronous(name: &str) -> RpoMeasurement {
    RpoMeasurement::Synchronous {
        streaming: vec![name.to_owned()],
        required: 1,
    }
}

fn redis_lag(seconds: u64) -> RpoMeasurement {
    RpoMeasurement::Asynchronous {
        replica: "redis 10.0.0.7:6379".to_owned(),
        lag_bytes: 120,
        lag: Duration::from_secs(seconds),
    }
}

/// `spec: {}` (deploy/examples/minimal.yaml) can meet its RPO: PostgreSQL's 0s by synchronous
/// replication, Redis its own default (minReplicasMaxLag, 10s), Kafka by min.insync.replicas.
#[test]
fn the_default_spec_meets_its_rpo_and_names_every_component() {
    let valid = cluster(ShanraqClusterSpec::default(), 1);
    let observed = measured(
        Some(synchronous("payments-postgres-1")),
        Some(redis_lag(1)),
        Some(synchronous("Kafka: every partition's ISR >= 2")),
    );
    let wants = conditions(&valid, &observed, &at(10));
    let rpo = find(&wants, RPO_MET);
    assert_eq!((rpo.truth, rpo.reason.as_str()), (Truth::True, "Measured"));
    assert!(
        rpo.message.starts_with(
            "Redis: RPO 1s (asynchronous replica redis 10.0.0.7:6379 120 bytes behind) <= target 10s (Redis's default"
        ),
        "the worst leads: {}",
        rpo.message
    );
    assert!(
        rpo.message.contains(
            "; PostgreSQL: RPO 0s (synchronous standby payments-postgres-1 streaming) <= target 0s"
        ),
        "{}",
        rpo.message
    );
    assert!(rpo.message.contains("; Kafka: RPO 0s"), "{}", rpo.message);
    let next = desired(&ShanraqClusterStatus::default(), &valid, &observed, &at(10));
    let rto = next
        .objectives
        .as_ref()
        .and_then(|o| o.rto.clone())
        .expect("an RTO figure");
    assert_eq!(
        (rto.measured.as_str(), rto.component.as_deref()),
        ("10s (projected)", Some("Kafka")),
        "a projection says so; Kafka's broker session timeout is the longest"
    );
    let figure = next.objectives.and_then(|o| o.rpo).expect("an RPO figure");
    assert_eq!(
        (
            figure.measured.as_str(),
            figure.target.as_str(),
            figure.met,
            figure.component.as_deref()
        ),
        ("1s", "10s", true, Some("Redis"))
    );
}

#[test]
fn the_worst_component_decides_against_its_own_target() {
    // PostgreSQL asynchronous with its own 1s; Redis within the cluster-wide 5s.
    let valid = cluster(
        spec_of(
            "objectives: { rpo: 5s }\npostgres: { synchronous: { number: 0 }, objectives: { rpo: 1s } }",
        ),
        1,
    );
    let postgres = RpoMeasurement::Asynchronous {
        replica: "payments-postgres-2".to_owned(),
        lag_bytes: 90_000,
        lag: Duration::from_secs(2),
    };
    let wants = conditions(
        &valid,
        &measured(Some(postgres), Some(redis_lag(3)), None),
        &at(10),
    );
    let rpo = find(&wants, RPO_MET);
    assert_eq!(
        (rpo.truth, rpo.reason.as_str()),
        (Truth::False, "OverTarget")
    );
    assert!(
        rpo.message.starts_with(
            "PostgreSQL: RPO 2s (asynchronous replica payments-postgres-2 90000 bytes behind) > target 1s; Redis: RPO 3s"
        ),
        "{}",
        rpo.message
    );
    assert!(
        rpo.message
            .contains("<= target 5s; Kafka: not measured yet"),
        "{}",
        rpo.message
    );

    // A component's own RTO: Redis must fail over within 1s, which the timings do not allow.
    let valid = cluster(spec_of("redis: { objectives: { rto: 1s } }"), 1);
    let rto = find(&objective_conditions(&valid), RTO_MET).clone();
    assert_eq!(
        (rto.truth, rto.reason.as_str()),
        (Truth::False, "ProjectedOverTarget")
    );
    assert!(
        rto.message.starts_with("Redis: RTO 1s300ms > target 1s"),
        "{}",
        rto.message
    );
}

#[test]
fn an_rpo_the_settings_cannot_meet_is_false_at_once_naming_the_field() {
    let valid = cluster(spec_of("redis: { objectives: { rpo: 0s } }"), 1);
    // Before anything was measured.
    let rpo = find(&objective_conditions(&valid), RPO_MET).clone();
    assert_eq!(
        (rpo.truth, rpo.reason.as_str()),
        (Truth::False, "Unattainable")
    );
    assert!(
        rpo.message.starts_with(
            "Redis: cannot be met: Redis replication is asynchronous: a failover can lose writes its replicas had not received, so rpo 0s cannot be met; set spec.redis.objectives.rpo to 1s or more"
        ),
        "{}",
        rpo.message
    );
    // And while every measurement is fine.
    let observed = measured(
        Some(synchronous("payments-postgres-1")),
        Some(redis_lag(0)),
        Some(synchronous("kafka")),
    );
    let next = desired(&ShanraqClusterStatus::default(), &valid, &observed, &at(10));
    let rpo = next
        .conditions
        .iter()
        .find(|c| c.type_ == RPO_MET)
        .expect("RPOMet");
    assert_eq!(
        (rpo.status.as_str(), rpo.reason.as_str()),
        ("False", "Unattainable")
    );
    let figure = next.objectives.and_then(|o| o.rpo).expect("figure");
    assert_eq!(
        (
            figure.measured.as_str(),
            figure.met,
            figure.component.as_deref()
        ),
        ("unattainable", false, Some("Redis"))
    );
}

#[test]
fn redis_cluster_mode_is_judged_by_its_worst_shard_once_sampled() {
    let valid = cluster(spec_of("redis: { mode: cluster, instances: 6 }"), 1);
    let observed = measured(
        Some(synchronous("payments-postgres-1")),
        None,
        Some(synchronous("kafka")),
    );
    let rpo = find(&conditions(&valid, &observed, &at(10)), RPO_MET).clone();
    assert_eq!(rpo.truth, Truth::Unknown, "{}", rpo.message);
    assert!(
        rpo.message.contains(
            "Redis: not measured yet (target 10s; the Redis Cluster's shards have not been sampled yet)"
        ),
        "{}",
        rpo.message
    );
    let sampled = measured(
        Some(synchronous("payments-postgres-1")),
        Some(redis_lag(1)),
        Some(synchronous("kafka")),
    );
    let rpo = find(&conditions(&valid, &sampled, &at(10)), RPO_MET).clone();
    assert_eq!(rpo.truth, Truth::True, "{}", rpo.message);
    assert!(
        rpo.message
            .contains("Redis: RPO 1s (asynchronous replica redis 10.0.0.7:6379 120 bytes behind)"),
        "{}",
        rpo.message
    );
    let unbounded = measured(
        Some(synchronous("payments-postgres-1")),
        Some(RpoMeasurement::NoPromotableReplica {
            reason:
                "no online replica in the shard of Redis Cluster master 10.0.0.4:6379 (5461 slots)"
                    .to_owned(),
        }),
        Some(synchronous("kafka")),
    );
    let rpo = find(&conditions(&valid, &unbounded, &at(10)), RPO_MET).clone();
    assert_eq!(rpo.truth, Truth::False, "{}", rpo.message);
    assert!(rpo.message.contains("10.0.0.4:6379"), "{}", rpo.message);
    let rto = find(&conditions(&valid, &observed, &at(10)), RTO_MET).clone();
    assert!(
        rto.message.contains(
            "Redis: RTO 6s <= target 30s (projected 6s: Redis Cluster node timeout 5s, replica election 1s"
        ),
        "{}",
        rto.message
    );
}

#[test]
fn probes_that_cannot_run_say_why() {
    let valid = cluster(ShanraqClusterSpec::default(), 1);
    let with = |trouble: Vec<(ObjectiveComponent, ProbeTrouble)>| Observed {
        workloads: all_ready(),
        probes: ProbeVerdicts {
            trouble,
            ..judged_paths(&[(ProbePath::KafkaProduce, 4000, 10_000)])
        },
        ..Observed::default()
    };
    let not_running = with(vec![(
        ObjectiveComponent::Postgres,
        ProbeTrouble::NotRunning(
            "the application Secret cannot be read: cannot read Secret payments-app".into(),
        ),
    )]);
    let wants = conditions(&valid, &not_running, &at(10));
    for type_ in [LATENCY_MET, AVAILABILITY_MET] {
        let want = find(&wants, type_);
        assert_eq!(
            (want.truth, want.reason.as_str()),
            (Truth::Unknown, REASON_PROBE_NOT_RUNNING),
            "{type_}"
        );
        assert!(
            want.message.starts_with(
                "PostgreSQL: the probes cannot run: the application Secret cannot be read"
            ),
            "{type_}: {}",
            want.message
        );
    }
    assert!(
        find(&wants, LATENCY_MET)
            .message
            .contains("Kafka: write p99 4ms"),
        "what is measured is still said: {}",
        find(&wants, LATENCY_MET).message
    );
    let failing = with(vec![
        (
            ObjectiveComponent::Redis,
            ProbeTrouble::Failing(
                "3 probes, none succeeded; last error: connect: connection refused".into(),
            ),
        ),
        (
            ObjectiveComponent::Postgres,
            ProbeTrouble::NotRunning("the operator cannot resolve payments-haproxy".into()),
        ),
    ]);
    let latency = find(&conditions(&valid, &failing, &at(10)), LATENCY_MET).clone();
    assert_eq!(
        (latency.truth, latency.reason.as_str()),
        (Truth::False, REASON_PROBE_FAILING)
    );
    assert!(
        latency
            .message
            .starts_with("Redis: every probe of the window failed: 3 probes, none succeeded; last error: connect: connection refused; PostgreSQL: the probes cannot run"),
        "{}",
        latency.message
    );
}

/// The availability SLO's counts go to the status (so that a restarted operator or a new
/// leader resumes them) with the budget left, and stay there while nothing measures.
#[test]
fn the_availability_ledger_and_budget_are_persisted_in_the_status() {
    use shanraq_ha::objectives::{AvailabilityLedger, BucketCounts, availability_slo};
    let valid = cluster(ShanraqClusterSpec::default(), 1);
    let window = valid.spec.objectives.availability_window.as_std();
    let mut ledger = AvailabilityLedger::new(window);
    ledger.add(
        1_800_000_000,
        BucketCounts {
            ok: 10_799,
            total: 10_800,
        },
    );
    let slo = availability_slo(99.99, window, &ledger);
    let observed = Observed {
        workloads: all_ready(),
        probes: ProbeVerdicts {
            availability: Some(slo.status.clone()),
            budget_remaining: slo.budget_remaining,
            availability_ratio: slo.ratio,
            ledger: Some(ledger.clone()),
            ..Default::default()
        },
        ..Observed::default()
    };
    let ready = ShanraqClusterStatus {
        conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: READY.to_owned(),
            status: "True".to_owned(),
            reason: "Ready".to_owned(),
            message: String::new(),
            last_transition_time: at(1),
            observed_generation: Some(1),
        }],
        ..ShanraqClusterStatus::default()
    };
    let next = desired(&ready, &valid, &observed, &at(10));
    let objectives = next.objectives.clone().expect("objectives");
    assert_eq!(
        objectives.error_budget_remaining.as_deref(),
        Some("7.4%"),
        "one failure of 10800 leaves 1 - 1/1.08 of a 0.01% budget"
    );
    let persisted = objectives.availability_ledger.clone().expect("ledger");
    assert_eq!(persisted.bucket_seconds, 3 * 3600);
    assert_eq!(
        crate::engines::probes::verdicts::ledger_from_status(Some(&persisted)),
        Some(ledger),
        "what is persisted reads back the same"
    );
    let availability = next
        .conditions
        .iter()
        .find(|c| c.type_ == AVAILABILITY_MET)
        .expect("AvailabilityMet");
    assert_eq!(availability.status, "True", "{}", availability.message);
    assert!(
        availability
            .message
            .contains("over the 720h window (10799 of 10800 write probes succeeded; 7.4% of the error budget left)"),
        "{}",
        availability.message
    );
    // A round without probes (the task restarting) keeps the persisted counts.
    let quiet = Observed {
        workloads: all_ready(),
        ..Observed::default()
    };
    let after = desired(&next, &valid, &quiet, &at(20));
    assert_eq!(
        after.objectives.and_then(|o| o.availability_ledger),
        Some(persisted)
    );
}

/// Health as Flux reads it (`wait: true` and `healthChecks` use kstatus): for a custom resource
/// without rules of its own, kstatus's generic check (sigs.k8s.io/cli-utils
/// `pkg/kstatus/status/generic.go`): `InProgress` while `status.observedGeneration` differs from
/// `metadata.generation` or `Reconciling` is True, `Failed` while `Stalled` is True, otherwise
/// `Current`. `Ready` is not read.
fn kstatus(generation: i64, status: &ShanraqClusterStatus) -> &'static str {
    if status
        .observed_generation
        .is_some_and(|observed| observed != generation)
    {
        return "InProgress";
    }
    for condition in &status.conditions {
        if condition.type_ == RECONCILING && condition.status == "True" {
            return "InProgress";
        }
        if condition.type_ == STALLED && condition.status == "True" {
            return "Failed";
        }
    }
    "Current"
}

/// Flux reports a ShanraqCluster healthy exactly when it is `Ready` for the applied
/// generation: in progress while a generation is unobserved or rolling out, failed when the
/// spec is refused.
#[test]
fn flux_reads_health_through_kstatus_as_ready_for_the_applied_generation() {
    let rolling = {
        let mut workloads = all_ready();
        workloads[0].ready = 1;
        workloads
    };
    let first = desired(
        &ShanraqClusterStatus::default(),
        &cluster(ShanraqClusterSpec::default(), 1),
        &Observed {
            workloads: rolling,
            ..Observed::default()
        },
        &at(1),
    );
    assert_eq!(kstatus(1, &first), "InProgress", "rolling out generation 1");
    assert_ne!(find_condition(&first, READY), "True");

    let ready = desired(
        &first,
        &cluster(ShanraqClusterSpec::default(), 1),
        &Observed {
            workloads: all_ready(),
            ..Observed::default()
        },
        &at(2),
    );
    assert_eq!(kstatus(1, &ready), "Current");
    assert_eq!(find_condition(&ready, READY), "True");
    // A new spec the operator has not reconciled yet: the old Ready=True does not count.
    assert_eq!(kstatus(2, &ready), "InProgress");

    let invalid = InvalidSpec {
        errors: vec![shanraq_api::admission::FieldError {
            field: "spec.kafka.controllers".into(),
            message: "kafka.controllers must be odd".into(),
        }],
    };
    let refused = stalled(&ready, Some(3), &invalid, &at(3));
    assert_eq!(kstatus(3, &refused), "Failed");
    assert_eq!(find_condition(&refused, READY), "False");
}

fn find_condition(status: &ShanraqClusterStatus, type_: &str) -> String {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

/// A measured failover joins the projection of its own component; the slower decides.
#[test]
fn measured_failovers_are_judged_per_component() {
    let valid = cluster(spec_of("redis: { objectives: { rto: 2s } }"), 1);
    let observed = Observed {
        workloads: all_ready(),
        last_failover_rto: Some(Duration::from_millis(1250)),
        last_redis_failover_rto: Some(Duration::from_millis(2500)),
        ..Observed::default()
    };
    let rto = find(&conditions(&valid, &observed, &at(10)), RTO_MET).clone();
    assert_eq!(
        (rto.truth, rto.reason.as_str()),
        (Truth::False, "OverTarget")
    );
    assert!(
        rto.message.starts_with(
            "Redis: RTO 2s500ms > target 2s (projected 1s300ms: detection 250ms x 3, failover delay 0s, promotion 300ms, one routing check 250ms; last failover 2.5s)"
        ),
        "{}",
        rto.message
    );
    assert!(
        rto.message.contains(
            "PostgreSQL: RTO 1s300ms <= target 30s (projected 1s300ms: detection 250ms x 3, failover delay 0s, promotion 300ms, one routing check 250ms; last failover 1.25s)"
        ),
        "{}",
        rto.message
    );
    let next = desired(&ShanraqClusterStatus::default(), &valid, &observed, &at(10));
    let figure = next.objectives.and_then(|o| o.rto).expect("RTO figure");
    assert_eq!(
        (
            figure.measured.as_str(),
            figure.target.as_str(),
            figure.met,
            figure.component.as_deref()
        ),
        ("2s500ms", "2s", false, Some("Redis"))
    );
}
