//! Builders for what instances report, and a harness that drives the engine with an injected
//! clock and records everything it decided.

use std::time::Duration;

use crate::events::Lifecycle;
pub use crate::machine::Probing;
use crate::postgres::{
    Command, CommandError, DataDurability, Event, EventKind, HaState, Member, Millis, NodeId,
    Observation, PostgresHa, PostgresHaConfig, ReplicationMode, StepOutput,
};
use crate::wire::{InstanceRole, InstanceStatus, Lsn, ReplicationPeer};

/// An instance report under construction.
#[derive(Clone, Debug)]
pub struct Report(pub InstanceStatus);

fn base(name: &str, role: InstanceRole) -> InstanceStatus {
    InstanceStatus {
        name: name.to_owned(),
        role,
        epoch: 0,
        epoch_owner: None,
        primary_epoch: None,
        fenced: false,
        running: true,
        in_recovery: None,
        timeline: Some(1),
        current_lsn: None,
        received_lsn: None,
        replayed_lsn: None,
        replay_paused: None,
        streaming: None,
        detached: false,
        writable: None,
        replay_lag_seconds: None,
        replication: Vec::new(),
        synchronous_standby_names: None,
        final_lsn: None,
        message: None,
        archiver: None,
        repository: None,
        backup_peer: None,
    }
}

pub fn primary(name: &str) -> Report {
    let mut status = base(name, InstanceRole::Primary);
    status.in_recovery = Some(false);
    status.current_lsn = Some(Lsn(0));
    status.synchronous_standby_names = Some("ANY 1 (*)".to_owned());
    Report(status)
}

pub fn replica(name: &str) -> Report {
    let mut status = base(name, InstanceRole::Replica);
    status.in_recovery = Some(true);
    status.streaming = Some(true);
    status.received_lsn = Some(Lsn(0));
    status.replayed_lsn = Some(Lsn(0));
    Report(status)
}

/// Stopped on the operator's order (or restarted with a primary's data dir).
pub fn fenced(name: &str) -> Report {
    let mut status = base(name, InstanceRole::Fenced);
    status.fenced = true;
    status.running = false;
    Report(status)
}

impl Report {
    /// The engine that claimed the reported epoch.
    pub fn owned_by(mut self, owner: &str) -> Report {
        self.0.epoch_owner = Some(owner.to_owned());
        self
    }

    /// The reported epoch; a primary took office at it.
    pub fn epoch(mut self, epoch: u64) -> Report {
        self.0.epoch = epoch;
        if self.0.role == InstanceRole::Primary {
            self.0.primary_epoch = Some(epoch);
        }
        self
    }

    /// Primary: took office at `epoch` (a former primary restarted at a later epoch).
    pub fn in_office_at(mut self, epoch: u64) -> Report {
        self.0.primary_epoch = Some(epoch);
        self
    }

    /// Primary: current LSN.
    pub fn lsn(mut self, lsn: u64) -> Report {
        self.0.current_lsn = Some(Lsn(lsn));
        self
    }

    /// Replica: received and replayed LSN.
    pub fn at_lsn(mut self, received: u64, replayed: u64) -> Report {
        self.0.received_lsn = Some(Lsn(received));
        self.0.replayed_lsn = Some(Lsn(replayed));
        self
    }

    /// Primary: these standbys stream with `sync_state` quorum.
    pub fn quorum(mut self, names: &[&str]) -> Report {
        for name in names {
            self.0.replication.push(peer(name, "streaming", "quorum"));
        }
        self
    }

    /// Primary: these standbys stream with `sync_state` quorum and flushed up to `lsn`.
    pub fn quorum_at(mut self, names: &[&str], lsn: u64) -> Report {
        for name in names {
            let mut row = peer(name, "streaming", "quorum");
            row.flush_lsn = Some(Lsn(lsn));
            self.0.replication.push(row);
        }
        self
    }

    /// Primary: the `synchronous_standby_names` in effect.
    pub fn standby_names(mut self, names: &str) -> Report {
        self.0.synchronous_standby_names = Some(names.to_owned());
        self
    }

    /// Primary: these standbys stream asynchronously.
    pub fn async_peers(mut self, names: &[&str]) -> Report {
        for name in names {
            self.0.replication.push(peer(name, "streaming", "async"));
        }
        self
    }

    pub fn timeline(mut self, timeline: u32) -> Report {
        self.0.timeline = Some(timeline);
        self
    }

