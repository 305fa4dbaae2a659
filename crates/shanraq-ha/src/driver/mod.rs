//! One driver loop for every engine (`crate::engine::Engine`): probes every member each probe
//! period (the round in a task of its own, so that a member that does not answer never holds
//! back a command's result), feeds the engine, secures its state (`Custody`: authority checked,
//! state written by compare-and-swap or read back) and only then executes its commands,
//! concurrently across members (an engine never issues two at once for one member). Results go
//! back through `command_done`; everything the engine decides is published on a broadcast
//! channel (the drill's timeline, Kubernetes Events). An engine that finds another's claim (in
//! the store, on a member, in a refusal) stands down: the loop ends and acts no more.
//!
//! What differs between engines lives in their `Adapter`: how a member is probed (PostgreSQL's
//! probe of its primary renews a lease), how a command is executed, and what a probe round
//! reports to callers.

pub mod custody;
pub mod state_store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::engine::{Engine, Notable};
use crate::postgres::{Millis, NodeId};
use custody::{Authority, Custody, Lapse};
use state_store::{StateStore, StateStoreError};

/// The wall clock, injectable for tests.
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

/// Unix milliseconds from the system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Millis(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
    })
}

/// The IO side of one engine.
pub trait Adapter<E: Engine>: Send + Sync + 'static {
    /// What a probe round tells callers (every instance's status, every node's INFO).
    type Report: Clone + Default + Send + Sync + 'static;

    /// Probes every member once; `engine` says what the probes carry (a lease renewal).
    fn probe_round(&self, engine: &E, clock: Clock) -> BoxFuture<'static, Vec<E::Observation>>;
    /// What callers learn from a round.
    fn report(&self, round: &[E::Observation]) -> Self::Report;
    /// Executes one command.
    fn execute(&self, engine: &E, command: E::Command) -> BoxFuture<'static, E::Outcome>;
}

/// What a driver publishes.
#[derive(Clone, Debug, PartialEq)]
pub enum DriverEvent<S, C, V> {
    /// Something the engine decided (timeline steps, failover started/completed, refusals).
    Engine(V),
    /// A command was sent.
    CommandStarted { at: Millis, command: C },
    /// A command finished; `error` is `None` on success.
    CommandFinished {
        at: Millis,
        command: C,
        took: Duration,
        error: Option<String>,
    },
    /// The state was persisted.
    StateSaved { at: Millis, state: Box<S> },
    /// The state could not be persisted; the step's commands were not executed.
    StoreFailed { at: Millis, error: String },
    /// The store moved on under this engine's own identity: it resumed from what it holds.
    Resumed { at: Millis, state: Box<S> },
    /// Another engine holds the claim, or this process lost its authority: the driver acts no
    /// more and its loop ends.
    SteppedDown { at: Millis, reason: String },
}

/// The events of engine `E`'s driver.
pub type EventOf<E> =
    DriverEvent<<E as Engine>::State, <E as Engine>::Command, <E as Engine>::Event>;

/// Why a request to a running driver was not answered with a result.
#[derive(Debug, thiserror::Error)]
pub enum RequestError<X: std::error::Error + 'static> {
    #[error("the driver is not running")]
    Stopped,
    #[error(transparent)]
    Refused(X),
}

enum Control<E: Engine> {
    Stop,
    Signal(E::Signal),
    Switchover {
        target: Option<NodeId>,
        reply: oneshot::Sender<Result<NodeId, E::SwitchoverError>>,
    },
}

/// Controls a running driver.
pub struct Handle<E: Engine, R> {
    control: mpsc::Sender<Control<E>>,
    events: broadcast::Sender<EventOf<E>>,
    state: watch::Receiver<E::State>,
    report: watch::Receiver<R>,
    stepped_down: watch::Receiver<Option<String>>,
}

impl<E: Engine, R> Clone for Handle<E, R> {
    fn clone(&self) -> Self {
        Handle {
            control: self.control.clone(),
            events: self.events.clone(),
            state: self.state.clone(),
            report: self.report.clone(),
            stepped_down: self.stepped_down.clone(),
        }
    }
}

