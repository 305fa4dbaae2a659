//! The drill's moves, shared by `shanraq demo`, `shanraq bench failover` and the chaos tests:
//! kill the primary and wait until the writer commits on the new one; ask for a switchover and
//! measure the writer's longest pause; bring a killed instance back and wait until it streams
//! from the primary again. Each move is bounded by a timeout and returns what it measured.

use std::time::Duration;

use shanraq_ha::adapters::driver::{DriverEvent, system_clock};
use shanraq_ha::events::Lifecycle;
use shanraq_ha::postgres::{EventKind, FailoverRecord, HaState, Millis, NodeId};

use super::error::DrillError;
use super::ledger::Ledger;
use super::local::LocalCluster;
use super::timeline::FailoverTimeline;

/// What one failover or switchover did.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub timeline: FailoverTimeline,
    pub record: FailoverRecord,
    /// The state right after completion.
    pub state: HaState,
    pub old_primary: usize,
    pub new_primary: usize,
}

/// What a switchover did, with the writer's longest pause around it.
#[derive(Clone, Debug)]
pub struct SwitchoverOutcome {
    pub outcome: Outcome,
    /// The longest time without an acknowledged commit from the request until the first
    /// commit on the new primary.
    pub pause_ms: Option<u64>,
}

fn now() -> Millis {
    system_clock()()
}

/// SIGKILLs the designated primary's whole instance, waits for the engine to complete a
/// failover, and for `ledger` to get a commit acknowledged by the new primary.
pub async fn kill_primary(
    cluster: &mut LocalCluster,
    ledger: &Ledger,
    timeout: Duration,
) -> Result<Outcome, DrillError> {
    let old_primary = cluster.primary_index()?;
    let epoch = cluster.state()?.epoch;
    let mark = cluster.event_mark();
    let killed_at = now();
    cluster.topology_mut().kill(old_primary)?;
    finish(
        cluster,
        ledger,
        old_primary,
        epoch,
        mark,
        killed_at,
        timeout,
    )
    .await
}

/// Waits for the failover that follows an injected failure of `old_primary` at `origin`
/// (events recorded from `mark`, epoch `epoch` before it).
pub async fn finish(
    cluster: &LocalCluster,
    ledger: &Ledger,
    old_primary: usize,
    epoch: u64,
    mark: usize,
    origin: Millis,
    timeout: Duration,
) -> Result<Outcome, DrillError> {
    let (state, record) = cluster.wait_for_completion(epoch, timeout).await?;
    let to = record.to.clone().ok_or_else(|| DrillError::UnknownMember {
        member: "the failover's new primary (none recorded)".to_owned(),
    })?;
    let new_primary = cluster.index_of(&to)?;
    let ack = ledger
        .wait_for_ack_on(cluster.pg_addr(new_primary)?, origin, timeout)
        .await?;
    let events = cluster.events_since(mark);
    let timeline = FailoverTimeline::build(origin, &record, &events, Some(ack));
    Ok(Outcome {
        timeline,
        record,
        state,
        old_primary,
        new_primary,
    })
}

/// Asks for a planned switchover (to `target`, or the best replica) while `ledger` writes.
pub async fn switchover(
    cluster: &LocalCluster,
    ledger: &Ledger,
    target: Option<NodeId>,
    timeout: Duration,
) -> Result<SwitchoverOutcome, DrillError> {
    let old_primary = cluster.primary_index()?;
    let epoch = cluster.state()?.epoch;
    let mark = cluster.event_mark();
    let requested_at = now();
    cluster
        .handle()?
        .request_switchover(target)
        .await
        .map_err(shanraq_ha::adapters::driver::DriverError::from)?;
    let outcome = finish(
        cluster,
        ledger,
        old_primary,
        epoch,
        mark,
        requested_at,
        timeout,
    )
    .await?;
    let until = outcome
        .timeline
        .first_write
        .map_or(requested_at, |ack| ack.at);
    let pause_ms = ledger.report().max_gap(requested_at, until);
    Ok(SwitchoverOutcome { outcome, pause_ms })
}

/// Restarts the manager of a killed member and waits until it is demoted and streams from
/// the primary with every member of `alive` (which must include it).
pub async fn rejoin(
    cluster: &mut LocalCluster,
    index: usize,
    alive: &[usize],
    timeout: Duration,
) -> Result<HaState, DrillError> {
    cluster.topology_mut().restart(index)?;
    cluster.wait_converged(alive, timeout).await
}

/// Unplanned failovers (`FailoverStarted`) among `events`; switchovers are not counted.
pub fn unplanned_failovers(events: &[DriverEvent]) -> usize {
    events
        .iter()
        .filter(|event| {
            matches!(
                event,
                DriverEvent::Engine(event) if matches!(event.kind, EventKind::Lifecycle(Lifecycle::FailoverStarted { .. }))
            )
        })
        .count()
}
