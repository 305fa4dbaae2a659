//! The children of a cluster: applied in full (the generated Secrets ensured first, then a
//! server-side apply of every child and the orphans deleted), or, when the last full apply of
//! the same rendering still holds, only the workloads read back for their status.

use std::time::Instant;

use shanraq_api::ValidCluster;

use super::error::Error;
use super::{Context, applied, apply, secrets};

/// The children applied in full (with the generated Secrets ensured first), or only the
/// workloads read back when the last full apply of this same rendering still holds. Returns the
/// Secrets created and what was applied or read.
pub async fn apply_or_read(
    ctx: &Context,
    cluster: &ValidCluster,
    rendered: &shanraq_render::Rendered,
    monitoring_available: bool,
) -> Result<(Vec<String>, apply::Applied), Error> {
    let key = cluster.key();
    let secret_names: Vec<String> = rendered.secrets.iter().map(|t| t.name.clone()).collect();
    let digest = applied::digest(&rendered.children, &secret_names, monitoring_available);
    if let Some(workloads) = ctx
        .applied
        .holds(&key, &cluster.uid, digest, Instant::now())
        && let Some(read) = apply::read_workloads(
            &ctx.client,
            cluster,
            &ctx.owned_kinds,
            &workloads,
            |object| ctx.applied.still_ours(&key, object),
        )
        .await?
    {
        ctx.metrics.count_child_round("read");
        return Ok((Vec::new(), read));
    }
    // A full apply replaces the mark; one that fails leaves none that holds, so the next round
    // applies in full again.
    ctx.applied.begin(&key);
    let ensured = secrets::ensure(&ctx.client, cluster, &rendered.secrets).await?;
    let applied = apply::run(
        &ctx.client,
        cluster,
        &rendered.children,
        &ctx.owned_kinds,
        monitoring_available,
    )
    .await?;
    ctx.applied.record(
        &key,
        &cluster.uid,
        digest,
        &applied.objects,
        &ensured.versions,
        Instant::now(),
    );
    ctx.metrics.count_child_round("apply");
    // Only the workloads' status is read from here on; the rest (ConfigMaps with whole
    // configurations and dashboards among them) need not stay in memory until the status write.
    let mut applied = applied;
    applied.objects.retain(|object| {
        object
            .types
            .as_ref()
            .is_some_and(|t| applied::WORKLOAD_KINDS.contains(&t.kind.as_str()))
    });
    Ok((ensured.created, applied))
}
