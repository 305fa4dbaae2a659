//! The ShanraqCluster controller: watches clusters and the children they own, and runs
//! [`reconcile::reconcile`] for each change. One controller per watched namespace (or one over
//! all namespaces).
//!
//! Pods are not watched here: a rollout's progress reaches the controller through its
//! workload's status (StatefulSet and Deployment ready and updated replicas), and each engine
//! watches its own pods. With pod events the controller would reconcile a cluster once per pod
//! status change, dozens of times while a single cluster comes up.

pub mod applied;
pub mod apply;
pub mod backup_schedule;
pub mod backup_status;
pub mod backups;
pub mod children;
pub mod confirm;
pub mod dereference;
pub mod discovery;
pub mod error;
pub mod events;
pub mod observe;
pub mod publish;
pub mod reconcile;
pub mod secrets;
pub mod stalled;
pub mod status;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, PartialObjectMeta};
use kube::core::ApiResource;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use shanraq_api::ShanraqCluster;
use shanraq_api::names::{API_VERSION, KIND, LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY};

use crate::engines::postgres::HaSettings;
use crate::engines::registry::Engines;
use crate::metrics::Metrics;
use discovery::Discovery;
pub use error::Error;
use reconcile::leading;

/// Retries of a failing reconcile back off exponentially from this...
pub const RETRY_BASE: Duration = Duration::from_secs(2);
/// ...up to this.
pub const RETRY_MAX: Duration = Duration::from_secs(300);

/// A burst of triggers for one cluster (its children changing one after another while it comes
/// up) starts one reconcile once the burst has been quiet this long.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// Reconciles running at once (each applies up to 8 children at once): enough to keep the API
/// server busy; each request in flight holds a connection and its buffers, so at 16 the
/// operator peaked at 70 MiB holding 200 clusters, at 8 at 58 MiB, converging as fast.
pub const RECONCILE_CONCURRENCY: u16 = 8;

/// How long a stop waits for in-flight reconciles before the controllers are dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub metrics: Metrics,
    pub recorder: Recorder,
    pub discovery: Discovery,
    /// The kinds whose orphans are deleted (`shanraq_render::child::owned_kinds`).
    pub owned_kinds: Vec<ApiResource>,
    /// Every engine of every cluster (PostgreSQL, Redis, Kafka).
    pub engines: Engines,
    /// Each cluster's last full apply, so that an unchanged rendering is read, not re-applied.
    pub applied: applied::AppliedMarks,
    /// Consecutive failures per cluster (`namespace/name`), for the retry back-off.
    failures: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("owned_kinds", &self.owned_kinds.len())
            .finish_non_exhaustive()
    }
}

use crate::engines::request::key;

impl Context {
    pub fn new(client: Client, metrics: Metrics, reporter: Reporter, discovery: Discovery) -> Self {
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            discovery,
            owned_kinds: shanraq_render::child::owned_kinds(),
            // Off until `with_ha`: a context without it never talks to instance managers.
            engines: Engines::disabled(),
            applied: applied::AppliedMarks::default(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Runs the engines of every cluster with these settings.
    pub fn with_ha(mut self, settings: HaSettings) -> Self {
        self.engines = Engines::new(settings);
        self
    }

    /// What the engines' tasks need to reach the API, publish Events and count.
    pub fn io(&self) -> crate::engines::registry::Io {
        crate::engines::registry::Io {
            client: self.client.clone(),
            recorder: self.recorder.clone(),
            metrics: self.metrics.clone(),
        }
    }

    fn forget_failures(&self, cluster: &ShanraqCluster) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&key(cluster));
        }
    }

    /// Counts one more failure and returns how many in a row.
    fn count_failure(&self, cluster: &ShanraqCluster) -> u32 {
        match self.failures.lock() {
            Ok(mut failures) => {
                let count = failures.entry(key(cluster)).or_insert(0);
                *count = count.saturating_add(1);
                *count
            }
            Err(_) => 1,
        }
    }
}

/// The retry delay after `failures` consecutive failures: 2 s, 4 s, 8 s, ... at most 5 min.
pub fn retry_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    RETRY_BASE.saturating_mul(1u32 << exponent).min(RETRY_MAX)
}

/// An invalid spec waits for the user to change it (the status already says `Stalled`); any
/// other failure is retried with a bounded exponential back-off. Both are counted.
pub fn error_policy(cluster: Arc<ShanraqCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.count_error(error.metric_label());
    match error {
        Error::InvalidSpec { .. } => {
            tracing::warn!(cluster = %key(&cluster), %error, "spec refused; waiting for a change");
            Action::await_change()
        }
        _ => {
            let delay = retry_delay(ctx.count_failure(&cluster));
            tracing::warn!(cluster = %key(&cluster), %error, retry_in = ?delay, "reconcile failed");
            Action::requeue(delay)
        }
    }
}

fn managed_children() -> watcher::Config {
    watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"))
}

/// Maps a labelled object back to its cluster in the same namespace.
fn cluster_of<K: ResourceExt>(object: &K, label: &str) -> Option<ObjectRef<ShanraqCluster>> {
    let name = object.labels().get(label)?;
    let namespace = object.namespace()?;
    Some(ObjectRef::new(name).within(&namespace))
}

/// The trigger of one owned kind: the child's controlling ShanraqCluster (as `owns` maps it),
/// after telling that cluster's applied mark what version of the child was seen.
fn owned_child<K>(
    ctx: Arc<Context>,
) -> impl Fn(PartialObjectMeta<K>) -> Option<ObjectRef<ShanraqCluster>> + Send + Sync + 'static
where
    K: kube::Resource<DynamicType = ()> + Send + Sync + 'static,
{
    move |child| {
        let namespace = child.namespace()?;
        let owner = child
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true) && o.kind == KIND && o.api_version == API_VERSION)?
            .name
            .clone();
        ctx.applied.observe_child(
            &format!("{namespace}/{owner}"),
            &K::kind(&()),
            &child.name_any(),
            child.metadata.generation,
            child.metadata.resource_version.as_deref(),
        );
        Some(ObjectRef::new(&owner).within(&namespace))
    }
}

