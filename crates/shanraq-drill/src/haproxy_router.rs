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
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shanraq_ha::adapters::driver::Router;
use shanraq_ha::adapters::instance_client::{InstanceClient, InstanceClientError};
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

/// Why routing does not (yet) go to the new primary only.
#[derive(Debug, thiserror::Error)]
pub enum NotRouted {
    #[error("no instance manager for {primary}")]
    NoClient { primary: NodeId },
    #[error("{primary} does not answer /primary with 200 yet")]
    NotPrimaryYet { primary: NodeId },
    #[error("{0}")]
    Client(InstanceClientError),
    #[error("no HAProxy server is known for {primary}")]
    NoServer { primary: NodeId },
    #[error(transparent)]
    ServersState(#[from] ServersStateError),
    #[error("HAProxy backend {backend} has no server named {server} ({primary})")]
    UnknownServer {
        backend: String,
        server: String,
        primary: NodeId,
    },
    #[error("HAProxy backend {backend} does not send to {server} ({primary}) yet")]
    NotUp {
        backend: String,
        server: String,
        primary: NodeId,
    },
    #[error("HAProxy backend {backend} still sends to {}", .others.join(", "))]
    StillSendsTo {
        backend: String,
        others: Vec<String>,
    },
}

/// HAProxy's runtime API did not tell the servers' states.
#[derive(Debug, thiserror::Error)]
pub enum ServersStateError {
    #[error("HAProxy socket {}: {error}", .socket.display())]
    Socket {
        socket: PathBuf,
        error: std::io::Error,
    },
    #[error("HAProxy socket {} did not answer", .socket.display())]
    NoAnswer { socket: PathBuf },
    #[error("no header in HAProxy's answer: {answer}")]
    NoHeader { answer: String },
    #[error("HAProxy's server state has no {name} column")]
    NoColumn { name: String },
    #[error("short server line: {line}")]
    ShortLine { line: String },
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
    async fn check(&self, primary: &NodeId) -> Result<(), NotRouted> {
        let client = self
            .clients
            .get(primary)
            .ok_or_else(|| NotRouted::NoClient {
                primary: primary.clone(),
            })?;
        match client.is_primary().await {
            Ok(true) => {}
            Ok(false) => {
                return Err(NotRouted::NotPrimaryYet {
                    primary: primary.clone(),
                });
            }
            Err(error) => return Err(NotRouted::Client(error)),
        }
        let server = self
            .servers
            .get(primary)
            .ok_or_else(|| NotRouted::NoServer {
                primary: primary.clone(),
            })?;
        let servers = servers_state(&self.socket, &self.backend).await?;
        let target = servers
            .iter()
            .find(|state| state.name == *server)
            .ok_or_else(|| NotRouted::UnknownServer {
                backend: self.backend.clone(),
                server: server.clone(),
                primary: primary.clone(),
            })?;
        if !target.up {
            return Err(NotRouted::NotUp {
                backend: self.backend.clone(),
                server: server.clone(),
                primary: primary.clone(),
            });
        }
        let others: Vec<String> = servers
            .iter()
            .filter(|state| state.up && state.name != *server)
            .map(|state| state.name.clone())
            .collect();
        if !others.is_empty() {
            return Err(NotRouted::StillSendsTo {
                backend: self.backend.clone(),
                others,
            });
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
                        why: why.to_string(),
                    });
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }
}

/// Asks HAProxy's runtime API for the servers of `backend`.
pub async fn servers_state(
    socket: &Path,
    backend: &str,
) -> Result<Vec<ServerState>, ServersStateError> {
    let failed = |error| ServersStateError::Socket {
        socket: socket.to_path_buf(),
        error,
    };
    let ask = async {
        let mut stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(failed)?;
        stream
            .write_all(format!("show servers state {backend}\n").as_bytes())
            .await
            .map_err(failed)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.map_err(failed)?;
        Ok::<String, ServersStateError>(answer)
    };
    let answer = tokio::time::timeout(SOCKET_TIMEOUT, ask)
        .await
        .map_err(|_| ServersStateError::NoAnswer {
            socket: socket.to_path_buf(),
        })??;
    parse_servers_state(&answer)
}

/// Parses `show servers state`: a version line, a `# name name ...` header, then one line per
/// server; columns are found by header name.
pub fn parse_servers_state(answer: &str) -> Result<Vec<ServerState>, ServersStateError> {
    let mut lines = answer.lines().filter(|line| !line.trim().is_empty());
    let header = lines
        .find_map(|line| line.strip_prefix("# "))
        .ok_or_else(|| ServersStateError::NoHeader {
            answer: answer.to_owned(),
        })?;
    let columns: Vec<&str> = header.split_whitespace().collect();
    let name_at = column(&columns, "srv_name")?;
    let state_at = column(&columns, "srv_op_state")?;
    lines
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let short = || ServersStateError::ShortLine {
                line: line.to_owned(),
            };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let name = fields.get(name_at).ok_or_else(short)?;
            let state = fields.get(state_at).ok_or_else(short)?;
            Ok(ServerState {
                name: (*name).to_owned(),
                up: *state == "2",
            })
        })
        .collect()
}

fn column(columns: &[&str], name: &str) -> Result<usize, ServersStateError> {
    columns
        .iter()
        .position(|column| *column == name)
        .ok_or_else(|| ServersStateError::NoColumn {
            name: name.to_owned(),
        })
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
