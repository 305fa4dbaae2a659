//! The rendered configuration files are accepted by the real daemons (HAProxy 2.6, promtool,
//! Redis 7, PostgreSQL 15 from Debian), and the daemons run with the values that were rendered.
//! A missing binary fails the test with the Debian package to install.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use shanraq_api::ValidCluster;
use shanraq_render::{haproxy, monitoring, postgres, redis};
use shanraq_testkit::user::PostgresUser;
use shanraq_testkit::{RedisServer, TempPostgres, binaries};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn run(command: &mut Command, what: &str) -> String {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("running {what}: {error}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
}

// ---------------------------------------------------------------- HAProxy

fn haproxy_check(cluster: &ValidCluster) -> String {
    let binary = binaries::haproxy().unwrap_or_else(|error| panic!("{error}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("haproxy.cfg");
    write(&path, &haproxy::haproxy_cfg(cluster));
    run(
        Command::new(binary)
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .env(haproxy::REDIS_PASSWORD_ENV, "not-a-real-password"),
        "haproxy -c",
    )
}

/// Pods that do not exist yet only disable their servers (`init-addr none`); any other warning
/// means HAProxy ignored or reinterpreted part of the config.
fn assert_only_unresolved_servers(output: &str) {
    let unexpected: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("[WARNING]") || line.contains("[ALERT]"))
        .filter(|line| !line.contains("could not resolve address"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected diagnostics:\n{}",
        unexpected.join("\n")
    );
}

#[test]
fn haproxy_accepts_the_minimal_config() {
    let output = haproxy_check(&minimal());
    assert!(output.contains("Configuration file is valid"), "{output}");
    assert_only_unresolved_servers(&output);
}

#[test]
fn haproxy_accepts_the_config_with_app_backends() {
    let cluster = with_spec(
        "  haproxy:\n    backends:\n      - name: api\n        port: 8080\n        rateLimit:\n          requests: 50\n          period: 1m\n        servers:\n          - host: api.fintech.svc.cluster.local\n            port: 8080\n          - host: api-dr.fintech.svc.cluster.local\n            port: 8080\n            backup: true",
    );
    let output = haproxy_check(&cluster);
    assert!(output.contains("Configuration file is valid"), "{output}");
    assert_only_unresolved_servers(&output);
}

#[test]
fn haproxy_accepts_the_production_config() {
    let output = haproxy_check(&production());
    assert!(output.contains("Configuration file is valid"), "{output}");
    assert_only_unresolved_servers(&output);
}

// ---------------------------------------------------------------- Prometheus rules

fn promtool() -> std::path::PathBuf {
    binaries::promtool().unwrap_or_else(|error| panic!("{error}"))
}

fn rules_file(cluster: &ValidCluster, dir: &Path) -> std::path::PathBuf {
    let path = dir.join("rules.yaml");
    let yaml = serde_saphyr::to_string(&monitoring::rule_spec(cluster)).expect("rules as yaml");
    write(&path, &yaml);
    path
}

#[test]
fn promtool_accepts_the_rules() {
    for cluster in [minimal(), production()] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = rules_file(&cluster, dir.path());
        let output = run(
            Command::new(promtool())
                .arg("check")
                .arg("rules")
                .arg(&path),
            "promtool check rules",
        );
        assert!(output.contains("SUCCESS"), "{output}");
    }
}

#[test]
fn the_objective_alert_fires_after_one_minute_of_a_missed_objective() {
    let cluster = production();
    let dir = tempfile::tempdir().expect("tempdir");
    rules_file(&cluster, dir.path());
    let test = r#"rule_files:
  - rules.yaml
evaluation_interval: 30s
tests:
  - interval: 30s
    input_series:
      - series: 'shanraq_objective_met{cluster="payments", namespace="fintech", objective="rpo"}'
        values: '1 1 1 1 0 0 0 0 0 0'
      - series: 'shanraq_objective_met{cluster="other", namespace="fintech", objective="rpo"}'
        values: '0 0 0 0 0 0 0 0 0 0'
    alert_rule_test:
      - eval_time: 2m30s
        alertname: ShanraqObjectiveViolated
        exp_alerts: []
      - eval_time: 4m
        alertname: ShanraqObjectiveViolated
        exp_alerts:
          - exp_labels:
              severity: critical
              cluster: payments
              namespace: fintech
              objective: rpo
            exp_annotations:
              summary: 'Objective rpo is not met on ShanraqCluster fintech/payments'
              description: 'The operator measures objective rpo of fintech/payments as not met. `kubectl describe shanraqcluster -n fintech payments` shows the measured value next to the target.'
"#;
    let test_path = dir.path().join("test.yaml");
    write(&test_path, test);
    let output = run(
        Command::new(promtool())
            .current_dir(dir.path())
            .arg("test")
            .arg("rules")
            .arg(&test_path),
        "promtool test rules",
    );
    assert!(output.contains("SUCCESS"), "{output}");
}

// ---------------------------------------------------------------- Redis

/// The rendered redis.conf with `dir` pointed at a directory that exists here (Redis changes
/// into it while reading the file, before command-line overrides apply); the test server then
/// moves it to its own temp dir and port. Everything else is kept.
fn redis_conf_for_test(cluster: &ValidCluster, dir: &Path) -> String {
    let conf = redis::redis_conf(cluster);
    assert!(
        conf.contains("\ndir /data\n"),
        "redis.conf must set dir /data:\n{conf}"
    );
    conf.replace("\ndir /data\n", &format!("\ndir {}\n", dir.display()))
}

async fn redis_command(port: u16, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to redis");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send to redis");
    let mut buffer = vec![0_u8; 4096];
    let read = stream.read(&mut buffer).await.expect("read from redis");
    String::from_utf8_lossy(&buffer[..read]).into_owned()
}

/// `CONFIG GET key` as the value alone.
async fn redis_config_get(port: u16, key: &str) -> String {
    let reply = redis_command(port, &format!("CONFIG GET {key}\r\n")).await;
    // *2 $len key $len value
    let lines: Vec<&str> = reply.split("\r\n").collect();
    assert!(lines.len() >= 5, "CONFIG GET {key}: {reply:?}");
    lines[4].to_owned()
}

#[tokio::test]
async fn redis_runs_the_replication_config() {
    let cluster = minimal();
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = redis_conf_for_test(&cluster, dir.path());
    let server = RedisServer::start(&conf)
        .await
        .unwrap_or_else(|error| panic!("redis-server refused the rendered redis.conf: {error}"));
    let port = server.port();
    assert_eq!(
        redis_config_get(port, "maxmemory-policy").await,
        "allkeys-lru"
    );
    assert_eq!(redis_config_get(port, "maxmemory").await, "2147483648");
    assert_eq!(redis_config_get(port, "appendonly").await, "yes");
    assert_eq!(redis_config_get(port, "appendfsync").await, "everysec");
    assert_eq!(redis_config_get(port, "min-replicas-to-write").await, "1");
    assert_eq!(redis_config_get(port, "min-replicas-max-lag").await, "10");
    // The password is added at start from the Secret, never rendered.
    assert_eq!(redis_config_get(port, "requirepass").await, "");
}

#[tokio::test]
async fn redis_runs_the_cluster_config() {
    let cluster = with_spec(
        "  redis:\n    mode: cluster\n    instances: 6\n    maxmemory: 64mb\n    maxmemoryPolicy: volatile-lfu",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = redis_conf_for_test(&cluster, dir.path());
    let server = RedisServer::start(&conf)
        .await
        .unwrap_or_else(|error| panic!("redis-server refused the rendered redis.conf: {error}"));
    let port = server.port();
    assert_eq!(
        redis_config_get(port, "maxmemory-policy").await,
        "volatile-lfu"
    );
    assert_eq!(redis_config_get(port, "cluster-node-timeout").await, "5000");
    let info = redis_command(port, "CLUSTER INFO\r\n").await;
    assert!(
        info.contains("cluster_enabled:1") || info.contains("cluster_state:"),
        "{info}"
    );
}

// ---------------------------------------------------------------- PostgreSQL

#[tokio::test]
async fn postgres_starts_with_the_rendered_files_and_shows_their_values() {
    let cluster = with_spec(
        "  postgres:\n    parameters:\n      work_mem: 16MB\n      max_connections: \"150\"\n      log_min_duration_statement: 250ms",
    );
    let conf = postgres::postgresql_conf(&cluster).expect("postgresql.conf");
    let hba = postgres::pg_hba_conf();

    let user = PostgresUser::lookup().unwrap_or_else(|error| panic!("{error}"));
    let dir = tempfile::tempdir().expect("tempdir");
    user.own(dir.path()).expect("chown temp dir");
    let hba_path = dir.path().join("pg_hba.conf");
    write(&hba_path, &hba);
    user.own(&hba_path).expect("chown pg_hba.conf");

    let fragment = format!("{conf}\nhba_file = '{}'\n", hba_path.display());
    let server = TempPostgres::start(&fragment)
        .await
        .unwrap_or_else(|error| panic!("postgres refused the rendered postgresql.conf: {error}"));
    let mut connection = server
        .connect()
        .await
        .expect("scram-sha-256 login over TCP");

    for (setting, expected) in [
        ("work_mem", "16MB"),
        ("max_connections", "150"),
        ("log_min_duration_statement", "250ms"),
        ("wal_level", "replica"),
        ("hot_standby", "on"),
        ("wal_log_hints", "on"),
        ("synchronous_commit", "on"),
        ("password_encryption", "scram-sha-256"),
        ("shared_preload_libraries", "pg_stat_statements"),
        ("idle_in_transaction_session_timeout", "5min"),
        ("synchronous_standby_names", ""),
    ] {
        // current_setting() answers exactly what SHOW answers.
        let value: String = sqlx::query_scalar("SELECT current_setting($1)")
            .bind(setting)
            .fetch_one(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("SHOW {setting}: {error}"));
        assert_eq!(value, expected, "{setting}");
    }

    let hba_file: String = sqlx::query_scalar("SHOW hba_file")
        .fetch_one(&mut connection)
        .await
        .expect("SHOW hba_file");
    assert_eq!(hba_file, hba_path.display().to_string());
    // Every line parsed, and nothing is trusted.
    let (errors, trusted): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE error IS NOT NULL), count(*) FILTER (WHERE auth_method = 'trust') FROM pg_hba_file_rules",
    )
    .fetch_one(&mut connection)
    .await
    .expect("pg_hba_file_rules");
    assert_eq!((errors, trusted), (0, 0));

    // A wrong password over TCP is refused.
    let refused = <sqlx::PgConnection as sqlx::Connection>::connect_with(
        &server.connect_options().password("wrong-password"),
    )
    .await;
    assert!(refused.is_err(), "a wrong password was accepted");
}
