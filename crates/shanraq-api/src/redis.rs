//! Redis: a replicated master with operator-driven failover, or a sharded Redis Cluster.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::storage::StorageSpec;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'cluster' || self.instances >= 6").field_path(".instances").message(
    "redis.instances must be at least 6 in cluster mode (3 masters, each with a replica)"
))]
#[x_kube(validation = Rule::new("self.mode != 'cluster' || self.instances % (self.replicasPerShard + 1) == 0").field_path(".instances").message(
    "redis.instances must be a multiple of redis.replicasPerShard + 1 in cluster mode"
))]
#[x_kube(validation = Rule::new("self.mode != 'replication' || self.minReplicasToWrite < self.instances").field_path(".minReplicasToWrite").message(
    "redis.minReplicasToWrite must be lower than redis.instances, or the master would refuse every write"
))]
#[x_kube(validation = Rule::new("self.mode != 'cluster' || oldSelf.mode != 'cluster' || self.instances >= oldSelf.instances").field_path(".instances").message(
    "redis.instances cannot shrink in cluster mode: the operator does not migrate hash slots off the nodes a shrink would delete, so their slots (and keys) would be dropped"
))]
#[x_kube(validation = Rule::new("self.mode != 'cluster' || oldSelf.mode != 'cluster' || self.replicasPerShard == oldSelf.replicasPerShard").field_path(".replicasPerShard").message(
    "redis.replicasPerShard cannot change once a Redis Cluster is formed: the operator does not move replicas between shards, so Redis would keep its old shape; keep the value, or create a new cluster with the new shape and migrate the keys"
))]
#[x_kube(validation = Rule::new("self.mode == oldSelf.mode").field_path(".mode").message(
    "redis.mode is immutable: moving between replication and cluster mode needs a new cluster"
))]
pub struct RedisSpec {
    #[serde(default = "crate::default_true")]
    pub enabled: bool,
    /// `replication`: one master and replicas. `cluster`: Redis Cluster shards. Immutable.
    #[serde(default)]
    pub mode: RedisMode,
    /// Number of Redis nodes. Cluster mode needs at least 6 (3 masters, 3 replicas).
    #[serde(default = "default_instances")]
    #[schemars(range(min = 1, max = 60))]
    pub instances: i32,
    /// Cluster mode: replicas per master; `instances` must be a multiple of `replicasPerShard + 1`.
    /// Fixed once the Redis Cluster is formed.
    #[serde(default = "default_replicas_per_shard")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas_per_shard: i32,
    /// Image: Redis 7 and redis_exporter (images/redis/Dockerfile); the cluster-forming Job
    /// runs it too.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// `maxmemory`, in Redis units (`2gb`, `512mb`).
    #[serde(default = "default_maxmemory")]
    #[schemars(regex(pattern = r"^[1-9][0-9]{0,8}(b|kb|mb|gb)?$"), length(max = 16))]
    pub maxmemory: String,
    #[serde(default)]
    pub maxmemory_policy: MaxmemoryPolicy,
    /// The append-only file: what a full outage (every redis-server down at once) can lose.
    /// `auto` derives it from Redis's RPO target (`always` below the 2 s `everysec` can lose,
    /// `everysec` at or above it); `none` keeps nothing on disk, so a full outage loses every
    /// write and no RPO target holds.
    #[serde(default)]
    pub persistence: RedisPersistence,
    /// Deprecated (before `persistence`): kept so that a cluster written with it keeps what
    /// it chose through an operator upgrade. With `persistence: auto`, `appendonly: false`
    /// means `none`; with `persistence` set, it is ignored. Use `persistence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appendonly: Option<bool>,
    /// Deprecated (before `persistence`): with `persistence: auto`, `always` is kept as
    /// `always`; `everysec` and `no` take what `auto` derives (never less than `everysec`).
    /// Use `persistence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appendfsync: Option<LegacyAppendfsync>,
    /// Replication mode: the master refuses writes unless this many replicas are connected with
    /// a lag of at most `minReplicasMaxLag` seconds. This bounds what a failover can lose.
    #[serde(default = "default_min_replicas_to_write")]
    #[schemars(range(min = 0, max = 59))]
    pub min_replicas_to_write: i32,
    #[serde(default = "default_min_replicas_max_lag")]
    #[schemars(range(min = 1, max = 3600))]
    pub min_replicas_max_lag: i32,
    #[serde(default = "default_storage")]
    pub storage: StorageSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// This component's own objectives, overriding `spec.objectives` one by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objectives: Option<crate::objectives::ComponentObjectives>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RedisMode {
    #[default]
    Replication,
    Cluster,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MaxmemoryPolicy {
    Noeviction,
    #[default]
    AllkeysLru,
    VolatileLru,
    AllkeysLfu,
    VolatileLfu,
    AllkeysRandom,
    VolatileRandom,
    VolatileTtl,
}

impl MaxmemoryPolicy {
    /// The spelling redis.conf uses.
    pub fn as_redis(self) -> &'static str {
        match self {
            MaxmemoryPolicy::Noeviction => "noeviction",
            MaxmemoryPolicy::AllkeysLru => "allkeys-lru",
            MaxmemoryPolicy::VolatileLru => "volatile-lru",
            MaxmemoryPolicy::AllkeysLfu => "allkeys-lfu",
            MaxmemoryPolicy::VolatileLfu => "volatile-lfu",
            MaxmemoryPolicy::AllkeysRandom => "allkeys-random",
            MaxmemoryPolicy::VolatileRandom => "volatile-random",
            MaxmemoryPolicy::VolatileTtl => "volatile-ttl",
        }
    }
}

