//! What every engine keeps between steps besides its persisted state, written once: its view of
//! each member (`crate::probe::View`), the commands in flight (`crate::dispatch::Dispatch`),
//! the events decided since the last step, what it has reported once, the route it saw
//! confirmed, and its identity. None of it is persisted: a restarted engine rebuilds it from
//! the next probes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::dispatch::{CommandTarget, Dispatch, Targeted};
use crate::postgres::{DEFAULT_IDENTITY, Millis, NodeId};
use crate::probe::{Observation, View};
use crate::record::Stamped;

/// Safety bound on phase transitions within one step.
const MAX_TRANSITIONS_PER_STEP: usize = 10;

/// One engine's bookkeeping: `T` is a member's answer to a probe, `X` what the engine adds to
/// its view of a member, `C` its commands and `K` its kinds of event.
#[derive(Debug)]
pub struct Core<T, X, C, K> {
    pub nodes: BTreeMap<NodeId, View<T, X>>,
    pub dispatch: Dispatch<C>,
    pub events: Vec<Stamped<K>>,
    /// (node, epoch) pairs already reported, to report once.
    pub reported: BTreeSet<(NodeId, u64)>,
    /// The primary the router was last confirmed to send writes to, with its epoch.
    pub routed: Option<(NodeId, u64)>,
    /// This engine's identity: the owner of every epoch it claims.
    pub identity: String,
}

impl<T, X: Default, C: Targeted, K> Core<T, X, C, K> {
    pub fn new(members: impl IntoIterator<Item = NodeId>) -> Self {
        Core {
            nodes: members
                .into_iter()
                .map(|node| (node, View::default()))
                .collect(),
            dispatch: Dispatch::default(),
            events: Vec::new(),
            reported: BTreeSet::new(),
            routed: None,
            identity: DEFAULT_IDENTITY.to_owned(),
        }
    }

    /// The latest observation of `node`.
    pub fn last(&self, node: &NodeId) -> Option<&Observation<T>> {
        self.nodes.get(node).and_then(|view| view.last.as_ref())
    }

    /// The member the router was last confirmed to send writes to.
    pub fn routed_to(&self) -> Option<&NodeId> {
        self.routed.as_ref().map(|(node, _)| node)
    }

    pub fn event(&mut self, at: Millis, epoch: u64, kind: K) {
        self.events.push(Stamped { at, epoch, kind });
    }

    /// Records that `command` ended at `now`: its target is free (after a failure, once
    /// `backoff` has passed), and older observations of its member do not show its effect.
    pub fn finished(&mut self, command: &C, failed: bool, now: Millis, backoff: Duration) {
        self.dispatch
            .done(command, failed.then(|| now.plus(backoff)));
        if let CommandTarget::Instance(node) = &command.target()
            && let Some(view) = self.nodes.get_mut(node)
        {
            view.last_done_at = Some(now);
        }
    }

    /// Forgets what was decided from an older state: the commands in flight and the route.
    pub fn forget_decisions(&mut self) {
        self.dispatch.clear();
        self.routed = None;
    }
}

/// Steps `engine` through its phases at one instant until a phase holds (bounded), collecting
/// the commands each transition emits.
pub fn settle<E, P: PartialEq, C>(
    engine: &mut E,
    phase: impl Fn(&E) -> P,
    mut step: impl FnMut(&mut E, &mut Vec<C>),
) -> Vec<C> {
    let mut commands = Vec::new();
    for _ in 0..MAX_TRANSITIONS_PER_STEP {
        let before = phase(engine);
        step(engine, &mut commands);
        if phase(engine) == before {
            break;
        }
    }
    commands
}
