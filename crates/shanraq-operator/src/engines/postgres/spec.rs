//! What one cluster's HA task runs with, derived purely from the validated cluster and the
//! operator's settings: the members (the PostgreSQL StatefulSet's pods; replicas stream from
//! the headless Service's per-pod DNS names, and the operator reaches the instance managers at
//! the pods' IPs once the task has read them) and the engine's timings. A task is restarted only
//! when this changes, so it is plain data compared with `==`.

use std::time::Duration;

use shanraq_api::ValidCluster;
use shanraq_api::names::Component;
use shanraq_api::postgres::DataDurability as SpecDurability;
use shanraq_ha::adapters::driver::DriverMember;
use shanraq_ha::postgres::{DataDurability, Member, PostgresHaConfig, ReplicationMode};
use shanraq_render::postgres::{PORT, STATUS_PORT};

/// How long an old primary gets to stop when fenced.
pub const FENCE_TIMEOUT: Duration = Duration::from_secs(5);

/// How the operator reaches each instance manager.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum InstanceAddress {
    /// The pod's IP (`status.podIP`), followed when the pod comes back with another one: a
    /// failover then depends on the API server alone, not on cluster DNS. Until a pod has an
    /// IP, its per-pod DNS name is used.
    #[default]
    PodIp,
    /// The per-pod DNS name of the headless Service.
    Dns,
}

/// Operator-wide HA settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaSettings {
    /// Runs an HA task per cluster. Off only in tests that script every API request.
    pub enabled: bool,
    /// The cluster DNS domain (`cluster.local` unless the kubelet says otherwise).
    pub cluster_domain: String,
    pub instance_address: InstanceAddress,
    /// The engines' identity, the owner of every epoch they claim: this operator replica's
    /// (its pod name), stable across a restart of the same pod so that it resumes its own
    /// claims at their epoch.
    pub identity: String,
    /// Checked by every engine before it acts (see `engines::leadership`).
    pub leadership: crate::engines::leadership::Leadership,
}

impl Default for HaSettings {
    fn default() -> Self {
        HaSettings {
            enabled: true,
            cluster_domain: "cluster.local".to_owned(),
            instance_address: InstanceAddress::default(),
            identity: shanraq_ha::postgres::DEFAULT_IDENTITY.to_owned(),
            leadership: crate::engines::leadership::Leadership::default(),
        }
    }
}

/// The instance manager's URL at `host` (an IP or a DNS name).
pub fn manager_url(host: &str) -> String {
    format!("http://{host}:{STATUS_PORT}")
}

/// One cluster's HA task configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskSpec {
    pub namespace: String,
    pub name: String,
    /// `<name>-pg`: the StatefulSet and its headless Service.
    pub workload: String,
    pub members: Vec<DriverMember>,
    pub engine: PostgresHaConfig,
    /// Secret holding the instance managers' bearer token (key `token`).
    pub token_secret: String,
    pub address: InstanceAddress,
}

impl TaskSpec {
    /// `namespace/name`, the registry key.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The engine's configuration from `spec.failover` and `spec.postgres.synchronous`.
pub fn engine_config(cluster: &ValidCluster) -> PostgresHaConfig {
    let failover = &cluster.spec.failover;
    let synchronous = &cluster.spec.postgres.synchronous;
    PostgresHaConfig {
        probe_period: failover.probe_period.as_std(),
        failure_threshold: u32::try_from(failover.failure_threshold.max(1)).unwrap_or(1),
        failover_delay: failover.failover_delay.as_std(),
        maximum_lag_on_failover: u64::try_from(failover.maximum_lag_on_failover.max(0))
            .unwrap_or(0),
        replication: if synchronous.is_synchronous() {
            ReplicationMode::Synchronous {
                number: u32::try_from(synchronous.number).unwrap_or(1),
            }
        } else {
            ReplicationMode::Asynchronous
        },
        data_durability: match synchronous.data_durability {
            SpecDurability::Required => DataDurability::Required,
            SpecDurability::Preferred => DataDurability::Preferred,
        },
        switchover_timeout: failover.switchover_timeout.as_std(),
        fence_timeout: FENCE_TIMEOUT,
        lease_duration: failover.lease(),
    }
}

/// `<pod>.<name>-pg.<namespace>.svc.<domain>`: resolvable while the pod is not ready, because
/// the headless Service publishes not-ready addresses.
pub fn pod_fqdn(cluster: &ValidCluster, pod: &str, domain: &str) -> String {
    format!(
        "{pod}.{}.{}.svc.{domain}",
        cluster.names.workload(Component::Postgres),
        cluster.namespace
    )
}

/// The task of a cluster with PostgreSQL enabled; `None` when it is disabled.
pub fn task_spec(cluster: &ValidCluster, settings: &HaSettings) -> Option<TaskSpec> {
    let postgres = &cluster.spec.postgres;
    if !postgres.enabled || postgres.instances < 1 {
        return None;
    }
    let port = u16::try_from(PORT).unwrap_or(5432);
    let members = (0..postgres.instances)
        .map(|ordinal| {
            let pod = cluster.names.pod(Component::Postgres, ordinal);
            let host = pod_fqdn(cluster, &pod, &settings.cluster_domain);
            DriverMember {
                manager_url: manager_url(&host),
                member: Member::new(pod, host, port),
            }
        })
        .collect();
    Some(TaskSpec {
        namespace: cluster.namespace.clone(),
        name: cluster.name.clone(),
        workload: cluster.names.workload(Component::Postgres),
        members,
        engine: engine_config(cluster),
        token_secret: cluster.names.instance_token_secret(),
        address: settings.instance_address,
    })
}
