//! The Redis engine's settings from a validated cluster: the shared failover timings and the
//! loss bound the rendered redis.conf enforces on the master's side, so the election and the
//! master refuse the same thing.

use shanraq_api::ValidCluster;
use shanraq_ha::redis::RedisHaConfig;

pub fn engine_config(cluster: &ValidCluster) -> RedisHaConfig {
    let failover = &cluster.spec.failover;
    let bound = shanraq_render::redis::loss_bound(cluster);
    RedisHaConfig {
        probe_period: failover.probe_period.as_std(),
        failure_threshold: u32::try_from(failover.failure_threshold.max(1)).unwrap_or(1),
        failover_delay: failover.failover_delay.as_std(),
        min_replicas_to_write: bound.min_replicas_to_write,
        max_lag_bytes: u64::try_from(failover.maximum_lag_on_failover.max(0)).unwrap_or(0),
        max_lag_seconds: u64::from(bound.max_lag_seconds),
        switchover_timeout: failover.switchover_timeout.as_std(),
        fsync_always: shanraq_api::objectives::redis_append_only(&cluster.spec)
            == shanraq_api::redis::AppendOnly::Always,
        ..RedisHaConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(spec_yaml: &str) -> ValidCluster {
        let spec: shanraq_api::ShanraqClusterSpec =
            serde_saphyr::from_str(spec_yaml).expect("spec parses");
        let mut object = shanraq_api::ShanraqCluster::new("demo", spec);
        object.metadata.namespace = Some("fintech".to_owned());
        shanraq_api::validate(&object, &shanraq_api::LiveState::default()).expect("valid")
    }

    #[test]
    fn the_defaults_give_the_fast_profile_and_redis_s_own_rpo() {
        let config = engine_config(&cluster("{}"));
        assert_eq!(config.probe_period, std::time::Duration::from_millis(250));
        assert_eq!(config.failure_threshold, 3);
        assert_eq!(config.min_replicas_to_write, 1);
        assert_eq!(
            config.max_lag_seconds, 10,
            "the cluster-wide 0s is not Redis's: Redis keeps minReplicasMaxLag, its default RPO"
        );
        let config = engine_config(&cluster("redis:\n  objectives:\n    rpo: 1s\n"));
        assert_eq!(
            config.max_lag_seconds, 1,
            "Redis's own RPO tightens the lag"
        );
        assert_eq!(config.max_lag_bytes, 1024 * 1024);
        assert!(
            config.fsync_always,
            "below the 2s everysec can lose, the nodes fsync every write"
        );
        assert!(!engine_config(&cluster("{}")).fsync_always);
    }

    #[test]
    fn a_looser_rpo_loosens_the_lag_up_to_the_configured_bound() {
        let config = engine_config(&cluster("objectives:\n  rpo: 5s\n"));
        assert_eq!(config.max_lag_seconds, 5);
        let config = engine_config(&cluster("objectives:\n  rpo: 60s\n"));
        assert_eq!(
            config.max_lag_seconds, 10,
            "never beyond redis.minReplicasMaxLag"
        );
    }
}
