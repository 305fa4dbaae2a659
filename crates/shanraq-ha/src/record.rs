//! What every engine keeps of a failover or switchover, written once: the record of one from
//! detection to routing (`FailoverRecord`), the suspicion before it starts (`Suspicion`), and an
//! event stamped with when and at which epoch the engine decided it (`Stamped`). Each engine
//! adds its own fields through `detail` (PostgreSQL's LSNs, Redis's offsets); the detail is
//! flattened, so the persisted JSON stays one flat object per record.

use serde::{Deserialize, Serialize};

use crate::engine::{Importance, Notable};
use crate::postgres::{Millis, NodeId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailoverKind {
    /// Unplanned: the primary failed.
    Failover,
    /// Planned: requested by a user, without loss.
    Switchover,
}

impl FailoverKind {
    /// `failover` or `switchover`, as the status, the metrics' `kind` label and Events say it
    /// (the same as its JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            FailoverKind::Failover => "failover",
            FailoverKind::Switchover => "switchover",
        }
    }
}

/// One failover or switchover, from detection to routing. Kept in `inFlight` while it runs and
/// in `lastFailover` once done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRecord<D> {
    pub kind: FailoverKind,
    /// The epoch this failover took.
    pub epoch: u64,
    pub from: NodeId,
    /// The new primary, once elected (switchover: the target from the start).
    #[serde(default)]
    pub to: Option<NodeId>,
    /// Failover: the first failed probe. Switchover: the request.
    pub detected_at: Millis,
    /// When the epoch was bumped and the failover or switchover began.
    pub started_at: Millis,
    /// When the old primary was fenced (each engine's record type says what that means).
    #[serde(default)]
    pub fenced_at: Option<Millis>,
    #[serde(default)]
    pub promoted_at: Option<Millis>,
    #[serde(default)]
    pub routed_at: Option<Millis>,
    /// `routedAt - detectedAt`: how long writes were unavailable.
    #[serde(default)]
    pub rto_ms: Option<u64>,
    /// Bytes the new primary never received, against the old primary's last report. In
    /// synchronous mode these were never acknowledged to a client.
    #[serde(default)]
    pub lost_bytes: Option<u64>,
    /// Members confirmed detached from the old primary at this epoch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detached: Vec<NodeId>,
    /// Why no replica may be promoted right now (the engine keeps retrying).
    #[serde(default)]
    pub refusal: Option<String>,
    /// Switchover aborted: why (the old primary was resumed with the new epoch).
    #[serde(default)]
    pub aborted: Option<String>,
    /// What the engine adds.
    #[serde(flatten)]
    pub detail: D,
}

impl<D> FailoverRecord<D> {
    /// An unplanned failover from `from` at `epoch`, detected when `suspect` first failed (now
    /// when nothing was suspected).
    pub fn failover<S>(
        epoch: u64,
        from: NodeId,
        suspect: Option<&Suspicion<S>>,
        now: Millis,
        detail: D,
    ) -> Self {
        let detected_at = suspect.map_or(now, |s| s.first_failure_at);
        Self::begin(
            FailoverKind::Failover,
            epoch,
            from,
            None,
            detected_at,
            now,
            detail,
        )
    }

    /// A switchover from `from` to `to`, requested now.
    pub fn switchover(epoch: u64, from: NodeId, to: NodeId, now: Millis, detail: D) -> Self {
        Self::begin(
            FailoverKind::Switchover,
            epoch,
            from,
            Some(to),
            now,
            now,
            detail,
        )
    }

    fn begin(
        kind: FailoverKind,
        epoch: u64,
        from: NodeId,
        to: Option<NodeId>,
        detected_at: Millis,
        started_at: Millis,
        detail: D,
    ) -> Self {
        FailoverRecord {
            kind,
            epoch,
            from,
            to,
            detected_at,
            started_at,
            fenced_at: None,
            promoted_at: None,
            routed_at: None,
            rto_ms: None,
            lost_bytes: None,
            detached: Vec::new(),
            refusal: None,
            aborted: None,
            detail,
        }
    }

    /// `node` was chosen, losing `lost_bytes`: any earlier refusal is over.
    pub fn elect(&mut self, node: NodeId, lost_bytes: Option<u64>) {
        self.to = Some(node);
        self.lost_bytes = lost_bytes;
        self.refusal = None;
    }

