//! The rendered configuration files are accepted by the real daemons (HAProxy 2.6, promtool,
//! Redis 7, PostgreSQL 15 from Debian), and the daemons run with the values that were rendered.
//! A missing binary fails the test with the Debian package to install.

mod common;

use std::collections::BTreeMap;
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

/// Every alert of the rendered rules, for the fixture clusters the promtool cases use.
fn alert_names(cluster: &ValidCluster) -> Vec<String> {
    monitoring::rule_spec(cluster)
        .groups
        .iter()
        .flat_map(|group| group.rules.iter().filter_map(|rule| rule.alert.clone()))
        .collect()
}

/// The `alertname`s a `promtool test rules` file tests.
fn tested_alerts(case: &str) -> Vec<String> {
    case.lines()
        .filter_map(|line| line.trim().strip_prefix("alertname:"))
        .map(|name| name.trim().to_owned())
        .collect()
}

/// Each alert has a case in `tests/promtool/<fixture>/` that shows it silent and firing, and
/// every case passes `promtool test rules` against that fixture's rendered rules.
#[test]
fn every_alert_has_a_passing_promtool_test() {
    let cases_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promtool");
    let mut alerts = std::collections::BTreeSet::new();
    let mut tested = std::collections::BTreeSet::new();
    for (fixture, cluster) in [
        ("production", production()),
        ("minimal", minimal()),
        ("backup", backup()),
    ] {
        alerts.extend(alert_names(&cluster));
        let dir = tempfile::tempdir().expect("tempdir");
        rules_file(&cluster, dir.path());
        let mut cases: Vec<_> = std::fs::read_dir(cases_dir.join(fixture))
            .unwrap_or_else(|error| panic!("tests/promtool/{fixture}: {error}"))
            .flatten()
            .map(|entry| entry.path())
            .collect();
        cases.sort();
        for case in cases {
            let text = std::fs::read_to_string(&case)
                .unwrap_or_else(|error| panic!("{}: {error}", case.display()));
            let names = tested_alerts(&text);
            let file_alert = case
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
            assert!(
                !names.is_empty() && names.iter().all(|name| *name == file_alert),
                "{} must test {file_alert} and only it: {names:?}",
                case.display()
            );
            assert!(
                alert_names(&cluster).contains(&file_alert),
                "{}: {fixture} renders no alert {file_alert}",
                case.display()
            );
            tested.insert(file_alert);
            let test_path = dir.path().join("test.yaml");
            write(&test_path, &text);
            let output = run(
                Command::new(promtool())
                    .current_dir(dir.path())
                    .arg("test")
                    .arg("rules")
                    .arg(&test_path),
                &format!("promtool test rules {}", case.display()),
            );
            assert!(output.contains("SUCCESS"), "{}: {output}", case.display());
        }
    }
    let untested: Vec<&String> = alerts.difference(&tested).collect();
    assert!(
        untested.is_empty(),
        "alerts without a promtool case in tests/promtool/: {untested:?}"
    );
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
    // Redis does not inherit the default cluster RPO of 0s (asynchronous replication cannot
    // meet it): its RPO is minReplicasMaxLag, 10 s, and the lag bound stays there.
    assert_eq!(redis_config_get(port, "min-replicas-max-lag").await, "10");
    assert_eq!(
        redis_config_get(port, "repl-diskless-sync-delay").await,
        "0"
    );
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

// ---------------------------------------------------------------- HAProxy routing to Redis

/// A HAProxy started by this test (the testkit's runner cannot pass the environment variable the
/// rendered config reads), killed on drop.
struct RunningHaproxy {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for RunningHaproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn http_get(port: u16, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to haproxy stats");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("send request");
    let mut body = Vec::new();
    stream.read_to_end(&mut body).await.expect("read response");
    String::from_utf8_lossy(&body).into_owned()
}

/// `status` of each server of `proxy` in HAProxy's CSV statistics.
fn server_statuses(csv: &str, proxy: &str) -> BTreeMap<String, String> {
    let header = csv
        .lines()
        .find(|line| line.starts_with("# pxname"))
        .expect("csv header");
    let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let status = columns
        .iter()
        .position(|c| *c == "status")
        .expect("status column");
    csv.lines()
        .filter(|line| line.starts_with(&format!("{proxy},")))
        .map(|line| line.split(',').collect::<Vec<_>>())
        .filter(|fields| !matches!(fields[1], "FRONTEND" | "BACKEND"))
        .map(|fields| (fields[1].to_owned(), fields[status].to_owned()))
        .collect()
}

#[tokio::test]
async fn haproxy_routes_redis_traffic_to_the_master_only() {
    let password = shanraq_testkit::secrets::random_secret(32);
    // As rendered: a master takes writes (and passes the check) with one good replica.
    let master = RedisServer::start(&format!(
        "requirepass {password}\nmasterauth {password}\nmin-replicas-to-write 1\nmin-replicas-max-lag 10\nrepl-diskless-sync-delay 0\n"
    ))
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    let replica = RedisServer::start(&format!(
        "requirepass {password}\nmasterauth {password}\nreplicaof 127.0.0.1 {}\n",
        master.port()
    ))
    .await
    .unwrap_or_else(|error| panic!("{error}"));

    // The rendered config, with the listeners and two Redis pods moved to 127.0.0.1 and the
    // admin socket into a temp dir; the checks themselves are untouched.
    let cluster = minimal();
    let dir = tempfile::tempdir().expect("tempdir");
    let redis_port = shanraq_testkit::free_port().expect("port");
    let stats_port = shanraq_testkit::free_port().expect("port");
    let mut cfg = haproxy::haproxy_cfg(&cluster)
        .replace(
            "/var/run/haproxy/admin.sock",
            &dir.path().join("admin.sock").display().to_string(),
        )
        .replace("bind :6379", &format!("bind 127.0.0.1:{redis_port}"))
        .replace("bind :8404", &format!("bind 127.0.0.1:{stats_port}"))
        .replace(
            "demo-redis-0.demo-redis.fintech.svc.cluster.local:6379",
            &format!("127.0.0.1:{}", replica.port()),
        )
        .replace(
            "demo-redis-1.demo-redis.fintech.svc.cluster.local:6379",
            &format!("127.0.0.1:{}", master.port()),
        );
    for port in ["5432", "5433"] {
        let free = shanraq_testkit::free_port().expect("port");
        cfg = cfg.replace(&format!("bind :{port}"), &format!("bind 127.0.0.1:{free}"));
    }
    let cfg_path = dir.path().join("haproxy.cfg");
    write(&cfg_path, &cfg);
    let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("log file");
    let child = Command::new(binaries::haproxy().unwrap_or_else(|error| panic!("{error}")))
        .arg("-db")
        .arg("-f")
        .arg(&cfg_path)
        .env(haproxy::REDIS_PASSWORD_ENV, &password)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start haproxy");
    let haproxy = RunningHaproxy { child, _dir: dir };

    // Bounded: 100 x 100 ms for the checks (inter 250 ms, rise 1) to settle.
    let mut statuses = BTreeMap::new();
    let mut csv = String::new();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", stats_port))
            .await
            .is_ok()
        {
            csv = http_get(stats_port, "/stats;csv").await;
            statuses = server_statuses(&csv, "redis-master");
            if statuses.get("demo-redis-1").map(String::as_str) == Some("UP")
                && statuses
                    .get("demo-redis-0")
                    .is_some_and(|status| status.starts_with("DOWN"))
            {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        statuses.get("demo-redis-1").map(String::as_str),
        Some("UP"),
        "{statuses:?}\n{csv}\nhaproxy log:\n{}",
        std::fs::read_to_string(haproxy._dir.path().join("haproxy.log")).unwrap_or_default()
    );
    assert!(
        statuses
            .get("demo-redis-0")
            .is_some_and(|s| s.starts_with("DOWN")),
        "the replica must fail the role:master check: {statuses:?}"
    );

    // A write through HAProxy lands on the master. HAProxy starts a server as up before its
    // first check, and the master refuses writes (NOREPLICAS) until its replica has synced:
    // bounded retries until the write is taken.
    let mut reply = String::new();
    for _ in 0..100 {
        reply = redis_command(
            redis_port,
            &format!("AUTH {password}\r\nSET shanraq-route ok\r\nQUIT\r\n"),
        )
        .await;
        if reply.starts_with("+OK\r\n+OK") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(reply.starts_with("+OK\r\n+OK"), "{reply}");
    let mut seen = String::new();
    for _ in 0..20 {
        seen = redis_command(
            master.port(),
            &format!("AUTH {password}\r\nGET shanraq-route\r\nQUIT\r\n"),
        )
        .await;
        if seen.contains("$2\r\nok") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        seen.contains("$2\r\nok"),
        "write did not reach the master: {seen:?}"
    );
    drop(haproxy);
}
