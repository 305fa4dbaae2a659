//! Which critical paths the operator probes for a cluster, and where, as a pure function of the
//! spec: the probe task runs what it says, and the status expects what it says (and names the
//! enabled components it cannot probe, with the reason). Clients reach PostgreSQL and Redis
//! through HAProxy's Service, and Kafka through its bootstrap Service, so that is where the
//! probes go.

use std::time::Duration;

use shanraq_api::ValidCluster;
use shanraq_api::names::Component;
use shanraq_api::objectives::{ObjectiveComponent, redis_default_rpo};
use shanraq_api::redis::RedisMode;
use shanraq_render::haproxy::{PG_RW_PORT, REDIS_PORT};

/// The topic the Kafka probe produces to. It is created by the probe with the cluster's
/// replication factor and `min.insync.replicas`, so an `acks=all` produce waits for what an
/// application's would.
pub const KAFKA_PROBE_TOPIC: &str = "shanraq-probe";

/// One probed path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProbePath {
    /// `SELECT 1` through HAProxy's `pg-rw`.
    PostgresRead,
    /// A transactional WAL message committed through `pg-rw` (waits for the synchronous
    /// standbys like any commit).
    PostgresWrite,
    /// `GET` through HAProxy's Redis port.
    RedisGet,
    /// `SET`, then `WAIT` when the Redis RPO needs a replica to hold the write.
    RedisSet,
    /// One record produced with `acks=all`, until its acknowledgement.
    KafkaProduce,
}

impl ProbePath {
    pub const ALL: [ProbePath; 5] = [
        ProbePath::PostgresRead,
        ProbePath::PostgresWrite,
        ProbePath::RedisGet,
        ProbePath::RedisSet,
        ProbePath::KafkaProduce,
    ];

    /// How the status and the metrics name it.
    pub fn name(self) -> &'static str {
        match self {
            ProbePath::PostgresRead => "postgres-read",
            ProbePath::PostgresWrite => "postgres-write",
            ProbePath::RedisGet => "redis-get",
            ProbePath::RedisSet => "redis-set",
            ProbePath::KafkaProduce => "kafka-produce",
        }
    }

    pub fn component(self) -> ObjectiveComponent {
        match self {
            ProbePath::PostgresRead | ProbePath::PostgresWrite => ObjectiveComponent::Postgres,
            ProbePath::RedisGet | ProbePath::RedisSet => ObjectiveComponent::Redis,
            ProbePath::KafkaProduce => ObjectiveComponent::Kafka,
        }
    }

    /// Write probes measure availability and the outages a client sees.
    pub fn is_write(self) -> bool {
        !matches!(self, ProbePath::PostgresRead | ProbePath::RedisGet)
    }

    /// `read` or `write`, the `kind` label of `shanraq_probe_total`.
    pub fn kind(self) -> &'static str {
        if self.is_write() { "write" } else { "read" }
    }

    /// The p99 target of this path: its component's read or write latency objective.
    pub fn target(self, cluster: &ValidCluster) -> Duration {
        let targets = cluster.spec.objective_targets(self.component());
        if self.is_write() {
            targets.latency_write_p99.as_std()
        } else {
            targets.latency_p99.as_std()
        }
    }
}

/// PostgreSQL through HAProxy's `pg-rw`, with the application's credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresProbe {
    pub host: String,
    pub port: u16,
    pub database: String,
    /// Secret with keys `username` and `password`.
    pub secret: String,
}

/// Redis as its clients reach it, with the Redis password: replication mode through HAProxy's
/// Redis port (the current master); Redis Cluster through its Service as seeds, each command
/// then sent to the master owning its key, as a cluster client does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisProbe {
    pub host: String,
    pub port: u16,
    /// Redis Cluster: `host` is a seed, and commands follow the cluster's slot map.
    pub cluster: bool,
    /// Secret with key `password`.
    pub secret: String,
    /// `WAIT` for this many replicas after each `SET`: when the Redis RPO is below what
    /// `min-replicas-max-lag` bounds, a write counts only once a replica holds it.
    pub wait_replicas: Option<u32>,
}

/// Kafka through its bootstrap Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaProbe {
    /// `host:port`.
    pub bootstrap: String,
    pub topic: String,
    pub replication_factor: i32,
    pub min_insync_replicas: i32,
}

/// What to probe for one cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbePlan {
    pub postgres: Option<PostgresProbe>,
    pub redis: Option<RedisProbe>,
    pub kafka: Option<KafkaProbe>,
    /// Enabled components with no probed path, and why.
    pub unprobed: Vec<(ObjectiveComponent, String)>,
}

impl ProbePlan {
    /// The paths this plan probes.
    pub fn paths(&self) -> Vec<ProbePath> {
        ProbePath::ALL
            .into_iter()
            .filter(|path| self.probes(path.component()))
            .collect()
    }

    /// Whether `component` has probed paths.
    pub fn probes(&self, component: ObjectiveComponent) -> bool {
        match component {
            ObjectiveComponent::Postgres => self.postgres.is_some(),
            ObjectiveComponent::Redis => self.redis.is_some(),
            ObjectiveComponent::Kafka => self.kafka.is_some(),
        }
    }

