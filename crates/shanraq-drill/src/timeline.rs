//! One failover (or switchover) as a person reads it: the steps the engine published, the
//! time each command took, and the first commit the writer got acknowledged by the new
//! primary, all as offsets from the moment the primary was killed (or the switchover was
//! asked for). The demo prints it, the benchmark aggregates it, the chaos tests print it.

use std::time::Duration;

use shanraq_ha::adapters::driver::DriverEvent;
use shanraq_ha::events::Lifecycle;
use shanraq_ha::postgres::{Command, EventKind, FailoverKind, FailoverRecord, Millis, NodeId};

use super::ledger::Ack;

/// The steps of one failover or switchover, as wall-clock times.
#[derive(Clone, Debug, Default)]
pub struct FailoverTimeline {
    /// The kill, the freeze, or the switchover request.
    pub origin: Millis,
    pub from: Option<NodeId>,
    pub to: Option<NodeId>,
    pub detected: Option<Millis>,
    pub detected_reason: Option<String>,
    pub started: Option<Millis>,
    pub fenced: Option<Millis>,
    /// Why the fence was not confirmed (the old primary was unreachable, say).
    pub fence_note: Option<String>,
    pub elected: Option<Millis>,
    pub elected_lsn: Option<String>,
    pub promoted: Option<Millis>,
    pub promote_took: Option<Duration>,
    pub routed: Option<Millis>,
    pub route_took: Option<Duration>,
    pub first_write: Option<Ack>,
    /// Other replicas re-pointed to the new primary, and when.
    pub repointed: Vec<(Millis, NodeId)>,
    pub refusals: Vec<(Millis, String)>,
    pub switchover: bool,
}

impl FailoverTimeline {
    /// Reads the steps of the failover `record` (with epoch `record.epoch`) from the events
    /// published since `origin`.
    pub fn build(
        origin: Millis,
        record: &FailoverRecord,
        events: &[DriverEvent],
        first_write: Option<Ack>,
    ) -> FailoverTimeline {
        let mut timeline = FailoverTimeline {
            origin,
            from: Some(record.from.clone()),
            to: record.to.clone(),
            first_write,
            switchover: record.kind == FailoverKind::Switchover,
            ..FailoverTimeline::default()
        };
        for event in events {
            match event {
                DriverEvent::Engine(event) if event.at >= origin => match &event.kind {
                    EventKind::Lifecycle(Lifecycle::Suspected { node, reason })
                        if *node == record.from =>
                    {
                        timeline.detected.get_or_insert(event.at);
                        timeline
                            .detected_reason
                            .get_or_insert_with(|| reason.clone());
                    }
                    EventKind::Lifecycle(Lifecycle::FailoverStarted { .. })
                    | EventKind::Lifecycle(Lifecycle::SwitchoverStarted { .. })
                        if event.epoch == record.epoch =>
                    {
                        timeline.started.get_or_insert(event.at);
                    }
                    EventKind::Fenced { node, error }
                        if *node == record.from && event.epoch == record.epoch =>
                    {
                        timeline.fenced.get_or_insert(event.at);
                        if let Some(error) = error {
                            timeline.fence_note.get_or_insert_with(|| error.clone());
                        }
                    }
                    EventKind::Elected { node, received_lsn }
                        if event.epoch == record.epoch && record.to.as_ref() == Some(node) =>
                    {
                        timeline.elected = Some(event.at);
                        timeline.elected_lsn = Some(received_lsn.clone());
                    }
                    EventKind::Lifecycle(Lifecycle::Promoted { node })
                        if event.epoch == record.epoch && record.to.as_ref() == Some(node) =>
                    {
                        timeline.promoted.get_or_insert(event.at);
                    }
                    EventKind::Lifecycle(Lifecycle::Routed { .. })
                        if event.epoch == record.epoch =>
                    {
                        timeline.routed.get_or_insert(event.at);
                    }
                    EventKind::Lifecycle(Lifecycle::FailoverRefused { reason })
                        if event.epoch == record.epoch =>
                    {
                        timeline.refusals.push((event.at, reason.clone()));
                    }
                    _ => {}
                },
                DriverEvent::CommandFinished {
                    at,
                    command,
                    took,
                    error: None,
                } if command.epoch() == record.epoch => match command {
                    Command::Promote { node, .. } if record.to.as_ref() == Some(node) => {
                        timeline.promote_took = Some(*took);
                    }
                    Command::Route { .. } => timeline.route_took = Some(*took),
                    Command::Repoint { node, .. } => timeline.repointed.push((*at, node.clone())),
                    _ => {}
                },
                _ => {}
            }
        }
        timeline
    }

    fn offset(&self, at: Millis) -> u64 {
        at.since(self.origin)
    }

    /// Milliseconds from the origin to the first commit acknowledged by the new primary.
    pub fn rto_ms(&self) -> Option<u64> {
        self.first_write.map(|ack| self.offset(ack.at))
    }

    /// Origin -> detection.
    pub fn detection_ms(&self) -> Option<u64> {
        self.detected.map(|at| self.offset(at))
    }

    /// Detection (or start) -> promoted.
    /// Detection to election: the fence and the detach of the synchronous set, until the old
    /// primary is shown unable to commit.
    pub fn fencing_ms(&self) -> Option<u64> {
        Some(self.elected?.since(self.detected?))
    }

    pub fn promotion_ms(&self) -> Option<u64> {
        let from = self.elected.or(self.started)?;
        Some(self.promoted?.since(from))
    }

    /// Promoted -> routed.
    pub fn routing_ms(&self) -> Option<u64> {
        Some(self.routed?.since(self.promoted?))
    }

