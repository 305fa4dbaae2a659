//! Redis: a StatefulSet in replication mode (one master, replicas, Services by role label that
//! the operator's Redis engine moves on failover) or cluster mode (Redis Cluster shards formed
//! once by an idempotent Job), the ConfigMap with redis.conf, and a redis_exporter sidecar (from
//! the same image).
//!
//! The password never enters the ConfigMap: each pod writes a small runtime config in memory
//! that includes the rendered redis.conf and adds `requirepass`/`masterauth` from the mounted
//! Secret. In replication mode every pod starts as a read-only replica of nothing (see
//! `DETACHED_REPLICAOF`): the operator's engine promotes the first master and points every
//! other pod at the current one, so a pod that restarts (possibly empty) never comes back as a
//! master that its replicas would resync from and empty themselves.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Container, ExecAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use shanraq_api::ValidCluster;
use shanraq_api::names::{Component, LABEL_COMPONENT, LABEL_ROLE, ROLE_MASTER, ROLE_REPLICA};
use shanraq_api::redis::RedisMode;

use crate::Child;
use crate::meta::{self, shell_quote};

/// uid and gid of `redis` in the Redis image (images/redis/Dockerfile creates it).
pub const REDIS_UID: i64 = 999;
pub const PORT: i32 = 6379;
pub const CLUSTER_BUS_PORT: i32 = 16379;
/// How long a Redis Cluster node may be unreachable before its replica takes over.
pub const CLUSTER_NODE_TIMEOUT_MS: u64 = 5000;
const EXPORTER_PORT: i32 = 9121;
/// redis_exporter in the Redis image, which the sidecar runs with this command.
const EXPORTER_COMMAND: &str = "redis_exporter";
/// `nobody`: the exporter reads no file; the password comes in its environment.
const EXPORTER_UID: i64 = 65534;
const CONFIG_DIR: &str = "/etc/shanraq/redis";
/// Where the Redis pods and the cluster Job find the password (`<SECRET_DIR>/password`).
pub const SECRET_DIR: &str = "/etc/shanraq/secrets/redis";
const RUN_DIR: &str = "/run/redis";
const DATA_DIR: &str = "/data";
/// Component label of the cluster-forming Job's pod, distinct from the Redis pods' so that the
/// Services and the disruption budget never select it.
const CLUSTER_INIT_COMPONENT: &str = "redis-cluster-init";

/// Where a replication-mode pod points at start: nothing listens on port 0, so it stays a
/// read-only replica that serves no sync until the engine points it at the master (the same
/// address the engine's detach uses, `shanraq_ha::redis::DETACHED_HOST`/`DETACHED_PORT`).
pub const DETACHED_REPLICAOF: &str = "replicaof 127.0.0.1 0";

/// What a failover may lose, rendered into redis.conf and applied by the engine's election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LossBound {
    /// `min-replicas-to-write`: the master refuses writes with fewer attached replicas. It is
    /// also what lets the engine fence a master it cannot reach: detaching
    /// `replicas - this + 1` of them makes it refuse every write.
    pub min_replicas_to_write: u32,
    /// `min-replicas-max-lag` (seconds): a replica silent for longer no longer counts. Redis's
    /// RPO objective tightens it (`min(redis.minReplicasMaxLag, max(1 s, Redis RPO))`, the
    /// Redis RPO being `redis.objectives.rpo`, else the cluster's non-zero `objectives.rpo`,
    /// else `minReplicasMaxLag` itself): writes a client did not confirm with `WAIT` are lost
    /// at most this far back.
    pub max_lag_seconds: u32,
}

/// The loss bound of `cluster` (replication mode).
pub fn loss_bound(cluster: &ValidCluster) -> LossBound {
    let spec = &cluster.spec.redis;
    let rpo = cluster
        .spec
        .objective_targets(shanraq_api::objectives::ObjectiveComponent::Redis)
        .rpo;
    let rpo_seconds = rpo.as_std().as_secs_f64().ceil();
    let rpo_seconds = if rpo_seconds >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        (rpo_seconds as u32).max(1)
    };
    let configured = u32::try_from(spec.min_replicas_max_lag.max(1)).unwrap_or(1);
    LossBound {
        min_replicas_to_write: u32::try_from(spec.min_replicas_to_write.max(0)).unwrap_or(0),
        max_lag_seconds: configured.min(rpo_seconds),
    }
}

