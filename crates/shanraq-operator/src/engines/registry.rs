//! Every engine's registry, and the four things a reconcile asks of them all: keep each
//! cluster's engines running with the configuration just rendered (`ensure`), act on the
//! one-shot requests annotated on the cluster (`requests`), say what they measured for the
//! status (`observe`), and stop (`stop`, `stop_all`). The controller knows the engines only
//! through this type; a new engine adds its registry here and its folder beside the others.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use shanraq_api::names::{ANNOTATION_CONFIG_HASH, Component};
use shanraq_api::{ShanraqCluster, ShanraqClusterStatus, ValidCluster};
use shanraq_render::{Child, Rendered};

use super::kafka::KafkaRegistry;
use super::postgres::task::Deps;
use super::postgres::{HaRegistry, HaSettings};
use super::probes::ProbeRegistry;
use super::redis::RedisHaRegistry;
use super::{kafka, postgres, redis};
use crate::controller::error::Error;
use crate::controller::events::Notice;
use crate::controller::status::Observed;
use crate::metrics::Metrics;

/// The engines of every cluster this operator runs.
#[derive(Debug)]
pub struct Engines {
    /// One PostgreSQL HA task per cluster.
    pub postgres: HaRegistry,
    /// One Redis HA task per cluster with Redis in replication mode.
    pub redis: RedisHaRegistry,
    /// One Kafka task per cluster with Kafka (topics, admin API figures).
    pub kafka: KafkaRegistry,
    /// One probe task per cluster: every critical path, as a client sees it.
    pub probes: ProbeRegistry,
    /// The failover drills this operator started, so a request is acted on once.
    pub drills: postgres::drill::Requests,
    /// The Redis RPO measurement last published per cluster: its lag moves with every
    /// sample, and every status write triggers another reconcile.
    pub redis_rpo: redis::objectives::PublishedRpo,
}

/// One reconcile, as the engines see it.
#[derive(Clone, Copy, Debug)]
pub struct Reconciled<'a> {
    pub object: &'a ShanraqCluster,
    pub cluster: &'a ValidCluster,
    pub rendered: &'a Rendered,
    pub previous: &'a ShanraqClusterStatus,
}

/// What the engines' IO needs from the operator (the API client, Events, metrics).
#[derive(Clone)]
#[allow(missing_debug_implementations)] // the client and the recorder have none
pub struct Io {
    pub client: kube::Client,
    pub recorder: kube::runtime::events::Recorder,
    pub metrics: Metrics,
}

/// What the cluster's annotated requests produced.
#[derive(Debug, Default)]
pub struct Requested {
    /// Events to publish.
    pub notices: Vec<Notice>,
    /// The failover drill's part: `status.drill` when it changes (its Events are in
    /// `notices`).
    pub drill: postgres::drill::Outcome,
}

impl Engines {
    /// Engines that run a task per cluster with these settings (`enabled: false`: none).
    pub fn new(settings: HaSettings) -> Self {
        Engines {
            redis: RedisHaRegistry::new(settings.enabled),
            kafka: KafkaRegistry::new(settings.enabled, settings.instance_address),
            probes: ProbeRegistry::new(settings.enabled, settings.cluster_domain.clone()),
            postgres: HaRegistry::new(settings),
            drills: postgres::drill::Requests::default(),
            redis_rpo: redis::objectives::PublishedRpo::default(),
        }
    }

    /// No engine runs: a context that never talks to instances.
    pub fn disabled() -> Self {
        Engines::new(HaSettings {
            enabled: false,
            ..HaSettings::default()
        })
    }

    pub fn settings(&self) -> &HaSettings {
        self.postgres.settings()
    }

    /// Each engine of the cluster started, restarted on a changed configuration, or stopped.
    pub fn ensure(&self, io: &Io, at: Reconciled<'_>) {
        let deps = || Deps {
            client: io.client.clone(),
            recorder: io.recorder.clone(),
            metrics: io.metrics.clone(),
            reference: cluster_reference(at.object),
            identity: self.settings().identity.clone(),
            leadership: self.settings().leadership.clone(),
        };
        let key = at.cluster.key();
        self.postgres.ensure(at.cluster, deps);
        self.redis.ensure(at.cluster, deps);
        self.kafka.ensure(
            at.cluster,
            kafka::task::managed_topics(at.previous),
            template_hash(at, Component::KafkaBroker),
            || io.client.clone(),
        );
        self.probes.ensure(at.cluster, || io.client.clone());
        self.postgres
            .set_desired_hash(&key, template_hash(at, Component::Postgres));
        self.redis
            .set_desired_hash(&key, redis::restart::desired_hash(at.cluster, at.rendered));
    }

