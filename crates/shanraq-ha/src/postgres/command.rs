//! The engine's outputs: commands for the adapters to execute (each carries the epoch it was
//! decided under) and events for people (Kubernetes Events, the demo's timeline). Events are a
//! separate stream, not commands, so an adapter never has to skip over things it cannot run.

use serde::{Deserialize, Serialize};

use super::engine::Postgres;
use super::model::NodeId;
use super::state::RecordDetail;
use crate::engine::Importance;
use crate::events::Lifecycle;
use crate::machine::Product;
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
    /// Set the primary `node`'s `synchronous_standby_names` (`POST /synchronous`): lowered to
    /// `standby_names` under `dataDurability: preferred`, or back to its configured
    /// `ANY number` when `None`.
    Synchronous {
        node: NodeId,
        standby_names: Option<String>,
        epoch: u64,
    },
}

crate::dispatch::command_accessors!(Command { Fence.node, Promote.node, Route.primary, Repoint.node, Demote.node, Detach.node, Synchronous.node }, route: Route);

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Fence { node, epoch } => write!(f, "fence {node} (epoch {epoch})"),
            Command::Detach { node, epoch } => {
                write!(f, "detach {node} from the old primary (epoch {epoch})")
            }
            Command::Synchronous {
                node,
                standby_names: Some(names),
                epoch,
            } => write!(
                f,
                "lower synchronous_standby_names of {node} to '{names}' (epoch {epoch})"
            ),
            Command::Synchronous {
                node,
                standby_names: None,
                epoch,
            } => write!(
                f,
                "restore the configured synchronous_standby_names of {node} (epoch {epoch})"
            ),
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
// A handful of events per failover: boxing the record would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum EventKind {
    /// A timeline step: the old primary is fenced (or could not be, and why).
    Fenced { node: NodeId, error: Option<String> },
    /// A replica on an older timeline stopped streaming: it received WAL past the fork and
    /// is rewound.
    Diverged { node: NodeId },
    /// A timeline step: `node` was chosen.
    Elected { node: NodeId, received_lsn: String },
    /// An instance claimed the primary role without holding the current designation.
    StalePrimaryFenced { node: NodeId, instance_epoch: u64 },
    /// An instance holds a higher epoch than this engine: another controller acted.
    EpochConflict { node: NodeId, instance_epoch: u64 },
    /// `dataDurability: preferred`: too few standbys streamed for a detection period, and the
    /// primary is lowered to `standby_names` so that writes go on without them.
    SynchronousFallback {
        node: NodeId,
        standby_names: String,
        missing: Vec<NodeId>,
    },
    /// The primary commits with its configured quorum again.
    SynchronousRestored { node: NodeId },
    /// What every engine tells the same way.
    #[serde(untagged)]
    Lifecycle(Lifecycle<RecordDetail>),
}

crate::events::lifecycle_kind!(EventKind, RecordDetail);

impl crate::record::Telling for EventKind {
    fn reason(&self) -> String {
        match self {
            EventKind::Lifecycle(event) => event.reason(&Postgres::VOICE),
            EventKind::Fenced { .. } => "Fenced".to_owned(),
            EventKind::Diverged { .. } => "Diverged".to_owned(),
            EventKind::Elected { .. } => "Elected".to_owned(),
            EventKind::StalePrimaryFenced { .. } => "StalePrimaryFenced".to_owned(),
            EventKind::EpochConflict { .. } => "EpochConflict".to_owned(),
            EventKind::SynchronousFallback { .. } => "SynchronousFallback".to_owned(),
            EventKind::SynchronousRestored { .. } => "SynchronousRestored".to_owned(),
        }
    }

    fn importance(&self) -> Importance {
        match self {
            EventKind::Lifecycle(event) => event.importance(),
            EventKind::Fenced { .. } | EventKind::Elected { .. } => Importance::Log,
            EventKind::SynchronousRestored { .. } => Importance::Normal,
            EventKind::SynchronousFallback { .. } => Importance::Warning,
            EventKind::Diverged { .. }
            | EventKind::StalePrimaryFenced { .. }
            | EventKind::EpochConflict { .. } => Importance::Warning,
        }
    }

    fn message(&self, epoch: u64) -> String {
        match self {
            EventKind::Lifecycle(event) => event.message(&Postgres::VOICE, epoch),
            EventKind::Fenced { node, error: None } => format!("{node} fenced"),
            EventKind::Fenced {
                node,
                error: Some(error),
            } => format!("{node} not fenced ({error}); continuing"),
            EventKind::Diverged { node } => format!(
                "{node} stopped streaming on an older timeline (it received WAL past the fork): rewinding it"
            ),
            EventKind::Elected { node, received_lsn } => {
                format!("elected {node} (received {received_lsn})")
            }
            EventKind::StalePrimaryFenced {
                node,
                instance_epoch,
            } => format!(
                "{node} claims primary with epoch {instance_epoch} but is not the designated primary of epoch {epoch}: fencing it"
            ),
            EventKind::EpochConflict {
                node,
                instance_epoch,
            } => format!("{node} holds epoch {instance_epoch} > {epoch}: another controller acted"),
            EventKind::SynchronousFallback {
                node,
                standby_names,
                missing,
            } => format!(
                "dataDurability: preferred: {} not streaming, so {node} commits with synchronous_standby_names = '{standby_names}'; \
                 a failover now may lose the commits made from here until they are back",
                crate::events::join(missing)
            ),
            EventKind::SynchronousRestored { node } => {
                format!("{node} commits with its configured synchronous quorum again")
            }
        }
    }
}

/// What one `step` decided.
pub type StepOutput = crate::engine::Decided<Command, Event>;
