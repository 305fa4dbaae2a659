//! One reconcile of one ShanraqCluster, as a pipeline of stages, each in a file of its own:
//! dereference (the reads) -> validate (an invalid spec is reported `Stalled` and stops here,
//! `stalled.rs`) -> render -> apply (`children.rs`; a confirmation annotation it acted on is
//! removed, `confirm.rs`) -> engines (`engines::registry`: ensure
//! them, act on annotated requests) -> status (`observe.rs`, `status.rs`) -> publish (metrics
//! and Events, `publish.rs`). Only the stages' edges do IO; what to render, which conditions
//! and which Events are pure functions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::controller::Action;
use shanraq_api::conditions::{self, READY};
use shanraq_api::{ShanraqCluster, ShanraqClusterStatus};
use tracing::instrument;

use super::error::{Error, NotLeader};
use super::{Context, children, confirm, dereference, observe, publish, stalled, status};
use crate::engines::registry::Reconciled;

/// Requeue of a cluster that is Ready: a periodic check that nothing drifted.
pub const STEADY_REQUEUE: Duration = Duration::from_secs(60);
/// Requeue while a rollout is in progress (child watches usually trigger sooner).
pub const PROGRESS_REQUEUE: Duration = Duration::from_secs(15);
/// Requeue while a failover drill waits for its failover (status writes usually trigger sooner).
pub const DRILL_REQUEUE: Duration = Duration::from_secs(5);

#[instrument(skip(cluster, ctx), fields(name = %cluster.name_any(), namespace = cluster.namespace().unwrap_or_default()))]
pub async fn reconcile(cluster: Arc<ShanraqCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = run(&cluster, &ctx).await;
    ctx.metrics.count_reconcile(started.elapsed());
    if result.is_ok() {
        ctx.forget_failures(&cluster);
    }
    result
}

/// A reconcile writes only while this replica leads, checked right before each write (a
/// lease says a process *was* leader): a replica paused past its Lease that wakes mid-reconcile
/// writes nothing.
pub(super) fn leading(ctx: &Context) -> Result<(), NotLeader> {
    use shanraq_ha::driver::custody::Authority as _;
    ctx.engines
        .settings()
        .leadership
        .check()
        .map_err(|denied| NotLeader(denied.to_string()))
}

async fn run(object: &ShanraqCluster, ctx: &Context) -> Result<Action, Error> {
    let namespace = object.namespace().ok_or(Error::MissingNamespace)?;
    // Being deleted: the garbage collector removes the children (in foreground deletion while
    // the cluster object still exists). Applying them again would undo the deletion, so the
    // cluster's last reconcile stops its engines.
    if object.metadata.deletion_timestamp.is_some() {
        let key = format!("{namespace}/{}", object.name_any());
        ctx.engines.stop(&key);
        ctx.applied.forget(&key);
        return Ok(Action::await_change());
    }
    let mut known = dereference::known(object);
    dereference::running(ctx, object, &mut known).await?;
    let cluster = match shanraq_api::validate(object, &known.live) {
        Ok(cluster) => cluster,
        Err(invalid) => return Err(stalled::report(ctx, object, &known, invalid).await),
    };
    let inputs = dereference::inputs(ctx, &known).await?;
    let rendered = shanraq_render::build(&cluster, &inputs).map_err(|source| Error::Render {
        name: cluster.name.clone(),
        source,
    })?;
    leading(ctx)?;
    let monitoring = inputs.monitoring_available;
    let (created, applied) = children::apply_or_read(ctx, &cluster, &rendered, monitoring).await?;
    confirm::consume(ctx, object).await?;
    let at = Reconciled {
        object,
        cluster: &cluster,
        rendered: &rendered,
        previous: &known.previous,
    };
    ctx.engines.ensure(&ctx.io(), at);
    let requested = ctx.engines.requests(&ctx.client, at).await?;
    let observed = observe::observed(ctx, at, &applied, monitoring).await;
    let next = observe::next(ctx, at, &observed, &requested, &known.now).await;
    leading(ctx)?;
    let written = status::write(&ctx.client, object, &known.previous, &next).await?;
    publish::metrics(ctx, &cluster, &observed);
    let drill_running = requested.drill.running(&known.previous);
    let notices = requested.notices;
    publish::events(ctx, &known, &cluster, &created, &applied, notices, &next).await;
    tracing::debug!(
        workloads = applied.objects.len(),
        orphans_deleted = applied.deleted.len(),
        status_written = written,
        "reconciled"
    );
    Ok(requeue(drill_running, &next))
}

/// Soon while a drill waits for its failover; later once Ready; in between while progressing.
fn requeue(drill_running: bool, next: &ShanraqClusterStatus) -> Action {
    let ready = conditions::is_true(&next.conditions, READY) == Some(true);
    Action::requeue(if drill_running {
        DRILL_REQUEUE
    } else if ready {
        STEADY_REQUEUE
    } else {
        PROGRESS_REQUEUE
    })
}