impl<E: Engine, R> std::fmt::Debug for Handle<E, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl<E: Engine, R: Clone> Handle<E, R> {
    /// Asks the loop to stop after its current step; `run` then returns the last state.
    pub async fn stop(&self) {
        let _ = self.control.send(Control::Stop).await;
    }

    /// Starts a planned switchover (to the best replica when `target` is `None`).
    pub async fn request_switchover(
        &self,
        target: Option<NodeId>,
    ) -> Result<NodeId, RequestError<E::SwitchoverError>> {
        let (reply, answer) = oneshot::channel();
        self.control
            .send(Control::Switchover { target, reply })
            .await
            .map_err(|_| RequestError::Stopped)?;
        answer
            .await
            .map_err(|_| RequestError::Stopped)?
            .map_err(RequestError::Refused)
    }

    /// Feeds a hint from outside the probes; the engine steps at once.
    pub async fn signal(&self, signal: E::Signal) -> Result<(), RequestError<E::SwitchoverError>> {
        self.control
            .send(Control::Signal(signal))
            .await
            .map_err(|_| RequestError::Stopped)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EventOf<E>> {
        self.events.subscribe()
    }

    /// What the last probe round reported. Callers that need it (objectives, the status's
    /// instances) read it here instead of probing a second time.
    pub fn report(&self) -> R {
        self.report.borrow().clone()
    }

    /// The last persisted state.
    pub fn state(&self) -> E::State {
        self.state.borrow().clone()
    }

    /// Why the driver stood down, once it has (another engine's claim, lost authority).
    pub fn stepped_down(&self) -> Option<String> {
        self.stepped_down.borrow().clone()
    }

    /// Waits until the persisted state satisfies `done`, or `timeout` passes.
    pub async fn wait_for_state(
        &self,
        timeout: Duration,
        done: impl Fn(&E::State) -> bool,
    ) -> Option<E::State> {
        let mut state = self.state.clone();
        let wait = async {
            loop {
                if done(&state.borrow_and_update()) {
                    return Some(state.borrow().clone());
                }
                if state.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }
}

/// A switchover asked for before the engine could take it: retried at every step until the
/// deadline, so a request right after convergence waits instead of failing.
struct PendingSwitchover<X> {
    target: Option<NodeId>,
    reply: oneshot::Sender<Result<NodeId, X>>,
    deadline: Instant,
}

/// How long a switchover request may wait for the engine to take it: a few probe rounds.
fn switchover_wait(probe_period: Duration) -> Duration {
    (probe_period * 20).max(Duration::from_secs(5))
}

/// A finished command.
struct Done<E: Engine> {
    command: E::Command,
    outcome: E::Outcome,
    took: Duration,
}

/// Who a driver acts as, and under which authority.
#[derive(Clone)]
pub struct Acting {
    /// The owner of the epochs the engine claims; stable across restarts of one controller.
    pub identity: String,
    /// Checked before every round of commands.
    pub authority: Arc<dyn Authority>,
}

impl std::fmt::Debug for Acting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acting")
            .field("identity", &self.identity)
            .field("authority", &self.authority)
            .finish()
    }
}

/// The loop. Build with `Driver::start`, run with `run`.
pub struct Driver<E: Engine, S: StateStore<E::State>, A: Adapter<E>> {
    engine: E,
    adapter: Arc<A>,
    custody: Custody<E::State, S>,
    clock: Clock,
    events: broadcast::Sender<EventOf<E>>,
    state_tx: watch::Sender<E::State>,
    report_tx: watch::Sender<A::Report>,
    stepped_down_tx: watch::Sender<Option<String>>,
    control: mpsc::Receiver<Control<E>>,
    running: JoinSet<Done<E>>,
    /// The probe round in flight, at most one.
    probing: JoinSet<Vec<E::Observation>>,
    pending_switchover: Option<PendingSwitchover<E::SwitchoverError>>,
}

impl<E: Engine, S: StateStore<E::State>, A: Adapter<E>> std::fmt::Debug for Driver<E, S, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("state", self.engine.state())
            .finish_non_exhaustive()
    }
}

