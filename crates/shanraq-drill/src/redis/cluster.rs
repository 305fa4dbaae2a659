//! `LocalRedis`: a Redis replication group of real redis-server processes, every one started
//! from the rendered redis.conf and, like a pod, as a replica of nothing; the Redis engine's
//! driver then promotes the first master and points the others at it, exactly as in
//! Kubernetes. Nodes run on 127.0.0.1 (each on its own port) or, with a `RedisLab`, each in a
//! network namespace on its lab address, with the engine and the clients in namespaces of
//! their own so that a fault can cut the engine off alone. The faults tests and the benchmark
//! inject (kill -9, SIGSTOP, a restart with an empty directory, a cut) are methods here.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shanraq_api::{LiveState, ShanraqCluster, ValidCluster};
use shanraq_ha::adapters::driver::{Clock, system_clock};
use shanraq_ha::adapters::redis::{
    NodeClient, RedisDriverConfig, RedisDriverHandle, RedisPassword, RedisRouter,
};
use shanraq_ha::driver::state_store::MemoryStateStore;
use shanraq_ha::redis::{
    Millis, NodeId, Phase, RedisHaConfig, RedisHaState, RedisMember, ReplicationInfo,
};
use shanraq_testkit::{NetLab, RedisServer, free_port};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::error::RedisDrillError;
use shanraq_operator::engines::redis::config::engine_config;

/// The port every node listens on inside its own namespace.
const LAB_PORT: u16 = 6379;
pub const ENGINE_NODE: &str = "engine";
pub const CLIENT_NODE: &str = "client";
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// A network lab for a Redis group: one namespace per node, one for the engine, one for the
/// clients, and a runtime in each of the last two. Made and dropped outside any async context
/// (a runtime cannot be dropped inside one).
#[derive(Debug)]
pub struct RedisLab {
    pub net: NetLab,
    pub engine: tokio::runtime::Runtime,
    pub client: tokio::runtime::Runtime,
}

impl RedisLab {
    pub fn create(instances: usize) -> Result<RedisLab, RedisDrillError> {
        let mut names: Vec<String> = (0..instances).map(node_name).collect();
        names.push(ENGINE_NODE.to_owned());
        names.push(CLIENT_NODE.to_owned());
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let net = NetLab::create(&refs)?;
        let engine = net.runtime(ENGINE_NODE)?;
        let client = net.runtime(CLIENT_NODE)?;
        Ok(RedisLab {
            net,
            engine,
            client,
        })
    }
}

pub fn node_name(index: usize) -> String {
    format!("redis-{index}")
}

#[derive(Clone, Debug)]
pub struct RedisOptions {
    pub instances: usize,
    /// The engine's settings, checked to be what a ShanraqCluster renders.
    pub rpo: Duration,
    /// `spec.redis.persistence`: the append-only file the nodes run with (`auto`: from `rpo`).
    pub persistence: shanraq_api::redis::RedisPersistence,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            instances: 3,
            rpo: Duration::ZERO,
            persistence: shanraq_api::redis::RedisPersistence::Auto,
        }
    }
}

/// Routes writes by telling the clients: the writers follow this value, as a client of
/// Sentinel or of the `-redis-master` Service does.
/// The identity of the Redis drill's own engine.
pub const DRILL_REDIS_ENGINE: &str = "drill-redis-engine";

#[derive(Clone, Debug)]
pub struct WatchRouter {
    tx: watch::Sender<Option<(RedisMember, u64)>>,
}

impl RedisRouter for WatchRouter {
    async fn route(
        &self,
        master: &RedisMember,
        epoch: u64,
    ) -> Result<(), shanraq_ha::adapters::route::RouteError> {
        self.tx.send_replace(Some((master.clone(), epoch)));
        Ok(())
    }
}

struct Slot {
    member: RedisMember,
    server: Option<RedisServer>,
}

/// The running group.
pub struct LocalRedis {
    slots: Vec<Slot>,
    config: String,
    password: String,
    lab: Option<Arc<RedisLab>>,
    handle: RedisDriverHandle,
    driver: Option<JoinHandle<RedisHaState>>,
    routed: watch::Receiver<Option<(RedisMember, u64)>>,
    ha: RedisHaConfig,
    clock: Clock,
    /// The engines' state: every engine of this group (see `start_engine`) shares it.
    store: MemoryStateStore<RedisHaState>,
    router: WatchRouter,
}