    /// Replica: its WAL receiver is not streaming.
    pub fn not_streaming(mut self) -> Report {
        self.0.streaming = Some(false);
        self
    }

    /// Replica: detached from every upstream (after `detach`).
    pub fn detached(mut self) -> Report {
        self.0.detached = true;
        self.0.streaming = Some(false);
        self
    }

    pub fn final_lsn(mut self, lsn: u64) -> Report {
        self.0.final_lsn = Some(Lsn(lsn));
        self
    }
}

fn peer(name: &str, state: &str, sync_state: &str) -> ReplicationPeer {
    ReplicationPeer {
        application_name: name.to_owned(),
        state: state.to_owned(),
        sync_state: sync_state.to_owned(),
        sent_lsn: None,
        write_lsn: None,
        flush_lsn: None,
        replay_lsn: None,
    }
}

/// One member's probe result in a round. (Test rounds are a few values each: the size of a
/// report does not matter here.)
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Probe {
    Up(Report),
    /// Timed out.
    Down(&'static str),
    /// Connection refused: no manager listens.
    Refused(&'static str),
}

pub fn up(report: Report) -> Probe {
    Probe::Up(report)
}

pub fn down(name: &'static str) -> Probe {
    Probe::Down(name)
}

pub fn node(name: &str) -> NodeId {
    NodeId::new(name)
}

pub fn members() -> Vec<Member> {
    (0..3)
        .map(|i| Member::new(format!("pg-{i}"), "127.0.0.1", 25432 + i))
        .collect()
}

pub fn config(replication: ReplicationMode) -> PostgresHaConfig {
    PostgresHaConfig {
        probe_period: Duration::from_millis(100),
        failure_threshold: 3,
        failover_delay: Duration::ZERO,
        maximum_lag_on_failover: 1000,
        replication,
        data_durability: DataDurability::Required,
        switchover_timeout: Duration::from_secs(5),
        fence_timeout: Duration::from_secs(1),
        lease_duration: Duration::from_millis(1500),
    }
}

/// Synchronous `ANY number` with `dataDurability: preferred`.
pub fn preferred(number: u32) -> PostgresHaConfig {
    PostgresHaConfig {
        data_durability: DataDurability::Preferred,
        ..config(ReplicationMode::Synchronous { number })
    }
}

pub const SYNC: ReplicationMode = ReplicationMode::Synchronous { number: 1 };
pub const ASYNC: ReplicationMode = ReplicationMode::Asynchronous;

/// The engine under a fake clock, with everything it emitted.
#[derive(Debug)]
pub struct Sim {
    pub ha: PostgresHa,
    pub now: Millis,
    pub commands: Vec<Command>,
    pub events: Vec<Event>,
}

impl Sim {
    pub fn new(config: PostgresHaConfig, state: HaState) -> Sim {
        Sim {
            ha: PostgresHa::new(config, members(), state),
            now: Millis(1_000_000),
            commands: Vec::new(),
            events: Vec::new(),
        }
    }

    /// A cluster whose primary pg-0 holds epoch 1, with pg-1 and pg-2 streaming (quorum in
    /// synchronous mode), already routed.
    pub fn healthy(replication: ReplicationMode) -> Sim {
        Sim::healthy_with(config(replication))
    }

    /// `healthy`, with `config`.
    pub fn healthy_with(config: PostgresHaConfig) -> Sim {
        let mut round = healthy_round(1, 1000);
        if let (ReplicationMode::Synchronous { number }, Some(Probe::Up(report))) =
            (config.replication, round.first_mut())
        {
            report.0.synchronous_standby_names = Some(format!("ANY {number} (*)"));
        }
        let mut sim = Sim::new(config, HaState::with_primary(node("pg-0"), 1));
        let out = sim.round(round);
        let route = Command::Route {
            primary: node("pg-0"),
            epoch: 1,
        };
        assert_eq!(
            out.commands,
            vec![route.clone()],
            "a healthy cluster is routed to its primary"
        );
        sim.done(&route, Ok(()));
        assert!(sim.step().commands.is_empty());
        sim
    }

    pub fn advance(&mut self, ms: u64) {
        self.now = Millis(self.now.0 + ms);
    }

    /// Feeds one probe round taken now, then steps. The clock then moves one probe period.
    pub fn round(&mut self, probes: Vec<Probe>) -> StepOutput {
        for probe in probes {
            self.observe(probe);
        }
        let out = self.step();
        self.advance(100);
        out
    }

    /// Feeds one probe round as the driver does (`observe_round`), then steps; the clock then
    /// moves one probe period.
    pub fn round_at_once(&mut self, probes: Vec<Probe>) -> StepOutput {
        let observations = probes
            .into_iter()
            .map(|probe| self.observation(probe))
            .collect();
        self.ha.observe_round(observations);
        let out = self.step();
        self.advance(100);
        out
    }

    fn observation(&self, probe: Probe) -> Observation {
        match probe {
            Probe::Up(report) => Observation::reachable(report.0, self.now),
            Probe::Down(name) => Observation::unreachable(name, self.now, "timed out"),
            Probe::Refused(name) => Observation::refused(name, self.now, "connection refused"),
        }
    }

    pub fn observe(&mut self, probe: Probe) {
        let observation = self.observation(probe);
        self.ha.observe(observation);
    }

    pub fn step(&mut self) -> StepOutput {
        let out = self.ha.step(self.now);
        self.commands.extend(out.commands.iter().cloned());
        self.events.extend(out.events.iter().cloned());
        out
    }

    pub fn done(&mut self, command: &Command, result: Result<(), CommandError>) {
        self.ha.command_done(
            command,
            crate::postgres::Outcome {
                result,
                status: None,
            },
            self.now,
        );
    }

    /// Whether an event with `reason` was told.
    pub fn saw(&self, reason: &str) -> bool {
        self.reasons().iter().any(|told| told == reason)
    }

    pub fn reasons(&self) -> Vec<String> {
        self.events
            .iter()
            .map(crate::engine::Notable::reason)
            .collect()
    }

    pub fn refusals(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|event| match &event.kind {
                EventKind::Lifecycle(Lifecycle::FailoverRefused { reason }) => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    /// `name` answers its detach at `epoch`, reporting its final received and replayed LSNs.
    pub fn detached(&mut self, name: &str, epoch: u64, received: u64, replayed: u64) {
        self.done(&detach(name, epoch), Ok(()));
        self.observe(up(replica(name)
            .epoch(epoch)
            .at_lsn(received, replayed)
            .detached()));
    }

    /// Serialises the state as the caller would persist it and builds a fresh engine from it.
    pub fn restart(&mut self) {
        let json = serde_json::to_string(self.ha.state()).expect("state serialises");
        let state: HaState = serde_json::from_str(&json).expect("state deserialises");
        self.ha = PostgresHa::new(self.ha.config().clone(), members(), state);
    }
}

/// pg-0 primary at `lsn`, pg-1 and pg-2 streaming in quorum and caught up.
pub fn healthy_round(epoch: u64, lsn: u64) -> Vec<Probe> {
    vec![
        up(primary("pg-0")
            .epoch(epoch)
            .lsn(lsn)
            .quorum(&["pg-1", "pg-2"])),
        up(replica("pg-1").epoch(epoch).at_lsn(lsn, lsn)),
        up(replica("pg-2").epoch(epoch).at_lsn(lsn, lsn)),
    ]
}

pub fn promote(name: &str, epoch: u64) -> Command {
    Command::Promote {
        node: node(name),
        epoch,
    }
}

pub fn fence(name: &str, epoch: u64) -> Command {
    Command::Fence {
        node: node(name),
        epoch,
    }
}

pub fn detach(name: &str, epoch: u64) -> Command {
    Command::Detach {
        node: node(name),
        epoch,
    }
}

pub fn route(name: &str, epoch: u64) -> Command {
    Command::Route {
        primary: node(name),
        epoch,
    }
}

pub fn synchronous(name: &str, standby_names: Option<&str>, epoch: u64) -> Command {
    Command::Synchronous {
        node: node(name),
        standby_names: standby_names.map(str::to_owned),
        epoch,
    }
}

pub fn upstream_of(name: &str) -> crate::wire::Upstream {
    members()
        .into_iter()
        .find(|m| m.name.as_str() == name)
        .map(|m| m.upstream())
        .expect("known member")
}

pub fn demote(name: &str, to: &str, epoch: u64) -> Command {
    Command::Demote {
        node: node(name),
        upstream: upstream_of(to),
        epoch,
    }
}

pub fn repoint(name: &str, to: &str, epoch: u64) -> Command {
    Command::Repoint {
        node: node(name),
        upstream: upstream_of(to),
        epoch,
    }
}
