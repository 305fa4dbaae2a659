//! The engine's inputs and identities: wall-clock time as a plain number, member names, the
//! probe observations and the pod signals. Plain data so that tests build them with fixtures
//! and a restarted engine can be fed exactly what a live one saw.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::wire::{InstanceStatus, Upstream};

/// Wall-clock time in unix milliseconds. The engine never reads a clock: the caller passes it
/// in, so tests inject any timeline they like and persisted timestamps stay meaningful across
/// restarts (unlike `Instant`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    /// `self + duration`, saturating.
    pub fn plus(self, duration: Duration) -> Millis {
        Millis(self.0.saturating_add(duration_ms(duration)))
    }

    /// Milliseconds from `earlier` to `self`, zero when `earlier` is later.
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// A duration in whole milliseconds, saturating at `u64::MAX`.
pub fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A member's stable name: the pod name in Kubernetes, the instance's `application_name`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub String);

impl NodeId {
    pub fn new(name: impl Into<String>) -> NodeId {
        NodeId(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(name: &str) -> NodeId {
        NodeId(name.to_owned())
    }
}

/// One PostgreSQL instance of the cluster and where other instances stream from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub name: NodeId,
    /// Host other replicas use in `primary_conninfo` when this member is their upstream.
    pub pg_host: String,
    pub pg_port: u16,
}

impl Member {
    pub fn new(name: impl Into<String>, pg_host: impl Into<String>, pg_port: u16) -> Member {
        Member {
            name: NodeId::new(name),
            pg_host: pg_host.into(),
            pg_port,
        }
    }

    /// This member as the upstream of a replica.
    pub fn upstream(&self) -> Upstream {
        Upstream {
            host: self.pg_host.clone(),
            port: self.pg_port,
            name: self.name.0.clone(),
        }
    }
}

/// What one probe of one instance manager returned: `GET /status` answered, or not, or the
/// connection was refused (the manager is not running; its postgres may still run, which the
/// failover's quorum fencing covers).
pub type ProbeOutcome = crate::probe::ProbeOutcome<InstanceStatus>;

/// One probe result, stamped with the wall-clock time it was taken.
pub type Observation = crate::probe::Observation<InstanceStatus>;

impl Observation {
    pub fn reachable(status: InstanceStatus, at: Millis) -> Observation {
        Observation::answered(NodeId::new(status.name.clone()), at, status)
    }

    pub fn status(&self) -> Option<&InstanceStatus> {
        self.answer()
    }
}

/// A pod-level change seen by a Kubernetes watch. A deleted primary pod starts detection at
/// once; a not-ready one counts as one failed probe (the database's own answer stays the
/// source of truth, so an API flap alone does not demote a healthy primary).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSignal {
    pub node: NodeId,
    pub at: Millis,
    pub ready: bool,
    pub deleted: bool,
}

impl crate::machine::Named for Member {
    fn name(&self) -> &NodeId {
        &self.name
    }
}
