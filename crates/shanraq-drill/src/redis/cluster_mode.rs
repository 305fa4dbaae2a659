//! Redis Cluster mode on real processes: six redis-server processes started from the rendered
//! cluster-mode redis.conf, formed as the rendered Job does it (`redis-cli --cluster create`
//! with one replica per master), observed through `CLUSTER INFO`/`CLUSTER NODES` (state, slots
//! covered, masters, failovers Redis Cluster performed), and a writer that `SET`s keys of one
//! hash slot then `WAIT 1`s, following `MOVED` redirections. Failover in cluster mode is Redis
//! Cluster's own; this is what the operator observes and reports.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use shanraq_api::redis::RedisMode;
use shanraq_ha::adapters::driver::Clock;
use shanraq_ha::adapters::redis::{NodeClient, RedisPassword};
use shanraq_ha::redis::cluster::{ClusterView, FailoverTracker};
use shanraq_ha::redis::{NodeId, RedisMember};
use shanraq_testkit::{RedisServer, free_port};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::cluster::{RedisOptions, drill_cluster};
use super::error::RedisDrillError;
use super::writer::{RedisAck, WriterReport, connect};

/// Every writer key is in this hash slot's shard: `{shanraq}:<id>`.
pub const HASH_TAG: &str = "{shanraq}";
const POLL: Duration = Duration::from_millis(50);
const WRITE_TIMEOUT: Duration = Duration::from_millis(500);
const MAX_RUN: Duration = Duration::from_secs(600);

/// Six (or more) nodes in cluster mode.
#[derive(Debug)]
pub struct LocalRedisCluster {
    pub servers: Vec<RedisServer>,
    pub members: Vec<RedisMember>,
    password: String,
    tracker: FailoverTracker,
}

