//! `LocalTopology`: N instance managers (`shanraq instance postgres`), instance 0
//! bootstrapped as primary and the others as its replicas, plus one HAProxy whose `rw`
//! frontend follows whichever instance answers `/primary` and whose `ro` frontend spreads over
//! those answering `/replica`. They run either on 127.0.0.1 with random ports, or each in its
//! own network namespace of a `NetLab`, so that a test can partition them for real. Each
//! manager is spawned as the leader of its own process group and starts postgres in another
//! group of its own; `kill`, `stop` and `cont` signal both, so a test can crash or freeze a
//! whole instance. Everything is killed and removed on drop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use tempfile::TempDir;

use crate::haproxy::HaproxyProcess;
use crate::netns::{LAB_PREFIX_LEN, LAB_SUBNET, NetLab};
use crate::process::{kill_and_reap, signal_group, spawn_logged, tail};
use crate::secrets::random_secret;
use crate::user::PostgresUser;
use crate::{TestkitError, binaries, free_port};

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

/// Where the processes of a topology run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// Everything on 127.0.0.1 with random ports (`LocalTopology::start`).
    #[default]
    Loopback,
    /// Each instance manager in the namespace of lab node `pg-i` (postgres on 0.0.0.0:5432,
    /// the manager on `<addr>:8000`), HAProxy in `proxy` (rw on 5432, ro on 5433), the test in
    /// `client` (`LocalTopology::start_in`).
    Namespaces,
}

/// Where HAProxy must listen and what it fronts, for a custom haproxy.cfg.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaproxyLayout {
    pub members: Vec<MemberInfo>,
    /// The `rw` frontend's address (`rw_options` connects there).
    pub rw_bind: SocketAddr,
    /// The `ro` frontend's address (`ro_options` connects there).
    pub ro_bind: SocketAddr,
    /// The admin socket `haproxy_socket` returns.
    pub stats_socket: PathBuf,
}

/// Makes haproxy.cfg from the layout; the config must bind `rw_bind` and `ro_bind` (the
/// topology waits until both accept).
pub type HaproxyConfigFn = Arc<dyn Fn(&HaproxyLayout) -> String + Send + Sync>;

/// How to build a topology.
#[derive(Clone)]
pub struct TopologyOptions {
    /// Number of PostgreSQL instances (at least 1).
    pub instances: usize,
    /// `synchronous_standby_names` for the primary (`ANY 1 (*)` by default); `None` for
    /// asynchronous replication.
    pub synchronous: Option<String>,
    /// A postgresql.conf fragment given to every instance with `--config-file`.
    pub extra_config: Option<String>,
    /// Loopback (the default) or namespaces of a `NetLab`.
    pub network: Network,
    /// HAProxy's config instead of the built-in one.
    pub haproxy_config: Option<HaproxyConfigFn>,
    /// The primary's lease (`--lease-ms`). `None` turns it off: without an HA engine nobody
    /// renews it, and a primary would fence itself.
    pub lease: Option<Duration>,
    /// More flags for every instance manager (for example the backup flags).
    pub extra_args: Vec<String>,
    /// More environment for every instance manager (for example pgBackRest's key pair).
    pub env: Vec<(String, String)>,
    /// `--bootstrap` of instance 0 instead of `primary` (for example `recovery`).
    pub first_bootstrap: Option<String>,
}

impl std::fmt::Debug for TopologyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyOptions")
            .field("instances", &self.instances)
            .field("synchronous", &self.synchronous)
            .field("extra_config", &self.extra_config)
            .field("network", &self.network)
            .field("lease", &self.lease)
            .field("extra_args", &self.extra_args)
            .field(
                "env",
                &self.env.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("first_bootstrap", &self.first_bootstrap)
            .field(
                "haproxy_config",
                &self.haproxy_config.as_ref().map(|_| "custom"),
            )
            .finish()
    }
}

impl Default for TopologyOptions {
    fn default() -> TopologyOptions {
        TopologyOptions {
            instances: 3,
            synchronous: Some("ANY 1 (*)".to_string()),
            extra_config: None,
            network: Network::Loopback,
            haproxy_config: None,
            lease: None,
            extra_args: Vec::new(),
            env: Vec::new(),
            first_bootstrap: None,
        }
    }
}

