//! One probe task per cluster with something to probe: started by the reconcile
//! (`ProbeRegistry::ensure`) from the cluster's plan, restarted when the plan changes, stopped
//! with the cluster or the leadership. The window outlives the task, so a changed plan does
//! not forget what was measured, and is read by the reconcile (`verdicts`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::Client;
use shanraq_api::{ShanraqClusterStatus, ValidCluster};

use super::plan::{self, ProbePlan};
use super::verdicts::{self, ProbeVerdicts, Verdict};
use super::window::ProbeWindow;
use crate::engines::postgres::objectives::Published;
use crate::engines::tasks::{Tasks, until_stopped};
use crate::metrics::Metrics;

/// What the registry keeps per cluster beside its task.
#[derive(Debug, Default)]
struct Kept {
    window: Arc<ProbeWindow>,
    /// The verdicts last published in the status (unchanged verdicts keep their text for a
    /// minute, as the RPO's do).
    published: Published<Verdict, ProbeVerdicts>,
}

/// The running probe tasks, keyed by `namespace/name`.
#[derive(Debug)]
pub struct ProbeRegistry {
    /// `false` never probes (mocked-API tests).
    enabled: bool,
    cluster_domain: String,
    tasks: Tasks<ProbePlan, Arc<ProbeWindow>>,
    kept: Mutex<HashMap<String, Arc<Kept>>>,
}

impl ProbeRegistry {
    pub fn new(enabled: bool, cluster_domain: String) -> ProbeRegistry {
        ProbeRegistry {
            enabled,
            cluster_domain,
            tasks: Tasks::new("probes"),
            kept: Mutex::new(HashMap::new()),
        }
    }

    /// The probes of `cluster`, with the Services under this operator's cluster domain.
    pub fn plan(&self, cluster: &ValidCluster) -> ProbePlan {
        plan::plan(cluster, &self.cluster_domain)
    }

    fn kept(&self, key: &str) -> Option<Arc<Kept>> {
        let mut kept = self.kept.lock().ok()?;
        Some(kept.entry(key.to_owned()).or_default().clone())
    }

    /// Starts, restarts (changed plan, or ended) or stops the probes of `cluster`.
    pub fn ensure(&self, cluster: &ValidCluster, client: impl FnOnce() -> Client) {
        let key = cluster.key();
        let plan = self.plan(cluster);
        let wanted = (self.enabled && !plan.is_empty()).then_some(plan);
        let Some(kept) = self.kept(&key) else {
            return;
        };
        let namespace = cluster.namespace.clone();
        self.tasks.ensure(
            &key,
            wanted,
            || kept.window.clone(),
            |plan, window, stopped| {
                let client = client();
                until_stopped(stopped, run(client, namespace, plan, window))
            },
        );
    }

    /// The verdicts to publish for `cluster`, once its probes run: judged from its window,
    /// with the availability SLO counted from the first Ready on top of what the status
    /// persisted, and each path's last outage kept from the status when the window saw none.
    pub fn verdicts(
        &self,
        metrics: &Metrics,
        cluster: &ValidCluster,
        previous: &ShanraqClusterStatus,
    ) -> Option<ProbeVerdicts> {
        let key = cluster.key();
        let window = self.tasks.shared(&key)?;
        let kept = self.kept(&key)?;
        window.count_into(metrics.probe_counter(&cluster.name, &cluster.namespace));
        let persisted = previous.objectives.as_ref();
        let ledger = crate::controller::status::measuring_probes(previous).then(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            window.ledger(
                verdicts::ledger_from_status(
                    persisted.and_then(|o| o.availability_ledger.as_ref()),
                ),
                cluster.spec.objectives.availability_window.as_std(),
                now,
            )
        });
        let mut fresh = verdicts::judge(cluster, &self.plan(cluster), &window, ledger);
        fresh.keep_outages(
            persisted
                .map(|o| o.probe_paths.as_slice())
                .unwrap_or_default(),
        );
        let verdict = fresh.verdict();
        Some(kept.published.choose(verdict, fresh))
    }

    /// The cluster is being deleted: its probes stop, and what they measured goes.
    pub fn stop(&self, key: &str) {
        self.tasks.stop(key);
        if let Ok(mut kept) = self.kept.lock() {
            kept.remove(key);
        }
    }

    /// Leadership lost or shutdown: every probe stops (a new leader starts from the status).
    pub async fn stop_all(&self) {
        self.tasks.stop_all().await;
        if let Ok(mut kept) = self.kept.lock() {
            kept.clear();
        }
    }
}

/// Every prober of `plan`, side by side, until stopped.
async fn run(client: Client, namespace: String, plan: ProbePlan, window: Arc<ProbeWindow>) {
    let mut probers = tokio::task::JoinSet::new();
    if let Some(target) = plan.postgres {
        probers.spawn(super::postgres::run(
            client.clone(),
            namespace.clone(),
            target,
            window.clone(),
        ));
    }
    if let Some(target) = plan.redis {
        probers.spawn(super::redis::run(
            client.clone(),
            namespace.clone(),
            target,
            window.clone(),
        ));
    }
    if let Some(target) = plan.kafka {
        probers.spawn(super::kafka::run(target, window.clone()));
    }
    // The probers loop until aborted, which dropping the set does when the task stops.
    while probers.join_next().await.is_some() {}
}
