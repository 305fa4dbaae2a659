//! `LocalCluster`: the testkit's `LocalTopology` (instance managers supervising real
//! PostgreSQL 15, HAProxy routing `rw` by `/primary`) driven by the same HA engine and driver
//! as in Kubernetes, with its state in a `FileStateStore` inside the topology's directory and
//! routing confirmed by HAProxy's runtime API. The cluster is the ShanraqCluster its options
//! stand for (`product`): PostgreSQL runs with the rendered postgresql.conf, HAProxy with the
//! rendered haproxy.cfg localised (`haproxy_config`), the engine with the spec's timings. Everything the driver publishes is recorded so
//! that the demo, the benchmark and the chaos tests read one timeline. The driver can be
//! stopped and started again from the persisted state, as an operator restart would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shanraq_api::ValidCluster;

use shanraq_ha::adapters::driver::{
    Driver, DriverConfig, DriverEvent, DriverHandle, DriverMember, system_clock,
};
use shanraq_ha::adapters::instance_client::{BearerToken, ClientTimeouts, InstanceClient};
use shanraq_ha::driver::custody::Unconditional;
use shanraq_ha::driver::state_store::FileStateStore;
use shanraq_ha::postgres::{
    FailoverRecord, HaState, Member, NodeId, Phase, PostgresHaConfig, ReplicationMode,
};
use shanraq_ha::wire::{InstanceRole, InstanceStatus};
use shanraq_testkit::{
    HaproxyConfigFn, LocalTopology, NetLab, Network, TestkitError, TopologyOptions, binaries,
    free_port,
};
use tokio::task::JoinHandle;

use super::backup::{self, DrillBackup, LocalBackup};
use super::error::{DrillError, NotConverged, StatusError};
use super::haproxy_config::LocalHaproxy;
use super::haproxy_router::HaproxyRouter;
use super::product;
use super::watch::{PrimaryWatch, Watched};
use super::write_probe;
use shanraq_operator::engines::postgres::spec::engine_config;
/// The identity of the drill's own engine (the owner of its epochs).
pub const DRILL_ENGINE: &str = "drill-engine";

/// How long `Route` may wait for HAProxy to send writes to the new primary.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(50);

/// How to build a local cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub instances: usize,
    /// The engine's settings, which must be what a ShanraqCluster spec can say;
    /// `ha.replication` also decides the spec's `synchronous.number`, and `ha.data_durability`
    /// its `synchronous.dataDurability`.
    pub ha: PostgresHaConfig,
    /// `spec.backup` (and a recovery bootstrap): archive and back up to an object store.
    pub backup: Option<DrillBackup>,
}

impl ClusterOptions {
    /// `instances` with one synchronous standby required and the ShanraqCluster defaults
    /// (probe 250 ms, threshold 3, failover delay 0).
    pub fn synchronous(instances: usize) -> ClusterOptions {
        ClusterOptions {
            instances,
            ha: PostgresHaConfig {
                replication: ReplicationMode::Synchronous { number: 1 },
                ..PostgresHaConfig::default()
            },
            backup: None,
        }
    }

    /// Asynchronous streaming; a failover may lose at most `maximum_lag_on_failover` bytes.
    pub fn asynchronous(instances: usize, maximum_lag_on_failover: u64) -> ClusterOptions {
        ClusterOptions {
            instances,
            ha: PostgresHaConfig {
                replication: ReplicationMode::Asynchronous,
                maximum_lag_on_failover,
                ..PostgresHaConfig::default()
            },
            backup: None,
        }
    }

    /// The same cluster with `spec.backup`.
    pub fn with_backup(mut self, backup: DrillBackup) -> ClusterOptions {
        self.backup = Some(backup);
        self
    }
}

/// Fails with the Debian package to install when PostgreSQL 15 or HAProxy is missing.
pub fn check_dependencies() -> Result<(), DrillError> {
    let missing = |what, package, error: TestkitError| DrillError::MissingDependency {
        what,
        package,
        detail: error.to_string(),
    };
    binaries::pg_bin_dir().map_err(|error| missing("PostgreSQL 15", "postgresql-15", error))?;
    binaries::postgres_tool("pg_rewind")
        .map_err(|error| missing("PostgreSQL 15", "postgresql-15", error))?;
    binaries::haproxy().map_err(|error| missing("HAProxy", "haproxy", error))?;
    Ok(())
}

#[derive(Debug)]
struct RunningDriver {
    handle: DriverHandle,
    task: JoinHandle<HaState>,
    recorder: JoinHandle<()>,
}

