//! HAProxy: the single entry point that follows the real primaries. PostgreSQL backends ask
//! each instance manager `/primary` or `/replica` (a TCP check cannot tell the roles apart),
//! the Redis backend asks each node for `role:master`, and application HTTP backends get health
//! checks and per-client rate limits. Pod addresses are resolved at run time, so instances that
//! do not exist yet never stop HAProxy from starting.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerPort, HTTPGetAction, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use shanraq_api::ValidCluster;
use shanraq_api::haproxy::{Balance, HttpBackend};
use shanraq_api::names::Component;
use shanraq_api::redis::RedisMode;

use crate::Child;
use crate::meta;

/// uid and gid of `haproxy` in the HAProxy image (images/haproxy/Dockerfile creates it).
pub const HAPROXY_UID: i64 = 999;
pub const PG_RW_PORT: i32 = 5432;
pub const PG_RO_PORT: i32 = 5433;
pub const REDIS_PORT: i32 = 6379;
pub const STATS_PORT: i32 = 8404;
/// How often HAProxy asks each PostgreSQL instance `/primary` or `/replica`. Routing must
/// follow a promotion within a tenth of a second, whatever `probePeriod` the engine detects
/// failures with; a check is one small query on the instance.
pub const PG_CHECK_MS: u64 = 100;
/// The environment variable holding the Redis password, expanded by HAProxy at start.
pub const REDIS_PASSWORD_ENV: &str = "REDIS_PASSWORD";
const CONFIG_DIR: &str = "/usr/local/etc/haproxy";
const RUN_DIR: &str = "/var/run/haproxy";

/// Whether HAProxy fronts Redis: only a replicated Redis has one master to route to; Redis
/// Cluster clients talk to the shards themselves.
fn routes_redis(cluster: &ValidCluster) -> bool {
    cluster.spec.redis.enabled && cluster.spec.redis.mode == RedisMode::Replication
}

/// The backends that must always have a server up, by their HAProxy names (the `proxy` label
/// of HAProxy's metrics). The read-only backend is expected up only when replicas exist.
pub fn critical_backends(cluster: &ValidCluster) -> Vec<String> {
    let mut backends = Vec::new();
    if cluster.spec.postgres.enabled {
        backends.push("pg-rw".to_owned());
        if cluster.spec.postgres.instances > 1 {
            backends.push("pg-ro".to_owned());
        }
    }
    if routes_redis(cluster) {
        backends.push("redis-master".to_owned());
    }
    for backend in &cluster.spec.haproxy.backends {
        backends.push(format!("app-{}", backend.name));
    }
    backends
}