impl LocalRedisCluster {
    /// Starts `instances` nodes from the rendered cluster-mode config and forms the cluster.
    pub async fn start(instances: usize) -> Result<LocalRedisCluster, RedisDrillError> {
        let cluster = cluster_mode_spec(instances)?;
        let password = shanraq_testkit::secrets::random_secret(32);
        let config = node_config(&cluster, &password);
        let mut servers = Vec::new();
        let mut members = Vec::new();
        for index in 0..instances {
            // The cluster bus listens on port + 10000: keep both below the ephemeral range.
            let port = loop {
                let port = free_port()?;
                if port <= 22_700 {
                    break port;
                }
            };
            let server = RedisServer::start_at(&config, Ipv4Addr::LOCALHOST, port, None).await?;
            members.push(RedisMember::new(
                format!("redis-{index}"),
                "127.0.0.1",
                port,
            ));
            servers.push(server);
        }
        let addresses: Vec<String> = members
            .iter()
            .map(|m| format!("{}:{}", m.host, m.port))
            .collect();
        let replicas = cluster.spec.redis.replicas_per_shard.to_string();
        let output = Command::new("redis-cli")
            .env("REDISCLI_AUTH", &password)
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas, "--cluster-yes"])
            .output()
            .map_err(|error| RedisDrillError::Tool {
                command: "redis-cli".to_owned(),
                output: error.to_string(),
            })?;
        if !output.status.success() {
            return Err(RedisDrillError::Tool {
                command: "redis-cli --cluster create".to_owned(),
                output: String::from_utf8_lossy(&output.stdout).into_owned(),
            });
        }
        let per_shard = usize::try_from(cluster.spec.redis.replicas_per_shard.max(0)).unwrap_or(1);
        let mut group = LocalRedisCluster {
            servers,
            members,
            password,
            tracker: FailoverTracker::default(),
        };
        group
            .wait_view(
                "the Redis Cluster forming",
                Duration::from_secs(60),
                // Replicas show as masters until their CLUSTER REPLICATE has spread.
                |view| {
                    view.covered()
                        && view.masters().len() * (per_shard + 1) == instances
                        && view
                            .masters()
                            .iter()
                            .all(|master| view.replicas_of(&master.id) == per_shard)
                },
            )
            .await?;
        Ok(group)
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    fn client(&self, index: usize) -> NodeClient {
        let member = &self.members[index];
        NodeClient::new(
            member.name.as_str(),
            member.host.clone(),
            member.port,
            Some(RedisPassword::new(self.password.clone())),
            Duration::from_millis(500),
        )
    }

    /// The view of the first node that answers, fed to the failover tracker.
    pub async fn view(&mut self) -> Option<ClusterView> {
        for index in 0..self.members.len() {
            if let Ok(view) = self.client(index).cluster_view().await {
                self.tracker.observe(&view);
                return Some(view);
            }
        }
        None
    }

    pub fn failovers_seen(&self) -> u64 {
        self.tracker.failovers_seen
    }

    /// Waits (bounded) until a node's view satisfies `done`.
    pub async fn wait_view(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&ClusterView) -> bool,
    ) -> Result<ClusterView, RedisDrillError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(view) = self.view().await {
                if done(&view) {
                    return Ok(view);
                }
                last = Some(view.summary());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RedisDrillError::Timeout {
                    what: what.to_owned(),
                    seconds: timeout.as_secs(),
                    detail: format!(": last view {last:?}"),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The index of the master serving the writer's hash slot.
    pub async fn master_of_writes(&self) -> Option<usize> {
        let owner = owner(&self.members, &self.password).await?;
        self.members.iter().position(|m| m.name == owner.name)
    }

    pub fn kill(&mut self, index: usize) {
        if let Some(server) = self.servers.get_mut(index) {
            server.kill();
        }
    }

    /// Restarts node `index` on its address and directory (its nodes.conf kept).
    pub async fn restart_in_place(&mut self, index: usize) -> Result<(), RedisDrillError> {
        let len = self.servers.len();
        let server = self
            .servers
            .get_mut(index)
            .ok_or(RedisDrillError::UnknownNode { index, len })?;
        server.restart_in_place().await?;
        Ok(())
    }
}

/// The node serving the writer's slot: a `GET` of a key in it is served there or redirected
/// there (`MOVED slot address`).
async fn owner(members: &[RedisMember], password: &str) -> Option<RedisMember> {
    for member in members {
        let Ok(mut connection) = connect(member, password, WRITE_TIMEOUT).await else {
            continue;
        };
        let probe: Result<Option<String>, redis::RedisError> = redis::cmd("GET")
            .arg(format!("{HASH_TAG}:probe"))
            .query_async(&mut connection)
            .await;
        match probe {
            Ok(_) => return Some(member.clone()),
            Err(error) => {
                if let Some((address, _)) = error.redirect_node() {
                    return members
                        .iter()
                        .find(|m| format!("{}:{}", m.host, m.port) == address)
                        .cloned();
                }
            }
        }
    }
    None
}

/// A writer of keys in one hash slot: `SET` then `WAIT 1`, following `MOVED`.
#[derive(Debug)]
pub struct SlotWriter {
    stop: watch::Sender<bool>,
    join: JoinHandle<WriterReport>,
}

impl SlotWriter {
    pub fn start(
        members: Vec<RedisMember>,
        password: String,
        clock: Clock,
        progress: watch::Sender<usize>,
    ) -> SlotWriter {
        let (stop, stopped) = watch::channel(false);
        let join = tokio::spawn(slot_write_loop(members, password, clock, stopped, progress));
        SlotWriter { stop, join }
    }

    pub async fn stop(self) -> WriterReport {
        let _ = self.stop.send(true);
        self.join.await.unwrap_or_default()
    }
}

async fn slot_write_loop(
    members: Vec<RedisMember>,
    password: String,
    clock: Clock,
    stopped: watch::Receiver<bool>,
    progress: watch::Sender<usize>,
) -> WriterReport {
    let mut report = WriterReport::default();
    let mut target: Option<RedisMember> = members.first().cloned();
    let mut next_guess = 0_usize;
    let mut connection: Option<MultiplexedConnection> = None;
    let mut id = 0_u64;
    let started = tokio::time::Instant::now();
    while !*stopped.borrow() && started.elapsed() < MAX_RUN {
        let Some(member) = target.clone() else {
            break;
        };
        if connection.is_none() {
            match connect(&member, &password, WRITE_TIMEOUT).await {
                Ok(made) => connection = Some(made),
                Err(_) => {
                    next_guess = (next_guess + 1) % members.len().max(1);
                    target = members.get(next_guess).cloned();
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            }
        }
        let Some(conn) = connection.as_mut() else {
            continue;
        };
        id += 1;
        report.attempts += 1;
        let key = format!("{HASH_TAG}:{id}");
        let set: Result<(), redis::RedisError> = tokio::time::timeout(
            WRITE_TIMEOUT,
            redis::cmd("SET").arg(&key).arg(id).query_async(conn),
        )
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )))
        });
        match set {
            Ok(()) => {
                let waited: Result<i64, redis::RedisError> = tokio::time::timeout(
                    WRITE_TIMEOUT,
                    redis::cmd("WAIT").arg(1).arg(200).query_async(conn),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(redis::RedisError::from(std::io::Error::from(
                        std::io::ErrorKind::TimedOut,
                    )))
                });
                if waited.is_ok_and(|replicas| replicas >= 1) {
                    report.acks.push(RedisAck {
                        id,
                        node: member.name.clone(),
                        at: clock(),
                    });
                    progress.send_replace(report.acks.len());
                } else {
                    report.unacknowledged += 1;
                }
            }
            Err(error) => {
                report.unacknowledged += 1;
                if let Some((address, _)) = error.redirect_node() {
                    target = members
                        .iter()
                        .find(|m| format!("{}:{}", m.host, m.port) == address)
                        .cloned()
                        .or(target);
                } else if matches!(error.kind(), redis::ErrorKind::Io) || error.is_timeout() {
                    next_guess = (next_guess + 1) % members.len().max(1);
                    target = members.get(next_guess).cloned();
                }
                connection = None;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    report
}