    /// Routed -> first acknowledged commit on the new primary.
    pub fn first_write_ms(&self) -> Option<u64> {
        Some(self.first_write?.at.since(self.routed?))
    }

    /// The readable timeline, one step a line, `origin_label` describing the origin.
    pub fn lines(&self, origin_label: &str) -> Vec<String> {
        let mut steps: Vec<(u64, String)> = vec![(0, origin_label.to_owned())];
        let from = self.from.as_ref().map_or("the primary", NodeId::as_str);
        let to = self.to.as_ref().map_or("nobody", NodeId::as_str);
        if let Some(at) = self.detected {
            let reason = self.detected_reason.as_deref().unwrap_or("failing");
            steps.push((
                self.offset(at),
                format!("detected: {from} is failing ({reason})"),
            ));
        }
        if let Some(at) = self.started {
            let what = if self.switchover {
                "switchover"
            } else {
                "failover"
            };
            steps.push((self.offset(at), format!("{what} started: epoch bumped")));
        }
        if let Some(at) = self.fenced {
            let text = match &self.fence_note {
                None => format!("fenced {from}: it stopped and answers /primary 503"),
                Some(note) => format!("fence not confirmed ({note})"),
            };
            steps.push((self.offset(at), text));
        }
        for (at, refusal) in &self.refusals {
            steps.push((self.offset(*at), format!("refused: {refusal}")));
        }
        for (at, node) in &self.repointed {
            steps.push((self.offset(*at), format!("re-pointed {node} to {to}")));
        }
        if let Some(at) = self.elected {
            let lsn = self.elected_lsn.as_deref().unwrap_or("?");
            steps.push((
                self.offset(at),
                format!("elected {to} (received WAL up to {lsn})"),
            ));
        }
        if let Some(at) = self.promoted {
            let took = self
                .promote_took
                .map(|took| format!(" (promote took {} ms)", took.as_millis()))
                .unwrap_or_default();
            steps.push((self.offset(at), format!("promoted {to}{took}")));
        }
        if let Some(at) = self.routed {
            steps.push((
                self.offset(at),
                format!("routed: HAProxy rw sends to {to} and nothing else"),
            ));
        }
        if let Some(ack) = self.first_write {
            steps.push((
                self.offset(ack.at),
                format!("first write committed on {to} (ledger id {})", ack.id),
            ));
        }
        steps.sort_by_key(|(offset, _)| *offset);
        steps
            .into_iter()
            .map(|(offset, text)| format!("  +{offset:>6} ms  {text}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shanraq_ha::postgres::{Event, RecordDetail};

    fn engine(at: u64, epoch: u64, kind: EventKind) -> DriverEvent {
        DriverEvent::Engine(Event {
            at: Millis(at),
            epoch,
            kind,
        })
    }

    #[test]
    fn a_failover_reads_as_offsets_from_the_kill() {
        let from = NodeId::new("pg-0");
        let to = NodeId::new("pg-1");
        let record = FailoverRecord {
            kind: FailoverKind::Failover,
            epoch: 2,
            from: from.clone(),
            to: Some(to.clone()),
            detected_at: Millis(1_010),
            started_at: Millis(1_760),
            fenced_at: None,
            promoted_at: Some(Millis(1_900)),
            routed_at: Some(Millis(2_000)),
            rto_ms: Some(990),
            lost_bytes: Some(0),
            detached: Vec::new(),
            refusal: None,
            aborted: None,
            detail: RecordDetail {
                fence_error: Some("unreachable".into()),
                ..RecordDetail::default()
            },
        };
        let events = vec![
            engine(
                1_760,
                1,
                EventKind::Lifecycle(Lifecycle::Suspected {
                    node: from.clone(),
                    reason: "3 failed probes".into(),
                }),
            ),
            engine(
                1_760,
                2,
                EventKind::Lifecycle(Lifecycle::FailoverStarted {
                    from: from.clone(),
                    reason: "3 failed probes".into(),
                }),
            ),
            engine(
                1_760,
                2,
                EventKind::Elected {
                    node: to.clone(),
                    received_lsn: "0/3000060".into(),
                },
            ),
            DriverEvent::CommandFinished {
                at: Millis(1_900),
                command: Command::Promote {
                    node: to.clone(),
                    epoch: 2,
                },
                took: Duration::from_millis(130),
                error: None,
            },
            engine(
                1_900,
                2,
                EventKind::Lifecycle(Lifecycle::Promoted { node: to.clone() }),
            ),
            engine(
                2_000,
                2,
                EventKind::Lifecycle(Lifecycle::Routed { node: to.clone() }),
            ),
        ];
        let ack = Ack {
            id: 7,
            at: Millis(2_100),
            server: std::net::SocketAddr::from(([127, 0, 0, 1], 5433)),
        };
        let timeline = FailoverTimeline::build(Millis(1_000), &record, &events, Some(ack));
        assert_eq!(timeline.rto_ms(), Some(1_100));
        assert_eq!(timeline.detection_ms(), Some(760));
        assert_eq!(timeline.promotion_ms(), Some(140));
        assert_eq!(timeline.routing_ms(), Some(100));
        assert_eq!(timeline.first_write_ms(), Some(100));
        assert_eq!(timeline.promote_took, Some(Duration::from_millis(130)));
        let lines = timeline.lines("pg-0 killed").join("\n");
        assert!(lines.contains("+     0 ms  pg-0 killed"), "{lines}");
        assert!(
            lines.contains("+  1100 ms  first write committed on pg-1"),
            "{lines}"
        );
    }
}
