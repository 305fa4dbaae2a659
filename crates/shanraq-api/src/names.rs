//! Well-known names and labels. Every child object's name and labels come from here, derived
//! from the cluster's own name, never from live state.

use std::collections::BTreeMap;

pub const GROUP: &str = "shanraq.org";
pub const API_VERSION: &str = "shanraq.org/v1alpha1";
pub const KIND: &str = "ShanraqCluster";
/// The one server-side-apply field manager the operator writes with.
pub const FIELD_MANAGER: &str = "shanraq-operator";
pub const MANAGED_BY: &str = "shanraq-operator";
pub const CRD_NAME: &str = "shanraqclusters.shanraq.org";

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
/// `primary` or `replica` on PostgreSQL pods; the `-rw` and `-ro` Services select on it, so
/// routing follows the label the operator moves at promotion. The Redis `-master`/`-replicas`
/// Services select `master`/`replica`, which nothing sets on Redis pods yet.
pub const LABEL_ROLE: &str = "shanraq.org/role";
/// The cluster a pod belongs to; the controller maps pod events back to the cluster with it.
pub const LABEL_CLUSTER: &str = "shanraq.org/cluster";
/// Hash of the rendered configuration, on pod templates, so a config change rolls the pods.
pub const ANNOTATION_CONFIG_HASH: &str = "shanraq.org/config-hash";
/// Request a planned switchover: the value is the target instance name, or `any`.
pub const ANNOTATION_SWITCHOVER: &str = "shanraq.org/switchover";
/// Request a failover drill: the value is an opaque request id (the kubectl plugin and the
/// Argo CD action write the current time). The operator deletes the current primary's Pod
/// and records the failover it causes in `status.drill`.
pub const ANNOTATION_DRILL: &str = "shanraq.org/drill";
/// Confirms a change that deletes a stateful component's pods (turning PostgreSQL, Redis or
/// Kafka off): a comma-separated list of `postgres`, `redis`, `kafka`. Without it such a change
/// is held (`Stalled`) and nothing is deleted, so one edited line cannot remove a database.
pub const ANNOTATION_CONFIRM_DELETE: &str = "shanraq.org/confirm-delete";

pub const ROLE_PRIMARY: &str = "primary";
pub const ROLE_REPLICA: &str = "replica";
pub const ROLE_MASTER: &str = "master";

/// The application name in `app.kubernetes.io/name` for each component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Postgres,
    Redis,
    KafkaController,
    KafkaBroker,
    HAProxy,
    Monitoring,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Postgres => "postgres",
            Component::Redis => "redis",
            Component::KafkaController => "kafka-controller",
            Component::KafkaBroker => "kafka-broker",
            Component::HAProxy => "haproxy",
            Component::Monitoring => "monitoring",
        }
    }

    /// Suffix of the component's workload name: `<cluster>-<suffix>`.
    pub fn suffix(self) -> &'static str {
        match self {
            Component::Postgres => "pg",
            Component::Redis => "redis",
            Component::KafkaController => "kafka-controller",
            Component::KafkaBroker => "kafka-broker",
            Component::HAProxy => "haproxy",
            Component::Monitoring => "monitoring",
        }
    }
}

/// Names of one cluster's children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    cluster: String,
}

impl Names {
    pub fn new(cluster: &str) -> Self {
        Names {
            cluster: cluster.to_owned(),
        }
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// `<cluster>-<suffix>`: the StatefulSet/Deployment and its headless Service.
    pub fn workload(&self, component: Component) -> String {
        format!("{}-{}", self.cluster, component.suffix())
    }

    /// Pod `ordinal` of a component's StatefulSet.
    pub fn pod(&self, component: Component, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.workload(component))
    }

    pub fn pg_rw(&self) -> String {
        format!("{}-pg-rw", self.cluster)
    }
    pub fn pg_ro(&self) -> String {
        format!("{}-pg-ro", self.cluster)
    }
    pub fn pg_r(&self) -> String {
        format!("{}-pg-r", self.cluster)
    }
    pub fn pg_config(&self) -> String {
        format!("{}-pg-config", self.cluster)
    }
    pub fn pg_superuser_secret(&self) -> String {
        format!("{}-pg-superuser", self.cluster)
    }
    pub fn pg_replication_secret(&self) -> String {
        format!("{}-pg-replication", self.cluster)
    }
    pub fn pg_app_secret(&self) -> String {
        format!("{}-pg-app", self.cluster)
    }
    /// The certificate authority of pgBackRest's TLS server between the PostgreSQL instances.
    pub fn pg_backup_tls_secret(&self) -> String {
        format!("{}-pg-backup-tls", self.cluster)
    }
    /// Bearer token the operator uses to command the PostgreSQL instance managers.
    pub fn instance_token_secret(&self) -> String {
        format!("{}-instance-token", self.cluster)
    }
    pub fn redis_master(&self) -> String {
        format!("{}-redis-master", self.cluster)
    }
    pub fn redis_replicas(&self) -> String {
        format!("{}-redis-replicas", self.cluster)
    }
    pub fn redis_config(&self) -> String {
        format!("{}-redis-config", self.cluster)
    }
    pub fn redis_secret(&self) -> String {
        format!("{}-redis-auth", self.cluster)
    }
    pub fn kafka_bootstrap(&self) -> String {
        format!("{}-kafka-bootstrap", self.cluster)
    }
    pub fn kafka_config(&self) -> String {
        format!("{}-kafka-config", self.cluster)
    }
    pub fn haproxy_config(&self) -> String {
        format!("{}-haproxy-config", self.cluster)
    }
    pub fn dashboards(&self) -> String {
        format!("{}-dashboards", self.cluster)
    }
    pub fn prometheus_rule(&self) -> String {
        format!("{}-objectives", self.cluster)
    }

    /// Labels that identify every child of this cluster (used to find orphans).
    pub fn instance_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_INSTANCE.to_owned(), self.cluster.clone()),
            (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        ])
    }

    /// The full label set of a component's objects.
    pub fn labels(&self, component: Component) -> BTreeMap<String, String> {
        let mut labels = self.selector(component);
        labels.insert(LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned());
        labels.insert(LABEL_PART_OF.to_owned(), "shanraq".to_owned());
        labels
    }

    /// The stable subset used in selectors (immutable once a StatefulSet exists).
    pub fn selector(&self, component: Component) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_owned(), component.as_str().to_owned()),
            (LABEL_INSTANCE.to_owned(), self.cluster.clone()),
            (LABEL_COMPONENT.to_owned(), component.as_str().to_owned()),
            (LABEL_CLUSTER.to_owned(), self.cluster.clone()),
        ])
    }

    /// The label selector string for `instance_labels`, for list calls.
    pub fn instance_selector(&self) -> String {
        format!(
            "{LABEL_INSTANCE}={},{LABEL_MANAGED_BY}={MANAGED_BY}",
            self.cluster
        )
    }
}
