//! The events every engine's failover tells, in one vocabulary: a primary adopted, suspected,
//! recovered; a failover started, fenced, blocked, refused; a promotion, a route, a record; a
//! switchover started, completed or aborted; a command that failed. Each engine adds only the
//! events that are its own (PostgreSQL's divergence and epoch conflicts, Redis's bootstrap by
//! offset) and a `Voice` that names its product and role, so an operator reading Events sees
//! the same reasons and sentences from every engine.

use serde::{Deserialize, Serialize};

use crate::engine::Importance;
use crate::postgres::NodeId;
use crate::record::{FailoverKind, FailoverRecord};

/// How one engine names itself in reasons and messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Voice {
    /// Put before every reason: "" for PostgreSQL (its reasons predate the others), "Redis".
    pub reason_prefix: &'static str,
    /// The writable member's role in a reason: "Primary", "Master".
    pub role_reason: &'static str,
    /// Put before the role and a failover in messages: "" or "Redis ".
    pub product: &'static str,
    /// The writable member's role in a message: "primary", "master".
    pub role: &'static str,
    /// What a lost byte is a byte of: "WAL", "offset".
    pub stream: &'static str,
}

impl Voice {
    /// A voice from its words in the order of the fields.
    pub const fn new(words: [&'static str; 5]) -> Voice {
        let [reason_prefix, role_reason, product, role, stream] = words;
        Voice {
            reason_prefix,
            role_reason,
            product,
            role,
            stream,
        }
    }
}

/// Writes `From<Lifecycle<D>>` for an engine's kind of event, whose `Lifecycle` variant holds
/// what every engine tells the same way.
macro_rules! lifecycle_kind {
    ($kind:ident, $detail:ty) => {
        impl From<$crate::events::Lifecycle<$detail>> for $kind {
            fn from(event: $crate::events::Lifecycle<$detail>) -> Self {
                $kind::Lifecycle(event)
            }
        }
    };
}
pub(crate) use lifecycle_kind;

/// An event every engine tells the same way; `D` is the engine's failover record detail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Lifecycle<D> {
    /// No primary was known; `node` reported itself primary and was adopted.
    Adopted {
        node: NodeId,
    },
    /// The primary failed enough probes; waiting `failover_delay`.
    Suspected {
        node: NodeId,
        reason: String,
    },
    /// The primary answered again before the failover started.
    Recovered {
        node: NodeId,
    },
    FailoverStarted {
        from: NodeId,
        reason: String,
    },
    /// A timeline step: the old primary can no longer complete a commit (`how`: fenced, or
    /// enough of the members that acknowledge its writes detached).
    QuorumFenced {
        from: NodeId,
        how: String,
    },
    /// The old primary cannot be shown unable to commit yet, so nobody is promoted.
    FencingBlocked {
        reason: String,
    },
    /// A timeline step: `node` is primary with the current epoch.
    Promoted {
        node: NodeId,
    },
    /// A timeline step: writes go to `node`.
    Routed {
        node: NodeId,
    },
    FailoverCompleted {
        record: FailoverRecord<D>,
    },
    /// No replica may be promoted without losing acknowledged data (or beyond the lag limit);
    /// the engine keeps trying.
    FailoverRefused {
        reason: String,
    },
    SwitchoverStarted {
        from: NodeId,
        to: NodeId,
    },
    SwitchoverCompleted {
        record: FailoverRecord<D>,
    },
    /// The switchover gave up; the old primary resumes with the new epoch.
    SwitchoverAborted {
        reason: String,
    },
    CommandFailed {
        command: String,
        error: String,
    },
}

impl<D> Lifecycle<D> {
    /// The record's own completion event.
    pub fn completed(record: FailoverRecord<D>) -> Self {
        match record.kind {
            FailoverKind::Failover => Lifecycle::FailoverCompleted { record },
            FailoverKind::Switchover => Lifecycle::SwitchoverCompleted { record },
        }
    }