/// Ids of `acks` whose keys the node serving the writer's slot does not hold.
pub async fn missing_in_cluster(
    members: &[RedisMember],
    password: &str,
    acks: &[RedisAck],
) -> Result<Vec<u64>, RedisDrillError> {
    let owner = owner(members, password)
        .await
        .ok_or_else(|| RedisDrillError::ReadBack {
            node: "the Redis Cluster".to_owned(),
            message: "no node answered for the writer's slot".to_owned(),
        })?;
    super::writer::missing_with_prefix(&owner, password, acks, &format!("{HASH_TAG}:")).await
}

/// Names used in reports.
pub fn node_of(members: &[RedisMember], index: usize) -> NodeId {
    members
        .get(index)
        .map_or_else(|| NodeId::new("unknown"), |m| m.name.clone())
}

/// The nodes the rendered cluster Job's script forms listen on the rendered port, each on its
/// own loopback address (as pods have their own IPs): 127.0.77.1, 127.0.77.2, ...
const SCRIPT_NET: [u8; 3] = [127, 0, 77];

/// The cluster-mode ValidCluster of `instances` nodes the drill renders from.
fn cluster_mode_spec(instances: usize) -> Result<shanraq_api::ValidCluster, RedisDrillError> {
    let mut cluster = drill_cluster(&RedisOptions {
        instances,
        ..RedisOptions::default()
    })?;
    cluster.spec.redis.mode = RedisMode::Cluster;
    cluster.spec.redis.appendonly = false;
    Ok(cluster)
}

impl LocalRedisCluster {
    /// Starts `instances` nodes from the rendered cluster-mode config, each on its own loopback
    /// address and the rendered port, and leaves them unformed: the rendered cluster Job's
    /// script ([`LocalRedisCluster::run_cluster_job`]) forms them.
    pub async fn start_unformed(instances: usize) -> Result<LocalRedisCluster, RedisDrillError> {
        let mut group = LocalRedisCluster {
            servers: Vec::new(),
            members: Vec::new(),
            password: shanraq_testkit::secrets::random_secret(32),
            tracker: FailoverTracker::default(),
        };
        group.add_unformed(instances).await?;
        Ok(group)
    }

    /// Starts `count` more unformed nodes, as a scale-out's new pods.
    pub async fn add_unformed(&mut self, count: usize) -> Result<(), RedisDrillError> {
        let cluster = cluster_mode_spec(self.members.len() + count)?;
        let config = node_config(&cluster, &self.password);
        let port = u16::try_from(shanraq_render::redis::PORT).unwrap_or(6379);
        for _ in 0..count {
            let index = self.members.len();
            let last = u8::try_from(index + 1).map_err(|_| RedisDrillError::UnknownNode {
                index,
                len: self.members.len(),
            })?;
            let ip = Ipv4Addr::new(SCRIPT_NET[0], SCRIPT_NET[1], SCRIPT_NET[2], last);
            // Outgoing connections from a loopback address start at 127.0.0.1 unless told
            // otherwise, and Redis Cluster records a peer at the address its connection came
            // from; a pod's connections leave from the pod's own IP.
            let config = format!("{config}bind-source-addr {ip}\n");
            let server = RedisServer::start_at(&config, ip, port, None).await?;
            self.members.push(RedisMember::new(
                format!("redis-{index}"),
                ip.to_string(),
                port,
            ));
            self.servers.push(server);
        }
        Ok(())
    }

