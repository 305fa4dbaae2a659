//! The one HA engine, written once for every product (PostgreSQL, Redis, whatever comes next):
//! `Ha<P>` holds what every engine holds (its members and timings, the persisted state with the
//! fencing token, its view of each member, the commands in flight, the events decided), walks
//! the phases, detects a failing primary, starts and completes a failover, and implements the
//! engine contract (`crate::engine::Engine`) that the generic driver runs.
//!
//! A product says what is its own in a few traits, each implemented in the product's folder:
//! `Product` (its types, and what it remembers between steps), and on `Ha<Self>`: `Probing`
//! (how it reads a probe, a signal and a command's outcome, what counts as a failing primary),
//! `Steady` (bootstrap and convergence), `Failing` (fence, elect, promote, route) and
//! `Switching` (its planned switchover). Adding an engine means writing those for a new folder;
//! nothing here changes.

use std::fmt::{Debug, Display};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::claim::Claimed;
use crate::core::Core;
use crate::dispatch::Targeted;
use crate::engine::{Decided, Engine, Notable};
use crate::events::Lifecycle;
use crate::postgres::{Millis, NodeId};
use crate::record::{FailoverKind, FailoverRecord, Stamped, Suspicion, Telling};
use crate::state::{HaState, Phase};
use crate::switchover::SwitchoverError;

/// The timings every engine reads from its configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How often every member is probed.
    pub probe_period: Duration,
    /// Consecutive failed probes of the primary before detection is confirmed.
    pub failure_threshold: u32,
    /// Extra wait after detection before the failover starts (cancelled by a good probe).
    pub failover_delay: Duration,
    /// How long fencing commands get before the engine says that fencing is blocked.
    pub fence_timeout: Duration,
}

/// A configuration that carries the shared timings.
pub trait Timed {
    fn timing(&self) -> Timing;
}

/// Implements `Timed` for a configuration with fields of the same names as `Timing`'s.
macro_rules! timed {
    ($config:ty) => {
        impl $crate::machine::Timed for $config {
            fn timing(&self) -> $crate::machine::Timing {
                $crate::machine::Timing {
                    probe_period: self.probe_period,
                    failure_threshold: self.failure_threshold,
                    failover_delay: self.failover_delay,
                    fence_timeout: self.fence_timeout,
                }
            }
        }
    };
}
pub(crate) use timed;

/// A member of a group, as the engine knows it.
pub trait Named {
    fn name(&self) -> &NodeId;
}

/// A command that carries its fencing token and names its member.
pub trait Command: Targeted + Clone + PartialEq + Debug + Display + Send + Sync + 'static {
    fn epoch(&self) -> u64;
    fn node(&self) -> &NodeId;
}

/// What a stored record or detail must be.
pub trait Stored:
    Clone + Default + PartialEq + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
}
impl<T> Stored for T where
    T: Clone + Default + PartialEq + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
}

/// One product's types: what a probe answers, what it adds to the state and its records, its
/// commands and events, and what its engine remembers between steps (not persisted).
pub trait Product: Debug + Sized + Send + 'static {
    type Config: Timed + Debug + Send;
    type Member: Named + Debug + Send;
    /// A member's answer to a probe.
    type Answer: Clone + Debug + Send + 'static;
    /// What the engine adds to its view of a member.
    type Seen: Clone + Default + Debug + Send;
    type Command: Command;
    type EventKind: From<Lifecycle<Self::RecordDetail>>
        + Telling
        + Clone
        + PartialEq
        + Debug
        + Send
        + Sync
        + 'static;
    type RecordDetail: Stored;
    type SuspicionDetail: Stored;
    type StateDetail: Stored;
    /// What the engine remembers between steps beyond the shared bookkeeping.
    type Memory: Debug + Send;
    /// A hint from outside the probes.
    type Signal: Debug + Send + 'static;
    /// How a command ended, as the adapter reports it.
    type Outcome: crate::engine::Outcome + Send + 'static;

    /// How the product names itself and its writable role in reasons and messages.
    const VOICE: crate::events::Voice;

    /// What the engine remembers when it starts from `state`.
    fn remember(state: &State<Self>) -> Self::Memory;
}