impl TopologyOptions {
    pub fn asynchronous(instances: usize) -> TopologyOptions {
        TopologyOptions {
            instances,
            synchronous: None,
            ..TopologyOptions::default()
        }
    }
}

/// What a test needs to reach one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Instance name, also its `application_name` (and its lab node in namespaces).
    pub name: String,
    /// Address of its postgres and manager: 127.0.0.1, or its lab address.
    pub host: String,
    /// `http://HOST:PORT` of its manager.
    pub http_url: String,
    pub http_port: u16,
    pub pg_port: u16,
    pub data_dir: PathBuf,
    /// The manager's (and postgres') output.
    pub log_path: PathBuf,
}

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

impl LocalTopology {
    /// The lab nodes a topology of `instances` instances runs on: `pg-0`..`pg-{n-1}`,
    /// `proxy`, `engine` (for an HA engine the test runs) and `client` (for the test itself).
    pub fn lab_nodes(instances: usize) -> Vec<String> {
        (0..instances.max(1))
            .map(|index| format!("pg-{index}"))
            .chain([PROXY_NODE, ENGINE_NODE, CLIENT_NODE].map(String::from))
            .collect()
    }

    /// A `NetLab` with the nodes of `lab_nodes(instances)`.
    pub fn create_lab(instances: usize) -> Result<NetLab, TestkitError> {
        let nodes = LocalTopology::lab_nodes(instances);
        let names: Vec<&str> = nodes.iter().map(String::as_str).collect();
        NetLab::create(&names)
    }

    /// Starts a `Network::Loopback` topology: the managers and HAProxy on 127.0.0.1. Waits
    /// until instance 0 is the routed primary and every replica streams from it.
    pub async fn start(
        shanraq_binary: &Path,
        options: TopologyOptions,
    ) -> Result<LocalTopology, TestkitError> {
        if options.network != Network::Loopback {
            return Err(TestkitError::Lab {
                lab: "(none)".to_string(),
                problem: "Network::Namespaces needs a lab: create it with \
                          LocalTopology::create_lab and call LocalTopology::start_in from a \
                          task on lab.runtime(\"client\")"
                    .to_string(),
            });
        }
        LocalTopology::launch(None, shanraq_binary, options).await
    }

    /// Starts a `Network::Namespaces` topology in `lab` (made by `create_lab`); must be
    /// awaited from a task on `lab.runtime("client")`. Waits as `start` does.
    pub async fn start_in(
        lab: Arc<NetLab>,
        shanraq_binary: &Path,
        options: TopologyOptions,
    ) -> Result<LocalTopology, TestkitError> {
        let problem = |problem: String| TestkitError::Lab {
            lab: lab
                .namespaces()
                .first()
                .copied()
                .unwrap_or_default()
                .to_string(),
            problem,
        };
        if options.network != Network::Namespaces {
            return Err(problem(
                "start_in runs a Network::Namespaces topology; set options.network".to_string(),
            ));
        }
        for node in LocalTopology::lab_nodes(options.instances) {
            lab.addr(&node)?;
        }
        if !lab.is_current(CLIENT_NODE)? {
            return Err(problem(
                "start_in must be awaited from a task on lab.runtime(\"client\")".to_string(),
            ));
        }
        LocalTopology::launch(Some(lab), shanraq_binary, options).await
    }