impl<E: Engine, S: StateStore<E::State>, A: Adapter<E>> Driver<E, S, A> {
    /// Loads the persisted state (or takes `initial`), builds the engine from it with `build`,
    /// and has it take office.
    pub async fn start(
        store: S,
        acting: Acting,
        initial: E::State,
        build: impl FnOnce(E::State) -> E,
        adapter: A,
        clock: Clock,
    ) -> Result<(Driver<E, S, A>, Handle<E, A::Report>), StateStoreError> {
        let (custody, loaded) =
            Custody::open(store, acting.identity.clone(), acting.authority).await?;
        let mut engine = build(loaded.unwrap_or(initial));
        // A state another engine claimed is claimed anew before anything is sent; the first
        // step persists the claim by compare-and-swap.
        if engine.take_office() {
            tracing::info!(
                identity = %acting.identity,
                epoch = crate::driver::state_store::Claimed::epoch(engine.state()),
                "claimed the HA state"
            );
        }
        let (events, _) = broadcast::channel(1024);
        let (state_tx, state_rx) = watch::channel(engine.state().clone());
        let (report_tx, report_rx) = watch::channel(A::Report::default());
        let (stepped_down_tx, stepped_down_rx) = watch::channel(None);
        let (control_tx, control) = mpsc::channel(16);
        let handle = Handle {
            control: control_tx,
            events: events.clone(),
            state: state_rx,
            report: report_rx,
            stepped_down: stepped_down_rx,
        };
        let driver = Driver {
            engine,
            adapter: Arc::new(adapter),
            custody,
            clock,
            events,
            state_tx,
            report_tx,
            stepped_down_tx,
            control,
            running: JoinSet::new(),
            probing: JoinSet::new(),
            pending_switchover: None,
        };
        Ok((driver, handle))
    }