/// `spec.redis.persistence`: the append-only file, chosen or derived from the RPO target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RedisPersistence {
    /// From Redis's RPO target (`crate::objectives::redis_append_only`).
    #[default]
    Auto,
    /// No append-only file.
    None,
    /// `appendonly yes`, `appendfsync everysec`.
    Everysec,
    /// `appendonly yes`, `appendfsync always`.
    Always,
}

/// The deprecated `spec.redis.appendfsync`, read so that an upgrade keeps what it chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LegacyAppendfsync {
    Always,
    Everysec,
    No,
}

/// What the rendered redis.conf keeps on disk once `auto` is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AppendOnly {
    Off,
    Everysec,
    Always,
}

impl AppendOnly {
    /// `appendonly` in redis.conf.
    pub fn appendonly(self) -> &'static str {
        match self {
            AppendOnly::Off => "no",
            AppendOnly::Everysec | AppendOnly::Always => "yes",
        }
    }

    /// `appendfsync` in redis.conf (Redis's own default while `appendonly` is `no`).
    pub fn appendfsync(self) -> &'static str {
        match self {
            AppendOnly::Off | AppendOnly::Everysec => "everysec",
            AppendOnly::Always => "always",
        }
    }

    /// The value of `spec.redis.persistence` that chooses it.
    pub fn spec_value(self) -> &'static str {
        match self {
            AppendOnly::Off => "none",
            AppendOnly::Everysec => "everysec",
            AppendOnly::Always => "always",
        }
    }

    /// The most a full outage (every node down at once, restarted from its volume) can lose
    /// of acknowledged writes; `None` when nothing bounds it.
    pub fn full_outage_loss(self) -> Option<crate::duration::Duration> {
        match self {
            AppendOnly::Off => None,
            AppendOnly::Everysec => Some(EVERYSEC_WORST_LOSS),
            AppendOnly::Always => Some(crate::duration::Duration::ZERO),
        }
    }
}

/// What `appendfsync everysec` can lose in a crash. Redis fsyncs once a second in the
/// background, and when an fsync is still running it postpones the write of the buffer for up
/// to another second before it blocks: its documentation gives two seconds as the worst case.
pub const EVERYSEC_WORST_LOSS: crate::duration::Duration = crate::duration::Duration::from_secs(2);

fn default_instances() -> i32 {
    3
}
fn default_replicas_per_shard() -> i32 {
    1
}
fn default_image() -> String {
    crate::images::default_image("redis")
}
fn default_maxmemory() -> String {
    "2gb".to_owned()
}
fn default_min_replicas_to_write() -> i32 {
    1
}
fn default_min_replicas_max_lag() -> i32 {
    10
}
fn default_storage() -> StorageSpec {
    StorageSpec::of_size("5Gi")
}

impl Default for RedisSpec {
    fn default() -> Self {
        RedisSpec {
            enabled: true,
            mode: RedisMode::default(),
            instances: default_instances(),
            replicas_per_shard: default_replicas_per_shard(),
            image: default_image(),
            maxmemory: default_maxmemory(),
            maxmemory_policy: MaxmemoryPolicy::default(),
            persistence: RedisPersistence::default(),
            appendonly: None,
            appendfsync: None,
            min_replicas_to_write: default_min_replicas_to_write(),
            min_replicas_max_lag: default_min_replicas_max_lag(),
            storage: default_storage(),
            resources: None,
            objectives: None,
        }
    }
}
