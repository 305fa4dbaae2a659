//! Probes, written once for every engine: what one probe of one member returned
//! (`Observation`), and what an engine remembers of a member between steps (`View`): its latest
//! answer, its streak of failed and refused probes, and when the last command on it finished.
//! The engine decides what counts as a good answer (a serving primary, a master); the counting
//! is the same everywhere.

use crate::postgres::{Millis, NodeId};

/// What one probe returned.
#[derive(Clone, Debug, PartialEq)]
pub enum ProbeOutcome<T> {
    /// The member answered.
    Reachable(T),
    /// No answer (timed out, reset, bad reply); the text says why.
    Unreachable(String),
    /// The connection was refused: nothing listens, so the program is not running (a busy or
    /// partitioned one times out instead).
    Refused(String),
}

/// One probe of one member, stamped with when it was taken.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation<T> {
    pub node: NodeId,
    pub at: Millis,
    pub outcome: ProbeOutcome<T>,
}

impl<T> Observation<T> {
    pub fn answered(node: impl Into<NodeId>, at: Millis, answer: T) -> Observation<T> {
        Observation {
            node: node.into(),
            at,
            outcome: ProbeOutcome::Reachable(answer),
        }
    }

    pub fn unreachable(node: impl Into<NodeId>, at: Millis, why: impl Into<String>) -> Self {
        Observation {
            node: node.into(),
            at,
            outcome: ProbeOutcome::Unreachable(why.into()),
        }
    }

    pub fn refused(node: impl Into<NodeId>, at: Millis, why: impl Into<String>) -> Self {
        Observation {
            node: node.into(),
            at,
            outcome: ProbeOutcome::Refused(why.into()),
        }
    }

    /// The member's answer, if it answered.
    pub fn answer(&self) -> Option<&T> {
        match &self.outcome {
            ProbeOutcome::Reachable(answer) => Some(answer),
            ProbeOutcome::Unreachable(_) | ProbeOutcome::Refused(_) => None,
        }
    }
}

/// Whether a probe round says anything. A round of several probes that all timed out is
/// inconclusive and counts for nobody: the fault is then on the engine's side (its own node
/// starved or cut off), and failing over would only move the primary away from where writes
/// still work.
pub fn conclusive<T>(round: &[Observation<T>]) -> bool {
    round.len() <= 1
        || !round
            .iter()
            .all(|observation| matches!(observation.outcome, ProbeOutcome::Unreachable(_)))
}

/// What an engine remembers of one member between steps (not persisted: rebuilt from the next
/// probes after a restart), with what the engine itself adds (`extra`).
#[derive(Clone, Debug)]
pub struct View<T, X> {
    pub last: Option<Observation<T>>,
    pub consecutive_failures: u32,
    pub first_failure_at: Option<Millis>,
    /// Consecutive refused probes: the program is not running at all.
    pub refused_streak: u32,
    /// When the last command on this member finished: older observations do not show its
    /// effect.
    pub last_done_at: Option<Millis>,
    pub extra: X,
}

impl<T, X: Default> Default for View<T, X> {
    fn default() -> Self {
        View {
            last: None,
            consecutive_failures: 0,
            first_failure_at: None,
            refused_streak: 0,
            last_done_at: None,
            extra: X::default(),
        }
    }
}

impl<T, X> View<T, X> {
    /// Whether `observation` is older than the latest one (and so ignored).
    pub fn is_older(&self, observation: &Observation<T>) -> bool {
        self.last
            .as_ref()
            .is_some_and(|last| last.at > observation.at)
    }

    /// Counts `observation` in the streaks: `good` when it is the answer the engine wants of
    /// this member.
    pub fn count(&mut self, observation: &Observation<T>, good: bool) {
        if matches!(observation.outcome, ProbeOutcome::Refused(_)) {
            self.refused_streak = self.refused_streak.saturating_add(1);
        } else {
            self.refused_streak = 0;
        }
        if good {
            self.clear_failures();
        } else {
            self.count_failure(observation.at);
        }
    }

    /// One failed probe (or a signal worth one) at `at`.
    pub fn count_failure(&mut self, at: Millis) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.first_failure_at.get_or_insert(at);
    }

    pub fn clear_failures(&mut self) {
        self.consecutive_failures = 0;
        self.first_failure_at = None;
    }

    /// Whether the streak reached `threshold` failed probes. A refused connection is a definite
    /// answer (nothing listens), not a slow one, so one probe fewer confirms it; a busy or
    /// cut-off member only ever times out.
    pub fn failing(&self, threshold: u32) -> bool {
        let threshold = threshold.max(1);
        self.consecutive_failures >= threshold
            || (self.refused_streak > 0
                && self.refused_streak >= threshold.saturating_sub(1).max(1))
    }

    /// Why the streak failed, for people: the last error, or what the member answered instead
    /// (`answered` tells it).
    pub fn failure_reason(&self, answered: impl Fn(&T) -> String) -> String {
        let streak = self.consecutive_failures;
        match self.last.as_ref().map(|last| &last.outcome) {
            Some(ProbeOutcome::Unreachable(why) | ProbeOutcome::Refused(why)) => {
                format!("{streak} failed probes, last: {why}")
            }
            Some(ProbeOutcome::Reachable(answer)) => {
                format!("{streak} probes {}", answered(answer))
            }
            None => format!("{streak} failed probes or pod signals"),
        }
    }

    /// The latest answer, if taken at or after `since`.
    pub fn answer_since(&self, since: Millis) -> Option<&T> {
        let last = self.last.as_ref()?;
        (last.at >= since).then_some(())?;
        last.answer()
    }

    /// The latest answer, if taken after the last command on this member finished.
    pub fn settled_answer(&self) -> Option<&T> {
        let last = self.last.as_ref()?;
        if self.last_done_at.is_some_and(|done| last.at < done) {
            return None;
        }
        last.answer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Probe = Observation<bool>;

    #[test]
    fn a_round_of_timeouts_is_inconclusive_but_one_refusal_is_not() {
        let timeouts = vec![
            Probe::unreachable("a", Millis(1), "timeout"),
            Probe::unreachable("b", Millis(1), "timeout"),
        ];
        assert!(!conclusive(&timeouts));
        let mut mixed = timeouts;
        mixed.push(Probe::refused("c", Millis(1), "refused"));
        assert!(conclusive(&mixed));
        assert!(conclusive(&[Probe::unreachable("a", Millis(1), "timeout")]));
    }

    #[test]
    fn refusals_confirm_a_failure_one_probe_sooner_than_timeouts() {
        let mut view: View<bool, ()> = View::default();
        view.count(&Probe::unreachable("a", Millis(1), "timeout"), false);
        view.count(&Probe::unreachable("a", Millis(2), "timeout"), false);
        assert!(!view.failing(3));
        let mut refused: View<bool, ()> = View::default();
        refused.count(&Probe::refused("a", Millis(1), "refused"), false);
        refused.count(&Probe::refused("a", Millis(2), "refused"), false);
        assert!(refused.failing(3));
        assert_eq!(refused.first_failure_at, Some(Millis(1)));
        refused.count(&Probe::answered("a", Millis(3), true), true);
        assert!(!refused.failing(3));
        assert_eq!(refused.first_failure_at, None);
    }
}
