//! What can go wrong in a drill, named so that a person running `shanraq demo` knows what to
//! fix: a missing Debian package, a process that did not come up, a step that did not finish
//! in time, or acknowledged commits that the new primary does not have.

use shanraq_ha::adapters::driver::DriverError;
use shanraq_ha::postgres::{HaState, NodeId};
use shanraq_ha::wire::InstanceRole;
use shanraq_testkit::TestkitError;

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error(
        "{what} is missing ({detail}): install the Debian package `{package}` (scripts/install-deps installs everything the drill needs)"
    )]
    MissingDependency {
        what: &'static str,
        package: &'static str,
        detail: String,
    },
    #[error("the local topology failed")]
    Topology(#[from] TestkitError),
    #[error("the HA driver failed")]
    Driver(#[from] DriverError),
    #[error("the HA driver is not running")]
    DriverStopped,
    #[error("{what}")]
    Sql {
        what: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{what} did not happen within {seconds} s{detail}")]
    Timeout {
        what: String,
        seconds: u64,
        detail: String,
    },
    #[error("{member} is not a member of the local cluster")]
    UnknownMember { member: String },
    #[error("{count} acknowledged commits are missing on {member} (first ids: {sample:?})")]
    LostCommits {
        count: usize,
        member: String,
        sample: Vec<i64>,
    },
    #[error("the rendered haproxy.cfg cannot run locally: {reason}: {line:?}")]
    HaproxyConfig { line: String, reason: String },
    #[error("the lab of a {scenario} run {problem}")]
    Lab {
        scenario: &'static str,
        problem: String,
    },
    #[error("{what} failed")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("the watch of {what} failed: {detail}")]
    Watch { what: String, detail: String },
    #[error("the operator under measurement: {problem}")]
    Operator { problem: String },
    #[error("interrupted; every process the drill started was stopped")]
    Interrupted,
    #[error("invalid drill option {option}: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: String,
    },
}

impl DrillError {
    pub fn sql(what: impl Into<String>, source: sqlx::Error) -> DrillError {
        DrillError::Sql {
            what: what.into(),
            source,
        }
    }

    pub fn timeout(what: impl Into<String>, timeout: std::time::Duration) -> DrillError {
        DrillError::Timeout {
            what: what.into(),
            seconds: timeout.as_secs().max(1),
            detail: String::new(),
        }
    }

    /// A timeout with more to say (the engine's phase, the last refusal, a log tail).
    pub fn timeout_with(
        what: impl Into<String>,
        timeout: std::time::Duration,
        detail: impl std::fmt::Display,
    ) -> DrillError {
        DrillError::Timeout {
            what: what.into(),
            seconds: timeout.as_secs().max(1),
            detail: format!(": {detail}"),
        }
    }
}

/// `GET /status` of a member could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{0}")]
    Request(TestkitError),
    #[error("status of member {index}: {error}")]
    Decode {
        index: usize,
        error: serde_json::Error,
    },
}

/// Why a local cluster has not converged yet (one primary, every other member streaming from
/// it, `rw` routed to it): the detail of a convergence timeout.
#[derive(Debug, thiserror::Error)]
pub enum NotConverged {
    #[error("{0}")]
    State(DrillError),
    #[error("{}", crate::local::describe(.0))]
    Engine(Box<HaState>),
    #[error("no designated primary")]
    NoPrimary,
    #[error("{0}")]
    Member(DrillError),
    #[error("the primary {primary} is not among the live members")]
    PrimaryNotAlive { primary: NodeId },
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error("{primary} reports {role:?} at epoch {epoch}")]
    Primary {
        primary: NodeId,
        role: InstanceRole,
        epoch: u64,
    },
    #[error(
        "{name} is {role:?} at epoch {epoch} (streaming {streaming:?}, listed by {primary}: {listed})"
    )]
    Replica {
        name: String,
        role: InstanceRole,
        epoch: u64,
        streaming: Option<bool>,
        primary: NodeId,
        listed: bool,
    },
    #[error("no synchronous standby learnt yet")]
    NoSynchronousStandby,
    #[error("connecting through rw: {0}")]
    Routing(sqlx::Error),
    #[error("rw reaches port {port}, not {primary}")]
    RoutedElsewhere { port: u16, primary: NodeId },
}
