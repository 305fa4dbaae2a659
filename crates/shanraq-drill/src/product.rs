//! The ShanraqCluster a local drill stands for. The drill's options become a spec (PostgreSQL
//! with N instances, the synchronous number and data durability, the failover timings; HAProxy
//! without application backends; Redis, Kafka and monitoring off), validated as the operator
//! validates one, so that HAProxy, PostgreSQL and the engine run with what the product would
//! render for a user, not with settings of the drill's own.

use shanraq_api::backup::{BackupSpec, CaBundle, KeyRef};
use shanraq_api::cluster::{ShanraqCluster, ShanraqClusterSpec};
use shanraq_api::duration::Duration;
use shanraq_api::postgres::DataDurability as SpecDurability;
use shanraq_api::{LiveState, ValidCluster};
use shanraq_ha::postgres::{DataDurability, ReplicationMode};

use super::backup::{CA_SECRET, CREDENTIALS_SECRET};
use super::error::DrillError;
use super::local::ClusterOptions;
use shanraq_operator::engines::postgres::spec::engine_config;

/// The name and namespace the rendered objects would have.
pub const CLUSTER_NAME: &str = "drill";
pub const NAMESPACE: &str = "drill";

/// The validated cluster for `options`; fails when the spec cannot say what the options ask
/// for (the engine would then run with settings no user can have).
pub fn cluster(options: &ClusterOptions) -> Result<ValidCluster, DrillError> {
    let invalid = |reason: String| DrillError::InvalidOption {
        option: "cluster options",
        reason,
    };
    let instances = i32::try_from(options.instances)
        .map_err(|_| invalid(format!("{} instances", options.instances)))?;
    let mut spec = ShanraqClusterSpec::default();
    spec.postgres.instances = instances;
    spec.postgres.synchronous.number = match options.ha.replication {
        ReplicationMode::Synchronous { number } => {
            i32::try_from(number).map_err(|_| invalid(format!("synchronous number {number}")))?
        }
        ReplicationMode::Asynchronous => {
            // Asynchronous replication cannot promise RPO 0; the objective only feeds the
            // status, which a drill has none of.
            spec.objectives.rpo = Duration::from_secs(5);
            0
        }
    };
    let ha = &options.ha;
    spec.postgres.synchronous.data_durability = match ha.data_durability {
        DataDurability::Required => SpecDurability::Required,
        DataDurability::Preferred => SpecDurability::Preferred,
    };
    spec.failover.probe_period = ha.probe_period.into();
    spec.failover.failure_threshold = i32::try_from(ha.failure_threshold)
        .map_err(|_| invalid(format!("failure threshold {}", ha.failure_threshold)))?;
    spec.failover.failover_delay = ha.failover_delay.into();
    spec.failover.maximum_lag_on_failover = i64::try_from(ha.maximum_lag_on_failover)
        .map_err(|_| invalid(format!("maximum lag {}", ha.maximum_lag_on_failover)))?;
    spec.failover.switchover_timeout = ha.switchover_timeout.into();
    spec.redis.enabled = false;
    spec.kafka.enabled = false;
    spec.haproxy.enabled = true;
    spec.haproxy.backends.clear();
    spec.monitoring.pod_monitors = false;
    spec.monitoring.prometheus_rules = false;
    spec.monitoring.grafana_dashboards = false;

    let mut name = CLUSTER_NAME;
    if let Some(backup) = &options.backup {
        name = &backup.cluster;
        let mut spec_backup = BackupSpec::new(
            &backup.store.endpoint,
            &backup.store.bucket,
            CREDENTIALS_SECRET,
        );
        spec_backup.tls.ca = Some(CaBundle {
            secret: Some(KeyRef {
                name: CA_SECRET.to_owned(),
                key: "ca.crt".to_owned(),
            }),
            config_map: None,
        });
        spec_backup.archive_timeout = backup.archive_timeout.into();
        spec.backup = Some(spec_backup);
        spec.bootstrap.recovery = backup.recovery.clone();
    }
    let mut object = ShanraqCluster::new(name, spec);
    object.metadata.namespace = Some(NAMESPACE.to_owned());
    let valid = shanraq_api::validate(&object, &LiveState::default())
        .map_err(|error| invalid(format!("as a ShanraqCluster: {error}")))?;
    let engine = engine_config(&valid);
    if engine != options.ha {
        return Err(invalid(format!(
            "a ShanraqCluster cannot express these engine settings: asked {:?}, the spec gives {engine:?}",
            options.ha
        )));
    }
    Ok(valid)
}

/// The rendered postgresql.conf, given to every instance unchanged: it names no path, address
/// or port (the instance manager owns those and includes the file before its own settings).
pub fn postgresql_conf(cluster: &ValidCluster) -> Result<String, DrillError> {
    shanraq_render::postgres::postgresql_conf(cluster).map_err(|error| DrillError::InvalidOption {
        option: "cluster options",
        reason: format!("rendering postgresql.conf: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drill_defaults_are_the_spec_defaults() {
        let options = ClusterOptions::synchronous(3);
        let valid = cluster(&options).expect("valid");
        assert_eq!(valid.spec.postgres.instances, 3);
        assert_eq!(valid.spec.postgres.synchronous.number, 1);
        assert_eq!(
            valid.spec.failover,
            shanraq_api::failover::FailoverSpec::default()
        );
        assert!(!valid.spec.redis.enabled && !valid.spec.kafka.enabled);
        assert!(!valid.spec.monitoring.any_enabled());
    }

    #[test]
    fn asynchronous_options_give_an_asynchronous_spec() {
        let valid = cluster(&ClusterOptions::asynchronous(3, 4096)).expect("valid");
        assert_eq!(valid.spec.postgres.synchronous.number, 0);
        assert_eq!(valid.spec.failover.maximum_lag_on_failover, 4096);
        assert_eq!(
            shanraq_render::postgres::synchronous_standby_names(&valid),
            None
        );
    }

    #[test]
    fn settings_no_spec_can_hold_are_refused() {
        let mut options = ClusterOptions::synchronous(3);
        options.ha.fence_timeout = std::time::Duration::from_secs(1);
        assert!(cluster(&options).is_err());
    }

    #[test]
    fn the_rendered_postgresql_conf_needs_no_local_substitution() {
        let valid = cluster(&ClusterOptions::synchronous(3)).expect("valid");
        let conf = postgresql_conf(&valid).expect("renders");
        for line in conf.lines().filter(|line| !line.starts_with('#')) {
            let value = line.split_once('=').map_or("", |(_, value)| value);
            assert!(
                !value.contains('/') && !line.starts_with("port") && !line.starts_with("listen"),
                "a setting that would need a local value: {line}"
            );
        }
        assert!(conf.contains("shared_preload_libraries = 'pg_stat_statements'"));
    }
}