/// redis.conf as rendered into the ConfigMap.
pub fn redis_conf(cluster: &ValidCluster) -> String {
    let spec = &cluster.spec.redis;
    let append_only = shanraq_api::objectives::redis_append_only(&cluster.spec);
    let mut text = String::from(
        "# Rendered by the shanraq operator from the ShanraqCluster spec; edits are overwritten.\n\
         # requirepass, masterauth and (replication mode) the start as a replica of nothing are\n\
         # added by the pod's start script: they are never written here.\n",
    );
    let mut settings: Vec<(&str, String)> = vec![
        ("port", PORT.to_string()),
        ("bind", "* -::*".to_owned()),
        ("protected-mode", "yes".to_owned()),
        ("daemonize", "no".to_owned()),
        ("dir", DATA_DIR.to_owned()),
        ("tcp-keepalive", "60".to_owned()),
        ("timeout", "0".to_owned()),
        // `dir` is the pod's volume (the StatefulSet's claim `data`): a restarted pod finds
        // its append-only file there and loads it before it answers.
        ("appendonly", append_only.appendonly().to_owned()),
        ("appendfsync", append_only.appendfsync().to_owned()),
        ("maxmemory", spec.maxmemory.clone()),
        (
            "maxmemory-policy",
            spec.maxmemory_policy.as_redis().to_owned(),
        ),
        ("replica-read-only", "yes".to_owned()),
        ("replica-serve-stale-data", "yes".to_owned()),
        ("repl-diskless-sync", "yes".to_owned()),
        // A replica re-pointed after a failover, or a pod back without its data, needs a full
        // sync: start it at once instead of waiting 5 s for more replicas to share it.
        ("repl-diskless-sync-delay", "0".to_owned()),
    ];
    match spec.mode {
        RedisMode::Replication => {
            let bound = loss_bound(cluster);
            settings.push((
                "min-replicas-to-write",
                bound.min_replicas_to_write.to_string(),
            ));
            settings.push(("min-replicas-max-lag", bound.max_lag_seconds.to_string()));
        }
        RedisMode::Cluster => {
            settings.push(("cluster-enabled", "yes".to_owned()));
            settings.push(("cluster-config-file", "nodes.conf".to_owned()));
            settings.push(("cluster-node-timeout", CLUSTER_NODE_TIMEOUT_MS.to_string()));
            settings.push(("cluster-require-full-coverage", "yes".to_owned()));
        }
    }
    for (key, value) in settings {
        let _ = writeln!(text, "{key} {value}");
    }
    text
}

/// The container's entrypoint script.
fn start_script(cluster: &ValidCluster) -> String {
    let mut script = format!(
        "set -eu\n\
         umask 077\n\
         password=\"$(cat {SECRET_DIR}/password)\"\n\
         {{\n\
         \x20 echo 'include {CONFIG_DIR}/redis.conf'\n\
         \x20 printf 'requirepass \"%s\"\\nmasterauth \"%s\"\\n' \"$password\" \"$password\"\n"
    );
    if cluster.spec.redis.mode == RedisMode::Replication {
        let _ = write!(
            script,
            "  # Every pod starts as a replica of nothing; the operator promotes the master and\n\
             \x20 # points the others at it with REPLICAOF, before any of them takes traffic.\n\
             \x20 echo '{DETACHED_REPLICAOF}'\n"
        );
    }
    let _ = write!(
        script,
        "}} > {RUN_DIR}/redis.conf\n\
         exec redis-server {RUN_DIR}/redis.conf\n"
    );
    script
}

