//! The engine's inputs: the members (where other nodes reach each one) and the probe
//! observations. Plain data, so tests build them with fixtures and a restarted engine can be
//! fed exactly what a live one saw.

use serde::{Deserialize, Serialize};

use super::command::Endpoint;
use super::info::ReplicationInfo;
use crate::postgres::{Millis, NodeId};

/// Where a detached replica points: nothing can listen on port 0, so every connection is
/// refused at once, wherever the replica runs. It keeps its data, stays read-only, serves no
/// sync to anyone (`NOMASTERLINK`), and keeps its replication id for a partial resync from
/// whichever member is promoted.
pub const DETACHED_HOST: &str = "127.0.0.1";
pub const DETACHED_PORT: u16 = 0;

/// One Redis node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedisMember {
    pub name: NodeId,
    /// Host other nodes use in `REPLICAOF` when this member is their master (the pod IP).
    pub host: String,
    pub port: u16,
}

impl RedisMember {
    pub fn new(name: impl Into<String>, host: impl Into<String>, port: u16) -> RedisMember {
        RedisMember {
            name: NodeId::new(name),
            host: host.into(),
            port,
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            name: self.name.clone(),
            host: self.host.clone(),
            port: self.port,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ProbeOutcome {
    Reachable(ReplicationInfo),
    /// No answer in time, a reset, a bad reply; the text says why.
    Unreachable(String),
    /// Connection refused: nothing listens (the server is down, not slow).
    Refused(String),
}

/// One probe of one member, stamped with when it was sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub node: NodeId,
    pub at: Millis,
    pub outcome: ProbeOutcome,
}

impl Observation {
    pub fn reachable(node: impl Into<NodeId>, at: Millis, info: ReplicationInfo) -> Observation {
        Observation {
            node: node.into(),
            at,
            outcome: ProbeOutcome::Reachable(info),
        }
    }

    pub fn unreachable(node: impl Into<NodeId>, at: Millis, why: impl Into<String>) -> Observation {
        Observation {
            node: node.into(),
            at,
            outcome: ProbeOutcome::Unreachable(why.into()),
        }
    }

    pub fn refused(node: impl Into<NodeId>, at: Millis, why: impl Into<String>) -> Observation {
        Observation {
            node: node.into(),
            at,
            outcome: ProbeOutcome::Refused(why.into()),
        }
    }

    pub fn info(&self) -> Option<&ReplicationInfo> {
        match &self.outcome {
            ProbeOutcome::Reachable(info) => Some(info),
            ProbeOutcome::Unreachable(_) | ProbeOutcome::Refused(_) => None,
        }
    }
}
