//! One error type for the testkit, so that a failing test says which process, file or binary
//! was at fault (and, for a missing binary, which Debian package to install).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    #[error("binary `{binary}` not found at {path}: install {package}")]
    MissingBinary {
        binary: &'static str,
        path: PathBuf,
        package: &'static str,
    },
    #[error("Apache Kafka is not installed ({path} is missing): run scripts/install-kafka")]
    MissingKafka { path: PathBuf },
    #[error("kafka cluster: {problem}")]
    Kafka { problem: String },
    #[error("user `postgres` is not in /etc/passwd: install the Debian package `postgresql-15`")]
    NoPostgresUser,
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
    #[error("`{command}` failed ({status}):\n{output}")]
    CommandFailed {
        command: String,
        status: String,
        output: String,
    },
    #[error("{what} did not become ready within {seconds}s: {detail}")]
    NotReady {
        what: String,
        seconds: u64,
        detail: String,
    },
    #[error("{what} exited early ({status}); log tail:\n{log}")]
    Exited {
        what: String,
        status: String,
        log: String,
    },
    #[error("no free TCP port in {low}-{high} on 127.0.0.1 after {attempts} attempts")]
    NoFreePort { low: u16, high: u16, attempts: u32 },
    #[error("member index {index} is out of range (topology has {len} members)")]
    NoSuchMember { index: usize, len: usize },
    #[error(
        "{what} needs root (network namespaces, veths and nftables rules); run the tests as root"
    )]
    NotRoot { what: String },
    #[error("network lab {lab}: {problem}")]
    Lab { lab: String, problem: String },
}

impl TestkitError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        TestkitError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        TestkitError::Sys {
            what: what.into(),
            source,
        }
    }
}
