//! Builders for what Redis nodes report, and a harness that drives the engine with an injected
//! clock, runs its commands against a simulated group, and records everything it decided.

use std::collections::BTreeMap;

use crate::events::Lifecycle;
pub use crate::machine::Probing;
use crate::redis::{
    Command, DETACHED_HOST, DETACHED_PORT, Event, EventKind, Millis, NodeId, Observation, RedisHa,
    RedisHaConfig, RedisHaState, RedisMember, ReplicaLink, ReplicationInfo, Role,
};

pub const PORT: u16 = 6379;

pub fn members(names: &[&str]) -> Vec<RedisMember> {
    names
        .iter()
        .map(|name| RedisMember::new(*name, format!("{name}.host"), PORT))
        .collect()
}

/// One simulated Redis node: enough of its replication state to answer INFO and REPLICAOF.
#[derive(Clone, Debug)]
pub struct SimNode {
    pub up: bool,
    pub role: Role,
    pub master: Option<(String, u16)>,
    pub offset: u64,
    pub replid: String,
    pub paused: bool,
    /// `INFO keyspace` and `aof_enabled`: set by a test for a node back from its
    /// append-only file.
    pub keys: Option<u64>,
    pub aof: bool,
}

/// A simulated group where every replica that points at a live master follows its offset.
#[derive(Debug)]
pub struct Sim {
    pub engine: RedisHa,
    pub nodes: BTreeMap<String, SimNode>,
    pub now: Millis,
    pub events: Vec<Event>,
    pub executed: Vec<Command>,
    /// Replicas that lag: they do not follow the master's offset.
    pub frozen_offsets: Vec<String>,
    /// Nodes whose `Detach` fails (slow or refused) while they still answer probes.
    pub failing_detach: Vec<String>,
    pub counter: u64,
}

impl Sim {
    /// `names[0]` the master, the others its replicas, all at offset 100; the engine adopted
    /// the master and routed to it.
    pub fn healthy(names: &[&str], config: RedisHaConfig) -> Sim {
        let mut nodes = BTreeMap::new();
        for (index, name) in names.iter().enumerate() {
            let master = (index > 0).then(|| (format!("{}.host", names[0]), PORT));
            nodes.insert(
                (*name).to_owned(),
                SimNode {
                    up: true,
                    role: if index == 0 {
                        Role::Master
                    } else {
                        Role::Replica
                    },
                    master,
                    offset: 100,
                    replid: "history-a".to_owned(),
                    paused: false,
                    keys: None,
                    aof: false,
                },
            );
        }
        let engine = RedisHa::new(config, members(names), RedisHaState::default());
        let mut sim = Sim {
            engine,
            nodes,
            now: Millis(1_000_000),
            events: Vec::new(),
            executed: Vec::new(),
            frozen_offsets: Vec::new(),
            failing_detach: Vec::new(),
            counter: 0,
        };
        sim.rounds(4);
        assert_eq!(
            sim.engine
                .state()
                .current_primary
                .as_ref()
                .map(NodeId::as_str),
            Some(names[0]),
            "the master is adopted: {:?}",
            sim.events
        );
        assert_eq!(
            sim.engine.routed_primary().map(NodeId::as_str),
            Some(names[0])
        );
        sim.events.clear();
        sim.executed.clear();
        sim
    }

    fn info_of(&self, name: &str) -> Option<ReplicationInfo> {
        let node = self.nodes.get(name)?;
        if !node.up {
            return None;
        }
        let replicas = self
            .nodes
            .iter()
            .filter(|(_, other)| {
                other.up && other.master.as_ref() == Some(&(format!("{name}.host"), PORT))
            })
            .map(|(other, state)| ReplicaLink {
                ip: format!("{other}.host"),
                port: PORT,
                online: true,
                offset: state.offset,
                lag_seconds: 0,
            })
            .collect();
        Some(ReplicationInfo {
            role: node.role,
            master_host: node.master.as_ref().map(|(h, _)| h.clone()),
            master_port: node.master.as_ref().map(|(_, p)| *p),
            link_up: self.link_up(name),
            sync_in_progress: false,
            offset: node.offset,
            replid: node.replid.clone(),
            replicas,
            good_replicas: None,
            keys: node.keys,
            aof_enabled: node.aof,
            loading: false,
            aof_rewriting: false,
        })
    }

