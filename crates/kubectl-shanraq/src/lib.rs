//! `kubectl shanraq`: a ShanraqCluster's state in one table, and the operator's switchover and
//! failover drill on request. The library holds everything but process start-up, so the
//! commands run in tests against a mocked API server.

pub mod actions;
pub mod cli;
pub mod error;
pub mod report;

use std::io::{BufRead, Write};

use cli::{Command, Format};
use error::{ClusterRef, PluginError};

/// Runs one command (other than `completion`) against `client` in `namespace`.
pub async fn run(
    client: &kube::Client,
    namespace: &str,
    command: &Command,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), PluginError> {
    let at = |name: &str| ClusterRef {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    let output = |e: std::io::Error| PluginError::Output(e.to_string());
    match command {
        Command::Status {
            name,
            output: format,
        } => {
            let at = at(name);
            let cluster = actions::get(client, &at).await?;
            let pods = actions::pods(client, &at).await?;
            let report = report::build(&cluster, &pods);
            let text = match format {
                Format::Table => report::text(&report),
                Format::Json => {
                    let mut json = serde_json::to_string_pretty(&report)
                        .map_err(|e| PluginError::Output(e.to_string()))?;
                    json.push('\n');
                    json
                }
            };
            out.write_all(text.as_bytes()).map_err(output)
        }
        Command::Switchover {
            name,
            to,
            no_wait,
            timeout,
        } => {
            let waiting = Command::waiting(*no_wait, *timeout);
            actions::switchover(client, &at(name), to.as_deref(), waiting, out).await
        }
        Command::Drill {
            name,
            yes,
            no_wait,
            timeout,
        } => {
            let request = jiff::Timestamp::now().to_string();
            actions::drill(
                client,
                &at(name),
                *yes,
                Command::waiting(*no_wait, *timeout),
                &request,
                input,
                out,
            )
            .await
            .map(|_| ())
        }
        Command::Completion { shell } => out.write_all(&cli::completion(*shell)).map_err(output),
    }
}
