//! `shanraq-drill`: the local drill's binary. It has every subcommand of `shanraq` (so the drill
//! runs its instance managers and operator from this same file) and the drill's own: `demo`,
//! `bench`, `drill`. Never shipped in an image.

use clap::{Parser, Subcommand};
use shanraq_operator::cli::ProductCommand;

#[derive(Debug, Parser)]
#[command(
    name = "shanraq-drill",
    version,
    about = "Shanraq's local drill: the product's engines on real processes on 127.0.0.1"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Product(ProductCommand),
    /// Run a local failover drill on 127.0.0.1: start PostgreSQL, write, kill the primary, fail
    /// over, and print the measured timeline.
    Demo(shanraq_drill::DemoArgs),
    /// Measure failovers and switchovers on 127.0.0.1 and print figures.
    Bench(shanraq_drill::BenchArgs),
    /// Verify on 127.0.0.1: `restore` backs up a local cluster and restores it into a scratch one.
    Drill(shanraq_drill::DrillArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Product(command) => command.run(),
        Command::Demo(args) => shanraq_drill::demo(args),
        Command::Bench(args) => shanraq_drill::bench(args),
        Command::Drill(args) => shanraq_drill::drill(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
