//! The command line of `kubectl-shanraq` (kubectl runs it as `kubectl shanraq ...`): the
//! subcommands, their flags, and the shell completions clap_complete generates from them.

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-shanraq",
    bin_name = "kubectl-shanraq",
    version,
    about = "Inspect and operate ShanraqClusters (run as `kubectl shanraq`)"
)]
pub struct Cli {
    /// Namespace of the ShanraqCluster (default: the kubeconfig context's namespace).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Each component's instances (role, ready, lag, timeline or offset) and the objectives
    /// measured against their targets.
    Status {
        /// The ShanraqCluster's name.
        name: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Ask the operator for a planned PostgreSQL switchover (annotation shanraq.org/switchover).
    Switchover {
        /// The ShanraqCluster's name.
        name: String,
        /// The instance to promote, e.g. payments-pg-2 (default: the best replica).
        #[arg(long)]
        to: Option<String>,
        /// Return once the switchover is requested instead of waiting for the operator's answer.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for the operator's answer, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Run a failover drill: the operator deletes the primary's Pod, fails over, and records
    /// the measured RTO in status.drill and an Event (annotation shanraq.org/drill).
    Drill {
        /// The ShanraqCluster's name.
        name: String,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        yes: bool,
        /// Return once the drill is requested instead of waiting for its result.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for the result, in seconds.
        #[arg(long, default_value_t = 360)]
        timeout: u64,
    },
    /// Print a shell completion script, e.g. `kubectl-shanraq completion bash`.
    Completion { shell: clap_complete::Shell },
}

impl Command {
    /// The wait for the operator's answer.
    pub fn waiting(no_wait: bool, timeout: u64) -> crate::actions::Waiting {
        crate::actions::Waiting {
            timeout: (!no_wait).then(|| Duration::from_secs(timeout)),
            interval: Duration::from_secs(2),
        }
    }
}

/// The completion script for `shell`.
pub fn completion(shell: clap_complete::Shell) -> Vec<u8> {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "kubectl-shanraq", &mut script);
    script
}