    async fn launch(
        lab: Option<Arc<NetLab>>,
        shanraq_binary: &Path,
        options: TopologyOptions,
    ) -> Result<LocalTopology, TestkitError> {
        binaries::pg_bin_dir()?;
        binaries::haproxy()?;
        if !shanraq_binary.is_file() {
            return Err(TestkitError::io(
                format!("shanraq binary {}", shanraq_binary.display()),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let instances = options.instances.max(1);
        let user = PostgresUser::lookup()?;
        let root = tempfile::Builder::new()
            .prefix("shanraq-topology-")
            .tempdir()
            .map_err(|source| TestkitError::io("creating topology dir", source))?;
        user.own(root.path())?;
        let config_file = match &options.extra_config {
            Some(fragment) => {
                let path = root.path().join("extra.conf");
                std::fs::write(&path, fragment)
                    .map_err(|source| TestkitError::io("writing extra.conf", source))?;
                user.own(&path)?;
                Some(path)
            }
            None => None,
        };
        let hba_file = match &lab {
            Some(_) => {
                let path = root.path().join("pg_hba.conf");
                std::fs::write(&path, lab_hba())
                    .map_err(|source| TestkitError::io("writing pg_hba.conf", source))?;
                user.own(&path)?;
                Some(path)
            }
            None => None,
        };
        let mut infos = Vec::with_capacity(instances);
        // pgBackRest's TLS server of each member (used when the cluster has backups): on its
        // own address, at the default port in the lab, at a free one on the shared loopback.
        let mut tls_ports = Vec::with_capacity(instances);
        for index in 0..instances {
            tls_ports.push(match &lab {
                Some(_) => None,
                None => Some(free_port()?),
            });
            let name = format!("pg-{index}");
            let dir = root.path().join(&name);
            std::fs::create_dir(&dir).map_err(|source| {
                TestkitError::io(format!("creating {}", dir.display()), source)
            })?;
            user.own(&dir)?;
            let (host, http_port, pg_port) = match &lab {
                Some(lab) => (lab.addr(&name)?.to_string(), NS_HTTP_PORT, NS_PG_PORT),
                None => (Ipv4Addr::LOCALHOST.to_string(), free_port()?, free_port()?),
            };
            infos.push(MemberInfo {
                http_url: format!("http://{host}:{http_port}"),
                host,
                http_port,
                pg_port,
                data_dir: dir.join("data"),
                log_path: dir.join("manager.log"),
                name,
            });
        }
        let (primary_host, primary_port) = (infos[0].host.clone(), infos[0].pg_port);
        let members: Vec<Member> = infos
            .into_iter()
            .enumerate()
            .map(|(index, info)| {
                let mut args = vec![
                    "instance".to_string(),
                    "postgres".to_string(),
                    format!("--name={}", info.name),
                    format!("--data-dir={}", info.data_dir.display()),
                    format!("--pg-port={}", info.pg_port),
                    format!("--http-addr={}:{}", info.host, info.http_port),
                    format!("--upstream-host={primary_host}"),
                    format!("--upstream-port={primary_port}"),
                    "--initial-epoch=1".to_string(),
                    format!(
                        "--lease-ms={}",
                        options.lease.map_or(0, |lease| lease.as_millis())
                    ),
                    format!(
                        "--bootstrap={}",
                        match (index, &options.first_bootstrap) {
                            (0, Some(mode)) => mode.as_str(),
                            (0, None) => "primary",
                            _ => "replica",
                        }
                    ),
                    format!(
                        "--synchronous={}",
                        options.synchronous.as_deref().unwrap_or("")
                    ),
                ];
                if let Some(path) = &config_file {
                    args.push(format!("--config-file={}", path.display()));
                }
                if let Some(path) = &hba_file {
                    args.push("--pg-listen=0.0.0.0".to_string());
                    args.push(format!("--hba-file={}", path.display()));
                }
                args.push(format!("--backup-tls-address={}", info.host));
                if let Some(port) = tls_ports[index] {
                    args.push(format!("--backup-tls-port={port}"));
                }
                args.extend(options.extra_args.iter().cloned());
                Member {
                    info,
                    args,
                    env: RedactedEnv(options.env.clone()),
                    child: None,
                }
            })
            .collect();
        let (rw_bind, ro_bind) = match &lab {
            Some(lab) => {
                let proxy = IpAddr::V4(lab.addr(PROXY_NODE)?);
                (
                    SocketAddr::new(proxy, NS_RW_PORT),
                    SocketAddr::new(proxy, NS_RO_PORT),
                )
            }
            None => (
                SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)),
                SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)),
            ),
        };
        let haproxy_socket = root.path().join("haproxy.sock");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|error| {
                TestkitError::io("building HTTP client", std::io::Error::other(error))
            })?;
        let mut members: Vec<Member> = members;
        let token = random_secret(32);
        let superuser_password = random_secret(24);
        let replication_password = random_secret(24);
        let app_password = random_secret(24);
        let layout = HaproxyLayout {
            members: members.iter().map(|member| member.info.clone()).collect(),
            rw_bind,
            ro_bind,
            stats_socket: haproxy_socket.clone(),
        };
        let config = match &options.haproxy_config {
            Some(make) => make(&layout),
            None => haproxy_config(&layout),
        };
        let launch_haproxy = |haproxy: &Path| match &lab {
            Some(lab) => lab.command(PROXY_NODE, haproxy),
            None => Ok(Command::new(haproxy)),
        };
        let haproxy =
            HaproxyProcess::start_with(&config, launch_haproxy, &[rw_bind, ro_bind]).await?;
        let mut topology = LocalTopology {
            binary: shanraq_binary.to_path_buf(),
            members: Vec::new(),
            haproxy,
            rw_bind,
            ro_bind,
            haproxy_socket,
            token,
            superuser_password,
            replication_password,
            app_password,
            http,
            lab,
            root,
        };
        topology.members = std::mem::take(&mut members);
        for index in 0..topology.members.len() {
            topology.spawn(index)?;
        }
        topology
            .wait_until_formed(options.synchronous.is_some())
            .await?;
        Ok(topology)
    }

    /// The lab the topology runs in (`Network::Namespaces`).
    pub fn lab(&self) -> Option<&NetLab> {
        self.lab.as_deref()
    }

    fn spawn(&mut self, index: usize) -> Result<(), TestkitError> {
        let len = self.members.len();
        let member = self
            .members
            .get_mut(index)
            .ok_or(TestkitError::NoSuchMember { index, len })?;
        let mut command = match &self.lab {
            Some(lab) => lab.command(&member.info.name, &self.binary)?,
            None => Command::new(&self.binary),
        };
        command
            .args(&member.args)
            .envs(member.env.0.iter().map(|(name, value)| (name, value)))
            .env("SHANRAQ_INSTANCE_TOKEN", &self.token)
            .env("SHANRAQ_SUPERUSER_PASSWORD", &self.superuser_password)
            .env("SHANRAQ_REPLICATION_PASSWORD", &self.replication_password)
            .env("SHANRAQ_APP_DATABASE", APP_DATABASE)
            .env("SHANRAQ_APP_OWNER", APP_OWNER)
            .env("SHANRAQ_APP_PASSWORD", &self.app_password)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string()),
            );
        let child = spawn_logged(&mut command, &member.info.log_path, &member.info.name)?;
        member.child = Some(child);
        Ok(())
    }

    async fn wait_until_formed(&mut self, synchronous: bool) -> Result<(), TestkitError> {
        let deadline = Instant::now() + START_TIMEOUT;
        self.wait_http(0, "/primary", deadline).await?;
        for index in 1..self.members.len() {
            self.wait_http(index, "/replica", deadline).await?;
        }
        let replicas = self.members.len() - 1;
        loop {
            let status = self.status(0).await?;
            let streaming = status["replication"]
                .as_array()
                .map(|peers| {
                    peers
                        .iter()
                        .filter(|peer| peer["state"] == "streaming")
                        .count()
                })
                .unwrap_or(0);
            if streaming >= replicas
                && (!synchronous || replicas == 0 || status["synchronous_standby_names"] != "")
            {
                break;
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready(0, format!("replicas never all streamed: {status}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.wait_routed(0, deadline).await
    }

    fn not_ready(&self, index: usize, detail: String) -> TestkitError {
        let logs: Vec<String> = self
            .members
            .iter()
            .map(|member| {
                format!(
                    "--- {} ---\n{}",
                    member.info.name,
                    tail(&member.info.log_path, 25)
                )
            })
            .collect();
        TestkitError::NotReady {
            what: format!("topology member {index}"),
            seconds: START_TIMEOUT.as_secs(),
            detail: format!("{detail}\n{}", logs.join("\n")),
        }
    }

    /// Waits until GET `path` on member `index` answers 200.
    async fn wait_http(
        &mut self,
        index: usize,
        path: &str,
        deadline: Instant,
    ) -> Result<(), TestkitError> {
        loop {
            if let Some(child) = self.members[index].child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(TestkitError::Exited {
                    what: format!("instance manager {}", self.members[index].info.name),
                    status: status.to_string(),
                    log: tail(&self.members[index].info.log_path, 40),
                });
            }
            if self.get(index, path).await.ok() == Some(200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready(index, format!("GET {path} never answered 200")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a connection through the `rw` frontend lands on member `index`.
    pub async fn wait_routed(&self, index: usize, deadline: Instant) -> Result<(), TestkitError> {
        self.member(index)?;
        loop {
            if let Ok(Some(routed)) = self.rw_backend().await
                && routed == index
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready(
                    index,
                    format!(
                        "HAProxy rw never routed to it; haproxy log:\n{}",
                        self.haproxy.log()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The `port` setting of whichever server a fresh `rw` connection reaches.
    pub async fn rw_backend_port(&self) -> Result<u16, sqlx::Error> {
        Ok(self.rw_backend_addr().await?.1)
    }

    /// The member a fresh `rw` connection reaches (by the address and port the server saw the
    /// connection arrive on); `None` when that is no member.
    pub async fn rw_backend(&self) -> Result<Option<usize>, sqlx::Error> {
        let (host, port) = self.rw_backend_addr().await?;
        Ok(self
            .members
            .iter()
            .position(|member| member.info.host == host && member.info.pg_port == port))
    }

    async fn rw_backend_addr(&self) -> Result<(String, u16), sqlx::Error> {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect_with(&self.rw_options()).await?;
        let (host, port): (String, String) =
            sqlx::query_as("SELECT host(inet_server_addr()), current_setting('port')")
                .fetch_one(&mut connection)
                .await?;
        let _ = connection.close().await;
        let port = port
            .parse::<u16>()
            .map_err(|error| sqlx::Error::Protocol(format!("port {port}: {error}")))?;
        Ok((host, port))
    }

    fn options(&self, host: &str, port: u16) -> sqlx::postgres::PgConnectOptions {
        sqlx::postgres::PgConnectOptions::new_without_pgpass()
            .host(host)
            .port(port)
            .username("postgres")
            .password(&self.superuser_password)
            .database("postgres")
            .ssl_mode(sqlx::postgres::PgSslMode::Disable)
    }

    /// Superuser connection options through HAProxy's `rw` frontend.
    pub fn rw_options(&self) -> sqlx::postgres::PgConnectOptions {
        self.options(&self.rw_bind.ip().to_string(), self.rw_bind.port())
    }

    /// Superuser connection options through HAProxy's `ro` frontend.
    pub fn ro_options(&self) -> sqlx::postgres::PgConnectOptions {
        self.options(&self.ro_bind.ip().to_string(), self.ro_bind.port())
    }

    /// Superuser connection options straight to member `index`.
    pub fn member_options(
        &self,
        index: usize,
    ) -> Result<sqlx::postgres::PgConnectOptions, TestkitError> {
        let member = self.member(index)?;
        Ok(self.options(&member.host, member.pg_port))
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn member(&self, index: usize) -> Result<&MemberInfo, TestkitError> {
        let len = self.members.len();
        self.members
            .get(index)
            .map(|member| &member.info)
            .ok_or(TestkitError::NoSuchMember { index, len })
    }

    pub fn members(&self) -> Vec<MemberInfo> {
        self.members
            .iter()
            .map(|member| member.info.clone())
            .collect()
    }

    pub fn rw_port(&self) -> u16 {
        self.rw_bind.port()
    }

    pub fn ro_port(&self) -> u16 {
        self.ro_bind.port()
    }

    /// HAProxy's `rw` frontend.
    pub fn rw_addr(&self) -> SocketAddr {
        self.rw_bind
    }

    /// HAProxy's `ro` frontend.
    pub fn ro_addr(&self) -> SocketAddr {
        self.ro_bind
    }

    /// HAProxy's admin socket (runtime API).
    pub fn haproxy_socket(&self) -> &Path {
        &self.haproxy_socket
    }

    pub fn haproxy_log(&self) -> String {
        self.haproxy.log()
    }

    /// Bearer token the managers accept for commands.
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn superuser_password(&self) -> &str {
        &self.superuser_password
    }

    pub fn replication_password(&self) -> &str {
        &self.replication_password
    }

    /// Connection options of the application owner to the application database, through
    /// HAProxy's `rw` frontend: what an application uses.
    pub fn app_rw_options(&self) -> sqlx::postgres::PgConnectOptions {
        self.rw_options()
            .username(APP_OWNER)
            .password(&self.app_password)
            .database(APP_DATABASE)
    }

    /// The topology's own directory (holds each member's dir).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The manager log of member `index`.
    pub fn log(&self, index: usize) -> String {
        self.members
            .get(index)
            .and_then(|member| std::fs::read_to_string(&member.info.log_path).ok())
            .unwrap_or_default()
    }

    /// GET `path` on member `index`; the HTTP status code.
    pub async fn get(&self, index: usize, path: &str) -> Result<u16, TestkitError> {
        let url = format!("{}{path}", self.member(index)?.http_url);
        let response = self.http.get(&url).send().await.map_err(|error| {
            TestkitError::io(format!("GET {url}"), std::io::Error::other(error))
        })?;
        Ok(response.status().as_u16())
    }

    /// GET `/status` of member `index` as JSON.
    pub async fn status(&self, index: usize) -> Result<Value, TestkitError> {
        let url = format!("{}/status", self.member(index)?.http_url);
        let response = self.http.get(&url).send().await.map_err(|error| {
            TestkitError::io(format!("GET {url}"), std::io::Error::other(error))
        })?;
        response
            .json()
            .await
            .map_err(|error| TestkitError::io(format!("GET {url}"), std::io::Error::other(error)))
    }

    /// POST a command (`/promote`, `/fence`, `/demote`, `/repoint`) with the topology's token.
    pub async fn command(
        &self,
        index: usize,
        path: &str,
        body: &Value,
    ) -> Result<(u16, Value), TestkitError> {
        self.command_with_token(index, path, body, Some(&self.token))
            .await
    }

    /// POST a command with a chosen token (or none), to test authentication.
    pub async fn command_with_token(
        &self,
        index: usize,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<(u16, Value), TestkitError> {
        let url = format!("{}{path}", self.member(index)?.http_url);
        let mut request = self.http.post(&url).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|error| {
            TestkitError::io(format!("POST {url}"), std::io::Error::other(error))
        })?;
        let code = response.status().as_u16();
        let value = response.json().await.unwrap_or(Value::Null);
        Ok((code, value))
    }

    /// Waits until GET `path` on member `index` answers `code`; false on timeout.
    pub async fn wait_for_code(
        &self,
        index: usize,
        path: &str,
        code: u16,
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.get(index, path).await.ok() == Some(code) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Signals postgres of member `index`: each postmaster's group first (so it forks nothing
    /// new), then each of its children, which PostgreSQL makes leaders of groups of their own
    /// (`setsid` in `InitPostmasterChild`); signalling the postmaster's group alone would
    /// leave backends and WAL senders running. Postmasters are found through `postmaster.pid`
    /// and, for one started so recently that it has not written it yet, through their
    /// command line. False when none was found.
    fn signal_postgres(&self, index: usize, signal: Signal) -> bool {
        let Some(member) = self.members.get(index) else {
            return false;
        };
        signal_postgres_of(&member.info.data_dir, signal)
    }

    /// SIGKILL the whole instance: its manager's group, then the postmaster and every child.
    pub fn kill(&mut self, index: usize) -> Result<(), TestkitError> {
        let len = self.members.len();
        if index >= len {
            return Err(TestkitError::NoSuchMember { index, len });
        }
        // The manager first, so that it cannot react to postgres dying or start another; then
        // postgres with every child, as a host crash would. A second pass catches a postmaster
        // the manager spawned just before it died.
        if let Some(mut child) = self.members[index].child.take() {
            kill_and_reap(&mut child);
        }
        self.signal_postgres(index, Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(20));
        self.signal_postgres(index, Signal::SIGKILL);
        Ok(())
    }

    /// SIGKILL only postgres of member `index` (its whole group), leaving the manager alive;
    /// false when no running postmaster was found.
    pub fn kill_postgres(&self, index: usize) -> Result<bool, TestkitError> {
        self.member(index)?;
        Ok(self.signal_postgres(index, Signal::SIGKILL))
    }

    /// SIGTERM the manager (it stops postgres with a fast shutdown) and wait for it to exit.
    pub async fn shutdown(&mut self, index: usize) -> Result<(), TestkitError> {
        let len = self.members.len();
        let member = self
            .members
            .get_mut(index)
            .ok_or(TestkitError::NoSuchMember { index, len })?;
        let Some(mut child) = member.child.take() else {
            return Ok(());
        };
        signal_group(child.id(), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                kill_and_reap(&mut child);
                return Err(TestkitError::NotReady {
                    what: format!("shutdown of {}", member.info.name),
                    seconds: 60,
                    detail: tail(&member.info.log_path, 30),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGSTOP the whole instance (a frozen host: sockets stay open, nothing answers).
    pub fn stop(&self, index: usize) -> Result<(), TestkitError> {
        self.member(index)?;
        if let Some(child) = self.members[index].child.as_ref() {
            signal_group(child.id(), Signal::SIGSTOP);
        }
        self.signal_postgres(index, Signal::SIGSTOP);
        Ok(())
    }

    /// SIGSTOP of member `index`'s instance manager alone: its postgres keeps running and
    /// keeps serving the clients and standbys connected to it (a hung manager).
    pub fn freeze_manager(&self, index: usize) -> Result<(), TestkitError> {
        self.member(index)?;
        if let Some(child) = self.members[index].child.as_ref() {
            signal_group(child.id(), Signal::SIGSTOP);
        }
        Ok(())
    }

    /// SIGCONT after `freeze_manager`.
    pub fn thaw_manager(&self, index: usize) -> Result<(), TestkitError> {
        self.member(index)?;
        if let Some(child) = self.members[index].child.as_ref() {
            signal_group(child.id(), Signal::SIGCONT);
        }
        Ok(())
    }

    /// SIGCONT after `stop`.
    pub fn cont(&self, index: usize) -> Result<(), TestkitError> {
        self.member(index)?;
        self.signal_postgres(index, Signal::SIGCONT);
        if let Some(child) = self.members[index].child.as_ref() {
            signal_group(child.id(), Signal::SIGCONT);
        }
        Ok(())
    }

    /// Starts the manager of member `index` again on the same data dir (after `kill` or
    /// `shutdown`; a running manager is killed first).
    pub fn restart(&mut self, index: usize) -> Result<(), TestkitError> {
        if self
            .members
            .get(index)
            .is_some_and(|member| member.child.is_some())
        {
            self.kill(index)?;
        }
        self.spawn(index)
    }

    /// True while the manager process of member `index` runs.
    pub fn is_running(&mut self, index: usize) -> bool {
        self.members
            .get_mut(index)
            .and_then(|member| member.child.as_mut())
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

impl Drop for LocalTopology {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            let _ = self.cont(index);
            let _ = self.kill(index);
        }
    }
}

/// Signals every postgres serving `data_dir`: each postmaster's group first (so it forks
/// nothing new), then each of its children, which PostgreSQL makes leaders of groups of their
/// own. False when no postmaster was found.
pub fn signal_postgres_of(data_dir: &Path, signal: Signal) -> bool {
    let postmasters = postmasters_of(data_dir);
    for postmaster in &postmasters {
        let children = children_of(*postmaster);
        signal_group(*postmaster, signal);
        for child in children {
            signal_group(child, signal);
        }
    }
    !postmasters.is_empty()
}

/// The postmaster's pid from `postmaster.pid`, if that process still leads its own group
/// and is a postgres (so a stale file never makes us signal an unrelated process).
fn postmaster_group(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1;
    let mut fields = rest.split_whitespace();
    let _state = fields.next()?;
    let _ppid = fields.next()?;
    let pgrp: u32 = fields.next()?.parse().ok()?;
    (comm == "postgres" && pgrp == pid).then_some(pid)
}

/// Every running postmaster of `data_dir`: the one `postmaster.pid` names, and any
/// `postgres -D data_dir` whose command line says so.
fn postmasters_of(data_dir: &Path) -> Vec<u32> {
    let mut found: Vec<u32> = postmaster_group(data_dir).into_iter().collect();
    let wanted = data_dir.as_os_str().as_encoded_bytes();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for pid in entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
            let is_postgres = args
                .first()
                .is_some_and(|program| program.ends_with(b"/postgres"));
            let serves_dir = args
                .windows(2)
                .any(|pair| pair[0] == b"-D" && pair[1] == wanted);
            if is_postgres && serves_dir && !found.contains(&pid) {
                found.push(pid);
            }
        }
    }
    found
}

/// The pids whose parent is `parent`, read from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent_of(*pid) == Some(parent))
        .collect()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

/// pg_hba.conf of a topology in namespaces: scram-sha-256 from the node itself and from the
/// lab's subnet, for everything and for replication.
fn lab_hba() -> String {
    let subnet = format!("{LAB_SUBNET}/{LAB_PREFIX_LEN}");
    format!(
        "# Written by the shanraq testkit for a topology in network namespaces.\n\
         host all all 127.0.0.1/32 scram-sha-256\n\
         host replication all 127.0.0.1/32 scram-sha-256\n\
         host all all {subnet} scram-sha-256\n\
         host replication all {subnet} scram-sha-256\n"
    )
}

/// The built-in haproxy.cfg: `rw` to the member answering `/primary`, `ro` round robin over
/// those answering `/replica`, checked every 100 ms on each manager's HTTP port.
fn haproxy_config(layout: &HaproxyLayout) -> String {
    let servers: String = layout
        .members
        .iter()
        .map(|member| {
            format!(
                "    server {} {}:{} check port {}\n",
                member.name, member.host, member.pg_port, member.http_port
            )
        })
        .collect();
    format!(
        "global\n\
         \x20   stats socket {socket} mode 600 level admin\n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   timeout connect 1s\n\
         \x20   timeout client 1h\n\
         \x20   timeout server 1h\n\
         \x20   timeout check 1s\n\
         frontend rw\n\
         \x20   bind {rw_bind}\n\
         \x20   default_backend rw\n\
         backend rw\n\
         \x20   option httpchk GET /primary\n\
         \x20   http-check expect status 200\n\
         \x20   default-server inter 100ms fall 1 rise 1 on-marked-down shutdown-sessions\n\
         {rw_servers}\
         frontend ro\n\
         \x20   bind {ro_bind}\n\
         \x20   default_backend ro\n\
         backend ro\n\
         \x20   balance roundrobin\n\
         \x20   option httpchk GET /replica\n\
         \x20   http-check expect status 200\n\
         \x20   default-server inter 100ms fall 1 rise 1 on-marked-down shutdown-sessions\n\
         {ro_servers}",
        socket = layout.stats_socket.display(),
        rw_bind = layout.rw_bind,
        ro_bind = layout.ro_bind,
        rw_servers = servers,
        ro_servers = servers,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_config_routes_rw_by_primary_check_and_is_valid() {
        let layout = HaproxyLayout {
            members: (0..3)
                .map(|index| MemberInfo {
                    name: format!("pg-{index}"),
                    host: format!("10.231.0.{}", 10 + index),
                    http_url: String::new(),
                    http_port: 8000,
                    pg_port: 5432,
                    data_dir: PathBuf::new(),
                    log_path: PathBuf::new(),
                })
                .collect(),
            rw_bind: "10.231.0.13:5432".parse().expect("addr"),
            ro_bind: "10.231.0.13:5433".parse().expect("addr"),
            stats_socket: PathBuf::from("/tmp/x.sock"),
        };
        let config = haproxy_config(&layout);
        assert!(config.contains("option httpchk GET /primary"), "{config}");
        assert!(config.contains("bind 10.231.0.13:5432"), "{config}");
        assert!(
            config.contains("server pg-2 10.231.0.12:5432 check port 8000"),
            "{config}"
        );
        crate::check_config(&config).expect("haproxy accepts the topology config");
    }

    #[test]
    fn lab_hba_allows_the_subnet_with_scram_only() {
        let hba = lab_hba();
        assert!(
            hba.contains("host replication all 10.231.0.0/24 scram-sha-256"),
            "{hba}"
        );
        assert!(!hba.contains("trust"), "{hba}");
    }

    #[test]
    fn a_stale_pid_file_names_no_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Our own pid is not a postgres.
        std::fs::write(
            dir.path().join("postmaster.pid"),
            format!("{}\n", std::process::id()),
        )
        .expect("write");
        assert_eq!(postmaster_group(dir.path()), None);
        assert_eq!(postmaster_group(Path::new("/nonexistent")), None);
    }

    #[test]
    fn children_are_found_through_proc() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let found = children_of(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            found.contains(&child.id()),
            "{found:?} lacks {}",
            child.id()
        );
        assert_eq!(parent_of(child.id()), None, "reaped");
    }
}
