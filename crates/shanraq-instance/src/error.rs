//! Errors of the instance manager. Messages name the file, program or flag at fault and never
//! carry a password or token.

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("invalid {flag}: {reason}")]
    InvalidArg { flag: &'static str, reason: String },
    #[error("no {what}: set {flags}")]
    MissingSecret {
        what: &'static str,
        flags: &'static str,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("{program} failed ({status}): {output}")]
    ToolFailed {
        program: String,
        status: String,
        output: String,
    },
    #[error("postgres query `{query}`: {source}")]
    Sql {
        query: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("{what} timed out after {seconds}s")]
    Timeout { what: String, seconds: u64 },
    #[error("state file {path}: {reason}")]
    State { path: String, reason: String },
    #[error("{0}")]
    Refused(String),
    #[error("data dir {path} is not empty and holds no PostgreSQL cluster (no PG_VERSION)")]
    ForeignDataDir { path: String },
    #[error("no upstream to clone from: set --upstream-host")]
    NoUpstream,
}

impl InstanceError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> InstanceError {
        InstanceError::Io {
            what: what.into(),
            source,
        }
    }
}
