//! The failover state every engine persists (Kubernetes status or a local file) after each step
//! that changed it, written once: the fencing token (epoch and owner), the designated and the
//! target primary, the phase, the suspicion and the failover in flight, the last failover and
//! how many have completed. Each
//! engine names its phases (`P`) and adds its own fields (`X`, flattened, so the stored JSON
//! stays one flat object). Nothing here moves on every probe, so a quiet cluster writes
//! nothing.

use serde::{Deserialize, Serialize};

use crate::postgres::NodeId;
use crate::record::{FailoverRecord, Suspicion};

/// Where an engine is. A failover walks Detecting -> Fencing -> Electing -> Promoting ->
/// Routing -> Healthy; a switchover walks SwitchoverFencing -> SwitchoverDraining -> Promoting
/// -> Routing -> Healthy. What fencing means is each engine's: PostgreSQL fences the old primary
/// or detaches enough of its synchronous set, Redis detaches enough replicas; a switchover's
/// fencing is a clean shutdown (PostgreSQL) or a write pause (Redis).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// No primary known yet: the engine adopts the member that reports itself primary (Redis:
    /// or promotes the most advanced when every member answers and none is a master).
    #[default]
    Bootstrapping,
    /// A primary is designated; replicas and returning members are converged to it.
    Healthy,
    /// The primary failed `failure_threshold` probes (or its pod is gone); waiting
    /// `failover_delay` for it to come back.
    Detecting,
    /// Epoch bumped; the old primary is being made unable to take an acknowledged write.
    #[serde(alias = "Detaching")]
    Fencing,
    /// Choosing the new primary, or refusing to (see `inFlight.refusal`).
    Electing,
    /// `targetPrimary` is being promoted with the current epoch.
    Promoting,
    /// The new primary is promoted; writes are being switched to it.
    Routing,
    /// Planned switchover: the old primary stops taking writes.
    #[serde(alias = "SwitchoverPausing")]
    SwitchoverFencing,
    /// Planned switchover: waiting for the target to reach the old primary's final position.
    SwitchoverDraining,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// `D`: what it adds to a failover record; `S`: to a suspicion; `X`:
/// to the state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HaState<D, S, X> {
    /// Fencing token: bumped before anything else by every failover and switchover, and
    /// claimed (persisted by compare-and-swap) before any command carries it. Members that
    /// check it refuse commands with a lower epoch, or with this epoch from another owner; a
    /// primary holding a lower one is stale.
    pub epoch: u64,
    /// The engine that claimed `epoch`: only it may send commands at it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The member that takes writes (Redis: the master).
    #[serde(default, alias = "currentMaster")]
    pub current_primary: Option<NodeId>,
    /// The member being promoted.
    #[serde(default, alias = "targetMaster")]
    pub target_primary: Option<NodeId>,
    #[serde(default)]
    pub phase: Phase,
    #[serde(default)]
    pub suspect: Option<Suspicion<S>>,
    #[serde(default)]
    pub in_flight: Option<FailoverRecord<D>>,
    #[serde(default)]
    pub last_failover: Option<FailoverRecord<D>>,
    /// Unplanned failovers completed since the state was created.
    #[serde(default)]
    pub failovers: u64,
    /// Switchovers completed since the state was created.
    #[serde(default)]
    pub switchovers: u64,
    /// What the engine adds.
    #[serde(flatten)]
    pub detail: X,
}

impl<D, S, X> crate::claim::Claimed for HaState<D, S, X>
where
    HaState<D, S, X>:
        Clone + PartialEq + Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    fn set_claim(&mut self, epoch: u64, owner: &str) {
        self.epoch = epoch;
        self.owner = Some(owner.to_owned());
    }

    fn in_flight_epoch(&mut self) -> Option<&mut u64> {
        self.in_flight.as_mut().map(|record| &mut record.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::NoDetail;

    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Extra {
        #[serde(default)]
        sync_set: Vec<NodeId>,
    }

    type State = HaState<NoDetail, NoDetail, Extra>;

    #[test]
    fn the_engine_fields_are_stored_flat_and_a_master_reads_as_the_primary() {
        let state = State {
            epoch: 3,
            current_primary: Some(NodeId::new("r1")),
            phase: Phase::Healthy,
            failovers: 2,
            detail: Extra {
                sync_set: vec![NodeId::new("r2")],
            },
            ..State::default()
        };
        let json = serde_json::to_value(&state).expect("json");
        assert_eq!(json["failovers"], 2);
        assert_eq!(json["syncSet"][0], "r2");
        assert_eq!(json["currentPrimary"], "r1");
        let stored = serde_json::json!({
            "epoch": 3, "currentMaster": "r1", "phase": "Healthy", "failovers": 2,
            "syncSet": ["r2"]
        });
        assert_eq!(
            serde_json::from_value::<State>(stored).expect("read"),
            state
        );
    }
}