impl std::fmt::Debug for LocalRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRedis")
            .field("members", &self.members())
            .finish_non_exhaustive()
    }
}

/// A ShanraqCluster with Redis in replication mode and only what the drill needs.
pub fn drill_cluster(options: &RedisOptions) -> Result<ValidCluster, RedisDrillError> {
    let mut spec = shanraq_api::ShanraqClusterSpec::default();
    spec.redis.enabled = true;
    spec.redis.instances = i32::try_from(options.instances)
        .map_err(|_| RedisDrillError::Render(format!("{} instances", options.instances)))?;
    spec.redis.maxmemory = "256mb".to_owned();
    // Redis's own RPO (the cluster-wide one is PostgreSQL's and Kafka's): it sets the
    // rendered min-replicas-max-lag and the engine's election bound.
    spec.redis.objectives = Some(shanraq_api::objectives::ComponentObjectives {
        rpo: Some(options.rpo.into()),
        ..Default::default()
    });
    spec.redis.persistence = options.persistence;
    spec.postgres.enabled = false;
    spec.kafka.enabled = false;
    let mut object = ShanraqCluster::new("drill", spec);
    object.metadata.namespace = Some("drill".to_owned());
    shanraq_api::validate(&object, &LiveState::default())
        .map_err(|error| RedisDrillError::Render(format!("as a ShanraqCluster: {error}")))
}

impl LocalRedis {
    /// Starts the group (in `lab` when given) and waits until the engine routed to a master
    /// that every replica streams from.
    pub async fn start(
        options: &RedisOptions,
        lab: Option<Arc<RedisLab>>,
    ) -> Result<LocalRedis, RedisDrillError> {
        let cluster = drill_cluster(options)?;
        let ha = engine_config(&cluster);
        // Redis changes into `dir` while it reads the file, before the command line moves it to
        // the server's own directory: any directory that exists will do.
        let read_dir = std::env::temp_dir();
        let password = shanraq_testkit::secrets::random_secret(32);
        let rendered = shanraq_render::redis::redis_conf(&cluster)
            .replace("\ndir /data\n", &format!("\ndir {}\n", read_dir.display()));
        let config = format!(
            "{rendered}requirepass \"{password}\"\nmasterauth \"{password}\"\n{}\n",
            shanraq_render::redis::DETACHED_REPLICAOF
        );
        let mut slots = Vec::new();
        for index in 0..options.instances {
            let name = node_name(index);
            let (bind, port) = match &lab {
                Some(lab) => (lab.net.addr(&name)?, LAB_PORT),
                None => (Ipv4Addr::LOCALHOST, free_port()?),
            };
            let server = RedisServer::start_at(
                &config,
                bind,
                port,
                lab.as_deref().map(|lab| (&lab.net, name.as_str())),
            )
            .await?;
            slots.push(Slot {
                member: RedisMember::new(name, bind.to_string(), port),
                server: Some(server),
            });
        }
        let members: Vec<RedisMember> = slots.iter().map(|s| s.member.clone()).collect();
        let (tx, routed) = watch::channel(None);
        let router = WatchRouter { tx };
        let store = MemoryStateStore::default();
        let config_driver = RedisDriverConfig {
            identity: DRILL_REDIS_ENGINE.to_owned(),
            ..RedisDriverConfig::new(
                ha.clone(),
                members,
                Some(RedisPassword::new(password.clone())),
            )
        };
        let clock = system_clock();
        let (driver, handle) = shanraq_ha::adapters::redis::start(
            config_driver,
            store.clone(),
            router.clone(),
            Arc::clone(&clock),
        )
        .await?;
        let join = match &lab {
            Some(lab) => lab.engine.spawn(driver.run()),
            None => tokio::spawn(driver.run()),
        };
        let group = LocalRedis {
            slots,
            config,
            password,
            lab,
            handle,
            driver: Some(join),
            routed,
            ha,
            clock,
            store,
            router,
        };
        group.wait_converged(STEP_TIMEOUT).await?;
        Ok(group)
    }