fn redis_cli_probe(period: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: meta::shell(format!(
                "REDISCLI_AUTH=\"$(cat {SECRET_DIR}/password)\" redis-cli -h 127.0.0.1 -p {PORT} ping | grep -q PONG"
            )),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

pub fn render(cluster: &ValidCluster) -> Vec<Child> {
    let spec = &cluster.spec.redis;
    if !spec.enabled {
        return Vec::new();
    }
    let names = &cluster.names;
    let workload = names.workload(Component::Redis);
    let conf = redis_conf(cluster);
    let hash = meta::config_hash(&[("redis.conf", &conf)]);

    let mut headless_ports = vec![meta::service_port("redis", PORT)];
    if spec.mode == RedisMode::Cluster {
        headless_ports.push(meta::service_port("cluster-bus", CLUSTER_BUS_PORT));
    }
    let mut children = vec![
        Child::StatefulSet(stateful_set(cluster, &hash)),
        Child::Service(meta::headless_service(
            cluster,
            &workload,
            Component::Redis,
            headless_ports,
        )),
    ];
    if spec.mode == RedisMode::Replication {
        for (name, role) in [
            (names.redis_master(), ROLE_MASTER),
            (names.redis_replicas(), ROLE_REPLICA),
        ] {
            children.push(Child::Service(meta::cluster_ip_service(
                cluster,
                &name,
                Component::Redis,
                &[(LABEL_ROLE, role)],
                vec![meta::service_port("redis", PORT)],
            )));
        }
    }
    children.push(Child::ConfigMap(ConfigMap {
        metadata: meta::object_meta(cluster, &names.redis_config(), Component::Redis),
        data: Some(BTreeMap::from([("redis.conf".to_owned(), conf)])),
        ..ConfigMap::default()
    }));
    children.push(Child::PodDisruptionBudget(meta::pod_disruption_budget(
        cluster,
        &workload,
        Component::Redis,
    )));
    if spec.mode == RedisMode::Cluster {
        children.push(Child::Job(cluster_init_job(cluster)));
    }
    children
}

fn stateful_set(cluster: &ValidCluster, config_hash: &str) -> StatefulSet {
    let spec = &cluster.spec.redis;
    let names = &cluster.names;

    let mut redis = meta::container("redis", &spec.image, REDIS_UID, true);
    redis.command = meta::shell(start_script(cluster));
    redis.env = Some(vec![meta::pod_name_env()]);
    let mut ports = vec![meta::container_port("redis", PORT)];
    if spec.mode == RedisMode::Cluster {
        ports.push(meta::container_port("cluster-bus", CLUSTER_BUS_PORT));
    }
    redis.ports = Some(ports);
    redis.readiness_probe = Some(redis_cli_probe(2));
    redis.liveness_probe = Some(Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("redis".to_owned()),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(10),
        timeout_seconds: Some(2),
        failure_threshold: Some(6),
        ..Probe::default()
    });
    redis.resources = spec.resources.clone();
    redis.volume_mounts = Some(vec![
        meta::mount("data", DATA_DIR, false),
        meta::mount("config", CONFIG_DIR, true),
        meta::mount("auth", SECRET_DIR, true),
        meta::mount("run", RUN_DIR, false),
        meta::mount("tmp", "/tmp", false),
    ]);

    let mut containers = vec![redis];
    if cluster.spec.monitoring.pod_monitors {
        containers.push(exporter(cluster));
    }

    meta::stateful_set(
        cluster,
        Component::Redis,
        meta::Workload {
            replicas: spec.instances,
            uid: REDIS_UID,
            containers,
            volumes: vec![
                meta::config_map_volume("config", &names.redis_config()),
                meta::secret_volume("auth", &names.redis_secret()),
                meta::empty_dir_volume("run"),
                meta::empty_dir_volume("tmp"),
            ],
            termination_grace_seconds: 30,
            // Cluster members must all run before the cluster can form; replicas retry their
            // master on their own. Neither needs ordered start.
            ordered_start: false,
            // Replication mode: the kubelet's rolling update would restart the master whenever
            // the template changes; with OnDelete the operator's Redis task restarts stale pods
            // itself, replicas first, and switches over before the master's turn.
            on_delete: spec.mode == RedisMode::Replication,
            data_volume: "data",
            storage: &spec.storage,
            config_hash,
        },
    )
}

/// redis_exporter from the Redis image, connecting over loopback.
fn exporter(cluster: &ValidCluster) -> Container {
    let mut exporter = meta::container(
        "redis-exporter",
        &cluster.spec.redis.image,
        EXPORTER_UID,
        true,
    );
    exporter.command = Some(vec![EXPORTER_COMMAND.to_owned()]);
    exporter.env = Some(vec![
        meta::env("REDIS_ADDR", &format!("redis://127.0.0.1:{PORT}")),
        meta::env_from_secret("REDIS_PASSWORD", &cluster.names.redis_secret(), "password"),
        meta::env(
            "REDIS_EXPORTER_WEB_LISTEN_ADDRESS",
            &format!(":{EXPORTER_PORT}"),
        ),
    ]);
    exporter.ports = Some(vec![meta::container_port("metrics", EXPORTER_PORT)]);
    exporter.resources = Some(meta::sidecar_resources());
    exporter
}