    /// The cluster's annotated requests (a PostgreSQL switchover, a failover drill, a Redis
    /// switchover), each acted on once and its annotation removed.
    pub async fn requests(
        &self,
        client: &kube::Client,
        at: Reconciled<'_>,
    ) -> Result<Requested, Error> {
        let mut notices = Vec::new();
        notices.extend(
            postgres::switchover::handle(
                client,
                &self.postgres,
                at.object,
                at.cluster.spec.postgres.enabled,
            )
            .await?,
        );
        let engine = self
            .postgres
            .handle(&at.cluster.key())
            .map(|handle| handle.state())
            .map(|state| postgres::drill::EngineView {
                phase: state.phase.to_string(),
                primary: state.current_primary.map(|p| p.0),
            });
        let drill = postgres::drill::handle(
            client,
            &self.drills,
            at.object,
            at.cluster,
            at.previous,
            engine.as_ref(),
            Timestamp::now(),
        )
        .await?;
        let mut drill = drill;
        notices.append(&mut drill.notices);
        notices.extend(redis::switchover::handle(client, &self.redis, at.object).await?);
        Ok(Requested { notices, drill })
    }

    /// What the engines measured, into `observed`: the RPO of every engine, the last
    /// failovers' RTO (PostgreSQL and Redis), the sampled PostgreSQL instances and WAL archiving, the probes through
    /// HAProxy (counted into `metrics`), Redis cluster mode and the Kafka admin view.
    pub fn observe(&self, metrics: &Metrics, at: Reconciled<'_>, observed: &mut Observed) {
        let key = at.cluster.key();
        let (cluster, previous) = (at.cluster, at.previous);
        observed.last_failover_rto = postgres::objectives::last_failover_rto(
            previous
                .postgres
                .as_ref()
                .and_then(|p| p.last_failover.as_ref()),
        );
        let sampled = postgres::observe::sampled(&self.postgres, cluster, previous);
        observed.postgres_fallen_back = self.postgres.synchronous_fallback(&key).is_some();
        observed.engines.kafka = self.kafka.view(&key);
        let kafka_rpo = match &observed.engines.kafka {
            Some(kafka::health::AdminView::Seen { figures, .. }) => kafka::health::rpo(figures),
            _ => None,
        };
        let redis_rpo = match cluster.spec.redis.mode {
            shanraq_api::redis::RedisMode::Replication => self
                .redis
                .handle(&key)
                .and_then(|handle| redis::objectives::measure(&handle)),
            shanraq_api::redis::RedisMode::Cluster => self.redis.cluster_rpo(&key),
        }
        .map(|fresh| self.redis_rpo.choose(&key, cluster, fresh));
        observed.rpo = crate::controller::status::RpoByComponent {
            postgres: sampled.rpo,
            redis: redis_rpo,
            kafka: kafka_rpo,
        };
        observed.last_redis_failover_rto = postgres::objectives::last_failover_rto(
            previous
                .redis
                .as_ref()
                .and_then(|r| r.last_failover.as_ref()),
        );
        observed.engines.postgres_instances = sampled.instances;
        observed.archive = sampled.archive;
        if cluster.spec.redis.mode == shanraq_api::redis::RedisMode::Cluster {
            observed.engines.redis_cluster =
                previous.redis.as_ref().and_then(|r| r.cluster.clone());
        }
        if let Some(verdicts) = self.probes.verdicts(metrics, cluster, previous) {
            observed.probes = verdicts;
        }
    }

    /// The cluster is being deleted: every task of it stops.
    pub fn stop(&self, key: &str) {
        self.redis_rpo.forget(key);
        self.postgres.stop(key);
        self.redis.tasks.stop(key);
        self.kafka.tasks.stop(key);
        self.probes.stop(key);
    }

    /// Leadership lost or shutdown: every task stops.
    pub async fn stop_all(&self) {
        self.postgres.stop_all().await;
        self.redis.tasks.stop_all().await;
        self.kafka.tasks.stop_all().await;
        self.probes.stop_all().await;
    }
}

/// The ShanraqCluster as the subject of Events (no resourceVersion: it changes every write).
fn cluster_reference(object: &ShanraqCluster) -> ObjectReference {
    ObjectReference {
        resource_version: None,
        ..object.object_ref(&())
    }
}

/// The `shanraq.org/config-hash` of a component's rendered pod template (Kafka's controllers
/// and brokers share one): what a task compares its pods against to roll them.
fn template_hash(at: Reconciled<'_>, component: Component) -> Option<String> {
    let workload = at.cluster.names.workload(component);
    at.rendered.children.iter().find_map(|child| match child {
        Child::StatefulSet(set) if set.metadata.name.as_deref() == Some(&workload) => set
            .spec
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get(ANNOTATION_CONFIG_HASH)
            .cloned(),
        _ => None,
    })
}