/// The trigger of a generated Secret (no owner reference: mapped by its instance label).
fn generated_secret(
    ctx: Arc<Context>,
) -> impl Fn(PartialObjectMeta<Secret>) -> Option<ObjectRef<ShanraqCluster>> + Send + Sync + 'static
{
    move |secret| {
        let cluster = cluster_of(&secret, LABEL_INSTANCE)?;
        let namespace = cluster.namespace.clone().unwrap_or_default();
        ctx.applied.observe_child(
            &format!("{namespace}/{}", cluster.name),
            "Secret",
            &secret.name_any(),
            None,
            secret.metadata.resource_version.as_deref(),
        );
        Some(cluster)
    }
}

/// Runs one controller per namespace in `namespaces` (all namespaces when empty) until `stop`
/// turns true; in-flight reconciles finish first. `synced` turns true once the ShanraqClusters
/// of every watched namespace can be listed.
pub async fn run(
    ctx: Arc<Context>,
    namespaces: &[String],
    synced: Arc<AtomicBool>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let client = ctx.client.clone();
    let scopes: Vec<Option<String>> = if namespaces.iter().all(|n| n.trim().is_empty()) {
        vec![None]
    } else {
        namespaces
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .map(|n| Some(n.to_owned()))
            .collect()
    };
    fn api<K>(client: &Client, scope: &Option<String>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match scope {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        }
    }

    let mut stoppers = Vec::new();
    let mut loops = Vec::new();
    for scope in &scopes {
        let (stopper, stopped) = tokio::sync::oneshot::channel::<()>();
        stoppers.push(stopper);
        let controller = Controller::new(
            api::<ShanraqCluster>(&client, scope),
            watcher::Config::default().any_semantic(),
        )
        .watches(
            api::<PartialObjectMeta<StatefulSet>>(&client, scope),
            managed_children(),
            owned_child::<StatefulSet>(ctx.clone()),
        )
        .watches(
            api::<PartialObjectMeta<Deployment>>(&client, scope),
            managed_children(),
            owned_child::<Deployment>(ctx.clone()),
        )
        .watches(
            api::<PartialObjectMeta<Service>>(&client, scope),
            managed_children(),
            owned_child::<Service>(ctx.clone()),
        )
        .watches(
            api::<PartialObjectMeta<ConfigMap>>(&client, scope),
            managed_children(),
            owned_child::<ConfigMap>(ctx.clone()),
        )
        .watches(
            api::<PartialObjectMeta<PodDisruptionBudget>>(&client, scope),
            managed_children(),
            owned_child::<PodDisruptionBudget>(ctx.clone()),
        )
        .watches(
            api::<PartialObjectMeta<Job>>(&client, scope),
            managed_children(),
            owned_child::<Job>(ctx.clone()),
        )
        .watches(
            api::<PartialObjectMeta<Secret>>(&client, scope),
            managed_children(),
            generated_secret(ctx.clone()),
        )
        .with_config(
            controller::Config::default()
                .debounce(DEBOUNCE)
                .concurrency(RECONCILE_CONCURRENCY),
        )
        .graceful_shutdown_on(async move {
            let _ = stopped.await;
        });
        let ctx = ctx.clone();
        loops.push(
            controller
                .run(reconcile::reconcile, error_policy, ctx)
                .for_each(|result| async move {
                    if let Err(error) = result {
                        tracing::debug!(%error, "controller event");
                    }
                }),
        );
    }

    // Ready once every scope's ShanraqClusters can be listed: the API server answers and RBAC
    // grants the controller its watch. (The controller's own store was seen never to report its
    // first listing on a real API server, which left /readyz at 503 and the Deployment never
    // Available.) Retried every second until it succeeds.
    let lists: Vec<Api<ShanraqCluster>> = scopes.iter().map(|scope| api(&client, scope)).collect();
    let readiness = tokio::spawn(async move {
        for clusters in lists {
            loop {
                match clusters
                    .list_metadata(&ListParams::default().limit(1))
                    .await
                {
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, "cannot list ShanraqClusters yet; not ready");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        }
        synced.store(true, Ordering::SeqCst);
        tracing::info!("ShanraqClusters listed in every watched namespace: ready");
    });
    tracing::info!(namespaces = ?scopes, "starting controllers");
    let backups = tokio::spawn(backups::run(
        client.clone(),
        ctx.clone(),
        scopes.clone(),
        stop.clone(),
    ));
    let controllers = futures::future::join_all(loops);
    tokio::pin!(controllers);
    tokio::select! {
        _ = &mut controllers => {}
        // The watch guard must not live across the awaits below (it would make this future
        // non-Send), so the wait yields `()`.
        () = async { let _ = stop.wait_for(|stop| *stop).await; } => {
            for stopper in stoppers {
                let _ = stopper.send(());
            }
            // In-flight reconciles finish; a controller whose cache never filled (API server
            // unreachable) would wait for it forever, so the wait is bounded.
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut controllers).await.is_err() {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "controllers did not stop in time; dropping them");
            }
        }
    }
    readiness.abort();
    if tokio::time::timeout(SHUTDOWN_GRACE, backups).await.is_err() {
        tracing::warn!("the ShanraqBackup controllers did not stop in time");
    }
    // Not leading (or shutting down): no engine may act any more.
    ctx.engines.stop_all().await;
    tracing::info!("controllers stopped");
}
