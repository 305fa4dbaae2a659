//! The scheduler's part, since the benchmark's control plane has none: every pending pod of
//! the namespace bound to a kwok node, so the workloads roll out and their pods' changes reach
//! the operator as they would.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::core::ObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};

use super::{BIND_CONCURRENCY, NODES};

/// The node a pod is bound to: its ordinal spread over the nodes.
fn node_for(pod: &str) -> &'static str {
    let ordinal: usize = pod
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| pod.bytes().map(usize::from).sum());
    NODES[ordinal % NODES.len()]
}

/// Binds every pending pod of the namespace to a kwok node, until aborted: what the scheduler
/// would do.
pub(super) async fn bind_pods(pods: Api<Pod>) {
    let unbound = watcher(pods.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .filter_map(|event| async move {
            let pod = event.ok()?;
            let pending = pod.spec.as_ref().is_some_and(|s| s.node_name.is_none());
            (pending && pod.metadata.deletion_timestamp.is_none()).then(|| pod.name_any())
        });
    unbound
        .for_each_concurrent(BIND_CONCURRENCY, |name| {
            let pods = pods.clone();
            async move {
                let binding = Binding {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..ObjectMeta::default()
                    },
                    target: ObjectReference {
                        kind: Some("Node".to_owned()),
                        name: Some(node_for(&name).to_owned()),
                        ..ObjectReference::default()
                    },
                };
                if let Err(error) = pods
                    .create_subresource::<_, serde_json::Value>(
                        "binding",
                        &name,
                        &PostParams::default(),
                        &binding,
                    )
                    .await
                {
                    // Bound by an earlier event, or gone: the watch shows the truth.
                    tracing::debug!(pod = %name, %error, "binding");
                }
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_spread_over_the_nodes() {
        assert_eq!(node_for("bench-0001-pg-0"), "kwok-node-0");
        assert_eq!(node_for("bench-0001-pg-1"), "kwok-node-1");
        assert_eq!(node_for("bench-0001-pg-2"), "kwok-node-2");
    }
}
