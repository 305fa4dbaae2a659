//! The two measurements: one cluster's apply-to-status latency over `samples` spec changes,
//! and the time until N clusters applied at once have all converged, seen on a watch.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::watcher;
use shanraq_api::ShanraqCluster;

use super::client::kube_error;
use super::clusters::{apply, await_observed, converged};
use super::{CONVERGE_TIMEOUT, LATENCY_CLUSTER, ReconcilePlan, SAMPLE_TIMEOUT, SETUP_TIMEOUT};
use crate::error::DrillError;

/// Creates one cluster, waits until it converged, then changes its spec `samples` times and
/// returns each apply-to-status latency in milliseconds.
pub(super) async fn single_cluster(
    clusters: &Api<ShanraqCluster>,
    spec: &serde_json::Value,
    samples: usize,
) -> Result<Vec<f64>, DrillError> {
    let created = apply(clusters, LATENCY_CLUSTER, spec).await?;
    await_observed(
        clusters,
        LATENCY_CLUSTER,
        created.metadata.generation.unwrap_or(1),
        SAMPLE_TIMEOUT,
    )
    .await?;
    let mut latencies = Vec::with_capacity(samples);
    for sample in 0..samples {
        // A change a user makes without touching any workload: the availability objective,
        // alternating between two values that both differ from the default.
        let mut changed = spec.clone();
        let availability = if sample % 2 == 0 { "99.9" } else { "99.95" };
        changed["objectives"]["availability"] = availability.into();
        let started = Instant::now();
        let applied = apply(clusters, LATENCY_CLUSTER, &changed).await?;
        let generation = applied.metadata.generation.unwrap_or(1);
        await_observed(clusters, LATENCY_CLUSTER, generation, SAMPLE_TIMEOUT).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(latencies)
}

/// Applies `plan.clusters` clusters, `plan.concurrency` at a time, and returns the seconds
/// from the first apply until a watch showed all of them converged.
pub(super) async fn many_clusters(
    clusters: &Api<ShanraqCluster>,
    spec: &serde_json::Value,
    plan: &ReconcilePlan,
) -> Result<f64, DrillError> {
    let names: BTreeSet<String> = (0..plan.clusters)
        .map(|i| format!("bench-{i:04}"))
        .collect();
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
    let watch = {
        let clusters = clusters.clone();
        let names = names.clone();
        async move {
            let mut stream = watcher(clusters, watcher::Config::default()).boxed();
            let mut synced = Some(synced_tx);
            let mut state: BTreeMap<String, bool> = BTreeMap::new();
            while let Some(event) = stream.try_next().await.map_err(|error| DrillError::Watch {
                what: "the bench namespace's ShanraqClusters".to_owned(),
                detail: error.to_string(),
            })? {
                match event {
                    watcher::Event::InitDone => {
                        if let Some(tx) = synced.take() {
                            let _ = tx.send(());
                        }
                    }
                    watcher::Event::Apply(cluster) | watcher::Event::InitApply(cluster) => {
                        let name = cluster.name_any();
                        if names.contains(&name) {
                            state.insert(name, converged(&cluster));
                        }
                    }
                    watcher::Event::Delete(cluster) => {
                        state.remove(&cluster.name_any());
                    }
                    watcher::Event::Init => {}
                }
                if state.len() == names.len() && state.values().all(|done| *done) {
                    return Ok(Instant::now());
                }
            }
            Err(DrillError::Watch {
                what: "the bench namespace's ShanraqClusters".to_owned(),
                detail: "the watch ended".to_owned(),
            })
        }
    };
    let watch = tokio::spawn(watch);
    tokio::time::timeout(SETUP_TIMEOUT, synced_rx)
        .await
        .map_err(|_| DrillError::timeout("the ShanraqCluster watch's initial list", SETUP_TIMEOUT))?
        .map_err(|_| DrillError::Watch {
            what: "the bench namespace's ShanraqClusters".to_owned(),
            detail: "the watch ended before its initial list".to_owned(),
        })?;

    let started = Instant::now();
    futures::stream::iter(names.iter())
        .map(|name| apply(clusters, name, spec))
        .buffer_unordered(plan.concurrency)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    let applied_in = started.elapsed();
    let remaining = CONVERGE_TIMEOUT.saturating_sub(applied_in);
    let done = match tokio::time::timeout(remaining, watch).await {
        Ok(Ok(result)) => result?,
        Ok(Err(join)) => {
            return Err(DrillError::Watch {
                what: "the bench namespace's ShanraqClusters".to_owned(),
                detail: join.to_string(),
            });
        }
        Err(_) => {
            let list = clusters
                .list(&Default::default())
                .await
                .map_err(kube_error("listing the bench's ShanraqClusters"))?;
            let behind: Vec<String> = list
                .items
                .iter()
                .filter(|c| names.contains(&c.name_any()) && !converged(c))
                .map(ResourceExt::name_any)
                .collect();
            return Err(DrillError::timeout_with(
                format!("all {} ShanraqClusters to converge", plan.clusters),
                CONVERGE_TIMEOUT,
                format!(
                    "{} not converged (first: {:?})",
                    behind.len(),
                    behind.iter().take(5).collect::<Vec<_>>()
                ),
            ));
        }
    };
    Ok(done.duration_since(started).as_secs_f64())
}