/// Where a cluster runs in network namespaces: the lab (one namespace per instance, HAProxy,
/// the engine and the clients) and the runtime whose threads live in the engine's namespace,
/// so that the engine's probes and commands cross the lab's links and its faults.
#[derive(Clone, Debug)]
pub struct LabPlacement {
    pub lab: Arc<NetLab>,
    pub engine: tokio::runtime::Handle,
}

/// A local cluster: topology, engine, driver, recorded events.
#[derive(Debug)]
pub struct LocalCluster {
    /// In a lab: the engine's runtime. `None`: the driver runs on the caller's runtime.
    engine: Option<tokio::runtime::Handle>,
    topology: LocalTopology,
    options: ClusterOptions,
    cluster: ValidCluster,
    haproxy: LocalHaproxy,
    store_path: PathBuf,
    driver: Option<RunningDriver>,
    events: Arc<Mutex<Vec<DriverEvent>>>,
    /// The rendered pgbackrest.conf's dir: kept (not read) for as long as the cluster runs.
    _backup: Option<LocalBackup>,
}

impl LocalCluster {
    /// Starts the topology (instance 0 primary with epoch 1) and the driver, and waits until
    /// the engine routes writes to instance 0.
    pub async fn start(binary: &Path, options: ClusterOptions) -> Result<LocalCluster, DrillError> {
        let cluster = LocalCluster::start_without_driver(binary, options).await?;
        cluster.finish_start().await
    }

    /// Starts the cluster in network namespaces, as `start` does on loopback. Must be awaited
    /// from a task on the lab's client runtime (`lab.runtime(CLIENT_NODE)`); so must every
    /// other async method, since they connect to the instances.
    pub async fn start_in_lab(
        binary: &Path,
        options: ClusterOptions,
        placement: LabPlacement,
    ) -> Result<LocalCluster, DrillError> {
        let cluster = LocalCluster::build(binary, options, Some(placement)).await?;
        cluster.finish_start().await
    }

    /// Starts only the topology; [`LocalCluster::start_driver`] starts the engine.
    pub async fn start_without_driver(
        binary: &Path,
        options: ClusterOptions,
    ) -> Result<LocalCluster, DrillError> {
        LocalCluster::build(binary, options, None).await
    }

    async fn build(
        binary: &Path,
        options: ClusterOptions,
        placement: Option<LabPlacement>,
    ) -> Result<LocalCluster, DrillError> {
        check_dependencies()?;
        if options.instances < 2 {
            return Err(DrillError::InvalidOption {
                option: "instances",
                reason: format!(
                    "{} instances cannot fail over: use 2 or more",
                    options.instances
                ),
            });
        }
        let cluster = product::cluster(&options)?;
        let haproxy = LocalHaproxy::new(&cluster)?;
        let stats_bind = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let localiser = haproxy.clone();
        let haproxy_config: HaproxyConfigFn =
            Arc::new(move |layout| localiser.localise(layout, stats_bind));
        let backup = match &options.backup {
            Some(drill) => Some(backup::prepare(&cluster, drill)?),
            None => None,
        };
        let topology_options = TopologyOptions {
            instances: options.instances,
            synchronous: shanraq_render::postgres::synchronous_standby_names(&cluster),
            extra_config: Some(product::postgresql_conf(&cluster)?),
            haproxy_config: Some(haproxy_config),
            // What the operator renders: the lease from spec.failover.
            lease: Some(cluster.spec.failover.lease()),
            network: if placement.is_some() {
                Network::Namespaces
            } else {
                Network::Loopback
            },
            extra_args: backup.as_ref().map(|b| b.args.clone()).unwrap_or_default(),
            env: backup.as_ref().map(|b| b.env.clone()).unwrap_or_default(),
            first_bootstrap: backup.as_ref().and_then(|b| b.first_bootstrap.clone()),
        };
        let (topology, engine) = match placement {
            Some(placement) => (
                LocalTopology::start_in(placement.lab, binary, topology_options).await?,
                Some(placement.engine),
            ),
            None => (LocalTopology::start(binary, topology_options).await?, None),
        };
        let store_path = topology.root().join("ha-state.json");
        Ok(LocalCluster {
            engine,
            topology,
            options,
            cluster,
            haproxy,
            store_path,
            driver: None,
            events: Arc::new(Mutex::new(Vec::new())),
            _backup: backup,
        })
    }

