//! One Kafka task per ShanraqCluster with Kafka: started by the reconcile
//! (`KafkaRegistry::ensure`), it runs a topic round (`round::topics_round`) against the
//! cluster's brokers every few seconds (by pod IP, or through the bootstrap Service's DNS name
//! with `--instance-address dns`), then one step of the ISR-safe roll of pods
//! whose configuration is stale (`roll::step`), and keeps the last `AdminView`, which the
//! reconcile turns into `status.kafka`, `KafkaReady` and Kafka's part of `RPOMet`. Running
//! beside the reconcile keeps a slow or unreachable Kafka from delaying it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shanraq_api::ValidCluster;
use shanraq_api::kafka::KafkaSpec;
use tokio::sync::watch;

use kube::Client;

use crate::engines::postgres::InstanceAddress;
use crate::engines::tasks::{Tasks, until_stopped};

use super::admin::KafkaAdmin;
use super::health::AdminView;
use super::roll::{self, RollState};
use super::round::topics_round;

/// How often a task describes the cluster and converges its topics.
pub const ROUND_PERIOD: Duration = Duration::from_secs(10);
/// The admin client's bound on each request.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What a task works from; a change reaches the running task at its next round.
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaTaskSpec {
    /// The bootstrap Service's DNS name and port.
    pub bootstrap: String,
    /// Bootstrap from the broker pods' IPs instead (`InstanceAddress::PodIp`).
    pub by_pod_ip: bool,
    pub kafka: KafkaSpec,
    /// The topics `status.kafka.topics` listed.
    pub managed: BTreeSet<String>,
    pub namespace: String,
    pub name: String,
    /// The `shanraq.org/config-hash` the Kafka pods should run.
    pub desired_hash: Option<String>,
}

/// The bootstrap Service of `cluster`, by its cluster DNS name.
pub fn bootstrap(cluster: &ValidCluster) -> String {
    format!(
        "{}.{}.svc:{}",
        cluster.names.kafka_bootstrap(),
        cluster.namespace,
        shanraq_render::kafka::BROKER_PORT
    )
}

/// What a Kafka task shares with the reconcile: the spec it follows (changes go to the
/// running task, which never restarts for them) and what it last learnt.
#[derive(Clone)]
pub(crate) struct Shared {
    spec: Arc<watch::Sender<KafkaTaskSpec>>,
    view: Arc<Mutex<Option<AdminView>>>,
}

/// The running Kafka tasks, keyed by `namespace/name`.
#[derive(Debug)]
pub struct KafkaRegistry {
    enabled: bool,
    address: InstanceAddress,
    pub(crate) tasks: Tasks<(), Shared>,
}

impl KafkaRegistry {
    /// `enabled: false` never talks to Kafka (mocked-API tests).
    pub fn new(enabled: bool, address: InstanceAddress) -> KafkaRegistry {
        KafkaRegistry {
            enabled,
            address,
            tasks: Tasks::new("kafka"),
        }
    }

    /// Starts the task of `cluster`, hands it the current spec, or stops it when Kafka is off.
    pub fn ensure(
        &self,
        cluster: &ValidCluster,
        managed: BTreeSet<String>,
        desired_hash: Option<String>,
        client: impl FnOnce() -> Client,
    ) {
        let key = cluster.key();
        if !self.enabled || !cluster.spec.kafka.enabled {
            self.tasks.stop(&key);
            return;
        }
        let wanted = KafkaTaskSpec {
            bootstrap: bootstrap(cluster),
            by_pod_ip: self.address == InstanceAddress::PodIp,
            kafka: cluster.spec.kafka.clone(),
            managed,
            namespace: cluster.namespace.clone(),
            name: cluster.name.clone(),
            desired_hash,
        };
        let initial = wanted.clone();
        self.tasks.ensure(
            &key,
            Some(()),
            || Shared {
                spec: Arc::new(watch::channel(initial).0),
                view: Arc::new(Mutex::new(None)),
            },
            |(), shared, stopped| {
                until_stopped(stopped, run(shared.spec.subscribe(), shared.view, client()))
            },
        );
        if let Some(shared) = self.tasks.shared(&key) {
            shared.spec.send_if_modified(|current| {
                let changed = *current != wanted;
                *current = wanted;
                changed
            });
        }
    }

    /// What the task of `key` last learnt, `None` before its first round.
    pub fn view(&self, key: &str) -> Option<AdminView> {
        self.tasks.shared(key)?.view.lock().ok()?.clone()
    }
}

async fn run(
    mut spec: watch::Receiver<KafkaTaskSpec>,
    view: Arc<Mutex<Option<AdminView>>>,
    client: Client,
) {
    let mut admin: Option<KafkaAdmin> = None;
    let mut reached = false;
    let mut roll = RollState::default();
    loop {
        let current = spec.borrow_and_update().clone();
        let bootstrap = if current.by_pod_ip {
            roll::broker_bootstrap(&client, &current.namespace, &current.name).await
        } else {
            Ok(Some(current.bootstrap.clone()))
        };
        let bootstrap = match bootstrap {
            Ok(Some(bootstrap)) => Ok(bootstrap),
            Ok(None) => Err("no Kafka broker pod has an IP yet".to_owned()),
            Err(error) => Err(error),
        };
        if let Ok(bootstrap) = &bootstrap
            && admin.as_ref().is_none_or(|a| a.bootstrap() != bootstrap)
        {
            admin = KafkaAdmin::new(bootstrap, ADMIN_TIMEOUT).ok();
        }
        let next = match (&bootstrap, &admin) {
            (Err(error), _) if reached => AdminView::Unreachable {
                error: error.clone(),
            },
            (Err(error), _) => AdminView::NeverReached {
                error: error.clone(),
            },
            (Ok(bootstrap), None) => AdminView::NeverReached {
                error: format!("cannot create an admin client for {bootstrap}"),
            },
            (Ok(_), Some(admin)) => {
                match topics_round(admin, &current.kafka, &current.managed).await {
                    Ok(outcome) => {
                        reached = true;
                        for (topic, failure) in &outcome.failures {
                            tracing::warn!(topic, %failure, "kafka topic not reconciled");
                        }
                        let waiting = match &current.desired_hash {
                            Some(hash) => roll::step(
                                &client,
                                &current.namespace,
                                &current.name,
                                current.kafka.brokers,
                                hash,
                                &outcome.info,
                                &mut roll,
                            )
                            .await
                            .unwrap_or_else(Some),
                            None => None,
                        };
                        AdminView::Seen {
                            figures: outcome.figures,
                            topics: outcome.topics,
                            roll: waiting,
                        }
                    }
                    Err(error) if reached => AdminView::Unreachable {
                        error: error.to_string(),
                    },
                    Err(error) => AdminView::NeverReached {
                        error: error.to_string(),
                    },
                }
            }
        };
        if let Ok(mut slot) = view.lock() {
            *slot = Some(next);
        }
        tokio::select! {
            () = tokio::time::sleep(ROUND_PERIOD) => {}
            changed = spec.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// The topics a cluster manages: those its status lists (declared or retained).
pub fn managed_topics(previous: &shanraq_api::ShanraqClusterStatus) -> BTreeSet<String> {
    previous
        .kafka
        .iter()
        .flat_map(|kafka| kafka.topics.iter().map(|topic| topic.name.clone()))
        .collect()
}