    /// Starts the group's own driver again (after `stop_driver`), acting as `identity` on the
    /// group's state: a restarted controller when `identity` is the same, a new one otherwise.
    pub async fn start_driver_as(&mut self, identity: &str) -> Result<(), RedisDrillError> {
        if self.driver.is_some() {
            return Ok(());
        }
        let runtime = match &self.lab {
            Some(lab) => lab.engine.handle().clone(),
            None => tokio::runtime::Handle::current(),
        };
        let (handle, join) = self.start_engine(identity, &runtime).await?;
        self.handle = handle;
        self.driver = Some(join);
        Ok(())
    }

    /// Starts another engine of this group, acting as `identity` on the same state and router,
    /// on `runtime` (one the caller can block, to pause it as SIGSTOP would). Its handle and
    /// task are the caller's.
    pub async fn start_engine(
        &self,
        identity: &str,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(RedisDriverHandle, JoinHandle<RedisHaState>), RedisDrillError> {
        let config = RedisDriverConfig {
            identity: identity.to_owned(),
            ..RedisDriverConfig::new(
                self.ha.clone(),
                self.members(),
                Some(RedisPassword::new(self.password.clone())),
            )
        };
        let (driver, handle) = shanraq_ha::adapters::redis::start(
            config,
            self.store.clone(),
            self.router.clone(),
            Arc::clone(&self.clock),
        )
        .await?;
        Ok((handle, runtime.spawn(driver.run())))
    }

    /// The state the group's engines share, as stored.
    pub async fn stored_state(&self) -> Option<RedisHaState> {
        use shanraq_ha::driver::state_store::StateStore as _;
        self.store
            .load()
            .await
            .ok()
            .flatten()
            .map(|stored| stored.state)
    }

    pub fn members(&self) -> Vec<RedisMember> {
        self.slots.iter().map(|s| s.member.clone()).collect()
    }

    pub fn handle(&self) -> &RedisDriverHandle {
        &self.handle
    }

    pub fn ha_config(&self) -> &RedisHaConfig {
        &self.ha
    }

    pub fn now(&self) -> Millis {
        (self.clock)()
    }

    pub fn lab(&self) -> Option<&RedisLab> {
        self.lab.as_deref()
    }

    /// The master the engine routes writes to, as clients see it.
    pub fn routed(&self) -> watch::Receiver<Option<(RedisMember, u64)>> {
        self.routed.clone()
    }

    /// The password clients authenticate with (never printed).
    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn client(&self, index: usize, timeout: Duration) -> Result<NodeClient, RedisDrillError> {
        let member = self.member(index)?;
        Ok(NodeClient::new(
            member.name.as_str(),
            member.host.clone(),
            member.port,
            Some(RedisPassword::new(self.password.clone())),
            timeout,
        ))
    }

    fn member(&self, index: usize) -> Result<&RedisMember, RedisDrillError> {
        self.slots
            .get(index)
            .map(|s| &s.member)
            .ok_or(RedisDrillError::UnknownNode {
                index,
                len: self.slots.len(),
            })
    }

    pub fn index_of(&self, node: &NodeId) -> Option<usize> {
        self.slots.iter().position(|s| &s.member.name == node)
    }

    /// The designated master's index.
    pub fn master_index(&self) -> Option<usize> {
        let state = self.handle.state();
        self.index_of(state.current_primary.as_ref()?)
    }

    fn server(&mut self, index: usize) -> Result<&mut RedisServer, RedisDrillError> {
        let len = self.slots.len();
        self.slots
            .get_mut(index)
            .and_then(|s| s.server.as_mut())
            .ok_or(RedisDrillError::UnknownNode { index, len })
    }

    /// kill -9.
    pub fn kill(&mut self, index: usize) -> Result<(), RedisDrillError> {
        self.server(index)?.kill();
        Ok(())
    }

    /// SIGSTOP: the process keeps its sockets and answers nothing.
    pub fn freeze(&mut self, index: usize) -> Result<(), RedisDrillError> {
        self.server(index)?.pause();
        Ok(())
    }

    pub fn thaw(&mut self, index: usize) -> Result<(), RedisDrillError> {
        self.server(index)?.resume();
        Ok(())
    }

    /// Starts the node again on its address, from the rendered config, with an empty
    /// directory: what a pod that lost its volume does.
    pub async fn restart_empty(&mut self, index: usize) -> Result<(), RedisDrillError> {
        let len = self.slots.len();
        let slot = self
            .slots
            .get_mut(index)
            .ok_or(RedisDrillError::UnknownNode { index, len })?;
        if let Some(mut old) = slot.server.take() {
            old.kill();
        }
        let bind: Ipv4Addr = slot
            .member
            .host
            .parse()
            .map_err(|_| RedisDrillError::Render(format!("address {}", slot.member.host)))?;
        let name = slot.member.name.as_str().to_owned();
        let server = RedisServer::start_at(
            &self.config,
            bind,
            slot.member.port,
            self.lab.as_deref().map(|lab| (&lab.net, name.as_str())),
        )
        .await?;
        slot.server = Some(server);
        Ok(())
    }

    /// Starts the killed node again on its address, from the rendered config, with its
    /// directory as it was: what a pod restarted on its volume does (with persistence, it loads
    /// its append-only file before it answers). Loopback groups only.
    pub async fn restart_in_place(&mut self, index: usize) -> Result<(), RedisDrillError> {
        self.server(index)?.restart_in_place().await?;
        Ok(())
    }

    /// Drops every packet between the engine and node `index` (lab only).
    pub fn cut_engine_from(&self, index: usize) -> Result<(), RedisDrillError> {
        let member = self.member(index)?;
        if let Some(lab) = &self.lab {
            lab.net.cut(ENGINE_NODE, member.name.as_str())?;
        }
        Ok(())
    }

    pub fn heal(&self) -> Result<(), RedisDrillError> {
        if let Some(lab) = &self.lab {
            lab.net.heal()?;
        }
        Ok(())
    }

    /// Every node's `INFO replication`, probed now (`None` for a node that did not answer).
    pub async fn infos(&self) -> Vec<Option<ReplicationInfo>> {
        let mut infos = Vec::new();
        for index in 0..self.slots.len() {
            let info = match self.client(index, Duration::from_millis(500)) {
                Ok(client) => client.info_replication().await.ok(),
                Err(_) => None,
            };
            infos.push(info);
        }
        infos
    }

    /// Waits until the engine is Healthy and routed to its master, which answers as one, and
    /// every other node streams from it at the master's offset.
    pub async fn wait_converged(&self, timeout: Duration) -> Result<NodeId, RedisDrillError> {
        let deadline = Instant::now() + timeout;
        loop {
            let last;
            let state = self.handle.state();
            let routed = self
                .routed
                .borrow()
                .as_ref()
                .map(|(m, e)| (m.name.clone(), *e));
            if state.phase == Phase::Healthy
                && let Some(master) = state.current_primary.clone()
                && routed == Some((master.clone(), state.epoch))
                && let Some(index) = self.index_of(&master)
            {
                let infos = self.infos().await;
                let endpoint = &self.slots[index].member;
                let master_info = infos.get(index).cloned().flatten();
                let converged = master_info.as_ref().is_some_and(|info| {
                    info.is_master()
                        && infos.iter().enumerate().all(|(other, info)| {
                            other == index
                                || info.as_ref().is_some_and(|info| {
                                    info.replicates_from(&endpoint.host, endpoint.port)
                                        && info.link_up
                                        && !info.sync_in_progress
                                })
                        })
                });
                if converged {
                    return Ok(master);
                }
                last = format!("master {master}; nodes {infos:?}");
            } else {
                last = format!(
                    "engine phase {}, master {:?}, routed {routed:?}",
                    state.phase, state.current_primary
                );
            }
            if Instant::now() >= deadline {
                return Err(RedisDrillError::Timeout {
                    what: "the Redis group converging".to_owned(),
                    seconds: timeout.as_secs(),
                    detail: format!(": {last}"),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the driver (bounded) and returns its last state.
    pub async fn stop_driver(&mut self) -> Option<RedisHaState> {
        self.handle.stop().await;
        let join = self.driver.take()?;
        tokio::time::timeout(Duration::from_secs(5), join)
            .await
            .ok()?
            .ok()
    }
}