    /// Why `component` has no probed path, when it is enabled and has none.
    pub fn unprobed(&self, component: ObjectiveComponent) -> Option<&str> {
        self.unprobed
            .iter()
            .find(|(c, _)| *c == component)
            .map(|(_, why)| why.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.postgres.is_none() && self.redis.is_none() && self.kafka.is_none()
    }
}

const HAPROXY_OFF: &str =
    "its probes go through HAProxy, which is disabled (spec.haproxy.enabled: false)";

/// The probes of `cluster`, whose Services resolve under `cluster_domain`.
pub fn plan(cluster: &ValidCluster, cluster_domain: &str) -> ProbePlan {
    let spec = &cluster.spec;
    let service = |component: Component| {
        format!(
            "{}.{}.svc.{cluster_domain}",
            cluster.names.workload(component),
            cluster.namespace
        )
    };
    let haproxy = service(Component::HAProxy);
    let mut plan = ProbePlan::default();
    if spec.postgres.enabled {
        if spec.haproxy.enabled {
            plan.postgres = Some(PostgresProbe {
                host: haproxy.clone(),
                port: u16::try_from(PG_RW_PORT).unwrap_or(5432),
                database: spec.postgres.bootstrap.database.clone(),
                secret: cluster.names.pg_app_secret(),
            });
        } else {
            plan.unprobed
                .push((ObjectiveComponent::Postgres, HAPROXY_OFF.to_owned()));
        }
    }
    if spec.redis.enabled {
        let target = spec.objective_targets(ObjectiveComponent::Redis).rpo;
        let minimum = shanraq_render::redis::loss_bound(cluster).min_replicas_to_write;
        let has_replicas = match spec.redis.mode {
            RedisMode::Cluster => spec.redis.replicas_per_shard > 0,
            RedisMode::Replication => spec.redis.instances > 1,
        };
        let wait_replicas =
            (has_replicas && target < redis_default_rpo(&spec.redis)).then(|| minimum.max(1));
        if spec.redis.mode == RedisMode::Cluster {
            // Cluster clients seed from the headless Service and then talk to each master.
            plan.redis = Some(RedisProbe {
                host: service(Component::Redis),
                port: u16::try_from(shanraq_render::redis::PORT).unwrap_or(6379),
                cluster: true,
                secret: cluster.names.redis_secret(),
                wait_replicas,
            });
        } else if spec.haproxy.enabled {
            plan.redis = Some(RedisProbe {
                host: haproxy,
                port: u16::try_from(REDIS_PORT).unwrap_or(6379),
                cluster: false,
                secret: cluster.names.redis_secret(),
                wait_replicas,
            });
        } else {
            plan.unprobed
                .push((ObjectiveComponent::Redis, HAPROXY_OFF.to_owned()));
        }
    }
    if spec.kafka.enabled {
        plan.kafka = Some(KafkaProbe {
            bootstrap: format!(
                "{}.{}.svc.{cluster_domain}:{}",
                cluster.names.kafka_bootstrap(),
                cluster.namespace,
                shanraq_render::kafka::BROKER_PORT
            ),
            topic: KAFKA_PROBE_TOPIC.to_owned(),
            replication_factor: spec.kafka.default_replication_factor,
            min_insync_replicas: spec.kafka.min_insync_replicas,
        });
    }
    plan
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A valid cluster `pay` in `fintech` with this spec (the probes' tests share it).
    pub(in crate::engines::probes) fn cluster(spec_yaml: &str) -> ValidCluster {
        let spec: shanraq_api::ShanraqClusterSpec =
            serde_saphyr::from_str(spec_yaml).expect("spec parses");
        let mut object = shanraq_api::ShanraqCluster::new("pay", spec);
        object.metadata.namespace = Some("fintech".to_owned());
        shanraq_api::validate(&object, &shanraq_api::LiveState::default()).expect("valid")
    }

    #[test]
    fn the_default_stack_probes_every_path_through_the_services_clients_use() {
        let plan = plan(&cluster("{}"), "cluster.local");
        assert_eq!(plan.paths(), ProbePath::ALL.to_vec());
        assert!(plan.unprobed.is_empty());
        let postgres = plan.postgres.expect("PostgreSQL probed");
        assert_eq!(postgres.host, "pay-haproxy.fintech.svc.cluster.local");
        assert_eq!(postgres.port, 5432);
        let redis = plan.redis.expect("Redis probed");
        assert_eq!(redis.host, postgres.host);
        assert_eq!(
            redis.wait_replicas, None,
            "Redis's default RPO is what min-replicas-max-lag bounds: no WAIT needed"
        );
        let kafka = plan.kafka.expect("Kafka probed");
        assert_eq!(
            kafka.bootstrap,
            "pay-kafka-bootstrap.fintech.svc.cluster.local:9092"
        );
        assert_eq!(
            (kafka.replication_factor, kafka.min_insync_replicas),
            (3, 2)
        );
    }

    #[test]
    fn a_redis_rpo_below_the_lag_bound_waits_for_a_replica() {
        let plan = plan(
            &cluster("redis: {objectives: {rpo: 1s}, minReplicasToWrite: 1}"),
            "cluster.local",
        );
        assert_eq!(plan.redis.expect("probed").wait_replicas, Some(1));
    }

    #[test]
    fn paths_that_cannot_be_probed_say_why() {
        let plan = plan(&cluster("haproxy: {enabled: false}"), "cluster.local");
        assert_eq!(plan.paths(), vec![ProbePath::KafkaProduce]);
        for component in [ObjectiveComponent::Postgres, ObjectiveComponent::Redis] {
            assert!(
                plan.unprobed(component)
                    .is_some_and(|why| why.contains("spec.haproxy.enabled: false")),
                "{component:?}"
            );
        }
    }

    #[test]
    fn a_redis_cluster_is_probed_as_its_clients_reach_it() {
        let plan = plan(
            &cluster("haproxy: {enabled: false}\nredis: {mode: cluster, instances: 6}"),
            "cluster.local",
        );
        let redis = plan.redis.expect("Redis Cluster probed without HAProxy");
        assert!(redis.cluster);
        assert_eq!(
            (redis.host.as_str(), redis.port),
            ("pay-redis.fintech.svc.cluster.local", 6379)
        );
    }
}