    /// Runs the script of the rendered cluster Job for as many instances as there are nodes,
    /// with only the pod names replaced by the nodes' addresses and the password's directory
    /// by a temporary one. Returns what it printed.
    pub fn run_cluster_job(&self) -> Result<String, RedisDrillError> {
        let cluster = cluster_mode_spec(self.members.len())?;
        let script = shanraq_render::redis::cluster_init_script(&cluster);
        let secrets = tempfile::tempdir().map_err(|error| RedisDrillError::Tool {
            command: "mktemp".to_owned(),
            output: error.to_string(),
        })?;
        std::fs::write(secrets.path().join("password"), &self.password).map_err(|error| {
            RedisDrillError::Tool {
                command: "writing the password file".to_owned(),
                output: error.to_string(),
            }
        })?;
        let hosts: Vec<&str> = self.members.iter().map(|m| m.host.as_str()).collect();
        let script: String = script
            .lines()
            .map(|line| {
                if line.starts_with("hosts=") {
                    format!("hosts='{}'", hosts.join(" "))
                } else {
                    line.replace(
                        shanraq_render::redis::SECRET_DIR,
                        &secrets.path().display().to_string(),
                    )
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let output = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env_remove("REDISCLI_AUTH")
            .output()
            .map_err(|error| RedisDrillError::Tool {
                command: "sh".to_owned(),
                output: error.to_string(),
            })?;
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() {
            return Err(RedisDrillError::Tool {
                command: "the rendered Redis cluster Job script".to_owned(),
                output: printed,
            });
        }
        Ok(printed)
    }
}

/// The rendered cluster-mode redis.conf of `cluster` with the drill's password.
fn node_config(cluster: &shanraq_api::ValidCluster, password: &str) -> String {
    let rendered = shanraq_render::redis::redis_conf(cluster).replace(
        "\ndir /data\n",
        &format!("\ndir {}\n", std::env::temp_dir().display()),
    );
    format!("{rendered}requirepass \"{password}\"\nmasterauth \"{password}\"\n")
}

/// `redis-cli --cluster ...` with the password in the environment (never on the command line).
fn redis_cli_cluster(password: &str, args: &[String]) -> Result<String, RedisDrillError> {
    let output = Command::new("redis-cli")
        .env("REDISCLI_AUTH", password)
        .arg("--cluster")
        .args(args)
        .output()
        .map_err(|error| RedisDrillError::Tool {
            command: "redis-cli".to_owned(),
            output: error.to_string(),
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(RedisDrillError::Tool {
            command: format!(
                "redis-cli --cluster {}",
                args.first().map_or("", String::as_str)
            ),
            output: format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
        });
    }
    Ok(stdout)
}

/// Waits (bounded) until `redis-cli --cluster check` passes: every node agrees on the slots'
/// configuration, which `add-node`, `rebalance` and `del-node` insist on.
async fn wait_agreement(password: &str, entry: &str) -> Result<(), RedisDrillError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match redis_cli_cluster(password, &["check".to_owned(), entry.to_owned()]) {
            Ok(_) => return Ok(()),
            Err(error) if tokio::time::Instant::now() >= deadline => return Err(error),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn address(member: &RedisMember) -> String {
    format!("{}:{}", member.host, member.port)
}

impl LocalRedisCluster {
    /// `CLUSTER MYID` of node `index`.
    pub async fn node_id(&self, index: usize) -> Result<String, RedisDrillError> {
        let member = self
            .members
            .get(index)
            .ok_or(RedisDrillError::UnknownNode {
                index,
                len: self.members.len(),
            })?;
        let mut connection = connect(member, &self.password, WRITE_TIMEOUT)
            .await
            .map_err(|error| RedisDrillError::Node {
                node: member.name.to_string(),
                message: error.to_string(),
            })?;
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query_async(&mut connection)
            .await
            .map_err(|error| RedisDrillError::Node {
                node: member.name.to_string(),
                message: error.to_string(),
            })
    }

    /// Waits (bounded) until every node knows `count` nodes (gossip has spread) and reports
    /// `cluster_state:ok`: a node that has just joined answers CLUSTERDOWN until it has learned
    /// the slot map, and a rebalance through it then fails.
    pub async fn wait_all_know(&self, count: usize) -> Result<(), RedisDrillError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let mut all = true;
            for index in 0..self.members.len() {
                let settled = self
                    .client(index)
                    .cluster_view()
                    .await
                    .map(|view| (view.known_nodes as usize, view.state_ok));
                if settled.ok() != Some((count, true)) {
                    all = false;
                    break;
                }
            }
            if all {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RedisDrillError::Timeout {
                    what: format!("every Redis Cluster node knowing {count} nodes, state ok"),
                    seconds: 60,
                    detail: String::new(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Scaling out: two new nodes from the same config, the first added as a master, the
    /// second as its replica, then the slots rebalanced onto the empty master.
    pub async fn add_pair(&mut self) -> Result<(usize, usize), RedisDrillError> {
        let config_source = self
            .servers
            .first()
            .map(|server| server.dir().join("redis.conf"))
            .ok_or(RedisDrillError::UnknownNode { index: 0, len: 0 })?;
        let config =
            std::fs::read_to_string(&config_source).map_err(|error| RedisDrillError::Node {
                node: "redis-0".to_owned(),
                message: format!("cannot read {}: {error}", config_source.display()),
            })?;
        let mut added = Vec::new();
        for _ in 0..2 {
            let port = loop {
                let port = free_port()?;
                if port <= 22_700 {
                    break port;
                }
            };
            let server = RedisServer::start_at(&config, Ipv4Addr::LOCALHOST, port, None).await?;
            let index = self.members.len();
            self.members.push(RedisMember::new(
                format!("redis-{index}"),
                "127.0.0.1",
                port,
            ));
            self.servers.push(server);
            added.push(index);
        }
        let (master, replica) = (added[0], added[1]);
        let existing = address(&self.members[0]);
        wait_agreement(&self.password, &existing).await?;
        redis_cli_cluster(
            &self.password,
            &[
                "add-node".to_owned(),
                address(&self.members[master]),
                existing.clone(),
            ],
        )?;
        self.wait_view("the new master joining", Duration::from_secs(30), |view| {
            view.known_nodes as usize == master + 1
        })
        .await?;
        let master_id = self.node_id(master).await?;
        wait_agreement(&self.password, &existing).await?;
        // Joined as an empty master, then made a replica once it has heard of the new master
        // through gossip (`--cluster-slave` races that and fails with "Unknown node").
        redis_cli_cluster(
            &self.password,
            &[
                "add-node".to_owned(),
                address(&self.members[replica]),
                existing.clone(),
            ],
        )?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let member = &self.members[replica];
            let answer = match connect(member, &self.password, WRITE_TIMEOUT).await {
                Ok(mut connection) => redis::cmd("CLUSTER")
                    .arg("REPLICATE")
                    .arg(&master_id)
                    .query_async::<()>(&mut connection)
                    .await
                    .map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            match answer {
                Ok(()) => break,
                Err(message) if tokio::time::Instant::now() >= deadline => {
                    return Err(RedisDrillError::Node {
                        node: member.name.to_string(),
                        message: format!("CLUSTER REPLICATE {master_id}: {message}"),
                    });
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
        self.wait_view("the new replica joining", Duration::from_secs(30), |view| {
            view.replicas_of(&master_id) == 1
        })
        .await?;
        // Slots move between nodes directly: each must know every other before a rebalance.
        self.wait_all_know(self.members.len()).await?;
        wait_agreement(&self.password, &existing).await?;
        redis_cli_cluster(
            &self.password,
            &[
                "rebalance".to_owned(),
                existing,
                "--cluster-use-empty-masters".to_owned(),
            ],
        )?;
        Ok((master, replica))
    }

    /// Scaling in: every slot moved off the master at `master` (rebalance with weight 0), then
    /// its replica and itself forgotten by the cluster (`del-node`) and stopped.
    pub async fn remove_pair(&mut self, master: usize) -> Result<(), RedisDrillError> {
        let master_id = self.node_id(master).await?;
        let other = (0..self.members.len())
            .find(|index| *index != master)
            .ok_or(RedisDrillError::UnknownNode {
                index: master,
                len: self.members.len(),
            })?;
        let entry = address(&self.members[other]);
        self.wait_all_know(self.members.len()).await?;
        wait_agreement(&self.password, &entry).await?;
        redis_cli_cluster(
            &self.password,
            &[
                "rebalance".to_owned(),
                entry.clone(),
                "--cluster-weight".to_owned(),
                format!("{master_id}=0"),
            ],
        )?;
        let id = master_id.clone();
        let view = self
            .wait_view(
                "the leaving master emptied",
                Duration::from_secs(60),
                move |view| {
                    view.covered()
                        && view
                            .nodes
                            .iter()
                            .any(|node| node.id == id && node.slots == 0)
                },
            )
            .await?;
        let replicas: Vec<String> = view
            .nodes
            .iter()
            .filter(|node| node.master_id.as_deref() == Some(master_id.as_str()))
            .map(|node| node.id.clone())
            .collect();
        for node in replicas.iter().chain(std::iter::once(&master_id)) {
            wait_agreement(&self.password, &entry).await?;
            redis_cli_cluster(
                &self.password,
                &["del-node".to_owned(), entry.clone(), node.clone()],
            )?;
        }
        Ok(())
    }
}

/// `GET key` through the cluster, following `MOVED` (at most a few hops).
pub async fn cluster_get(
    members: &[RedisMember],
    password: &str,
    key: &str,
) -> Result<Option<String>, RedisDrillError> {
    let mut target = members
        .first()
        .cloned()
        .ok_or(RedisDrillError::UnknownNode { index: 0, len: 0 })?;
    for _ in 0..4 {
        let mut connection = connect(&target, password, WRITE_TIMEOUT)
            .await
            .map_err(|error| RedisDrillError::Node {
                node: target.name.to_string(),
                message: error.to_string(),
            })?;
        let reply: Result<Option<String>, redis::RedisError> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut connection)
            .await;
        match reply {
            Ok(value) => return Ok(value),
            Err(error) => {
                let Some((moved_to, _)) = error.redirect_node() else {
                    return Err(RedisDrillError::Node {
                        node: target.name.to_string(),
                        message: format!("GET {key}: {error}"),
                    });
                };
                target = members
                    .iter()
                    .find(|m| address(m) == moved_to)
                    .cloned()
                    .ok_or_else(|| RedisDrillError::Node {
                        node: target.name.to_string(),
                        message: format!("{key} moved to an unknown node {moved_to}"),
                    })?;
            }
        }
    }
    Err(RedisDrillError::Render(format!(
        "GET {key}: too many redirections"
    )))
}

/// `SET key value` through the cluster, following `MOVED`.
pub async fn cluster_set(
    members: &[RedisMember],
    password: &str,
    key: &str,
    value: &str,
) -> Result<(), RedisDrillError> {
    let mut target = members
        .first()
        .cloned()
        .ok_or(RedisDrillError::UnknownNode { index: 0, len: 0 })?;
    for _ in 0..4 {
        let mut connection = connect(&target, password, WRITE_TIMEOUT)
            .await
            .map_err(|error| RedisDrillError::Node {
                node: target.name.to_string(),
                message: error.to_string(),
            })?;
        let reply: Result<(), redis::RedisError> = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut connection)
            .await;
        match reply {
            Ok(()) => return Ok(()),
            Err(error) => {
                let Some((moved_to, _)) = error.redirect_node() else {
                    return Err(RedisDrillError::Node {
                        node: target.name.to_string(),
                        message: format!("SET {key}: {error}"),
                    });
                };
                target = members
                    .iter()
                    .find(|m| address(m) == moved_to)
                    .cloned()
                    .ok_or_else(|| RedisDrillError::Node {
                        node: target.name.to_string(),
                        message: format!("{key} moved to an unknown node {moved_to}"),
                    })?;
            }
        }
    }
    Err(RedisDrillError::Render(format!(
        "SET {key}: too many redirections"
    )))
}
