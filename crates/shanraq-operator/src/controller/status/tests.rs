use super::*;
use k8s_openapi::jiff::Timestamp;
use shanraq_api::conditions::{AVAILABILITY_MET, LATENCY_MET, MONITORING_READY, RPO_MET, RTO_MET};
use shanraq_api::conditions::{HAPROXY_READY, KAFKA_READY, POSTGRES_READY, REDIS_READY};
use shanraq_api::names::Names;
use shanraq_api::names::{Component, LABEL_COMPONENT};
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

/// An objective whose measurement path is turned off says which component is missing, never
/// that it will be measured once the cluster is Ready; a figure measured before is dropped.
#[test]
fn objectives_without_their_measurement_path_are_not_measurable() {
    let judged = ha_objectives::ProbeVerdicts {
        latency: Some(shanraq_ha::objectives::ObjectiveStatus {
            target: "1ms".into(),
            measured: "800us".into(),
            met: true,
            message: "p99 800us <= target 1ms".into(),
        }),
        availability: None,
        p99: None,
    };
    let previous = ShanraqClusterStatus {
        objectives: Some(shanraq_api::status::ObjectivesStatus {
            latency_p99: Some(shanraq_api::status::ObjectiveStatus {
                target: "1ms".into(),
                measured: "800us".into(),
                met: true,
            }),
            ..Default::default()
        }),
        ..ShanraqClusterStatus::default()
    };
    for (what, off, component) in [
        ("HAProxy off", "haproxy", "spec.haproxy.enabled: false"),
        ("PostgreSQL off", "postgres", "spec.postgres.enabled: false"),
    ] {
        let mut spec = ShanraqClusterSpec::default();
        match off {
            "haproxy" => spec.haproxy.enabled = false,
            _ => spec.postgres.enabled = false,
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
    let mut spec = ShanraqClusterSpec::default();
    spec.postgres.enabled = false;
    let rpo = objective_conditions(&cluster(spec, 1))
        .into_iter()
        .find(|w| w.type_ == RPO_MET)
        .expect("RPOMet");
    assert_eq!(rpo.reason, REASON_NOT_MEASURABLE);
    assert!(
        rpo.message.contains("PostgreSQL is disabled"),
        "{}",
        rpo.message
    );
    // With both on, the objectives wait for their first measurement as before.
    let wants = objective_conditions(&cluster(ShanraqClusterSpec::default(), 1));
    assert_eq!(find(&wants, LATENCY_MET).reason, REASON_NOT_MEASURED_YET);
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
