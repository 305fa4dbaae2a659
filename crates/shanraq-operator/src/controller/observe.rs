//! The status a reconcile writes: what the applied workloads and the engines show
//! (`Observed`), the newest finished ShanraqBackup, and from them the desired status, with the
//! backup schedule's new slots and the failover drill's record.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use shanraq_api::ShanraqClusterStatus;

use super::status::{self, Observed};
use super::{Context, apply, backup_schedule};
use crate::engines::registry::{Reconciled, Requested};

/// What this reconcile observed.
pub async fn observed(
    ctx: &Context,
    at: Reconciled<'_>,
    applied: &apply::Applied,
    monitoring_available: bool,
) -> Observed {
    let mut observed = Observed::from_applied(&applied.objects, monitoring_available);
    ctx.engines.observe(&ctx.metrics, at, &mut observed);
    if at.cluster.spec.backup.is_some() {
        observed.last_backup = backup_schedule::last_finished(&ctx.client, at.object).await;
    }
    observed
}

/// The status to write.
pub async fn next(
    ctx: &Context,
    at: Reconciled<'_>,
    observed: &Observed,
    requested: &Requested,
    now: &Time,
) -> ShanraqClusterStatus {
    let mut next = status::desired(at.previous, at.cluster, observed, now);
    if let Some(backup) = &at.cluster.spec.backup {
        let mut slots = next.backup.take().unwrap_or_default();
        backup_schedule::run(&ctx.client, at.cluster, backup, &mut slots, now.0).await;
        next.backup = Some(slots);
    }
    if let Some(record) = &requested.drill.drill {
        next.drill = Some(record.clone());
    }
    next
}