/// The script of the cluster Job: it forms the Redis Cluster, and after a scale-out joins the new
/// nodes. It waits (bounded) for every node, resolves each name (CLUSTER MEET needs addresses)
/// and sorts the nodes into members (they know other nodes) and newcomers (they know only
/// themselves). With no member yet it runs `redis-cli --cluster create`. Otherwise each
/// newcomer, in ordinal order, joins as the replica of a master that lacks replicas (added, then
/// `CLUSTER REPLICATE` once it has learnt of that master: `add-node --cluster-slave` asks too
/// early and fails with "Unknown node"), or else as a new master, and the next waits until the
/// entry node knows it (the join is gossip, so the
/// next newcomer would not see it otherwise); once every node agrees on the slots and reports `cluster_state:ok` (a node
/// that has just joined answers CLUSTERDOWN until it has learned the slot map), the slots are
/// rebalanced onto the empty masters, keys moving with them. With no newcomer it does nothing,
/// so a rerun (the Job is retried, or recreated) is harmless.
pub fn cluster_init_script(cluster: &ValidCluster) -> String {
    let spec = &cluster.spec.redis;
    let hosts: Vec<String> = (0..spec.instances)
        .map(|ordinal| meta::pod_fqdn(cluster, Component::Redis, ordinal))
        .collect();
    format!(
        "set -eu\n\
         REDISCLI_AUTH=\"$(cat {SECRET_DIR}/password)\"\n\
         export REDISCLI_AUTH\n\
         hosts={hosts}\n\
         replicas={replicas}\n\
         retry() {{\n\
         \x20 what=$1\n\
         \x20 shift\n\
         \x20 tries=0\n\
         \x20 until \"$@\" >/dev/null 2>&1; do\n\
         \x20   tries=$((tries + 1))\n\
         \x20   if [ \"$tries\" -ge 300 ]; then echo \"gave up waiting for $what\" >&2; exit 1; fi\n\
         \x20   sleep 1\n\
         \x20 done\n\
         }}\n\
         info() {{ redis-cli -h \"${{1%:*}}\" -p {PORT} cluster info | tr -d '\\r' | sed -n \"s/^$2://p\"; }}\n\
         state_ok() {{ [ \"$(info \"$1\" cluster_state)\" = ok ]; }}\n\
         knows() {{ [ \"$(info \"$1\" cluster_known_nodes)\" = \"$2\" ]; }}\n\
         nodes() {{ redis-cli -h \"${{1%:*}}\" -p {PORT} cluster nodes | tr -d '\\r'; }}\n\
         knows_id() {{ nodes \"$1\" | grep -q \"^$2 \"; }}\n\
         replicate() {{ redis-cli -h \"${{1%:*}}\" -p {PORT} cluster replicate \"$2\" | grep -q OK; }}\n\
         is_replica() {{ nodes \"$1\" | awk -v id=\"$2\" '$1 == id && $3 ~ /slave/ {{ found = 1 }} END {{ exit !found }}'; }}\n\
         lacking_master() {{\n\
         \x20 redis-cli -h \"${{1%:*}}\" -p {PORT} cluster nodes | tr -d '\\r' | awk -v want=\"$replicas\" '\n\
         \x20   $3 ~ /master/ && $3 !~ /fail/ {{ masters[$1] = 1 }}\n\
         \x20   $4 != \"-\" && $3 !~ /fail/ {{ count[$4]++ }}\n\
         \x20   END {{ for (m in masters) if (count[m] + 0 < want) {{ print m; exit }} }}'\n\
         }}\n\
         addresses=''\n\
         members=''\n\
         newcomers=''\n\
         for host in $hosts; do\n\
         \x20 retry \"redis node $host\" sh -c \"redis-cli -h '$host' -p {PORT} ping | grep -q PONG\"\n\
         \x20 address=\"$(getent ahosts \"$host\" | awk '{{print $1; exit}}')\"\n\
         \x20 if [ -z \"$address\" ]; then echo \"cannot resolve $host\" >&2; exit 1; fi\n\
         \x20 addresses=\"$addresses $address:{PORT}\"\n\
         \x20 if [ \"$(info \"$address\" cluster_known_nodes)\" -gt 1 ]; then\n\
         \x20   members=\"$members $address:{PORT}\"\n\
         \x20 else\n\
         \x20   newcomers=\"$newcomers $address:{PORT}\"\n\
         \x20 fi\n\
         done\n\
         total=0\n\
         for node in $addresses; do total=$((total + 1)); done\n\
         if [ -z \"$members\" ]; then\n\
         \x20 redis-cli --cluster create $addresses --cluster-replicas \"$replicas\" --cluster-yes\n\
         \x20 exit 0\n\
         fi\n\
         if [ -z \"$newcomers\" ]; then\n\
         \x20 echo \"Redis Cluster formed and every node a member; nothing to do\"\n\
         \x20 exit 0\n\
         fi\n\
         set -- $members\n\
         entry=$1\n\
         known=$#\n\
         for node in $newcomers; do\n\
         \x20 retry \"the cluster to agree before $node joins\" redis-cli --cluster check \"$entry\"\n\
         \x20 master=\"$(lacking_master \"$entry\")\"\n\
         \x20 if [ -n \"$master\" ]; then\n\
         \x20   echo \"joining $node as a replica of $master\"\n\
         \x20   redis-cli --cluster add-node \"$node\" \"$entry\"\n\
         \x20   id=\"$(redis-cli -h \"${{node%:*}}\" -p {PORT} cluster myid | tr -d '\\r')\"\n\
         \x20   retry \"$node to learn of $master\" knows_id \"$node\" \"$master\"\n\
         \x20   retry \"$node to replicate $master\" replicate \"$node\" \"$master\"\n\
         \x20   retry \"$entry to see $node as a replica\" is_replica \"$entry\" \"$id\"\n\
         \x20 else\n\
         \x20   echo \"joining $node as a master\"\n\
         \x20   redis-cli --cluster add-node \"$node\" \"$entry\"\n\
         \x20 fi\n\
         \x20 known=$((known + 1))\n\
         \x20 retry \"$entry to know $node\" knows \"$entry\" \"$known\"\n\
         done\n\
         for node in $addresses; do\n\
         \x20 retry \"$node to know all $total nodes\" knows \"$node\" \"$total\"\n\
         \x20 retry \"$node to report cluster_state:ok\" state_ok \"$node\"\n\
         done\n\
         retry \"the cluster to agree before the rebalance\" redis-cli --cluster check \"$entry\"\n\
         redis-cli --cluster rebalance \"$entry\" --cluster-use-empty-masters\n",
        hosts = shell_quote(&hosts.join(" ")),
        replicas = spec.replicas_per_shard,
    )
}

