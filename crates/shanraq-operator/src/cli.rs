//! The subcommands of the product binary (`shanraq`, the one the images carry): the operator,
//! its manifest tools and the PostgreSQL instance manager. `shanraq-drill` offers the same
//! ones beside the local drill's, so it can run its own operator and instance managers.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ProductCommand {
    /// Run the Kubernetes operator.
    Operator(crate::run::OperatorArgs),
    /// Print the ShanraqCluster CustomResourceDefinition as YAML.
    Crdgen {
        /// Print the ShanraqBackup CustomResourceDefinition instead.
        #[arg(long)]
        backup: bool,
    },
    /// Print every object the operator would create for a ShanraqCluster manifest.
    Render(crate::render_cmd::RenderArgs),
    /// Run inside a managed pod (the PostgreSQL instance manager).
    #[command(subcommand)]
    Instance(InstanceCommand),
}

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Bootstrap, supervise and serve the status of one PostgreSQL instance.
    // Boxed: its many flags would make every `ProductCommand` as large as it is.
    Postgres(Box<shanraq_instance::InstanceArgs>),
}

impl ProductCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Operator(args) => crate::run::main(args),
            Self::Crdgen { backup } => crate::render_cmd::crdgen(backup),
            Self::Render(args) => crate::render_cmd::render(args),
            Self::Instance(InstanceCommand::Postgres(args)) => shanraq_instance::main(*args),
        }
    }
}

/// The binary that carries the local drill (`demo`, `bench`, `drill`).
pub const DRILL_BINARY: &str = "shanraq-drill";

/// Why `shanraq <subcommand>` of the drill cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(
        "`shanraq {subcommand}` runs the local drill, which this binary does not carry (the \
         images ship the operator alone): no {DRILL_BINARY} beside {beside} nor on PATH; build \
         it with `cargo build --release -p shanraq-drill`, or run scripts/demo"
    )]
    NotFound { subcommand: String, beside: String },
    #[error("could not run {binary}: {source}")]
    Exec {
        binary: String,
        #[source]
        source: std::io::Error,
    },
}

/// Replaces this process with `shanraq-drill <subcommand> <args>`, found beside this binary
/// first (a cargo build puts both in one folder), then on PATH. Returns only on failure.
pub fn forward_to_drill(subcommand: &str, args: Vec<OsString>) -> ForwardError {
    // Without its own path (it cannot be read), only PATH is searched, never the working
    // directory.
    let beside = std::env::current_exe()
        .ok()
        .and_then(|own| own.parent().map(Path::to_path_buf));
    let Some(binary) = locate(beside.as_deref(), std::env::var_os("PATH")) else {
        return ForwardError::NotFound {
            subcommand: subcommand.to_owned(),
            beside: beside.map_or_else(
                || "this binary (its path is unknown)".to_owned(),
                |folder| folder.display().to_string(),
            ),
        };
    };
    let source = exec(&binary, subcommand, args);
    ForwardError::Exec {
        binary: binary.display().to_string(),
        source,
    }
}

fn locate(beside: Option<&Path>, path: Option<OsString>) -> Option<PathBuf> {
    beside
        .map(Path::to_path_buf)
        .into_iter()
        .chain(path.iter().flat_map(std::env::split_paths))
        .map(|folder| folder.join(DRILL_BINARY))
        .find(|candidate| candidate.is_file())
}

fn exec(binary: &Path, subcommand: &str, args: Vec<OsString>) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(binary)
        .arg(subcommand)
        .args(args)
        .exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drill_is_found_beside_the_binary_before_path() {
        let beside = tempfile::tempdir().expect("tempdir");
        let on_path = tempfile::tempdir().expect("tempdir");
        let path = std::env::join_paths([on_path.path()]).expect("PATH");
        assert_eq!(locate(Some(beside.path()), Some(path.clone())), None);
        std::fs::write(on_path.path().join(DRILL_BINARY), "").expect("write");
        assert_eq!(
            locate(Some(beside.path()), Some(path.clone())),
            Some(on_path.path().join(DRILL_BINARY))
        );
        assert_eq!(
            locate(None, Some(path.clone())),
            Some(on_path.path().join(DRILL_BINARY)),
            "without its own folder, PATH alone"
        );
        std::fs::write(beside.path().join(DRILL_BINARY), "").expect("write");
        assert_eq!(
            locate(Some(beside.path()), Some(path)),
            Some(beside.path().join(DRILL_BINARY))
        );
    }

    #[test]
    fn a_missing_drill_names_the_subcommand_and_how_to_build_it() {
        let message = ForwardError::NotFound {
            subcommand: "bench".to_owned(),
            beside: "/usr/local/bin".to_owned(),
        }
        .to_string();
        assert!(message.contains("`shanraq bench`"), "{message}");
        assert!(
            message.contains("cargo build --release -p shanraq-drill"),
            "{message}"
        );
    }
}
