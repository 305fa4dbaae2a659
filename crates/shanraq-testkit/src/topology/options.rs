//! What a test asks of a topology (`TopologyOptions`, `Network`, a custom haproxy.cfg) and
//! what it gets back to reach each member (`MemberInfo`): plain data, apart from the processes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