pub type State<P> = HaState<
    <P as Product>::RecordDetail,
    <P as Product>::SuspicionDetail,
    <P as Product>::StateDetail,
>;
pub type Record<P> = FailoverRecord<<P as Product>::RecordDetail>;
pub type Observation<P> = crate::probe::Observation<<P as Product>::Answer>;
pub type View<P> = crate::probe::View<<P as Product>::Answer, <P as Product>::Seen>;
pub type Event<P> = Stamped<<P as Product>::EventKind>;

/// The HA engine of one group of `P`.
#[derive(Debug)]
pub struct Ha<P: Product> {
    pub(crate) config: P::Config,
    pub(crate) members: Vec<P::Member>,
    pub(crate) state: State<P>,
    pub(crate) core: Core<P::Answer, P::Seen, P::Command, P::EventKind>,
    /// The newest claim seen on a member that is not this engine's (epoch, owner), until the
    /// driver takes it.
    pub(crate) newer_claim: Option<(u64, Option<String>)>,
    /// What the product remembers.
    pub(crate) own: P::Memory,
}

/// How a product reads its inputs, implemented on `Ha<Self>` in the product's folder.
pub trait Probing<P: Product> {
    /// Feeds one probe result. Unknown members and results older than the latest are ignored.
    fn observe(&mut self, observation: Observation<P>);
    fn signal(&mut self, signal: P::Signal);
    /// Reports how an emitted command ended.
    fn command_done(&mut self, command: &P::Command, outcome: P::Outcome, now: Millis);
    /// The highest epoch any member was seen holding (0 for members that hold none).
    fn highest_epoch_seen(&self) -> u64 {
        0
    }
    /// Drops what the product remembered from a state replaced by `resume_from`.
    fn forget(&mut self) {}

    /// Whether the designated primary's view counts as failing.
    fn failing(&self, view: &View<P>) -> bool;
    /// Why it fails, in a few words.
    fn failure_reason(view: &View<P>) -> String;
    /// Whether a failing primary must be failed over at once, without `failover_delay`.
    fn urgent(_view: &View<P>) -> bool {
        false
    }
    /// Whether the suspected primary answers well again.
    fn recovered(&self, node: &NodeId) -> bool;
    /// What the product adds to a suspicion.
    fn suspicion_detail(&self) -> P::SuspicionDetail;
    /// What the product adds to a failover record started after `suspect`.
    fn failover_detail(&self, suspect: Option<&Suspicion<P::SuspicionDetail>>) -> P::RecordDetail;
}

/// A product's steady state, implemented on `Ha<Self>` in the product's folder.
pub trait Steady<P: Product> {
    /// No primary known yet: adopt one, or bootstrap one.
    fn bootstrapping(&mut self, now: Millis);
    /// Healthy: route to the primary and bring every other member under it.
    fn converge(&mut self, now: Millis, commands: &mut Vec<P::Command>);
    /// After the phases held at one instant (PostgreSQL fences stale primaries here).
    fn after_step(&mut self, _now: Millis, _commands: &mut Vec<P::Command>) {}
}

/// A product's failover phases, implemented on `Ha<Self>` in the product's folder.
pub trait Failing<P: Product> {
    /// Make the old primary unable to take an acknowledged write.
    fn fencing(&mut self, now: Millis, commands: &mut Vec<P::Command>);
    /// Choose the new primary, or refuse to.
    fn electing(&mut self, now: Millis);
    fn promoting(&mut self, now: Millis, commands: &mut Vec<P::Command>);
    /// Switch writes to the new primary (`Ha::routed` completes it once confirmed).
    fn routing(&mut self, now: Millis, commands: &mut Vec<P::Command>);
}