    async fn finish_start(mut self) -> Result<LocalCluster, DrillError> {
        self.start_driver().await?;
        self.wait_for_state(
            "the engine to route writes to pg-0",
            Duration::from_secs(30),
            |s| {
                s.phase == Phase::Healthy
                    && s.current_primary
                        .as_ref()
                        .is_some_and(|p| p.as_str() == "pg-0")
            },
        )
        .await?;
        Ok(self)
    }

    pub fn topology(&self) -> &LocalTopology {
        &self.topology
    }

    pub fn topology_mut(&mut self) -> &mut LocalTopology {
        &mut self.topology
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    /// The ShanraqCluster this local cluster stands for, validated.
    pub fn cluster(&self) -> &ValidCluster {
        &self.cluster
    }

    /// The rendered haproxy.cfg and its names.
    pub fn haproxy(&self) -> &LocalHaproxy {
        &self.haproxy
    }

    /// Where the driver persists the HA state.
    pub fn store_path(&self) -> &Path {
        &self.store_path
    }

    fn driver_config(&self, identity: &str) -> DriverConfig {
        let members = self
            .topology
            .members()
            .into_iter()
            .map(|info| DriverMember {
                member: Member::new(info.name.clone(), info.host.as_str(), info.pg_port),
                manager_url: info.http_url,
            })
            .collect();
        DriverConfig {
            // The same as `options.ha`: `product::cluster` refuses options the spec cannot say.
            ha: engine_config(&self.cluster),
            members,
            token: BearerToken::new(self.topology.token()),
            timeouts: ClientTimeouts::for_probe_period(self.options.ha.probe_period),
            initial_state: HaState::with_primary(NodeId::new("pg-0"), 1),
            identity: identity.to_owned(),
            // The store alone arbitrates between local engines.
            authority: Arc::new(Unconditional),
        }
    }

    /// Starts the driver from the persisted state (or the initial one when none was saved).
    pub async fn start_driver(&mut self) -> Result<DriverHandle, DrillError> {
        self.start_driver_as(DRILL_ENGINE).await
    }

    /// A driver of this cluster acting as `identity`, on the cluster's state file: the drill's
    /// own (`start_driver`), or a second engine beside it (`start_engine`).
    async fn driver(
        &self,
        identity: &str,
    ) -> Result<(Driver<FileStateStore, HaproxyRouter>, DriverHandle), DrillError> {
        let config = self.driver_config(identity);
        let mut clients = BTreeMap::new();
        for member in &config.members {
            let client = InstanceClient::new(
                member.member.name.0.clone(),
                &member.manager_url,
                config.token.clone(),
                config.timeouts,
            )
            .map_err(|source| shanraq_ha::adapters::driver::DriverError::Client {
                node: member.member.name.0.clone(),
                source,
            })?;
            clients.insert(member.member.name.clone(), client);
        }
        let servers = self
            .topology
            .members()
            .iter()
            .enumerate()
            .filter_map(|(ordinal, info)| {
                let server = self.haproxy.server_name(ordinal)?;
                Some((NodeId::new(info.name.clone()), server.to_owned()))
            })
            .collect();
        let router = HaproxyRouter::new(
            clients,
            servers,
            self.topology.haproxy_socket().to_path_buf(),
            self.haproxy.primary_backend(),
            ROUTE_TIMEOUT,
        );
        Ok(shanraq_ha::adapters::driver::start(
            config,
            FileStateStore::new(&self.store_path),
            router,
            system_clock(),
        )
        .await?)
    }

    /// Starts a second engine of this cluster, acting as `identity` on the same state file, on
    /// `runtime` (one the caller can block, to pause it as SIGSTOP would). It is not the
    /// drill's engine: its events are not recorded, its handle and task are the caller's.
    pub async fn start_engine(
        &self,
        identity: &str,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(DriverHandle, JoinHandle<HaState>), DrillError> {
        let (driver, handle) = self.driver(identity).await?;
        Ok((handle, runtime.spawn(driver.run())))
    }

    /// Starts the drill's driver as `identity` (recorded, like `start_driver`).
    pub async fn start_driver_as(&mut self, identity: &str) -> Result<DriverHandle, DrillError> {
        if let Some(running) = &self.driver {
            return Ok(running.handle.clone());
        }
        let (driver, handle) = self.driver(identity).await?;
        let mut receiver = handle.subscribe();
        let events = Arc::clone(&self.events);
        let recorder = tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match receiver.recv().await {
                    Ok(event) => events
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .push(event),
                    Err(RecvError::Lagged(skipped)) => {
                        tracing::warn!(skipped, "drill event recorder lagged");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        let task = match &self.engine {
            Some(engine) => engine.spawn(driver.run()),
            None => tokio::spawn(driver.run()),
        };
        self.driver = Some(RunningDriver {
            handle: handle.clone(),
            task,
            recorder,
        });
        Ok(handle)
    }

    /// Stops the driver after its current step and returns its last state (commands still
    /// running are abandoned, as when an operator dies).
    pub async fn stop_driver(&mut self) -> Option<HaState> {
        let running = self.driver.take()?;
        running.handle.stop().await;
        let state = tokio::time::timeout(Duration::from_secs(10), running.task)
            .await
            .ok()
            .and_then(Result::ok);
        drop(running.handle);
        // The recorder ends once every sender is gone; give it a moment to drain.
        let mut recorder = running.recorder;
        if tokio::time::timeout(Duration::from_secs(1), &mut recorder)
            .await
            .is_err()
        {
            recorder.abort();
        }
        state
    }

    pub fn handle(&self) -> Result<&DriverHandle, DrillError> {
        self.driver
            .as_ref()
            .map(|running| &running.handle)
            .ok_or(DrillError::DriverStopped)
    }

    /// The last persisted HA state.
    pub fn state(&self) -> Result<HaState, DrillError> {
        Ok(self.handle()?.state())
    }

    fn events_lock(&self) -> MutexGuard<'_, Vec<DriverEvent>> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A mark to read events from later.
    pub fn event_mark(&self) -> usize {
        self.events_lock().len()
    }

    /// Everything the driver published since `mark`.
    pub fn events_since(&self, mark: usize) -> Vec<DriverEvent> {
        self.events_lock().get(mark..).unwrap_or_default().to_vec()
    }

    pub fn node(&self, index: usize) -> Result<NodeId, DrillError> {
        Ok(NodeId::new(self.topology.member(index)?.name.clone()))
    }

    pub fn index_of(&self, node: &NodeId) -> Result<usize, DrillError> {
        self.topology
            .members()
            .iter()
            .position(|info| info.name == node.as_str())
            .ok_or_else(|| DrillError::UnknownMember {
                member: node.to_string(),
            })
    }

    pub fn pg_port(&self, index: usize) -> Result<u16, DrillError> {
        Ok(self.topology.member(index)?.pg_port)
    }

    /// Where member `index`'s postgres listens, as the ledger records the server of an
    /// acknowledgement.
    pub fn pg_addr(&self, index: usize) -> Result<SocketAddr, DrillError> {
        let member = self.topology.member(index)?;
        let host: std::net::IpAddr =
            member.host.parse().map_err(|_| DrillError::UnknownMember {
                member: format!(
                    "{} (its host {:?} is not an IP address)",
                    member.name, member.host
                ),
            })?;
        Ok(SocketAddr::new(host, member.pg_port))
    }

    /// The index of the primary the engine designates.
    pub fn primary_index(&self) -> Result<usize, DrillError> {
        let state = self.state()?;
        let primary = state.current_primary.ok_or_else(|| {
            DrillError::timeout_with("a designated primary", Duration::ZERO, "none yet")
        })?;
        self.index_of(&primary)
    }

    /// Waits until the persisted state satisfies `done`.
    pub async fn wait_for_state(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&HaState) -> bool,
    ) -> Result<HaState, DrillError> {
        let handle = self.handle()?;
        match handle.wait_for_state(timeout, done).await {
            Some(state) => Ok(state),
            None => Err(DrillError::timeout_with(
                what,
                timeout,
                describe(&handle.state()),
            )),
        }
    }

    /// Waits until a failover or switchover with an epoch above `after_epoch` completed.
    pub async fn wait_for_completion(
        &self,
        after_epoch: u64,
        timeout: Duration,
    ) -> Result<(HaState, FailoverRecord), DrillError> {
        let state = self
            .wait_for_state("the failover to complete", timeout, |s| {
                s.phase == Phase::Healthy
                    && s.last_failover
                        .as_ref()
                        .is_some_and(|record| record.epoch > after_epoch)
            })
            .await?;
        let record = state.last_failover.clone().ok_or_else(|| {
            DrillError::timeout_with("a failover record", timeout, describe(&state))
        })?;
        Ok((state, record))
    }

    /// Waits until the engine is Healthy with its primary among `alive`, every other member of
    /// `alive` is a running replica of the current epoch streaming from it, HAProxy's `rw`
    /// reaches it, and (synchronous mode) a synchronous standby is known.
    pub async fn wait_converged(
        &self,
        alive: &[usize],
        timeout: Duration,
    ) -> Result<HaState, DrillError> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.converged(alive).await {
                Ok(state) => return Ok(state),
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                return Err(DrillError::timeout_with(
                    "the cluster to converge (one primary, every other member streaming from it)",
                    timeout,
                    last,
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn converged(&self, alive: &[usize]) -> Result<HaState, NotConverged> {
        let state = self.state().map_err(NotConverged::State)?;
        if state.phase != Phase::Healthy {
            return Err(NotConverged::Engine(Box::new(state)));
        }
        let primary = state
            .current_primary
            .clone()
            .ok_or(NotConverged::NoPrimary)?;
        let primary_index = self.index_of(&primary).map_err(NotConverged::Member)?;
        if !alive.contains(&primary_index) {
            return Err(NotConverged::PrimaryNotAlive { primary });
        }
        let primary_status = self.instance_status(primary_index).await?;
        if primary_status.role != InstanceRole::Primary || primary_status.epoch != state.epoch {
            return Err(NotConverged::Primary {
                primary,
                role: primary_status.role,
                epoch: primary_status.epoch,
            });
        }
        for &index in alive.iter().filter(|&&index| index != primary_index) {
            let status = self.instance_status(index).await?;
            let streaming_from_primary = primary_status
                .replication
                .iter()
                .any(|peer| peer.application_name == status.name && peer.state == "streaming");
            if status.role != InstanceRole::Replica
                || status.epoch != state.epoch
                || status.streaming != Some(true)
                || !streaming_from_primary
            {
                return Err(NotConverged::Replica {
                    name: status.name,
                    role: status.role,
                    epoch: status.epoch,
                    streaming: status.streaming,
                    primary,
                    listed: streaming_from_primary,
                });
            }
        }
        if matches!(
            self.options.ha.replication,
            ReplicationMode::Synchronous { .. }
        ) && alive.len() > 1
            && state.detail.sync_set.is_empty()
        {
            return Err(NotConverged::NoSynchronousStandby);
        }
        let routed = self
            .topology
            .rw_backend_port()
            .await
            .map_err(NotConverged::Routing)?;
        let primary_port = self.pg_port(primary_index).map_err(NotConverged::Member)?;
        if routed != primary_port {
            return Err(NotConverged::RoutedElsewhere {
                port: routed,
                primary,
            });
        }
        Ok(state)
    }

    /// Superuser connection options straight to member `index`, in the application database
    /// (where the ledger lives).
    pub fn member_app_options(
        &self,
        index: usize,
    ) -> Result<sqlx::postgres::PgConnectOptions, DrillError> {
        Ok(self
            .topology
            .member_options(index)?
            .database(shanraq_testkit::topology::APP_DATABASE))
    }

    /// Starts a split-brain watch over every member, sampling every `period` for at most
    /// `bound`, after creating the write probe's table on the primary.
    pub async fn watch(
        &self,
        period: Duration,
        bound: Duration,
    ) -> Result<PrimaryWatch, DrillError> {
        write_probe::create_table(&self.topology.rw_options()).await?;
        let config = self.driver_config(DRILL_ENGINE);
        let mut watched = Vec::new();
        for (index, member) in config.members.iter().enumerate() {
            let client = InstanceClient::new(
                member.member.name.0.clone(),
                &member.manager_url,
                config.token.clone(),
                ClientTimeouts::for_probe_period(period),
            )
            .map_err(|source| shanraq_ha::adapters::driver::DriverError::Client {
                node: member.member.name.0.clone(),
                source,
            })?;
            watched.push(Watched {
                name: member.member.name.0.clone(),
                client,
                postgres: self.topology.member_options(index)?,
            });
        }
        Ok(PrimaryWatch::start(watched, period, bound))
    }

    /// `GET /status` of member `index`, typed.
    pub async fn instance_status(&self, index: usize) -> Result<InstanceStatus, StatusError> {
        let value = self
            .topology
            .status(index)
            .await
            .map_err(StatusError::Request)?;
        serde_json::from_value(value).map_err(|error| StatusError::Decode { index, error })
    }
}

/// One line about where the engine is, for timeouts.
pub fn describe(state: &HaState) -> String {
    let primary = state
        .current_primary
        .as_ref()
        .map_or("none", NodeId::as_str);
    let mut text = format!(
        "engine phase {}, epoch {}, primary {primary}",
        state.phase, state.epoch
    );
    if let Some(record) = &state.in_flight {
        if let Some(refusal) = &record.refusal {
            text.push_str(&format!("; refusing: {refusal}"));
        }
        if let Some(target) = &record.to {
            text.push_str(&format!("; target {target}"));
        }
    }
    text
}
