//! What every engine keeps about the commands it sent: at most one in flight per target, and
//! none to a target backing off after a failure until its time has passed. Written once here so
//! each engine only decides *what* to send.

use std::collections::BTreeMap;

use crate::postgres::{Millis, NodeId};

/// Who a command acts on: an engine runs at most one command per target at a time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CommandTarget {
    Instance(NodeId),
    Router,
}

/// A command that names its target.
pub trait Targeted: Clone + PartialEq {
    fn target(&self) -> CommandTarget;
}

/// Writes an engine's command accessors once, from its variants: every variant carries the
/// `epoch` it was decided at and names the member it acts on in the given field; the `route`
/// variant goes to the router, every other to its member.
macro_rules! command_accessors {
    ($command:ident { $($variant:ident . $field:ident),+ $(,)? }, route: $route:ident) => {
        impl $command {
            /// The epoch the command was decided at (its fencing token).
            pub fn epoch(&self) -> u64 {
                match self {
                    $($command::$variant { epoch, .. })|+ => *epoch,
                }
            }

            /// The member the command acts on (for a route, the new primary).
            pub fn node(&self) -> &$crate::postgres::NodeId {
                match self {
                    $($command::$variant { $field, .. } => $field,)+
                }
            }

            pub fn target(&self) -> $crate::dispatch::CommandTarget {
                match self {
                    $command::$route { .. } => $crate::dispatch::CommandTarget::Router,
                    _ => $crate::dispatch::CommandTarget::Instance(self.node().clone()),
                }
            }
        }

        impl $crate::machine::Command for $command {
            fn epoch(&self) -> u64 {
                $command::epoch(self)
            }

            fn node(&self) -> &$crate::postgres::NodeId {
                $command::node(self)
            }
        }

        impl $crate::dispatch::Targeted for $command {
            fn target(&self) -> $crate::dispatch::CommandTarget {
                $command::target(self)
            }
        }
    };
}
pub(crate) use command_accessors;

/// The commands in flight and the targets backing off.
#[derive(Clone, Debug)]
pub struct Dispatch<C> {
    outstanding: BTreeMap<CommandTarget, C>,
    retry_after: BTreeMap<CommandTarget, Millis>,
}

impl<C> Default for Dispatch<C> {
    fn default() -> Self {
        Dispatch {
            outstanding: BTreeMap::new(),
            retry_after: BTreeMap::new(),
        }
    }
}

impl<C: Targeted> Dispatch<C> {
    /// Queues `command` into `commands` unless its target is still busy or backing off after a
    /// failure; true when queued.
    pub fn emit(&mut self, command: C, now: Millis, commands: &mut Vec<C>) -> bool {
        let target = command.target();
        if self.outstanding.contains_key(&target)
            || self
                .retry_after
                .get(&target)
                .is_some_and(|until| now < *until)
        {
            return false;
        }
        self.outstanding.insert(target, command.clone());
        commands.push(command);
        true
    }

    /// Records that `command` ended: its target is free (unless a newer command took it over),
    /// and after a failure it backs off until `failed_until`.
    pub fn done(&mut self, command: &C, failed_until: Option<Millis>) {
        let target = command.target();
        if self.outstanding.get(&target) == Some(command) {
            self.outstanding.remove(&target);
        }
        match failed_until {
            None => {
                self.retry_after.remove(&target);
            }
            Some(until) => {
                self.retry_after.insert(target, until);
            }
        }
    }

    /// Forgets every command and back-off (the state they were decided from was replaced).
    pub fn clear(&mut self) {
        self.outstanding.clear();
        self.retry_after.clear();
    }

    /// Commands sent and not yet reported done.
    pub fn in_flight(&self) -> impl Iterator<Item = &C> {
        self.outstanding.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Cmd(&'static str, u64);

    impl Targeted for Cmd {
        fn target(&self) -> CommandTarget {
            CommandTarget::Instance(NodeId::from(self.0))
        }
    }

    #[test]
    fn one_command_per_target_and_none_while_backing_off() {
        let mut dispatch = Dispatch::default();
        let mut sent = Vec::new();
        assert!(dispatch.emit(Cmd("a", 1), Millis(0), &mut sent));
        assert!(
            !dispatch.emit(Cmd("a", 2), Millis(0), &mut sent),
            "a is busy"
        );
        assert!(dispatch.emit(Cmd("b", 1), Millis(0), &mut sent), "b is not");
        dispatch.done(&Cmd("a", 1), Some(Millis(100)));
        assert!(
            !dispatch.emit(Cmd("a", 2), Millis(99), &mut sent),
            "backing off"
        );
        assert!(
            dispatch.emit(Cmd("a", 2), Millis(100), &mut sent),
            "back-off over"
        );
        dispatch.done(&Cmd("a", 1), None);
        assert_eq!(
            dispatch.in_flight().cloned().collect::<Vec<_>>(),
            vec![Cmd("a", 2), Cmd("b", 1)],
            "an older command's end leaves the newer one in flight"
        );
        dispatch.clear();
        assert_eq!(dispatch.in_flight().count(), 0);
        assert_eq!(sent.len(), 3);
    }
}
