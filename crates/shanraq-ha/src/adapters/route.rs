//! Why writes could not be sent to a new primary (or master): every router's error, whatever
//! it routes with (the pods' role label, HAProxy's runtime API, the instance's `/primary`).

use crate::postgres::NodeId;

/// A boxed cause from the router's own client (the Kubernetes API, HAProxy's socket, ...).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// What routing needs of the member is not there (its pod is being recreated, it has no
    /// instance manager).
    #[error("{member} cannot be routed to: {what} does not exist")]
    Missing { member: NodeId, what: &'static str },
    /// The router refused the change (a label patch, a runtime API command).
    #[error("cannot {action}: {source}")]
    Change {
        action: String,
        #[source]
        source: Cause,
    },
    /// The change was made but the member does not confirm it yet; the engine retries.
    #[error("{member} does not answer /primary yet (epoch {epoch}){detail}")]
    NotConfirmed {
        member: NodeId,
        epoch: u64,
        /// What was changed already, for the message (`: it is labelled primary`).
        detail: &'static str,
    },
    /// The member could not be asked whether it serves.
    #[error("cannot ask {member} whether it is primary: {source}")]
    Check {
        member: NodeId,
        #[source]
        source: Cause,
    },
    /// The router's own check did not pass in time.
    #[error("routing to {member} (epoch {epoch}) not confirmed within {within:?}: {why}")]
    Timeout {
        member: NodeId,
        epoch: u64,
        within: std::time::Duration,
        why: String,
    },
}

impl RouteError {
    /// A refused change, with its cause.
    pub fn change(action: impl Into<String>, source: impl Into<Cause>) -> RouteError {
        RouteError::Change {
            action: action.into(),
            source: source.into(),
        }
    }
}
