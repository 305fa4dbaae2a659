//! What the engines saw this round that only they read back (their Ready conditions and
//! instance counts), one field per engine: a new engine adds its field here, and the
//! controller carries the whole without knowing what is inside.

use shanraq_api::status::{PostgresInstanceStatus, RedisClusterStatus};

use crate::engines::kafka::health::AdminView;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineViews {
    /// `status.postgres.instances[]` from the HA task's last sample; `None` while not sampled.
    pub postgres_instances: Option<Vec<PostgresInstanceStatus>>,
    /// Redis cluster mode, as the Redis task last observed it (`status.redis.cluster`).
    pub redis_cluster: Option<RedisClusterStatus>,
    /// What the Kafka task last learnt from the admin API.
    pub kafka: Option<AdminView>,
}