/// haproxy.cfg.
pub fn haproxy_cfg(cluster: &ValidCluster) -> String {
    let inter = cluster.spec.failover.probe_period.as_millis().max(100);
    let mut cfg = format!(
        "# Rendered by the shanraq operator from the ShanraqCluster spec; edits are overwritten.\n\
         global\n\
         \x20 log stdout format raw local0 info\n\
         \x20 # No global maxconn: HAProxy derives it from the file-descriptor limit it is given,\n\
         \x20 # instead of refusing to start where that limit is lower than a fixed value.\n\
         \x20 stats socket {RUN_DIR}/admin.sock mode 600 level admin expose-fd listeners\n\
         \x20 stats timeout 10s\n\
         \n\
         # Pod addresses come from the cluster DNS at run time, not only at start.\n\
         resolvers cluster\n\
         \x20 parse-resolv-conf\n\
         \x20 accepted_payload_size 8192\n\
         \x20 resolve_retries 3\n\
         \x20 timeout resolve 1s\n\
         \x20 timeout retry 1s\n\
         \x20 hold valid 10s\n\
         \x20 hold nx 5s\n\
         \x20 hold obsolete 5s\n\
         \n\
         defaults\n\
         \x20 mode tcp\n\
         \x20 log global\n\
         \x20 option tcplog\n\
         \x20 option dontlognull\n\
         \x20 option redispatch\n\
         \x20 retries 2\n\
         \x20 timeout connect 2s\n\
         \x20 # Database sessions are long-lived and may idle between transactions.\n\
         \x20 timeout client 30m\n\
         \x20 timeout server 30m\n\
         \x20 timeout tunnel 30m\n\
         \x20 timeout check {check_timeout}ms\n\
         \x20 # A server that does not resolve yet starts without an address instead of failing\n\
         \x20 # the start; a server marked down has its sessions cut, so clients reconnect to the\n\
         \x20 # new primary at once.\n\
         \x20 default-server init-addr last,libc,none resolvers cluster inter {inter}ms fastinter {inter}ms downinter {inter}ms fall 1 rise 1 on-marked-down shutdown-sessions\n",
        check_timeout = inter.max(500),
    );

    let postgres = &cluster.spec.postgres;
    if postgres.enabled {
        let servers: Vec<String> = (0..postgres.instances)
            .map(|ordinal| {
                format!(
                    "  server {} {}:5432 check port 8000 inter {PG_CHECK_MS}ms fastinter {PG_CHECK_MS}ms downinter {PG_CHECK_MS}ms\n",
                    cluster.names.pod(Component::Postgres, ordinal),
                    meta::pod_fqdn(cluster, Component::Postgres, ordinal)
                )
            })
            .collect();
        let _ = write!(
            cfg,
            "\n# PostgreSQL primary: only the instance the operator promoted answers /primary.\n\
             listen pg-rw\n\
             \x20 bind :{PG_RW_PORT}\n\
             \x20 mode tcp\n\
             \x20 balance first\n\
             \x20 option httpchk GET /primary\n\
             \x20 http-check expect status 200\n\
             {servers}\
             \n# PostgreSQL replicas: instances in recovery answer /replica.\n\
             listen pg-ro\n\
             \x20 bind :{PG_RO_PORT}\n\
             \x20 mode tcp\n\
             \x20 balance leastconn\n\
             \x20 option httpchk GET /replica\n\
             \x20 http-check expect status 200\n\
             {servers}",
            servers = servers.concat(),
        );
    }

    if routes_redis(cluster) {
        let redis = &cluster.spec.redis;
        let servers: String = (0..redis.instances)
            .map(|ordinal| {
                format!(
                    "  server {} {}:6379 check\n",
                    cluster.names.pod(Component::Redis, ordinal),
                    meta::pod_fqdn(cluster, Component::Redis, ordinal)
                )
            })
            .collect();
        // A master without `min-replicas-to-write` attached replicas refuses writes: an old
        // master whose replicas a failover detached, while HAProxy still reaches it, must not
        // be chosen (`balance first`) over the new one.
        let minimum = crate::redis::loss_bound(cluster).min_replicas_to_write;
        let good_replicas = if redis.mode == RedisMode::Replication && minimum > 0 {
            format!(
                "  tcp-check expect rstring min_slaves_good_slaves:({})\n",
                at_least(minimum)
            )
        } else {
            String::new()
        };
        let _ = write!(
            cfg,
            "\n# Redis master: AUTH, INFO and QUIT in one send, so a replica fails the check at once\n\
             # instead of after `timeout check`. The password comes from the environment. The\n\
             # master must also have enough good replicas to take writes.\n\
             listen redis-master\n\
             \x20 bind :{REDIS_PORT}\n\
             \x20 mode tcp\n\
             \x20 balance first\n\
             \x20 option tcp-check\n\
             \x20 tcp-check connect\n\
             \x20 tcp-check send \"AUTH ${{{REDIS_PASSWORD_ENV}}}\\r\\ninfo replication\\r\\nQUIT\\r\\n\"\n\
             \x20 tcp-check expect string role:master\n\
             {good_replicas}{servers}"
        );
    }

    for backend in &cluster.spec.haproxy.backends {
        cfg.push_str(&http_backend(backend));
    }

    let _ = write!(
        cfg,
        "\n# Statistics and Prometheus metrics; /healthz for the kubelet.\n\
         frontend stats\n\
         \x20 bind :{STATS_PORT}\n\
         \x20 mode http\n\
         \x20 option httplog\n\
         \x20 timeout client 30s\n\
         \x20 monitor-uri /healthz\n\
         \x20 http-request use-service prometheus-exporter if {{ path /metrics }}\n\
         \x20 stats enable\n\
         \x20 stats uri /stats\n\
         \x20 stats refresh 10s\n"
    );
    cfg
}

