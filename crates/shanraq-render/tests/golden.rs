//! Rendered configuration files compared byte for byte with `tests/golden/`. A change to a
//! rendered file shows up as a diff in review. Regenerate with `SHANRAQ_UPDATE_GOLDEN=1 cargo
//! test -p shanraq-render --test golden`.

mod common;

use std::path::PathBuf;

use common::*;
use shanraq_render::Child;

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("SHANRAQ_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "{}: {error}; run with SHANRAQ_UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    pretty_assertions::assert_eq!(
        expected,
        actual,
        "{name} differs from its golden file; if the change is intended, regenerate with SHANRAQ_UPDATE_GOLDEN=1"
    );
}

/// A cluster with application backends behind HAProxy (one rate-limited, one with a backup).
pub fn with_backends() -> shanraq_api::ValidCluster {
    with_spec(
        "  redis:\n    mode: replication\n  haproxy:\n    replicas: 3\n    backends:\n      - name: payments-api\n        port: 8080\n        healthPath: /healthz\n        balance: leastconn\n        rateLimit:\n          requests: 100\n          period: 10s\n        servers:\n          - host: payments-api.fintech.svc.cluster.local\n            port: 8080\n          - host: payments-api-dr.fintech.svc.cluster.local\n            port: 8080\n            backup: true\n      - name: webhooks\n        port: 8081\n        servers:\n          - host: webhooks.fintech.svc.cluster.local\n            port: 80\n  failover:\n    probePeriod: 500ms",
    )
}

#[test]
fn postgresql_conf() {
    let rendered = render(&production(), true);
    golden(
        "postgresql.conf",
        &config_file(&rendered, "payments-pg-config", "postgresql.conf"),
    );
}

/// With `spec.backup`: the archiving settings in postgresql.conf, and pgbackrest.conf.
#[test]
fn postgresql_and_pgbackrest_conf_with_backup() {
    let rendered = render(&backup(), true);
    golden(
        "postgresql-backup.conf",
        &config_file(&rendered, "demo-pg-config", "postgresql.conf"),
    );
    golden(
        "pgbackrest.conf",
        &config_file(&rendered, "demo-pg-config", "pgbackrest.conf"),
    );
}

#[test]
fn pg_hba_conf() {
    let rendered = render(&production(), true);
    golden(
        "pg_hba.conf",
        &config_file(&rendered, "payments-pg-config", "pg_hba.conf"),
    );
}

#[test]
fn redis_conf_replication() {
    let rendered = render(&minimal(), true);
    golden(
        "redis-replication.conf",
        &config_file(&rendered, "demo-redis-config", "redis.conf"),
    );
}

#[test]
fn redis_conf_cluster() {
    let rendered = render(&production(), true);
    golden(
        "redis-cluster.conf",
        &config_file(&rendered, "payments-redis-config", "redis.conf"),
    );
}

#[test]
fn kafka_properties() {
    let rendered = render(&production(), true);
    golden(
        "broker-0.properties",
        &config_file(&rendered, "payments-kafka-config", "broker-0.properties"),
    );
    golden(
        "controller-0.properties",
        &config_file(
            &rendered,
            "payments-kafka-config",
            "controller-0.properties",
        ),
    );
}

#[test]
fn haproxy_cfg_minimal() {
    let rendered = render(&minimal(), true);
    golden(
        "haproxy-minimal.cfg",
        &config_file(&rendered, "demo-haproxy-config", "haproxy.cfg"),
    );
}

#[test]
fn haproxy_cfg_with_backends() {
    let rendered = render(&with_backends(), true);
    golden(
        "haproxy-backends.cfg",
        &config_file(&rendered, "demo-haproxy-config", "haproxy.cfg"),
    );
}

#[test]
fn prometheus_rule() {
    let rendered = render(&production(), true);
    let Child::PrometheusRule(_) = find(&rendered, "PrometheusRule", "payments-objectives") else {
        panic!("not a PrometheusRule");
    };
    let json = find(&rendered, "PrometheusRule", "payments-objectives")
        .to_json()
        .expect("serialises");
    let yaml = serde_saphyr::to_string(&json).expect("yaml");
    golden("prometheus-rule.yaml", &yaml);
}
