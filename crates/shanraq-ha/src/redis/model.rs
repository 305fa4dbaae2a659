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

/// What one probe of one member returned (`INFO replication`, or why not).
pub type ProbeOutcome = crate::probe::ProbeOutcome<ReplicationInfo>;

/// One probe of one member, stamped with when it was sent.
pub type Observation = crate::probe::Observation<ReplicationInfo>;

impl Observation {
    pub fn reachable(node: impl Into<NodeId>, at: Millis, info: ReplicationInfo) -> Observation {
        Observation::answered(node, at, info)
    }

    pub fn info(&self) -> Option<&ReplicationInfo> {
        self.answer()
    }
}

impl crate::machine::Named for RedisMember {
    fn name(&self) -> &NodeId {
        &self.name
    }
}