fn http_backend(backend: &HttpBackend) -> String {
    let name = format!("app-{}", backend.name);
    let balance = match backend.balance {
        Balance::Roundrobin => "roundrobin",
        Balance::Leastconn => "leastconn",
    };
    let mut text = format!(
        "\n# Application backend {backend_name}.\n\
         frontend {name}\n\
         \x20 bind :{port}\n\
         \x20 mode http\n\
         \x20 option httplog\n\
         \x20 option forwardfor\n\
         \x20 timeout client 60s\n\
         \x20 timeout http-request 10s\n",
        backend_name = backend.name,
        port = backend.port,
    );
    if let Some(limit) = &backend.rate_limit {
        let period = limit.period.as_millis().max(1);
        let _ = write!(
            text,
            "  # Per-client rate limit: more than {requests} requests in {period_text} is answered 429.\n\
             \x20 stick-table type ip size 100k expire {period}ms store http_req_rate({period}ms)\n\
             \x20 http-request track-sc0 src\n\
             \x20 http-request deny deny_status 429 if {{ sc_http_req_rate(0) gt {requests} }}\n",
            requests = limit.requests,
            period_text = limit.period,
        );
    }
    let _ = write!(
        text,
        "  default_backend {name}\n\
         \n\
         backend {name}\n\
         \x20 mode http\n\
         \x20 balance {balance}\n\
         \x20 timeout server 60s\n\
         \x20 option httpchk GET {path}\n\
         \x20 http-check expect status 200-399\n\
         \x20 default-server fall 2 rise 2\n",
        path = backend.health_path,
    );
    for (index, server) in backend.servers.iter().enumerate() {
        let _ = writeln!(
            text,
            "  server {}-{index} {}:{} check{}",
            backend.name,
            server.host,
            server.port,
            if server.backup { " backup" } else { "" }
        );
    }
    text
}

/// CPU requested by each HAProxy pod whose spec sets no resources.
pub const DEFAULT_CPU_REQUEST: &str = "50m";
/// Memory requested by each HAProxy pod whose spec sets no resources.
pub const DEFAULT_MEMORY_REQUEST: &str = "64Mi";