/// A product's planned switchover, implemented on `Ha<Self>` in the product's folder (the
/// request itself is written once: `crate::switchover`).
pub trait Switching<P: Product> {
    /// Whether the primary is ready to hand over (confirmed, routed, answering).
    fn switchover_ready(&self, primary: &NodeId) -> bool;
    /// The members a switchover may go to, best first.
    fn switchover_candidates(&self, primary: &NodeId, now: Millis) -> Vec<NodeId>;
    /// What the product adds to a switchover's record.
    fn switchover_detail(&self) -> P::RecordDetail;
    /// A switchover away from `from` started.
    fn switchover_started(&mut self, _from: &NodeId) {}
    /// The old primary stops taking writes.
    fn switchover_fencing(&mut self, now: Millis, commands: &mut Vec<P::Command>);
    /// Waits for the target to reach the old primary's final position.
    fn switchover_draining(&mut self, now: Millis, commands: &mut Vec<P::Command>);
    /// Whether a switchover requested during a failover waits it out.
    const WAITS_OUT_FAILOVER: bool = false;
}

/// Everything a product implements on `Ha<Self>`.
pub trait Phases<P: Product>: Probing<P> + Steady<P> + Failing<P> + Switching<P> {}
impl<P: Product, T: Probing<P> + Steady<P> + Failing<P> + Switching<P>> Phases<P> for T {}

impl<P: Product> Ha<P> {
    /// An engine resuming from `state` (`State::default()` for a new group).
    pub fn new(config: P::Config, members: Vec<P::Member>, state: State<P>) -> Ha<P> {
        let core = Core::new(members.iter().map(|member| member.name().clone()));
        let own = P::remember(&state);
        Ha {
            config,
            members,
            state,
            core,
            newer_claim: None,
            own,
        }
    }

    /// The engine acting as `identity` (the owner of the epochs it claims).
    pub fn with_identity(mut self, identity: impl Into<String>) -> Ha<P> {
        self.core.identity = identity.into();
        self
    }

    pub fn identity(&self) -> &str {
        &self.core.identity
    }

    /// The state to persist.
    pub fn state(&self) -> &State<P> {
        &self.state
    }

    pub fn config(&self) -> &P::Config {
        &self.config
    }

    pub fn members(&self) -> &[P::Member] {
        &self.members
    }

    /// Commands issued and not yet reported done.
    pub fn outstanding(&self) -> impl Iterator<Item = &P::Command> {
        self.core.dispatch.in_flight()
    }

    /// The latest observation of `node`.
    pub fn last_observation(&self, node: &NodeId) -> Option<&Observation<P>> {
        self.core.last(node)
    }

    /// The member the router was last confirmed to send writes to.
    pub fn routed_primary(&self) -> Option<&NodeId> {
        self.core.routed_to()
    }

    /// The newest claim a member was seen holding that is not this engine's: a higher epoch,
    /// or this epoch from another owner. The driver must stop acting and reload the store.
    pub fn take_newer_claim(&mut self) -> Option<(u64, Option<String>)> {
        self.newer_claim.take()
    }

    pub(crate) fn timing(&self) -> Timing {
        self.config.timing()
    }

    pub(crate) fn event(&mut self, at: Millis, kind: impl Into<P::EventKind>) {
        self.core.event(at, self.state.epoch, kind.into());
    }

    pub(crate) fn member(&self, node: &NodeId) -> Option<&P::Member> {
        self.members.iter().find(|member| member.name() == node)
    }

    /// Every member but `node`.
    pub(crate) fn others(&self, node: &NodeId) -> Vec<NodeId> {
        self.members
            .iter()
            .map(|member| member.name().clone())
            .filter(|name| name != node)
            .collect()
    }

    pub(crate) fn in_flight_mut(&mut self) -> Option<&mut Record<P>> {
        self.state.in_flight.as_mut()
    }

    /// Records a claim seen on a member (or in a refusal): newer than this engine's, it is kept
    /// for the driver, which stops acting and reloads the store.
    pub(crate) fn note_claim(&mut self, epoch: u64, owner: Option<&str>) {
        // An engine that holds no claim yet (a new cluster's first adoption) has nothing to
        // lose to a newer one: it claims above whatever it sees.
        let Some(mine) = self.state.owner.as_deref() else {
            return;
        };
        let newer = epoch > self.state.epoch
            || (epoch == self.state.epoch && owner.is_some() && owner != Some(mine));
        if newer
            && self
                .newer_claim
                .as_ref()
                .is_none_or(|(seen, _)| epoch >= *seen)
        {
            self.newer_claim = Some((epoch, owner.map(str::to_owned)));
        }
    }