    /// The record of a completed failover or switchover.
    pub fn record(&self) -> Option<&FailoverRecord<D>> {
        match self {
            Lifecycle::FailoverCompleted { record } | Lifecycle::SwitchoverCompleted { record } => {
                Some(record)
            }
            _ => None,
        }
    }

    /// A stable CamelCase reason, in `voice`.
    pub fn reason(&self, voice: &Voice) -> String {
        let (role, what) = match self {
            Lifecycle::Adopted { .. } => (true, "Adopted"),
            Lifecycle::Suspected { .. } => (true, "Suspected"),
            Lifecycle::Recovered { .. } => (true, "Recovered"),
            Lifecycle::FailoverStarted { .. } => (false, "FailoverStarted"),
            Lifecycle::QuorumFenced { .. } => (false, "QuorumFenced"),
            Lifecycle::FencingBlocked { .. } => (false, "FencingBlocked"),
            Lifecycle::Promoted { .. } => (false, "Promoted"),
            Lifecycle::Routed { .. } => (false, "Routed"),
            Lifecycle::FailoverCompleted { .. } => (false, "FailoverCompleted"),
            Lifecycle::FailoverRefused { .. } => (false, "FailoverRefused"),
            Lifecycle::SwitchoverStarted { .. } => (false, "SwitchoverStarted"),
            Lifecycle::SwitchoverCompleted { .. } => (false, "SwitchoverCompleted"),
            Lifecycle::SwitchoverAborted { .. } => (false, "SwitchoverAborted"),
            Lifecycle::CommandFailed { .. } => (false, "CommandFailed"),
        };
        let role = if role { voice.role_reason } else { "" };
        format!("{}{role}{what}", voice.reason_prefix)
    }

    pub fn importance(&self) -> Importance {
        match self {
            Lifecycle::FailoverCompleted { .. }
            | Lifecycle::SwitchoverStarted { .. }
            | Lifecycle::SwitchoverCompleted { .. }
            | Lifecycle::Adopted { .. } => Importance::Normal,
            Lifecycle::FailoverStarted { .. }
            | Lifecycle::FailoverRefused { .. }
            | Lifecycle::FencingBlocked { .. }
            | Lifecycle::SwitchoverAborted { .. }
            | Lifecycle::Suspected { .. } => Importance::Warning,
            Lifecycle::Recovered { .. }
            | Lifecycle::QuorumFenced { .. }
            | Lifecycle::Promoted { .. }
            | Lifecycle::Routed { .. }
            | Lifecycle::CommandFailed { .. } => Importance::Log,
        }
    }

    /// A one-line message, in `voice`, at `epoch`.
    pub fn message(&self, voice: &Voice, epoch: u64) -> String {
        let Voice { product, role, .. } = voice;
        match self {
            Lifecycle::Adopted { node } => {
                format!("adopted {product}{role} {node} with epoch {epoch}")
            }
            Lifecycle::Suspected { node, reason } => {
                format!("{product}{role} {node} is failing: {reason}")
            }
            Lifecycle::Recovered { node } => {
                format!("{product}{role} {node} answers again, no failover")
            }
            Lifecycle::FailoverStarted { from, reason } => {
                format!("{product}failover from {from} started with epoch {epoch}: {reason}")
            }
            Lifecycle::QuorumFenced { from, how } => {
                format!("{from} can no longer complete an acknowledged write: {how}")
            }
            Lifecycle::FencingBlocked { reason } => {
                format!("not promoting any {product}replica yet: {reason}")
            }
            Lifecycle::Promoted { node } => format!("{node} promoted with epoch {epoch}"),
            Lifecycle::Routed { node } => format!("{product}writes routed to {node}"),
            Lifecycle::FailoverCompleted { record } | Lifecycle::SwitchoverCompleted { record } => {
                completed(voice, record)
            }
            Lifecycle::FailoverRefused { reason } => format!("{product}failover refused: {reason}"),
            Lifecycle::SwitchoverStarted { from, to } => {
                format!("{product}switchover {from} -> {to} started with epoch {epoch}")
            }
            Lifecycle::SwitchoverAborted { reason } => {
                format!("{product}switchover aborted: {reason}")
            }
            Lifecycle::CommandFailed { command, error } => format!("{command} failed: {error}"),
        }
    }
}