    /// Records a refusal to elect; true when it is new (worth an event).
    pub fn refuse(&mut self, reason: &str) -> bool {
        if self.refusal.as_deref() == Some(reason) {
            return false;
        }
        self.refusal = Some(reason.to_owned());
        true
    }

    pub fn promoted(&mut self, node: NodeId, now: Millis) {
        self.promoted_at = Some(now);
        self.to = Some(node);
    }

    /// Records `node` as detached; true when it was not yet.
    pub fn note_detached(&mut self, node: &NodeId) -> bool {
        if self.detached.contains(node) {
            return false;
        }
        self.detached.push(node.clone());
        self.detached.sort();
        true
    }

    /// Writes reach the new primary from `now`: the RTO is measured from detection.
    pub fn finish(&mut self, now: Millis) {
        self.routed_at = Some(now);
        self.rto_ms = Some(now.since(self.detected_at));
    }

    /// The member writes go to once it is done: the elected one, or the old primary taken back.
    pub fn ends_on(&self) -> NodeId {
        self.to.clone().unwrap_or_else(|| self.from.clone())
    }
}

/// The primary is failing but the failover has not started (no epoch bump yet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Suspicion<D> {
    pub node: NodeId,
    /// The first failed probe of the streak: the best estimate of when writes stopped.
    pub first_failure_at: Millis,
    /// When the threshold was reached (or the pod was seen deleted).
    pub confirmed_at: Millis,
    pub reason: String,
    /// What the engine adds.
    #[serde(flatten)]
    pub detail: D,
}

/// An engine that adds nothing to a record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoDetail {}

/// Something an engine decided that is worth telling a person, stamped with when the engine
/// decided it and the epoch it held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stamped<K> {
    pub at: Millis,
    pub epoch: u64,
    pub kind: K,
}

/// What an engine's kinds of event say to people; a `Stamped` event of such a kind is
/// `Notable`, its message told with the epoch it was decided at.
pub trait Telling {
    /// A stable CamelCase reason.
    fn reason(&self) -> String;
    /// Whether it deserves an Event, and of which type.
    fn importance(&self) -> Importance;
    /// A one-line message.
    fn message(&self, epoch: u64) -> String;
}

impl<K: Telling> Notable for Stamped<K> {
    fn reason(&self) -> String {
        self.kind.reason()
    }

    fn message(&self) -> String {
        self.kind.message(self.epoch)
    }

    fn importance(&self) -> Importance {
        self.kind.importance()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Detail {
        #[serde(default)]
        final_offset: Option<u64>,
    }

    #[test]
    fn the_detail_is_stored_flat_and_read_back() {
        let mut record = FailoverRecord::switchover(
            4,
            NodeId::new("a"),
            NodeId::new("b"),
            Millis(10),
            Detail {
                final_offset: Some(7),
            },
        );
        record.finish(Millis(25));
        let json = serde_json::to_value(&record).expect("json");
        assert_eq!(json["finalOffset"], 7);
        assert_eq!(json["rtoMs"], 15);
        assert!(json.get("detail").is_none());
        let back: FailoverRecord<Detail> = serde_json::from_value(json).expect("json");
        assert_eq!(back, record);
    }

    #[test]
    fn a_record_without_the_detail_reads_with_its_default() {
        let json = serde_json::json!({
            "kind": "failover", "epoch": 2, "from": "a", "detectedAt": 1, "startedAt": 2
        });
        let record: FailoverRecord<Detail> = serde_json::from_value(json).expect("json");
        assert_eq!(record.detail, Detail::default());
        let plain: Suspicion<NoDetail> = serde_json::from_value(serde_json::json!({
            "node": "a", "firstFailureAt": 1, "confirmedAt": 2, "reason": "gone"
        }))
        .expect("json");
        assert_eq!(plain.detail, NoDetail {});
    }

    #[test]
    fn a_refusal_is_new_once_and_an_election_clears_it() {
        let mut record =
            FailoverRecord::failover::<NoDetail>(3, NodeId::new("a"), None, Millis(5), NoDetail {});
        assert!(record.refuse("lagging"));
        assert!(!record.refuse("lagging"));
        record.elect(NodeId::new("b"), Some(0));
        assert_eq!(record.refusal, None);
        assert_eq!(record.ends_on(), NodeId::new("b"));
        assert!(record.note_detached(&NodeId::new("c")));
        assert!(!record.note_detached(&NodeId::new("c")));
    }
}
