//! The ISR-safe rolling restart in Kubernetes. Kafka's StatefulSets roll `OnDelete`, so a pod
//! runs its old configuration until it is deleted; the Kafka task finds the pods whose
//! `shanraq.org/config-hash` differs from the rendered one, asks the roll planner
//! (`shanraq_ha::kafka::next_step`) which may go now on the admin API's ISR view and the
//! controllers' raft metrics (read from each controller pod's exporter by pod IP), and deletes
//! that one pod. The node it deleted stays in flight until the planner sees it back.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use shanraq_api::names::{ANNOTATION_CONFIG_HASH, LABEL_CLUSTER, LABEL_COMPONENT};
use shanraq_ha::kafka::{KafkaNode, RollObservation, RollStep, next_step};
use shanraq_render::kafka::{BROKER_ID_BASE, METRICS_PORT};

use super::admin::ClusterInfo;
use super::health::partition_views;
use super::quorum::{RaftFigures, controller_views, scrape};

const CONTROLLER: &str = "kafka-controller";
const BROKER: &str = "kafka-broker";

/// A Kafka pod as the roll needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaPod {
    pub name: String,
    pub node: KafkaNode,
    pub config_hash: Option<String>,
    pub ip: Option<String>,
}

/// The node a pod runs, from its component label and its StatefulSet ordinal.
pub fn kafka_pod(pod: &Pod) -> Option<KafkaPod> {
    let name = pod.name_any();
    let ordinal: i32 = name.rsplit('-').next()?.parse().ok()?;
    let node = match pod.labels().get(LABEL_COMPONENT).map(String::as_str) {
        Some(CONTROLLER) => KafkaNode::Controller(ordinal),
        Some(BROKER) => KafkaNode::Broker(BROKER_ID_BASE + ordinal),
        _ => return None,
    };
    Some(KafkaPod {
        name,
        node,
        config_hash: pod.annotations().get(ANNOTATION_CONFIG_HASH).cloned(),
        ip: pod.status.as_ref().and_then(|s| s.pod_ip.clone()),
    })
}

/// The bootstrap list `ip:port,...` of the broker pods of `cluster` that have an IP (the
/// operator reaches Kafka by pod IP, as it reaches the instance managers, unless told to use
/// cluster DNS); `Ok(None)` while no broker pod has one.
pub async fn broker_bootstrap(
    client: &Client,
    namespace: &str,
    cluster: &str,
) -> Result<Option<String>, String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{LABEL_CLUSTER}={cluster},{LABEL_COMPONENT}={BROKER}");
    let listed = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|error| {
            format!("listing the Kafka broker pods of {namespace}/{cluster}: {error}")
        })?;
    let mut addresses: Vec<String> = listed
        .items
        .iter()
        .filter_map(kafka_pod)
        .filter_map(|pod| pod.ip)
        .map(|ip| format!("{ip}:{}", shanraq_render::kafka::BROKER_PORT))
        .collect();
    addresses.sort();
    Ok((!addresses.is_empty()).then(|| addresses.join(",")))
}

/// The nodes whose pods run another configuration than `desired`.
pub fn stale(pods: &[KafkaPod], desired: &str) -> BTreeSet<KafkaNode> {
    pods.iter()
        .filter(|pod| pod.config_hash.as_deref() != Some(desired))
        .map(|pod| pod.node)
        .collect()
}

/// What the roll remembers between rounds.
#[derive(Debug, Default)]
pub struct RollState {
    pub in_flight: Option<KafkaNode>,
}

