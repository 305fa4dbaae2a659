//! `shanraq`: the product binary the images carry: the operator, its manifest tools and the
//! PostgreSQL instance manager. The local drill (`demo`, `bench`, `drill`) is a binary of its
//! own, `shanraq-drill`; `shanraq demo|bench|drill` hands over to it when it is installed
//! beside this one (a cargo build puts them together), so a lean image never links the lab.

use std::ffi::OsString;

use clap::{Parser, Subcommand};
use shanraq_operator::cli::{ProductCommand, forward_to_drill};

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
    #[command(flatten)]
    Product(ProductCommand),
    /// The local failover drill on 127.0.0.1 (runs `shanraq-drill demo`).
    #[command(disable_help_flag = true)]
    Demo(Forwarded),
    /// Failover and switchover figures on 127.0.0.1 (runs `shanraq-drill bench`).
    #[command(disable_help_flag = true)]
    Bench(Forwarded),
    /// Backup and restore verified on 127.0.0.1 (runs `shanraq-drill drill`).
    #[command(disable_help_flag = true)]
    Drill(Forwarded),
}

/// Everything after the subcommand, passed on unparsed (`--help` included).
#[derive(Debug, clap::Args)]
struct Forwarded {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Product(command) => command.run(),
        Command::Demo(rest) => Err(forward_to_drill("demo", rest.args).into()),
        Command::Bench(rest) => Err(forward_to_drill("bench", rest.args).into()),
        Command::Drill(rest) => Err(forward_to_drill("drill", rest.args).into()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