    /// Records that `command` ended (its target is free again, after a back-off when it failed)
    /// and tells a failure as an event; what the failure means is the product's.
    pub(crate) fn note_done(&mut self, command: &P::Command, error: Option<String>, now: Millis) {
        let period = self.timing().probe_period;
        self.core.finished(command, error.is_some(), now, period);
        if let Some(error) = error {
            self.event(
                now,
                Lifecycle::CommandFailed {
                    command: command.to_string(),
                    error,
                },
            );
        }
    }

    /// Routing is confirmed for `primary` at `epoch`: the failover or switchover completes.
    pub(crate) fn routed(&mut self, primary: &NodeId, epoch: u64, now: Millis)
    where
        Self: Phases<P>,
    {
        if self.state.current_primary.as_ref() != Some(primary) {
            return;
        }
        self.core.routed = Some((primary.clone(), epoch));
        if self.state.phase == Phase::Routing {
            self.complete(now);
        }
    }

    /// Whether writes are routed to `primary` at the current epoch.
    pub(crate) fn is_routed(&self, primary: &NodeId) -> bool {
        self.core.routed.as_ref() == Some(&(primary.clone(), self.state.epoch))
    }

    /// The failover in flight, for a phase that needs one; without one the group is Healthy.
    pub(crate) fn in_flight_or_healthy(&mut self) -> Option<Record<P>> {
        let record = self.state.in_flight.clone();
        if record.is_none() {
            self.state.phase = Phase::Healthy;
        }
        record
    }

    /// Fencing is not shown yet for `blocked`: said once (per reason) when the fencing commands
    /// had a fair chance to answer.
    pub(crate) fn fencing_blocked(&mut self, started_at: Millis, blocked: String, now: Millis) {
        let patient = now >= started_at.plus(self.timing().fence_timeout);
        if patient
            && self
                .in_flight_mut()
                .is_some_and(|record| record.refuse(&blocked))
        {
            self.event(now, Lifecycle::FencingBlocked { reason: blocked });
        }
    }

    /// The election refused for `reason`: said once per reason.
    pub(crate) fn refuse_failover(&mut self, reason: String, now: Millis) {
        if self
            .in_flight_mut()
            .is_some_and(|record| record.refuse(&reason))
        {
            self.event(now, Lifecycle::FailoverRefused { reason });
        }
    }

    /// The old primary `from` can no longer take an acknowledged write (`how`): the election
    /// may start.
    pub(crate) fn quorum_fenced(&mut self, from: NodeId, how: String, now: Millis) {
        if let Some(record) = self.in_flight_mut() {
            record.refusal = None;
        }
        self.event(now, Lifecycle::QuorumFenced { from, how });
        self.state.phase = Phase::Electing;
    }

    /// `node` was promoted: it is the primary, and writes are routed to it next.
    pub(crate) fn mark_promoted(&mut self, node: NodeId, now: Millis) {
        if let Some(record) = self.in_flight_mut() {
            record.promoted(node.clone(), now);
        }
        if let Some(view) = self.core.nodes.get_mut(&node) {
            view.clear_failures();
        }
        self.state.current_primary = Some(node.clone());
        self.state.target_primary = None;
        self.state.phase = Phase::Routing;
        self.event(now, Lifecycle::Promoted { node });
    }

    /// Routing: the primary writes go to next, or none once they are routed there (the
    /// failover completes) or no primary is left (back to electing, or to bootstrapping).
    pub(crate) fn route_pending(&mut self, now: Millis) -> Option<NodeId>
    where
        Self: Phases<P>,
    {
        let Some(primary) = self.state.current_primary.clone() else {
            self.state.phase = if self.state.in_flight.is_some() {
                Phase::Electing
            } else {
                Phase::Bootstrapping
            };
            return None;
        };
        if self.is_routed(&primary) {
            self.complete(now);
            return None;
        }
        Some(primary)
    }