    /// Runs until stopped, or until it stands down (see `Handle::stepped_down`); returns the
    /// last state. Commands still running are abandoned.
    pub async fn run(mut self) -> E::State {
        let mut ticker =
            tokio::time::interval(self.engine.probe_period().max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    self.start_probe_round();
                    continue;
                }
                Some(joined) = self.probing.join_next() => {
                    if let Ok(round) = joined {
                        self.report_tx.send_replace(self.adapter.report(&round));
                        self.engine.observe_round(round);
                    }
                    if !self.check_claims().await {
                        break;
                    }
                }
                Some(joined) = self.running.join_next() => {
                    if let Ok(done) = joined {
                        self.finish(done);
                    }
                    if !self.check_claims().await {
                        break;
                    }
                }
                control = self.control.recv() => match control {
                    None | Some(Control::Stop) => break,
                    Some(Control::Signal(signal)) => self.engine.signal(signal),
                    Some(Control::Switchover { target, reply }) => {
                        if let Some(earlier) = self.pending_switchover.take() {
                            let _ = earlier.reply.send(Err(E::switchover_superseded()));
                        }
                        let deadline = Instant::now() + switchover_wait(self.engine.probe_period());
                        self.pending_switchover = Some(PendingSwitchover { target, reply, deadline });
                    }
                },
            }
            self.try_switchover();
            if !self.step().await {
                break;
            }
        }
        self.running.abort_all();
        self.probing.abort_all();
        self.engine.state().clone()
    }

    /// Starts the pending switchover, or keeps it pending while the engine may take it later
    /// (until its deadline); any other answer goes back to the caller.
    fn try_switchover(&mut self) {
        let Some(pending) = self.pending_switchover.take() else {
            return;
        };
        let now = (self.clock)();
        match self.engine.request_switchover(pending.target.clone(), now) {
            Err(error) if E::switchover_may_wait(&error) && Instant::now() < pending.deadline => {
                self.pending_switchover = Some(pending);
            }
            answer => {
                let _ = pending.reply.send(answer);
            }
        }
    }

    /// Starts a probe round in its own task, unless the last one is still out.
    fn start_probe_round(&mut self) {
        if !self.probing.is_empty() {
            return;
        }
        let round = self
            .adapter
            .probe_round(&self.engine, Arc::clone(&self.clock));
        self.probing.spawn(round);
    }

    fn finish(&mut self, done: Done<E>) {
        let now = (self.clock)();
        let error = crate::engine::Outcome::failure(&done.outcome);
        match &error {
            None => {
                tracing::info!(command = %done.command, took_ms = done.took.as_millis(), "command done")
            }
            Some(error) => tracing::warn!(command = %done.command, %error, "command failed"),
        }
        self.engine.command_done(&done.command, done.outcome, now);
        let _ = self.events.send(DriverEvent::CommandFinished {
            at: now,
            command: done.command,
            took: done.took,
            error,
        });
    }

    /// One step: decide, secure the state, execute. False once the driver stood down. For an
    /// engine whose members cannot refuse a stale token themselves (Redis), the check right
    /// before the commands is what keeps a stale engine out.
    async fn step(&mut self) -> bool {
        let now = (self.clock)();
        let decided = self.engine.step(now);
        let state = self.engine.state().clone();
        let secured = self
            .custody
            .secure(&state, !decided.commands.is_empty())
            .await;
        // What an engine that may not act decided is not published: it will not happen.
        if !matches!(
            secured,
            Err(Lapse::Superseded { .. } | Lapse::Unauthorized(_) | Lapse::Resume(_))
        ) {
            for event in decided.events {
                tracing::info!(reason = event.reason(), message = %event.message(), "ha event");
                let _ = self.events.send(DriverEvent::Engine(event));
            }
        }
        match secured {
            Ok(true) => {
                let _ = self.state_tx.send(state.clone());
                let _ = self.events.send(DriverEvent::StateSaved {
                    at: now,
                    state: Box::new(state),
                });
            }
            Ok(false) => {}
            Err(Lapse::Store(error)) => {
                let error = error.to_string();
                tracing::error!(%error, "cannot persist the HA state; commands of this step not executed");
                for command in &decided.commands {
                    self.engine.command_done(
                        command,
                        <E::Outcome as crate::engine::Outcome>::not_executed(error.clone()),
                        now,
                    );
                }
                let _ = self
                    .events
                    .send(DriverEvent::StoreFailed { at: now, error });
                return true;
            }
            Err(lapse) => return self.lapse(lapse, now),
        }
        for command in decided.commands {
            let _ = self.events.send(DriverEvent::CommandStarted {
                at: now,
                command: command.clone(),
            });
            self.execute(command);
        }
        true
    }

    /// A member holds a newer claim than the engine's (seen in a probe or a refusal): the
    /// store decides whether this engine may go on. False once it stood down.
    async fn check_claims(&mut self) -> bool {
        let Some((epoch, owner)) = self.engine.take_newer_claim() else {
            return true;
        };
        tracing::warn!(
            epoch,
            owner = owner.as_deref().unwrap_or("unknown"),
            "a member holds a newer claim than this engine: checking the HA state"
        );
        match self.custody.confirm().await {
            Ok(()) => true,
            Err(Lapse::Store(error)) => {
                tracing::warn!(%error, "cannot check the HA state");
                true
            }
            Err(lapse) => self.lapse(lapse, (self.clock)()),
        }
    }

    /// Another writer moved the store on. The same identity: resume from it. Anyone else, or
    /// lost authority: stand down. False once it stood down.
    fn lapse(&mut self, lapse: Lapse<E::State>, now: Millis) -> bool {
        match lapse {
            Lapse::Resume(state) => {
                tracing::warn!("the HA state moved on; resuming from the store");
                self.running.abort_all();
                self.engine.resume_from(state.clone());
                let _ = self.state_tx.send(state.clone());
                let _ = self.events.send(DriverEvent::Resumed {
                    at: now,
                    state: Box::new(state),
                });
                true
            }
            lapse => {
                let reason = lapse.to_string();
                tracing::warn!(%reason, "standing down: this engine acts no more");
                self.running.abort_all();
                self.stepped_down_tx.send_replace(Some(reason.clone()));
                let _ = self
                    .events
                    .send(DriverEvent::SteppedDown { at: now, reason });
                false
            }
        }
    }

    fn execute(&mut self, command: E::Command) {
        let work = self.adapter.execute(&self.engine, command.clone());
        self.running.spawn(async move {
            let started = Instant::now();
            let outcome = work.await;
            Done {
                command,
                outcome,
                took: started.elapsed(),
            }
        });
    }
}