fn cluster_init_job(cluster: &ValidCluster) -> Job {
    let spec = &cluster.spec.redis;
    let names = &cluster.names;
    let script = cluster_init_script(cluster);
    // The script depends on the node count; a Job's pod template is immutable, so a changed
    // script is a new Job (the script itself does nothing on a cluster already formed).
    let name = format!(
        "{}-redis-cluster-init-{}",
        cluster.name,
        &meta::config_hash(&[("cluster-init.sh", &script)])[..10]
    );
    let mut labels = names.labels(Component::Redis);
    labels.insert(
        LABEL_COMPONENT.to_owned(),
        CLUSTER_INIT_COMPONENT.to_owned(),
    );

    let mut container = meta::container("cluster-init", &spec.image, REDIS_UID, true);
    container.command = meta::shell(script);
    container.volume_mounts = Some(vec![
        meta::mount("auth", SECRET_DIR, true),
        meta::mount("tmp", "/tmp", false),
    ]);
    container.resources = Some(meta::sidecar_resources());

    meta::one_shot_job(
        cluster,
        &name,
        Component::Redis,
        labels,
        container,
        REDIS_UID,
        6,
        vec![
            meta::secret_volume("auth", &names.redis_secret()),
            meta::empty_dir_volume("tmp"),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(yaml: &str) -> ValidCluster {
        let spec: shanraq_api::ShanraqClusterSpec =
            serde_saphyr::from_str(yaml).expect("spec parses");
        let mut object = shanraq_api::ShanraqCluster::new("payments", spec);
        object.metadata.namespace = Some("fintech".to_owned());
        shanraq_api::validate(&object, &shanraq_api::LiveState::default()).expect("valid spec")
    }

    fn rendered(cluster: &ValidCluster, key: &str) -> Option<String> {
        redis_conf(cluster).lines().find_map(|line| {
            line.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(str::to_owned)
        })
    }

    #[test]
    fn the_lag_bound_follows_the_redis_rpo() {
        // (spec, min-replicas-to-write, min-replicas-max-lag)
        let cases = [
            // The cluster-wide 0s is PostgreSQL's: Redis keeps minReplicasMaxLag.
            ("{}", "1", "10"),
            ("redis: { minReplicasMaxLag: 4 }", "1", "4"),
            // A non-zero cluster RPO applies to Redis too.
            (
                "objectives: { rpo: 3s }\npostgres: { synchronous: { number: 0 } }",
                "1",
                "3",
            ),
            // Redis's own RPO wins, rounded up to whole seconds.
            (
                "objectives: { rpo: 3s }\npostgres: { synchronous: { number: 0 } }\nredis: { objectives: { rpo: 1500ms } }",
                "1",
                "2",
            ),
            // Never looser than the configured bound.
            ("redis: { objectives: { rpo: 60s } }", "1", "10"),
            (
                "redis: { minReplicasToWrite: 2, objectives: { rpo: 2s } }",
                "2",
                "2",
            ),
        ];
        for (yaml, to_write, max_lag) in cases {
            let cluster = valid(yaml);
            assert_eq!(
                rendered(&cluster, "min-replicas-to-write").as_deref(),
                Some(to_write),
                "{yaml}"
            );
            assert_eq!(
                rendered(&cluster, "min-replicas-max-lag").as_deref(),
                Some(max_lag),
                "{yaml}"
            );
            let bound = loss_bound(&cluster);
            assert_eq!(bound.max_lag_seconds.to_string(), max_lag, "{yaml}");
        }
    }

    #[test]
    fn the_append_only_file_follows_the_persistence_and_the_redis_rpo() {
        // (spec, appendonly, appendfsync)
        let cases = [
            ("{}", "yes", "everysec"),
            ("redis: { objectives: { rpo: 1s } }", "yes", "always"),
            ("redis: { persistence: always }", "yes", "always"),
            (
                "redis: { persistence: everysec, objectives: { rpo: 1s } }",
                "yes",
                "everysec",
            ),
            ("redis: { persistence: none }", "no", "everysec"),
            (
                "redis: { mode: cluster, instances: 6, objectives: { rpo: 1s } }",
                "yes",
                "always",
            ),
        ];
        for (yaml, appendonly, appendfsync) in cases {
            let cluster = valid(yaml);
            assert_eq!(
                rendered(&cluster, "appendonly").as_deref(),
                Some(appendonly),
                "{yaml}"
            );
            assert_eq!(
                rendered(&cluster, "appendfsync").as_deref(),
                Some(appendfsync),
                "{yaml}"
            );
            // The file is written under `dir`, the pod's claim, which a restart keeps.
            assert_eq!(
                rendered(&cluster, "dir").as_deref(),
                Some(DATA_DIR),
                "{yaml}"
            );
            let set = stateful_set(&cluster, "hash");
            let spec = set.spec;
            let claims = spec.volume_claim_templates.expect("claims");
            assert_eq!(
                claims
                    .iter()
                    .filter_map(|claim| claim.metadata.name.as_deref())
                    .collect::<Vec<_>>(),
                ["data"],
                "{yaml}"
            );
            let mounts = spec.template.spec.expect("a pod spec").containers[0]
                .volume_mounts
                .clone()
                .expect("mounts");
            assert!(
                mounts
                    .iter()
                    .any(|mount| mount.name == "data" && mount.mount_path == DATA_DIR),
                "{yaml}: {mounts:?}"
            );
        }
    }

    #[test]
    fn cluster_mode_renders_no_replication_lag_bound() {
        let cluster = valid("redis: { mode: cluster, instances: 6 }");
        assert_eq!(rendered(&cluster, "min-replicas-max-lag"), None);
        assert_eq!(
            rendered(&cluster, "cluster-enabled").as_deref(),
            Some("yes")
        );
    }
}