    /// When the failover in flight started (the beginning of time when none is).
    pub(crate) fn in_flight_started(&self) -> Millis {
        self.state
            .in_flight
            .as_ref()
            .map_or(Millis(0), |record| record.started_at)
    }
}

impl<P: Product> Ha<P>
where
    Ha<P>: Phases<P>,
{
    /// Takes over the state this engine resumes, before it acts (`Claimed::take_office`): from
    /// this engine's first command every member refuses the former owner's. True when the state
    /// changed and must be persisted. Members that cannot check a token themselves (Redis) are
    /// kept from the former owner by the driver's compare-and-swap and its check of the store
    /// right before every command.
    pub fn take_office(&mut self) -> bool {
        let seen = self.highest_epoch_seen();
        self.state.take_office(&self.core.identity, seen)
    }

    /// Claims the next epoch for this engine: above every epoch it has stored or seen on any
    /// member. The driver persists it before any command carries it.
    pub(crate) fn claim_next_epoch(&mut self) -> u64 {
        let seen = self.highest_epoch_seen();
        self.state.claim_next(&self.core.identity, seen)
    }

    /// Replaces the engine's state with `state`, read back from the store after another writer
    /// moved it on (the same owner: a restarted task, say). What the engine remembered about
    /// commands and routing is dropped: it was decided from the older state.
    pub fn resume_from(&mut self, state: State<P>) {
        self.state = state;
        self.core.forget_decisions();
        self.newer_claim = None;
        self.forget();
    }

    /// Feeds one probe round (every member probed at once). A round in which no member
    /// answered and none refused (every probe timed out) is inconclusive and counts for
    /// nobody: the fault is then on the engine's side (its own node starved or cut off), and
    /// failing over would only move the primary away from where writes still work.
    pub fn observe_round(&mut self, observations: Vec<Observation<P>>) {
        if !crate::probe::conclusive(&observations) {
            return;
        }
        for observation in observations {
            self.observe(observation);
        }
    }

    /// Decides what to do at `now`.
    pub fn step(&mut self, now: Millis) -> Decided<P::Command, Event<P>> {
        let mut commands = crate::core::settle(
            self,
            |engine| engine.state.phase,
            |engine, commands| engine.step_phase(now, commands),
        );
        self.after_step(now, &mut commands);
        Decided {
            commands,
            events: std::mem::take(&mut self.core.events),
        }
    }

    fn step_phase(&mut self, now: Millis, commands: &mut Vec<P::Command>) {
        match self.state.phase {
            Phase::Bootstrapping => self.bootstrapping(now),
            Phase::Healthy | Phase::Detecting => {
                self.step_detection(now);
                if self.state.phase == Phase::Healthy {
                    self.converge(now, commands);
                }
            }
            Phase::Fencing => self.fencing(now, commands),
            Phase::Electing => self.electing(now),
            Phase::Promoting => self.promoting(now, commands),
            Phase::Routing => self.routing(now, commands),
            Phase::SwitchoverFencing => self.switchover_fencing(now, commands),
            Phase::SwitchoverDraining => self.switchover_draining(now, commands),
        }
    }

    /// Healthy or Detecting: suspects the primary once it fails, starts the failover once the
    /// suspicion held `failover_delay`, and clears it when the primary answers well again.
    fn step_detection(&mut self, now: Millis) {
        let Some(primary) = self.state.current_primary.clone() else {
            self.state.phase = Phase::Bootstrapping;
            return;
        };
        let Some(view) = self.core.nodes.get(&primary) else {
            return;
        };
        let failing = self.failing(view);
        match self.state.phase {
            Phase::Healthy if failing => {
                let reason = Self::failure_reason(view);
                let first_failure_at = view.first_failure_at.unwrap_or(now);
                let urgent = Self::urgent(view);
                self.state.suspect = Some(Suspicion {
                    node: primary.clone(),
                    first_failure_at,
                    confirmed_at: now,
                    reason: reason.clone(),
                    detail: self.suspicion_detail(),
                });
                self.state.phase = Phase::Detecting;
                self.event(
                    now,
                    Lifecycle::Suspected {
                        node: primary.clone(),
                        reason,
                    },
                );
                if urgent {
                    self.start_failover(primary, now);
                }
            }
            Phase::Detecting => {
                if !failing && self.recovered(&primary) {
                    self.state.suspect = None;
                    self.state.phase = Phase::Healthy;
                    self.event(now, Lifecycle::Recovered { node: primary });
                    return;
                }
                let delay = self.timing().failover_delay;
                let due = self
                    .state
                    .suspect
                    .as_ref()
                    .is_none_or(|suspect| now >= suspect.confirmed_at.plus(delay));
                if due {
                    self.start_failover(primary, now);
                }
            }
            _ => {}
        }
    }

    /// Starts an unplanned failover away from `from`: a new epoch first, then fencing.
    pub(crate) fn start_failover(&mut self, from: NodeId, now: Millis) {
        let suspect = self.state.suspect.take();
        let reason = suspect.as_ref().map_or_else(
            || format!("{} failing", P::VOICE.role),
            |s| s.reason.clone(),
        );
        self.claim_next_epoch();
        let detail = self.failover_detail(suspect.as_ref());
        self.state.in_flight = Some(FailoverRecord::failover(
            self.state.epoch,
            from.clone(),
            suspect.as_ref(),
            now,
            detail,
        ));
        self.state.target_primary = None;
        self.state.phase = Phase::Fencing;
        self.event(now, Lifecycle::FailoverStarted { from, reason });
    }

    /// The new primary is routed: the failover or switchover in flight is recorded as the last
    /// one, and the group is Healthy.
    pub(crate) fn complete(&mut self, now: Millis) {
        let node = self.state.current_primary.clone();
        self.state.phase = Phase::Healthy;
        self.state.target_primary = None;
        self.state.suspect = None;
        let Some(mut record) = self.state.in_flight.take() else {
            if let Some(node) = node {
                self.event(now, Lifecycle::Routed { node });
            }
            return;
        };
        record.finish(now);
        match record.kind {
            FailoverKind::Failover => self.state.failovers += 1,
            FailoverKind::Switchover => self.state.switchovers += 1,
        }
        self.state.last_failover = Some(record.clone());
        let node = record.ends_on();
        self.event(now, Lifecycle::Routed { node });
        self.event(now, Lifecycle::completed(record));
    }
}