/// Requests for HAProxy when `spec.haproxy.resources` is not set. Every client request and the
/// operator's latency and write probes pass through it; without requests its pods are
/// BestEffort, with 2 CPU shares against 51 or more for every Burstable pod beside them, and
/// wait behind them whenever the node is busy.
fn default_resources() -> ResourceRequirements {
    meta::requests(DEFAULT_CPU_REQUEST, DEFAULT_MEMORY_REQUEST)
}
pub fn render(cluster: &ValidCluster) -> Vec<Child> {
    let spec = &cluster.spec.haproxy;
    if !spec.enabled {
        return Vec::new();
    }
    let names = &cluster.names;
    let workload = names.workload(Component::HAProxy);
    let cfg = haproxy_cfg(cluster);
    let hash = meta::config_hash(&[("haproxy.cfg", &cfg)]);

    let mut ports: Vec<(String, i32)> = Vec::new();
    if cluster.spec.postgres.enabled {
        ports.push(("pg-rw".to_owned(), PG_RW_PORT));
        ports.push(("pg-ro".to_owned(), PG_RO_PORT));
    }
    if routes_redis(cluster) {
        ports.push(("redis".to_owned(), REDIS_PORT));
    }
    // Backend names may be longer than a port name's 15 characters: number them instead.
    for (index, backend) in spec.backends.iter().enumerate() {
        ports.push((format!("app-{index}"), backend.port));
    }
    ports.push(("stats".to_owned(), STATS_PORT));

    let mut haproxy = meta::container("haproxy", &spec.image, HAPROXY_UID, true);
    haproxy.command = Some(vec![
        "haproxy".to_owned(),
        "-W".to_owned(),
        "-db".to_owned(),
        "-f".to_owned(),
        format!("{CONFIG_DIR}/haproxy.cfg"),
    ]);
    if routes_redis(cluster) {
        haproxy.env = Some(vec![meta::env_from_secret(
            REDIS_PASSWORD_ENV,
            &names.redis_secret(),
            "password",
        )]);
    }
    haproxy.ports = Some(
        ports
            .iter()
            .map(|(name, port)| meta::container_port(name, *port))
            .collect::<Vec<ContainerPort>>(),
    );
    let probe = |period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".to_owned()),
            port: IntOrString::String("stats".to_owned()),
            scheme: Some("HTTP".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    haproxy.readiness_probe = Some(probe(5));
    haproxy.liveness_probe = Some(probe(10));
    haproxy.resources = Some(spec.resources.clone().unwrap_or_else(default_resources));
    haproxy.volume_mounts = Some(vec![
        meta::mount("config", CONFIG_DIR, true),
        meta::mount("run", RUN_DIR, false),
        meta::mount("tmp", "/tmp", false),
    ]);

    let pod = PodSpec {
        containers: vec![haproxy],
        security_context: Some(meta::pod_security_context(HAPROXY_UID)),
        affinity: Some(meta::spread_across_nodes(cluster, Component::HAProxy)),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        volumes: Some(vec![
            meta::config_map_volume("config", &names.haproxy_config()),
            meta::empty_dir_volume("run"),
            meta::empty_dir_volume("tmp"),
        ]),
        ..PodSpec::default()
    };

    let deployment = Deployment {
        metadata: meta::object_meta(cluster, &workload, Component::HAProxy),
        spec: DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: meta::label_selector(cluster, Component::HAProxy),
            template: PodTemplateSpec {
                metadata: Some(meta::pod_meta(cluster, Component::HAProxy, &hash)),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    };

    let service = meta::cluster_ip_service(
        cluster,
        &workload,
        Component::HAProxy,
        &[],
        ports
            .iter()
            .map(|(name, port)| meta::service_port(name, *port))
            .collect(),
    );

    vec![
        Child::Deployment(deployment),
        Child::Service(service),
        Child::ConfigMap(ConfigMap {
            metadata: meta::object_meta(cluster, &names.haproxy_config(), Component::HAProxy),
            data: Some(BTreeMap::from([("haproxy.cfg".to_owned(), cfg)])),
            ..ConfigMap::default()
        }),
        Child::PodDisruptionBudget(meta::pod_disruption_budget(
            cluster,
            &workload,
            Component::HAProxy,
        )),
    ]
}

/// A regular expression for the decimal numbers `>= minimum` (1 to 99), without anchors: the
/// alternatives never match a prefix of a smaller number.
fn at_least(minimum: u32) -> String {
    let minimum = minimum.clamp(1, 99);
    if minimum <= 9 {
        return format!("[{minimum}-9]|[1-9][0-9]+");
    }
    let (tens, units) = (minimum / 10, minimum % 10);
    let mut alternatives = vec![format!("{tens}[{units}-9]")];
    if tens < 9 {
        alternatives.push(format!("[{}-9][0-9]", tens + 1));
    }
    alternatives.push("[1-9][0-9][0-9]+".to_owned());
    alternatives.join("|")
}

#[cfg(test)]
mod at_least_tests {
    use super::at_least;

    #[test]
    fn numbers_at_least_the_minimum_match_and_smaller_ones_do_not() {
        assert_eq!(at_least(1), "[1-9]|[1-9][0-9]+");
        assert_eq!(at_least(3), "[3-9]|[1-9][0-9]+");
        assert_eq!(at_least(23), "2[3-9]|[3-9][0-9]|[1-9][0-9][0-9]+");
        assert_eq!(at_least(95), "9[5-9]|[1-9][0-9][0-9]+");
    }
}
