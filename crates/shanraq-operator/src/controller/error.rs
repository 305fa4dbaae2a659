//! Errors of the reconcile pipeline: one enum per step, wrapped by one [`Error`], so that
//! `error_policy` can tell an invalid spec (wait for the user) from a failed call (retry), and the
//! metric label names the step that failed. Messages name the object; never a secret value.

use shanraq_api::InvalidSpec;

/// Reading the target cluster's capabilities (the Prometheus Operator CRDs).
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot read CustomResourceDefinition {name}: {source}")]
    Crd {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Creating generated Secrets.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read Secret {namespace}/{name}: {source}")]
    Get {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot create Secret {namespace}/{name}: {source}")]
    Create {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot generate the values of Secret {namespace}/{name}: {problem}")]
    Generate {
        namespace: String,
        name: String,
        problem: String,
    },
}

/// Server-side apply of the children and the orphan clean-up.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot serialise {kind} {name}: {source}")]
    Serialise {
        kind: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot read {kind} {namespace}/{name}: {source}")]
    Read {
        kind: String,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot apply {kind} {namespace}/{name}: {source}")]
    Patch {
        kind: String,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot list {kind} in namespace {namespace} with labels {selector}: {source}")]
    List {
        kind: String,
        namespace: String,
        selector: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot delete orphaned {kind} {namespace}/{name}: {source}")]
    Delete {
        kind: String,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Writing `/status`.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot patch the status of ShanraqCluster {namespace}/{name}: {source}")]
    Patch {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SwitchoverError {
    #[error(transparent)]
    RemoveAnnotation(#[from] crate::engines::request::RemoveAnnotationError),
}

/// Starting a failover drill.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("cannot delete Pod {namespace}/{pod} (the primary) for a failover drill: {source}")]
    DeletePrimary {
        namespace: String,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    RemoveAnnotation(#[from] crate::engines::request::RemoveAnnotationError),
}

/// Everything a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ShanraqCluster {namespace}/{name} has an invalid spec: {source}")]
    InvalidSpec {
        namespace: String,
        name: String,
        #[source]
        source: InvalidSpec,
    },
    #[error("ShanraqCluster has no namespace")]
    MissingNamespace,
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error("cannot render ShanraqCluster {name}: {source}")]
    Render {
        name: String,
        #[source]
        source: shanraq_render::RenderError,
    },
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Switchover(#[from] SwitchoverError),
    #[error(transparent)]
    Drill(#[from] DrillError),
    /// The consumed `shanraq.org/confirm-delete` annotation could not be removed.
    #[error(transparent)]
    Confirmation(crate::engines::request::RemoveAnnotationError),
    /// This replica does not lead (any more): nothing was written.
    #[error("not writing: {0}")]
    NotLeader(String),
}

/// A write refused because this replica does not lead.
#[derive(Debug)]
pub struct NotLeader(pub String);

impl From<NotLeader> for Error {
    fn from(NotLeader(reason): NotLeader) -> Error {
        Error::NotLeader(reason)
    }
}

impl Error {
    /// The `error` label of `shanraq_reconcile_errors_total`: which step failed.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidSpec { .. } => "invalid_spec",
            Error::MissingNamespace => "missing_namespace",
            Error::Discovery(_) => "discovery",
            Error::Render { .. } => "render",
            Error::Secret(_) => "secret",
            Error::Apply(_) => "apply",
            Error::Status(_) => "status",
            Error::Switchover(_) => "switchover",
            Error::Drill(_) => "drill",
            Error::Confirmation(_) => "confirmation",
            Error::NotLeader(_) => "not_leader",
        }
    }
}
