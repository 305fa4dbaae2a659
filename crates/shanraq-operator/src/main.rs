//! `shanraq`: one binary for the operator, its tools, the PostgreSQL instance manager and the
//! local failover drill. Each subcommand lives in its own module or crate; this file only
//! parses arguments and dispatches.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "shanraq",
    version,
    about = "High-availability fintech stack operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Kubernetes operator.
    Operator(shanraq_operator::run::OperatorArgs),
    /// Print the ShanraqCluster CustomResourceDefinition as YAML.
    Crdgen {
        /// Print the ShanraqBackup CustomResourceDefinition instead.
        #[arg(long)]
        backup: bool,
    },
    /// Print every object the operator would create for a ShanraqCluster manifest.
    Render(shanraq_operator::render_cmd::RenderArgs),
    /// Run a local failover drill on 127.0.0.1: start PostgreSQL, write, kill the primary, fail
    /// over, and print the measured timeline.
    Demo(shanraq_operator::drill::DemoArgs),
    /// Measure failovers and switchovers on 127.0.0.1 and print figures.
    Bench(shanraq_operator::drill::BenchArgs),
    /// Verify on 127.0.0.1: `restore` backs up a local cluster and restores it into a scratch one.
    Drill(shanraq_operator::drill::DrillArgs),
    /// Run inside a managed pod (the PostgreSQL instance manager).
    #[command(subcommand)]
    Instance(InstanceCommand),
}

#[derive(Debug, Subcommand)]
enum InstanceCommand {
    /// Bootstrap, supervise and serve the status of one PostgreSQL instance.
    // Boxed: its many flags would make every `Command` as large as it is.
    Postgres(Box<shanraq_instance::InstanceArgs>),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Operator(args) => shanraq_operator::run::main(args),
        Command::Crdgen { backup } => shanraq_operator::render_cmd::crdgen(backup),
        Command::Render(args) => shanraq_operator::render_cmd::render(args),
        Command::Demo(args) => shanraq_operator::drill::demo(args),
        Command::Bench(args) => shanraq_operator::drill::bench(args),
        Command::Drill(args) => shanraq_operator::drill::drill(args),
        Command::Instance(InstanceCommand::Postgres(args)) => shanraq_instance::main(*args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