impl<P: Product> Engine for Ha<P>
where
    Ha<P>: Phases<P>,
    State<P>: Claimed,
    Event<P>: Notable,
{
    type State = State<P>;
    type Observation = Observation<P>;
    type Command = P::Command;
    type Outcome = P::Outcome;
    type Event = Event<P>;
    type Signal = P::Signal;
    type SwitchoverError = SwitchoverError;

    fn state(&self) -> &State<P> {
        Ha::state(self)
    }

    fn probe_period(&self) -> Duration {
        self.timing().probe_period
    }

    fn take_office(&mut self) -> bool {
        Ha::take_office(self)
    }

    fn resume_from(&mut self, state: State<P>) {
        Ha::resume_from(self, state);
    }

    fn take_newer_claim(&mut self) -> Option<(u64, Option<String>)> {
        Ha::take_newer_claim(self)
    }

    fn observe_round(&mut self, round: Vec<Observation<P>>) {
        Ha::observe_round(self, round);
    }

    fn signal(&mut self, signal: P::Signal) {
        Probing::signal(self, signal);
    }

    fn step(&mut self, now: Millis) -> Decided<P::Command, Event<P>> {
        Ha::step(self, now)
    }

    fn command_done(&mut self, command: &P::Command, outcome: P::Outcome, now: Millis) {
        Probing::command_done(self, command, outcome, now);
    }

    fn request_switchover(
        &mut self,
        target: Option<NodeId>,
        now: Millis,
    ) -> Result<NodeId, SwitchoverError> {
        Ha::request_switchover(self, target, now)
    }

    fn switchover_may_wait(error: &SwitchoverError) -> bool {
        error.may_wait(<Ha<P> as Switching<P>>::WAITS_OUT_FAILOVER)
    }

    fn switchover_superseded() -> SwitchoverError {
        SwitchoverError::Superseded
    }
}
