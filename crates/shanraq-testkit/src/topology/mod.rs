//! `LocalTopology`: N instance managers (`shanraq instance postgres`), instance 0
//! bootstrapped as primary and the others as its replicas, plus one HAProxy whose `rw`
//! frontend follows whichever instance answers `/primary` and whose `ro` frontend spreads over
//! those answering `/replica`. They run either on 127.0.0.1 with random ports, or each in its
//! own network namespace of a `NetLab`, so that a test can partition them for real. Each
//! manager is spawned as the leader of its own process group and starts postgres in another
//! group of its own; `kill`, `stop` and `cont` signal both, so a test can crash or freeze a
//! whole instance. Everything is killed and removed on drop.

//!
//! The parts: `options` (what a test asks for), `launch` (making the directories, the managers'
//! flags and HAProxy, then starting them), `wait` (until the topology is formed and routed),
//! `access` (addresses, credentials and connection options), `http` (the managers' HTTP API),
//! `signals` (crashing, freezing and restarting an instance), `postmaster` (finding a data
//! dir's postgres processes in /proc) and `config` (the built-in pg_hba.conf and haproxy.cfg).

mod access;
mod config;
mod http;
mod launch;
mod options;
mod postmaster;
mod signals;
mod wait;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;

use crate::haproxy::HaproxyProcess;
use crate::netns::NetLab;

pub use options::{HaproxyConfigFn, HaproxyLayout, MemberInfo, Network, TopologyOptions};
pub use postmaster::signal_postgres_of;

const START_TIMEOUT: Duration = Duration::from_secs(120);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Ports inside the namespaces (each node has its own port space).
const NS_PG_PORT: u16 = 5432;
const NS_HTTP_PORT: u16 = 8000;
const NS_RW_PORT: u16 = 5432;
const NS_RO_PORT: u16 = 5433;

/// The lab nodes besides the instances `pg-0`..`pg-{n-1}`.
pub const PROXY_NODE: &str = "proxy";
pub const ENGINE_NODE: &str = "engine";
pub const CLIENT_NODE: &str = "client";

#[derive(Debug)]
struct Member {
    info: MemberInfo,
    args: Vec<String>,
    env: RedactedEnv,
    child: Option<Child>,
}

/// Environment that may hold secrets: `Debug` shows the names only.
struct RedactedEnv(Vec<(String, String)>);

impl std::fmt::Debug for RedactedEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

/// The application database and owner every topology bootstraps.
pub const APP_DATABASE: &str = "app";
pub const APP_OWNER: &str = "app";

/// A running topology.
///
/// In `Network::Namespaces` mode every async method (`start_in` included) must be awaited
/// from a task running on `lab.runtime("client")`: HTTP and SQL connections are opened by the
/// awaiting thread, and only the client namespace reaches the lab's addresses. The usual shape:
///
/// ```text
/// let lab = Arc::new(LocalTopology::create_lab(3)?);
/// let client = lab.runtime("client")?;
/// client.block_on(client.spawn(async move {
///     let topology = LocalTopology::start_in(lab, binary, options).await?;
///     // ... the test, then drop the topology inside the task ...
/// }))
/// ```
#[derive(Debug)]
pub struct LocalTopology {
    binary: PathBuf,
    members: Vec<Member>,
    haproxy: HaproxyProcess,
    rw_bind: SocketAddr,
    ro_bind: SocketAddr,
    haproxy_socket: PathBuf,
    token: String,
    superuser_password: String,
    replication_password: String,
    app_password: String,
    http: reqwest::Client,
    // Fields drop in order, after `Drop::drop` has killed the managers: HAProxy, then the lab
    // (no process is left in its namespaces), then the data dirs.
    lab: Option<Arc<NetLab>>,
    root: TempDir,
}
