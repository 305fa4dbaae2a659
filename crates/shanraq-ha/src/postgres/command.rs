//! The engine's outputs: commands for the adapters to execute (each carries the epoch it was
//! decided under) and events for people (Kubernetes Events, the demo's timeline). Events are a
//! separate stream, not commands, so an adapter never has to skip over things it cannot run.

use serde::{Deserialize, Serialize};

use super::model::NodeId;
use super::state::FailoverRecord;
use crate::wire::Upstream;

/// Something to do to an instance or to the router.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "command")]
pub enum Command {
    /// Stop `node` and keep it down until demoted (`POST /fence`).
    Fence { node: NodeId, epoch: u64 },
    /// End recovery on `node`, or restart a fenced primary, granting it `epoch`.
    Promote { node: NodeId, epoch: u64 },
    /// Send writes to `primary` and nowhere else.
    Route { primary: NodeId, epoch: u64 },
    /// Change a running replica's upstream (`POST /repoint`).
    Repoint {
        node: NodeId,
        upstream: Upstream,
        epoch: u64,
    },
    /// Turn `node` into a replica of `upstream`, through `pg_rewind` when it diverged.
    Demote {
        node: NodeId,
        upstream: Upstream,
        epoch: u64,
    },
    /// Stop `node` streaming from the old primary and report its final received LSN
    /// (`POST /detach`): a detached standby acknowledges no more of the old primary's commits.
    Detach { node: NodeId, epoch: u64 },
}

pub use crate::dispatch::CommandTarget;

impl Command {
    pub fn epoch(&self) -> u64 {
        match self {
            Command::Fence { epoch, .. }
            | Command::Promote { epoch, .. }
            | Command::Route { epoch, .. }
            | Command::Repoint { epoch, .. }
            | Command::Demote { epoch, .. }
            | Command::Detach { epoch, .. } => *epoch,
        }
    }

    pub fn target(&self) -> CommandTarget {
        match self {
            Command::Fence { node, .. }
            | Command::Promote { node, .. }
            | Command::Repoint { node, .. }
            | Command::Demote { node, .. }
            | Command::Detach { node, .. } => CommandTarget::Instance(node.clone()),
            Command::Route { .. } => CommandTarget::Router,
        }
    }

    /// The instance the command acts on (for `Route`, the new primary).
    pub fn node(&self) -> &NodeId {
        match self {
            Command::Fence { node, .. }
            | Command::Promote { node, .. }
            | Command::Repoint { node, .. }
            | Command::Demote { node, .. }
            | Command::Detach { node, .. } => node,
            Command::Route { primary, .. } => primary,
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Fence { node, epoch } => write!(f, "fence {node} (epoch {epoch})"),
            Command::Detach { node, epoch } => {
                write!(f, "detach {node} from the old primary (epoch {epoch})")
            }
            Command::Promote { node, epoch } => write!(f, "promote {node} (epoch {epoch})"),
            Command::Route { primary, epoch } => {
                write!(f, "route writes to {primary} (epoch {epoch})")
            }
            Command::Repoint {
                node,
                upstream,
                epoch,
            } => {
                write!(f, "repoint {node} to {} (epoch {epoch})", upstream.name)
            }
            Command::Demote {
                node,
                upstream,
                epoch,
            } => {
                write!(
                    f,
                    "demote {node} to a replica of {} (epoch {epoch})",
                    upstream.name
                )
            }
        }
    }
}

pub use crate::engine::CommandError;

/// Something worth telling a person, stamped with when the engine decided it.
pub type Event = crate::record::Stamped<EventKind>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum EventKind {
    /// No primary was known; `node` reported itself primary and was adopted.
    PrimaryAdopted {
        node: NodeId,
    },
    /// The primary failed enough probes; waiting `failover_delay`.
    PrimarySuspected {
        node: NodeId,
        reason: String,
    },
    /// The primary answered again before the failover started.
    PrimaryRecovered {
        node: NodeId,
    },
    FailoverStarted {
        from: NodeId,
        reason: String,
    },
    /// A timeline step: the old primary is fenced (or could not be, and why).
    Fenced {
        node: NodeId,
        error: Option<String>,
    },
    /// A timeline step: the old primary can no longer complete a commit (`how`: fenced, or
    /// enough of its synchronous set detached).
    QuorumFenced {
        from: NodeId,
        how: String,
    },
    /// The old primary cannot be shown unable to commit yet, so nobody is promoted.
    FencingBlocked {
        reason: String,
    },
    /// A replica on an older timeline stopped streaming: it received WAL past the fork and
    /// is rewound.
    Diverged {
        node: NodeId,
    },
    /// A timeline step: `node` was chosen.
    Elected {
        node: NodeId,
        received_lsn: String,
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
        record: FailoverRecord,
    },
    /// No replica may be promoted without losing acknowledged data (or beyond the lag limit).
    FailoverRefused {
        reason: String,
    },
    SwitchoverStarted {
        from: NodeId,
        to: NodeId,
    },
    SwitchoverCompleted {
        record: FailoverRecord,
    },
    /// The switchover gave up; the old primary is promoted back with the new epoch.
    SwitchoverAborted {
        reason: String,
    },
    /// An instance claimed the primary role without holding the current designation.
    StalePrimaryFenced {
        node: NodeId,
        instance_epoch: u64,
    },
    /// An instance holds a higher epoch than this engine: another controller acted.
    EpochConflict {
        node: NodeId,
        instance_epoch: u64,
    },
    CommandFailed {
        command: String,
        error: String,
    },
}

