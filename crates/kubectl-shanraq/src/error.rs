//! The plugin's errors. Each one names the ShanraqCluster (or Pod) it is about and the reason,
//! so a message read alone in a terminal or a CI log says what to fix.

/// `namespace/name` of a ShanraqCluster, as every message names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterRef {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ClusterRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShanraqCluster {}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot connect to Kubernetes: {0}")]
    Connect(String),
    #[error("{cluster} not found")]
    NotFound { cluster: ClusterRef },
    #[error("cannot read {cluster}: {reason}")]
    Read { cluster: ClusterRef, reason: String },
    #[error("cannot list the Pods of {cluster}: {reason}")]
    ListPods { cluster: ClusterRef, reason: String },
    #[error("cannot list the Events of {cluster}: {reason}")]
    ListEvents { cluster: ClusterRef, reason: String },
    #[error("cannot annotate {cluster} with {annotation}: {reason}")]
    Annotate {
        cluster: ClusterRef,
        annotation: &'static str,
        reason: String,
    },
    #[error("{cluster}: {reason}")]
    Refused { cluster: ClusterRef, reason: String },
    #[error("failover drill of {cluster} not confirmed (answer yes, or pass --yes)")]
    NotConfirmed { cluster: ClusterRef },
    #[error("failover drill of {cluster} {phase}: {message}")]
    DrillUnsuccessful {
        cluster: ClusterRef,
        phase: String,
        message: String,
    },
    #[error("{cluster}: the operator did not finish the drill {request} within {seconds}s (see `kubectl describe shanraqcluster -n {} {}`)", cluster.namespace, cluster.name)]
    DrillTimeout {
        cluster: ClusterRef,
        request: String,
        seconds: u64,
    },
    #[error("cannot write the output: {0}")]
    Output(String),
}

/// The API server's reason for a failed call: its `Status` message when it sent one.
pub fn reason(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            let code = status.code;
            let message = status.message.trim();
            if message.is_empty() {
                format!("{} (HTTP {code})", status.reason)
            } else {
                format!("{message} (HTTP {code})")
            }
        }
        other => other.to_string(),
    }
}

/// Whether the API server answered 404.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}