fn completed<D>(voice: &Voice, record: &FailoverRecord<D>) -> String {
    let Voice {
        product, stream, ..
    } = voice;
    let kind = record.kind.as_str();
    let to = record.to.as_ref().map_or("nobody", NodeId::as_str);
    let rto = record
        .rto_ms
        .map_or_else(|| "unknown".to_owned(), |ms| format!("{ms} ms"));
    let lost = record
        .lost_bytes
        .map_or_else(|| "unknown".to_owned(), |b| format!("{b} bytes"));
    match &record.aborted {
        Some(why) => format!(
            "{product}{kind} aborted ({why}); {to} resumed as {}, writes unavailable {rto}",
            voice.role
        ),
        None => format!(
            "{product}{kind} {} -> {to} completed: writes unavailable {rto}, {stream} not received {lost}",
            record.from
        ),
    }
}

/// Joins member names for a message.
pub fn join(nodes: &[NodeId]) -> String {
    nodes
        .iter()
        .map(NodeId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::Millis;
    use crate::record::NoDetail;

    const PG: Voice = Voice {
        reason_prefix: "",
        role_reason: "Primary",
        product: "",
        role: "primary",
        stream: "WAL",
    };
    const REDIS: Voice = Voice {
        reason_prefix: "Redis",
        role_reason: "Master",
        product: "Redis ",
        role: "master",
        stream: "offset",
    };

    #[test]
    fn each_engine_keeps_its_reasons() {
        let adopted = Lifecycle::<NoDetail>::Adopted {
            node: NodeId::new("a"),
        };
        assert_eq!(adopted.reason(&PG), "PrimaryAdopted");
        assert_eq!(adopted.reason(&REDIS), "RedisMasterAdopted");
        let routed = Lifecycle::<NoDetail>::Routed {
            node: NodeId::new("a"),
        };
        assert_eq!(routed.reason(&PG), "Routed");
        assert_eq!(routed.reason(&REDIS), "RedisRouted");
        assert_eq!(
            adopted.message(&REDIS, 3),
            "adopted Redis master a with epoch 3"
        );
    }

    #[test]
    fn a_completed_record_tells_its_figures() {
        let mut record = FailoverRecord::switchover(
            4,
            NodeId::new("a"),
            NodeId::new("b"),
            Millis(10),
            NoDetail {},
        );
        record.lost_bytes = Some(0);
        record.finish(Millis(25));
        let event = Lifecycle::completed(record);
        assert!(matches!(event, Lifecycle::SwitchoverCompleted { .. }));
        assert_eq!(
            event.message(&PG, 4),
            "switchover a -> b completed: writes unavailable 15 ms, WAL not received 0 bytes"
        );
        assert_eq!(event.importance(), Importance::Normal);
    }

    #[test]
    fn an_engine_event_keeps_one_flat_json_shape() {
        use crate::postgres::EventKind;
        let promoted = EventKind::Lifecycle(Lifecycle::Promoted {
            node: NodeId::new("a"),
        });
        let json = serde_json::to_value(&promoted).expect("json");
        assert_eq!(json, serde_json::json!({"type": "promoted", "node": "a"}));
        assert_eq!(
            serde_json::from_value::<EventKind>(json).expect("read back"),
            promoted
        );
        let diverged = EventKind::Diverged {
            node: NodeId::new("b"),
        };
        let json = serde_json::to_value(&diverged).expect("json");
        assert_eq!(
            serde_json::from_value::<EventKind>(json).expect("read back"),
            diverged
        );
    }
}
