//! The drill's router: HAProxy's primary backend (`pg-rw` as rendered) follows
//! `httpchk GET /primary`, so the engine's `Route` is confirmed, not performed. It is confirmed
//! once the new primary answers `/primary` with 200 AND HAProxy's runtime API
//! (`show servers state`) reports that member's server UP and every other server of the
//! backend not UP, so that "routed" in the timeline means a new connection through the rw
//! frontend reaches the new primary and nothing else. Servers carry the rendered names (the
//! pods'), not the members', hence the map. The router polls for a bounded time instead of
//! failing at once: HAProxy checks every probe period, and an early failure would cost the
//! engine a whole probe period of back-off.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use shanraq_ha::adapters::driver::Router;
use shanraq_ha::adapters::instance_client::InstanceClient;
use shanraq_ha::adapters::route::RouteError;
use shanraq_ha::postgres::{Member, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const POLL: Duration = Duration::from_millis(10);
const SOCKET_TIMEOUT: Duration = Duration::from_millis(500);

/// One server line of `show servers state BACKEND`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerState {
    pub name: String,
    /// `srv_op_state` 2 (SRV_ST_RUNNING): HAProxy sends new connections to it.
    pub up: bool,
}

/// Confirms routing through the new primary's `/primary` and HAProxy's runtime API.
#[derive(Clone, Debug)]
pub struct HaproxyRouter {
    clients: BTreeMap<NodeId, InstanceClient>,
    /// The HAProxy server name of each member.
    servers: BTreeMap<NodeId, String>,
    socket: PathBuf,
    backend: String,
    timeout: Duration,
}

impl HaproxyRouter {
    /// `socket` is HAProxy's admin socket, `backend` the backend routing to the primary,
    /// `servers` its server name for each member; each `route` waits at most `timeout`.
    pub fn new(
        clients: BTreeMap<NodeId, InstanceClient>,
        servers: BTreeMap<NodeId, String>,
        socket: PathBuf,
        backend: impl Into<String>,
        timeout: Duration,
    ) -> HaproxyRouter {
        HaproxyRouter {
            clients,
            servers,
            socket,
            backend: backend.into(),
            timeout,
        }
    }

    /// Whether routing goes to `primary` only, and if not, why.
    async fn check(&self, primary: &NodeId) -> Result<(), String> {
        let client = self
            .clients
            .get(primary)
            .ok_or_else(|| format!("no instance manager for {primary}"))?;
        match client.is_primary().await {
            Ok(true) => {}
            Ok(false) => return Err(format!("{primary} does not answer /primary with 200 yet")),
            Err(error) => return Err(error.to_string()),
        }
        let server = self
            .servers
            .get(primary)
            .ok_or_else(|| format!("no HAProxy server is known for {primary}"))?;
        let servers = servers_state(&self.socket, &self.backend).await?;
        let target = servers
            .iter()
            .find(|state| state.name == *server)
            .ok_or_else(|| {
                format!(
                    "HAProxy backend {} has no server named {server} ({primary})",
                    self.backend
                )
            })?;
        if !target.up {
            return Err(format!(
                "HAProxy backend {} does not send to {server} ({primary}) yet",
                self.backend
            ));
        }
        let others: Vec<&str> = servers
            .iter()
            .filter(|state| state.up && state.name != *server)
            .map(|state| state.name.as_str())
            .collect();
        if !others.is_empty() {
            return Err(format!(
                "HAProxy backend {} still sends to {}",
                self.backend,
                others.join(", ")
            ));
        }
        Ok(())
    }
}

impl Router for HaproxyRouter {
    async fn route(&self, primary: &Member, epoch: u64) -> Result<(), RouteError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let outcome = self.check(&primary.name).await;
            match outcome {
                Ok(()) => return Ok(()),
                Err(why) if Instant::now() >= deadline => {
                    return Err(RouteError::Timeout {
                        member: primary.name.clone(),
                        epoch,
                        within: self.timeout,
                        why,
                    });
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }
}

/// Asks HAProxy's runtime API for the servers of `backend`.
pub async fn servers_state(
    socket: &std::path::Path,
    backend: &str,
) -> Result<Vec<ServerState>, String> {
    let ask = async {
        let mut stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|error| format!("HAProxy socket {}: {error}", socket.display()))?;
        stream
            .write_all(format!("show servers state {backend}\n").as_bytes())
            .await
            .map_err(|error| format!("HAProxy socket {}: {error}", socket.display()))?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .await
            .map_err(|error| format!("HAProxy socket {}: {error}", socket.display()))?;
        Ok::<String, String>(answer)
    };
    let answer = tokio::time::timeout(SOCKET_TIMEOUT, ask)
        .await
        .map_err(|_| format!("HAProxy socket {} did not answer", socket.display()))??;
    parse_servers_state(&answer)
}

/// Parses `show servers state`: a version line, a `# name name ...` header, then one line per
/// server; columns are found by header name.
pub fn parse_servers_state(answer: &str) -> Result<Vec<ServerState>, String> {
    let mut lines = answer.lines().filter(|line| !line.trim().is_empty());
    let header = lines
        .find_map(|line| line.strip_prefix("# "))
        .ok_or_else(|| format!("no header in HAProxy's answer: {answer}"))?;
    let columns: Vec<&str> = header.split_whitespace().collect();
    let name_at = column(&columns, "srv_name")?;
    let state_at = column(&columns, "srv_op_state")?;
    lines
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let name = fields
                .get(name_at)
                .ok_or_else(|| format!("short server line: {line}"))?;
            let state = fields
                .get(state_at)
                .ok_or_else(|| format!("short server line: {line}"))?;
            Ok(ServerState {
                name: (*name).to_owned(),
                up: *state == "2",
            })
        })
        .collect()
}

fn column(columns: &[&str], name: &str) -> Result<usize, String> {
    columns
        .iter()
        .position(|column| *column == name)
        .ok_or_else(|| format!("HAProxy's server state has no {name} column"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_states_are_read_by_column_name() {
        let answer = "1\n\
            # be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight\n\
            3 rw 1 pg-0 127.0.0.1 0 0 1\n\
            3 rw 2 pg-1 127.0.0.1 2 0 1\n\n";
        let servers = parse_servers_state(answer).expect("parses");
        assert_eq!(
            servers,
            vec![
                ServerState {
                    name: "pg-0".into(),
                    up: false
                },
                ServerState {
                    name: "pg-1".into(),
                    up: true
                },
            ]
        );
        assert!(parse_servers_state("Unknown command\n").is_err());
    }
}
