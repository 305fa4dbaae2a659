//! The PostgreSQL failover engine wired to Kubernetes: one HA task per ShanraqCluster with
//! PostgreSQL enabled, started and restarted by the reconcile, stopped when the cluster is
//! deleted or disables PostgreSQL, and all stopped when the operator loses leadership. The
//! engine's state lives in the cluster's status (`KubeStateStore`), routing is the pods' role
//! label (`KubeRouter`), and pod watches feed the engine directly.

pub mod drill;
pub mod objectives;
pub mod observe;
pub mod pods;
pub mod restart;
pub mod router;
pub mod spec;
pub mod status_map;
pub mod switchover;
pub mod task;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use shanraq_api::ValidCluster;
use shanraq_ha::adapters::driver::{DriverError, DriverHandle};
use shanraq_ha::postgres::NodeId;
use shanraq_ha::wire::InstanceStatus;

pub use spec::{HaSettings, InstanceAddress, TaskSpec, task_spec};
use task::{Deps, Shared};

use crate::engines::tasks::Tasks;

/// Why a switchover request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SwitchoverRequestError {
    #[error("the HA task of {key} is not running (PostgreSQL disabled, or still starting)")]
    NotRunning { key: String },
    #[error("{0}")]
    Refused(#[from] DriverError),
}

/// The running HA tasks, keyed by `namespace/name`.
pub struct HaRegistry {
    settings: HaSettings,
    tasks: Tasks<TaskSpec, Arc<Shared>>,
}

impl std::fmt::Debug for HaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaRegistry")
            .field("settings", &self.settings)
            .field("tasks", &self.running())
            .finish()
    }
}

impl HaRegistry {
    pub fn new(settings: HaSettings) -> HaRegistry {
        HaRegistry {
            settings,
            tasks: Tasks::new("postgres"),
        }
    }

    pub fn settings(&self) -> &HaSettings {
        &self.settings
    }

    /// Keys of the tasks currently running.
    pub fn running(&self) -> Vec<String> {
        self.tasks.running()
    }

    /// Starts the task of `cluster`, restarts it when its configuration changed (or it ended),
    /// or stops it when PostgreSQL is disabled. A restarted task waits for its predecessor to
    /// stop first, so two drivers never run for one cluster.
    pub fn ensure(&self, cluster: &ValidCluster, deps: impl FnOnce() -> Deps) {
        let wanted = if self.settings.enabled {
            task_spec(cluster, &self.settings)
        } else {
            None
        };
        self.tasks.ensure(
            &cluster.key(),
            wanted,
            || Arc::new(Shared::default()),
            |spec, shared, stopped| task::run(spec, deps(), shared, stopped),
        );
    }

    /// Stops the task of `key`, if any.
    pub fn stop(&self, key: &str) {
        self.tasks.stop(key);
    }

    /// Stops every task (leadership lost, shutdown) and waits for them, bounded.
    pub async fn stop_all(&self) {
        self.tasks.stop_all().await;
    }

    fn shared(&self, key: &str) -> Option<Arc<Shared>> {
        self.tasks.shared(key)
    }

    /// The client of instance `node` of `key`'s HA task, once the task runs.
    pub fn instance_client(
        &self,
        key: &str,
        node: &str,
    ) -> Option<shanraq_ha::adapters::instance_client::InstanceClient> {
        let shared = self.shared(key)?;
        let clients = shared.clients.lock().ok()?;
        clients.get(&NodeId::new(node.to_owned())).cloned()
    }

    /// The running driver of `key`.
    pub fn handle(&self, key: &str) -> Option<DriverHandle> {
        self.shared(key)?.handle()
    }

    /// The fallback of `key`'s primary under `synchronous.dataDurability: preferred`, from the
    /// running engine's persisted state (the `fallback` entry of `status.postgres.haState`); `None` while the
    /// primary commits with its configured quorum. While it is set, a failover waits out the
    /// old primary's lease before promoting (`spec.failover.lease()` plus the reply slack).
    pub fn synchronous_fallback(&self, key: &str) -> Option<shanraq_ha::postgres::Fallback> {
        self.handle(key)?.state().detail.fallback
    }

    /// The last `/status` sample of `key`'s instances (empty before the first).
    pub fn sample(&self, key: &str) -> Option<Vec<InstanceStatus>> {
        let shared = self.shared(key)?;
        shared.handle()?;
        Some(shared.sample())
    }

    /// The configuration hash the PostgreSQL pods of `key` should run (from the rendered
    /// StatefulSet); stale pods are restarted by the task, replicas first.
    pub fn set_desired_hash(&self, key: &str, hash: Option<String>) {
        if let Some(shared) = self.shared(key)
            && let Ok(mut slot) = shared.desired_hash.lock()
        {
            *slot = hash;
        }
    }

    /// What to publish as the RPO measurement of `key` (see `objectives::Published`).
    pub fn publishable_rpo(
        &self,
        key: &str,
        cluster: &ValidCluster,
        fresh: shanraq_ha::objectives::RpoMeasurement,
    ) -> shanraq_ha::objectives::RpoMeasurement {
        match self.shared(key) {
            Some(shared) => {
                let met = objectives::rpo_condition(cluster, &fresh).1.met;
                shared.published_rpo.choose(met, fresh)
            }
            None => fresh,
        }
    }

    /// Asks `key`'s engine for a switchover to `target` (the best replica when `None`).
    pub async fn request_switchover(
        &self,
        key: &str,
        target: Option<NodeId>,
    ) -> Result<NodeId, SwitchoverRequestError> {
        let handle = self
            .handle(key)
            .ok_or_else(|| SwitchoverRequestError::NotRunning {
                key: key.to_owned(),
            })?;
        Ok(handle
            .request_switchover(target)
            .await
            .map_err(shanraq_ha::adapters::driver::DriverError::from)?)
    }
}
