//! Every manifest under `deploy/examples/` parses as a ShanraqCluster and passes admission.

use std::path::PathBuf;

use shanraq_api::{LiveState, ShanraqCluster, admission, validate};

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/examples exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_is_valid() {
    let files = examples();
    assert!(
        files.len() >= 2,
        "expected minimal.yaml and production.yaml, found {files:?}"
    );
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable example");
        let raw: serde_json::Value =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let schema_errors = admission::check_schema(&raw);
        assert!(
            schema_errors.is_empty(),
            "{}: {schema_errors:#?}",
            file.display()
        );
        let cluster: ShanraqCluster =
            serde_json::from_value(raw).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        validate(&cluster, &LiveState::default())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}

/// No shipped example asks for an RPO its own settings cannot meet: each one can reach
/// `RPOMet=True` (minimal.yaml's `spec: {}` included, Redis taking its own default RPO).
#[test]
fn every_example_can_meet_its_objectives() {
    for file in examples() {
        let text = std::fs::read_to_string(&file).expect("readable example");
        let cluster: ShanraqCluster =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(
            shanraq_api::objectives::unattainable_rpo(&cluster.spec),
            vec![],
            "{}",
            file.display()
        );
        let redis = cluster
            .spec
            .objective_targets(shanraq_api::objectives::ObjectiveComponent::Redis);
        assert!(
            !redis.rpo.is_zero(),
            "{}: Redis replication is asynchronous",
            file.display()
        );
    }
}

#[test]
fn production_example_is_the_seed_stack() {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples/production.yaml"),
    )
    .expect("production.yaml");
    let cluster: ShanraqCluster = serde_saphyr::from_str(&text).expect("parses");
    let spec = &cluster.spec;
    assert_eq!(spec.postgres.instances, 3);
    assert!(spec.postgres.synchronous.is_synchronous());
    assert_eq!(spec.redis.mode, shanraq_api::redis::RedisMode::Cluster);
    assert_eq!(spec.redis.instances, 6);
    assert_eq!(spec.kafka.brokers, 3);
    let topics: Vec<(&str, i32, i32)> = spec
        .kafka
        .topics
        .iter()
        .map(|t| (t.name.as_str(), t.partitions, t.replication_factor))
        .collect();
    assert_eq!(
        topics,
        vec![
            ("shanraq-transactions", 12, 3),
            ("shanraq-payments", 12, 3),
            ("shanraq-webhooks", 12, 3)
        ]
    );
    assert_eq!(spec.haproxy.replicas, 2);
    assert_eq!(spec.objectives.rpo.to_string(), "0s");
    assert_eq!(spec.objectives.rto.to_string(), "30s");
    assert_eq!(spec.objectives.latency.p99.to_string(), "1ms");
    assert_eq!(spec.objectives.availability, "99.99");
}