    fn master_of(&self, name: &str) -> Option<&SimNode> {
        let (host, _) = self.nodes.get(name)?.master.as_ref()?;
        let master = host.strip_suffix(".host")?;
        self.nodes
            .get(master)
            .filter(|m| m.up && m.role == Role::Master)
    }

    fn link_up(&self, name: &str) -> bool {
        self.nodes
            .get(name)
            .is_some_and(|n| n.role == Role::Replica)
            && self.master_of(name).is_some()
    }

    /// The master takes one write (when it has a replica attached), replicas follow.
    pub fn write(&mut self) {
        self.counter += 1;
        let masters: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.up && n.role == Role::Master && !n.paused)
            .map(|(name, _)| name.clone())
            .collect();
        for master in masters {
            if let Some(node) = self.nodes.get_mut(&master) {
                node.offset += 10;
            }
        }
        self.replicate();
    }

    fn replicate(&mut self) {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for name in names {
            if self.frozen_offsets.contains(&name) {
                continue;
            }
            let Some((offset, replid)) =
                self.master_of(&name).map(|m| (m.offset, m.replid.clone()))
            else {
                continue;
            };
            if let Some(node) = self.nodes.get_mut(&name)
                && node.up
            {
                node.offset = offset;
                node.replid = replid;
            }
        }
    }

    /// One probe round, one step, and the step's commands run against the simulation.
    pub fn round(&mut self) {
        self.now = self.now.plus(self.engine.config().probe_period);
        self.write();
        let observations: Vec<Observation> = self
            .nodes
            .keys()
            .map(|name| match self.info_of(name) {
                Some(info) => Observation::reachable(name.as_str(), self.now, info),
                None => Observation::unreachable(name.as_str(), self.now, "timed out"),
            })
            .collect();
        self.engine.observe_round(observations);
        let out = self.engine.step(self.now);
        self.events.extend(out.events);
        for command in out.commands {
            let result = self.execute(&command);
            self.executed.push(command.clone());
            self.engine.command_done(&command, result, self.now);
        }
        let out = self.engine.step(self.now);
        self.events.extend(out.events);
        for command in out.commands {
            let result = self.execute(&command);
            self.executed.push(command.clone());
            self.engine.command_done(&command, result, self.now);
        }
    }

    pub fn rounds(&mut self, count: usize) {
        for _ in 0..count {
            self.round();
        }
    }

    fn execute(&mut self, command: &Command) -> crate::redis::command::CommandResult {
        let name = command.node().as_str().to_owned();
        if let Command::Route { .. } = command {
            return Ok(None);
        }
        let Some(node) = self.nodes.get_mut(&name) else {
            return Err(crate::redis::CommandError::Failed("no such node".into()));
        };
        if !node.up
            || (matches!(command, Command::Detach { .. }) && self.failing_detach.contains(&name))
        {
            return Err(crate::redis::CommandError::Failed("timed out".into()));
        }
        match command {
            Command::Detach { .. } => {
                node.role = Role::Replica;
                node.master = Some((DETACHED_HOST.to_owned(), DETACHED_PORT));
            }
            Command::Promote { .. } => {
                node.role = Role::Master;
                node.master = None;
                node.replid = format!("history-{}", self.counter);
            }
            Command::Replicate { master, .. } => {
                node.role = Role::Replica;
                node.master = Some((master.host.clone(), master.port));
            }
            Command::PauseWrites { .. } => node.paused = true,
            Command::Unpause { .. } => node.paused = false,
            Command::Route { .. } => {}
        }
        self.replicate();
        Ok(self.info_of(&name))
    }

    /// The last completed failover or switchover.
    pub fn last_failover(&self) -> crate::redis::FailoverRecord {
        self.engine
            .state()
            .last_failover
            .clone()
            .expect("a failover completed")
    }

    /// Whether an event with `reason` was told.
    pub fn saw(&self, reason: &str) -> bool {
        self.kinds().iter().any(|told| told == reason)
    }

    pub fn kinds(&self) -> Vec<String> {
        self.events
            .iter()
            .map(crate::engine::Notable::reason)
            .collect()
    }

    pub fn failovers_completed(&self) -> usize {
        self.events
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::Lifecycle(Lifecycle::FailoverCompleted { .. })
                )
            })
            .count()
    }

    pub fn master(&self) -> Option<&str> {
        self.engine
            .state()
            .current_primary
            .as_ref()
            .map(NodeId::as_str)
    }

    pub fn masters_up(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.up && n.role == Role::Master)
            .map(|(name, _)| name.as_str())
            .collect()
    }
}
