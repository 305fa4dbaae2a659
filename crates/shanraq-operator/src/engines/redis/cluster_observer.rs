//! Cluster mode: Redis Cluster fails over on its own; the operator observes it. Every few
//! seconds the task asks the pods (by IP) for `CLUSTER INFO` and `CLUSTER NODES`, counts the
//! failovers Redis Cluster performed (a replica turned master), and writes what it saw to
//! `status.redis.cluster` when it changed; `RedisReady` reads it. A failover seen is an Event.
//! In the same round it asks each shard's master for `INFO replication` and keeps the worst
//! shard's RPO (`shanraq_ha::redis::cluster::rpo`) for `RPOMet`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use shanraq_api::ShanraqCluster;
use shanraq_api::status::RedisClusterStatus;
use shanraq_ha::adapters::redis::{NodeClient, sample_cluster_rpo};
use shanraq_ha::objectives::RpoMeasurement;
use shanraq_ha::redis::cluster::FailoverTracker;
use tokio::sync::watch;

use super::status_map::cluster_status;
use super::task::{RedisTaskSpec, pod_members, read_password};
use crate::controller::events::{self, Notice};
use crate::engines::postgres::task::Deps;
use crate::engines::state_store::HA_FIELD_MANAGER;

const PERIOD: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
pub const REDIS_CLUSTER_FAILOVER: &str = "RedisClusterFailover";

pub async fn run(
    spec: RedisTaskSpec,
    deps: Deps,
    rpo: Arc<Mutex<Option<RpoMeasurement>>>,
    mut stopped: watch::Receiver<bool>,
) {
    let cluster = format!("{}/{}", spec.namespace, spec.name);
    let api: Api<ShanraqCluster> = Api::namespaced(deps.client.clone(), &spec.namespace);
    let previous = api
        .get(&spec.name)
        .await
        .ok()
        .and_then(|object| object.status?.redis?.cluster);
    let mut tracker = FailoverTracker {
        failovers_seen: previous
            .as_ref()
            .map_or(0, |c| u64::try_from(c.failovers_seen).unwrap_or(0)),
        ..FailoverTracker::default()
    };
    let mut published: Option<RedisClusterStatus> = previous;
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tick.tick() => {}
        }
        let Ok(password) = read_password(&deps.client, &spec).await else {
            continue;
        };
        let Ok(members) = pod_members(&deps.client, &spec).await else {
            continue;
        };
        let mut view = None;
        for member in &members {
            let client = NodeClient::new(
                member.name.as_str(),
                member.host.clone(),
                member.port,
                Some(password.clone()),
                PROBE_TIMEOUT,
            );
            if let Ok(seen) = client.cluster_view().await {
                view = Some(seen);
                break;
            }
        }
        let Some(view) = view else {
            let nobody = RpoMeasurement::NoPromotableReplica {
                reason: format!(
                    "no Redis Cluster node of {} answered CLUSTER NODES",
                    members.len()
                ),
            };
            if let Ok(mut slot) = rpo.lock() {
                *slot = Some(nobody);
            }
            continue;
        };
        let sampled = sample_cluster_rpo(&view, Some(password.clone()), PROBE_TIMEOUT).await;
        if let Ok(mut slot) = rpo.lock() {
            *slot = sampled;
        }
        let promoted = tracker.observe(&view);
        let status = cluster_status(&view, tracker.failovers_seen);
        if published.as_ref() == Some(&status) {
            continue;
        }
        let body = json!({ "status": { "redis": { "cluster": status } } });
        let params = PatchParams {
            field_manager: Some(HA_FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        match api
            .patch_status(&spec.name, &params, &Patch::Merge(&body))
            .await
        {
            Ok(_) => published = Some(status),
            Err(error) => {
                tracing::warn!(%cluster, %error, "cannot write status.redis.cluster");
                continue;
            }
        }
        for address in promoted {
            let notice = Notice::warning(
                REDIS_CLUSTER_FAILOVER,
                format!(
                    "Redis Cluster promoted the replica at {address}: {}",
                    view.summary()
                ),
            );
            events::publish(&deps.recorder, &deps.reference, &[notice]).await;
        }
    }
}