impl crate::record::Telling for EventKind {
    /// A stable CamelCase reason for Kubernetes Events.
    fn reason(&self) -> &'static str {
        match self {
            EventKind::PrimaryAdopted { .. } => "PrimaryAdopted",
            EventKind::PrimarySuspected { .. } => "PrimarySuspected",
            EventKind::PrimaryRecovered { .. } => "PrimaryRecovered",
            EventKind::FailoverStarted { .. } => "FailoverStarted",
            EventKind::Fenced { .. } => "Fenced",
            EventKind::QuorumFenced { .. } => "QuorumFenced",
            EventKind::FencingBlocked { .. } => "FencingBlocked",
            EventKind::Diverged { .. } => "Diverged",
            EventKind::Elected { .. } => "Elected",
            EventKind::Promoted { .. } => "Promoted",
            EventKind::Routed { .. } => "Routed",
            EventKind::FailoverCompleted { .. } => "FailoverCompleted",
            EventKind::FailoverRefused { .. } => "FailoverRefused",
            EventKind::SwitchoverStarted { .. } => "SwitchoverStarted",
            EventKind::SwitchoverCompleted { .. } => "SwitchoverCompleted",
            EventKind::SwitchoverAborted { .. } => "SwitchoverAborted",
            EventKind::StalePrimaryFenced { .. } => "StalePrimaryFenced",
            EventKind::EpochConflict { .. } => "EpochConflict",
            EventKind::CommandFailed { .. } => "CommandFailed",
        }
    }

    fn importance(&self) -> crate::engine::Importance {
        use crate::engine::Importance;
        match self {
            EventKind::FailoverCompleted { .. }
            | EventKind::SwitchoverStarted { .. }
            | EventKind::SwitchoverCompleted { .. }
            | EventKind::PrimaryAdopted { .. } => Importance::Normal,
            EventKind::FailoverStarted { .. }
            | EventKind::FailoverRefused { .. }
            | EventKind::SwitchoverAborted { .. }
            | EventKind::StalePrimaryFenced { .. }
            | EventKind::EpochConflict { .. }
            | EventKind::FencingBlocked { .. }
            | EventKind::Diverged { .. }
            | EventKind::PrimarySuspected { .. } => Importance::Warning,
            _ => Importance::Log,
        }
    }

    fn message(&self, epoch: u64) -> String {
        match self {
            EventKind::PrimaryAdopted { node } => {
                format!("adopted {node} as primary with epoch {epoch}")
            }
            EventKind::PrimarySuspected { node, reason } => {
                format!("primary {node} is failing: {reason}")
            }
            EventKind::PrimaryRecovered { node } => {
                format!("primary {node} answers again, no failover")
            }
            EventKind::FailoverStarted { from, reason } => {
                format!("failover from {from} started with epoch {epoch}: {reason}")
            }
            EventKind::Fenced { node, error: None } => format!("{node} fenced"),
            EventKind::Fenced {
                node,
                error: Some(error),
            } => format!("{node} not fenced ({error}); continuing"),
            EventKind::QuorumFenced { from, how } => {
                format!("{from} can no longer commit: {how}")
            }
            EventKind::FencingBlocked { reason } => {
                format!("not promoting anyone yet: {reason}")
            }
            EventKind::Diverged { node } => format!(
                "{node} stopped streaming on an older timeline (it received WAL past the fork): rewinding it"
            ),
            EventKind::Elected { node, received_lsn } => {
                format!("elected {node} (received {received_lsn})")
            }
            EventKind::Promoted { node } => format!("{node} promoted with epoch {epoch}"),
            EventKind::Routed { node } => format!("writes routed to {node}"),
            EventKind::FailoverCompleted { record } | EventKind::SwitchoverCompleted { record } => {
                let kind = match record.kind {
                    super::state::FailoverKind::Failover => "failover",
                    super::state::FailoverKind::Switchover => "switchover",
                };
                let to = record.to.as_ref().map_or("nobody", |to| to.as_str());
                let rto = record
                    .rto_ms
                    .map_or_else(|| "unknown".to_owned(), |ms| format!("{ms} ms"));
                let lost = record
                    .lost_bytes
                    .map_or_else(|| "unknown".to_owned(), |b| format!("{b} bytes"));
                match &record.aborted {
                    Some(why) => format!(
                        "{kind} aborted ({why}); {to} resumed as primary, writes unavailable {rto}"
                    ),
                    None => format!(
                        "{kind} {} -> {to} completed: writes unavailable {rto}, WAL not received {lost}",
                        record.from
                    ),
                }
            }
            EventKind::FailoverRefused { reason } => format!("failover refused: {reason}"),
            EventKind::SwitchoverStarted { from, to } => {
                format!("switchover {from} -> {to} started with epoch {epoch}")
            }
            EventKind::SwitchoverAborted { reason } => format!("switchover aborted: {reason}"),
            EventKind::StalePrimaryFenced {
                node,
                instance_epoch,
            } => {
                format!(
                    "{node} claims primary with epoch {instance_epoch} but is not the designated primary of epoch {epoch}: fencing it"
                )
            }
            EventKind::EpochConflict {
                node,
                instance_epoch,
            } => {
                format!("{node} holds epoch {instance_epoch} > {epoch}: another controller acted")
            }
            EventKind::CommandFailed { command, error } => format!("{command} failed: {error}"),
        }
    }
}

/// What one `step` decided.
pub type StepOutput = crate::engine::Decided<Command, Event>;

impl crate::dispatch::Targeted for Command {
    fn target(&self) -> CommandTarget {
        Command::target(self)
    }
}