/// One roll step of a cluster: `Ok(None)` when nothing is stale, `Ok(Some(reason))` while the
/// roll waits (said in `KafkaReady`), and a pod deleted when the planner allows.
pub async fn step(
    client: &Client,
    namespace: &str,
    cluster: &str,
    brokers: i32,
    desired_hash: &str,
    info: &ClusterInfo,
    state: &mut RollState,
) -> Result<Option<String>, String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector =
        format!("{LABEL_CLUSTER}={cluster},{LABEL_COMPONENT} in ({CONTROLLER},{BROKER})");
    let listed = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|error| format!("listing the Kafka pods of {namespace}/{cluster}: {error}"))?;
    let pods: Vec<KafkaPod> = listed.items.iter().filter_map(kafka_pod).collect();
    let pending = stale(&pods, desired_hash);
    if pending.is_empty() && state.in_flight.is_none() {
        return Ok(None);
    }
    let mut raft = BTreeMap::new();
    for pod in pods
        .iter()
        .filter(|p| matches!(p.node, KafkaNode::Controller(_)))
    {
        let figures = match &pod.ip {
            Some(ip) => scrape(&format!("http://{ip}:{METRICS_PORT}/metrics"))
                .await
                .ok()
                .map(|text| RaftFigures::parse(&text)),
            None => None,
        };
        raft.insert(pod.node.id(), figures);
    }
    let (controllers, active_controller) = controller_views(&raft);
    let observation = RollObservation {
        brokers: (0..brokers)
            .map(|ordinal| BROKER_ID_BASE + ordinal)
            .collect(),
        registered: info.brokers.clone(),
        partitions: partition_views(info),
        controllers,
        active_controller,
    };
    match next_step(&observation, &pending, state.in_flight) {
        RollStep::Done => {
            state.in_flight = None;
            Ok(None)
        }
        RollStep::Restart(node) => {
            let Some(pod) = pods.iter().find(|p| p.node == node) else {
                return Ok(Some(format!("{node} has no pod")));
            };
            api.delete(&pod.name, &DeleteParams::default())
                .await
                .map_err(|error| format!("deleting pod {} ({node}): {error}", pod.name))?;
            tracing::info!(pod = %pod.name, %node, "restarting a Kafka pod for its new configuration");
            state.in_flight = Some(node);
            Ok(Some(format!("restarting {node} (pod {})", pod.name)))
        }
        other => {
            if matches!(other, RollStep::Blocked { .. }) {
                // Nothing in flight any more: the last node came back.
                state.in_flight = None;
            }
            Ok(other
                .reason()
                .map(|reason| format!("rolling restart waits: {reason}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, component: &str, hash: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(BTreeMap::from([(
                    LABEL_COMPONENT.to_owned(),
                    component.to_owned(),
                )])),
                annotations: Some(BTreeMap::from([(
                    ANNOTATION_CONFIG_HASH.to_owned(),
                    hash.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn pod_json(name: &str, component: &str, hash: &str) -> serde_json::Value {
        serde_json::to_value(pod(name, component, hash)).expect("pod json")
    }

    /// Against a mocked API server: with every partition in sync, the one stale broker pod is
    /// deleted, and the next step waits for that broker instead of deleting another.
    #[tokio::test]
    async fn the_stale_broker_pod_is_deleted_and_the_next_step_waits_for_it() {
        use crate::engines::kafka::admin::{PartitionInfo, TopicInfo};
        use crate::fixtures::{Scenario, finish};
        use http::{Method, Request, Response, StatusCode};
        use kube::client::Body;

        let list = || {
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "PodList",
                "metadata": {},
                "items": [
                    pod_json("payments-kafka-controller-0", CONTROLLER, "new"),
                    pod_json("payments-kafka-broker-0", BROKER, "new"),
                    pod_json("payments-kafka-broker-1", BROKER, "old"),
                    pod_json("payments-kafka-broker-2", BROKER, "new"),
                ],
            })
        };
        let pods = "/api/v1/namespaces/fintech/pods";
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = Scenario::new("fintech")
            .expect("list the Kafka pods", Method::GET, pods, move |_| {
                (StatusCode::OK, list())
            })
            .expect(
                "delete the stale broker's pod",
                Method::DELETE,
                "/api/v1/namespaces/fintech/pods/payments-kafka-broker-1",
                |_| {
                    (
                        StatusCode::OK,
                        pod_json("payments-kafka-broker-1", BROKER, "old"),
                    )
                },
            )
            .expect("list the Kafka pods again", Method::GET, pods, move |_| {
                let mut listed = list();
                if let Some(items) = listed["items"].as_array_mut() {
                    items.retain(|p| p["metadata"]["name"] != "payments-kafka-broker-1");
                }
                (StatusCode::OK, listed)
            })
            .serve(handle);
        let client = kube::Client::new(service, "default");
        let mut info = ClusterInfo {
            brokers: BTreeSet::from([100, 101, 102]),
            topics: BTreeMap::from([(
                "payments".to_owned(),
                TopicInfo {
                    partitions: vec![PartitionInfo {
                        id: 0,
                        leader: 100,
                        replicas: vec![100, 101, 102],
                        isr: vec![100, 101, 102],
                    }],
                    own_config: BTreeMap::new(),
                    min_isr: Some(2),
                },
            )]),
        };
        let mut state = RollState::default();
        let first = step(&client, "fintech", "payments", 3, "new", &info, &mut state)
            .await
            .expect("a step");
        assert_eq!(state.in_flight, Some(KafkaNode::Broker(101)));
        assert!(
            first
                .as_deref()
                .is_some_and(|r| r.contains("restarting broker 101")),
            "{first:?}"
        );
        // The broker is gone from the metadata: the roll waits and deletes nothing.
        info.brokers.remove(&101);
        let second = step(&client, "fintech", "payments", 3, "new", &info, &mut state)
            .await
            .expect("a step");
        assert!(
            second
                .as_deref()
                .is_some_and(|r| r.contains("broker 101 is not registered yet")),
            "{second:?}"
        );
        drop(client);
        let report = finish(server).await;
        assert_eq!(report.deletes().len(), 1);
    }

    #[test]
    fn stale_pods_map_to_their_nodes() {
        let pods: Vec<KafkaPod> = [
            pod("payments-kafka-controller-0", CONTROLLER, "new"),
            pod("payments-kafka-controller-2", CONTROLLER, "old"),
            pod("payments-kafka-broker-1", BROKER, "old"),
            pod("payments-kafka-broker-0", BROKER, "new"),
            pod("payments-redis-0", "redis", "old"),
        ]
        .iter()
        .filter_map(kafka_pod)
        .collect();
        assert_eq!(pods.len(), 4);
        assert_eq!(
            stale(&pods, "new"),
            BTreeSet::from([KafkaNode::Controller(2), KafkaNode::Broker(101)])
        );
    }
}
