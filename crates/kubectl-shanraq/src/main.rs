//! `kubectl-shanraq`: parses the command line, connects with the kubeconfig, and runs the
//! command; errors go to stderr with a non-zero exit.

use std::process::ExitCode;

use clap::Parser;
use kubectl_shanraq::cli::{Cli, Command};
use kubectl_shanraq::error::PluginError;

async fn client(cli: &Cli) -> Result<kube::Client, PluginError> {
    let options = kube::config::KubeConfigOptions {
        context: cli.context.clone(),
        ..Default::default()
    };
    let config = match kube::Config::from_kubeconfig(&options).await {
        Ok(config) => config,
        // Inside a Pod, without a kubeconfig: the ServiceAccount.
        Err(kubeconfig) => kube::Config::incluster().map_err(|incluster| {
            PluginError::Connect(format!(
                "no usable kubeconfig ({kubeconfig}) and not in a cluster ({incluster})"
            ))
        })?,
    };
    kube::Client::try_from(config).map_err(|e| PluginError::Connect(e.to_string()))
}

async fn run(cli: Cli) -> Result<(), PluginError> {
    let mut stdout = std::io::stdout().lock();
    if let Command::Completion { shell } = &cli.command {
        use std::io::Write;
        return stdout
            .write_all(&kubectl_shanraq::cli::completion(*shell))
            .map_err(|e| PluginError::Output(e.to_string()));
    }
    let client = client(&cli).await?;
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let mut stdin = std::io::stdin().lock();
    kubectl_shanraq::run(&client, &namespace, &cli.command, &mut stdin, &mut stdout).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kubectl shanraq: {error}");
            ExitCode::FAILURE
        }
    }
}
