//! A run in a network lab: a fresh lab and cluster on a thread of its own, since the lab's
//! runtimes cannot be made or dropped inside the benchmark's async entry; the thread is joined
//! whatever happens, so no namespace outlives the benchmark.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use shanraq_testkit::LocalTopology;
use shanraq_testkit::topology::{CLIENT_NODE, ENGINE_NODE};

use super::{BenchPlan, RunFigures, Scenario, run_once};
use crate::error::DrillError;
use crate::local::{ClusterOptions, LabPlacement, LocalCluster};

/// Joins the lab's thread when dropped, also when the benchmark is interrupted, so that its
/// processes and namespaces are gone before the process exits.
struct LabThread(Option<std::thread::JoinHandle<()>>);

impl Drop for LabThread {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

/// One run of `scenario` in a fresh lab, on a thread of its own.
pub(super) async fn in_lab(
    scenario: Scenario,
    binary: &Path,
    plan: &BenchPlan,
) -> Result<RunFigures, DrillError> {
    let binary = binary.to_path_buf();
    let lab_plan = plan.clone();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name(format!("bench-{}", scenario.name()))
        .spawn(move || {
            let _ = sender.send(run_in_lab(scenario, binary, lab_plan));
        })
        .map_err(|error| DrillError::Lab {
            scenario: scenario.name(),
            problem: format!("could not get a thread: {error}"),
        })?;
    let mut thread = LabThread(Some(thread));
    let outcome = receiver.await.map_err(|_| DrillError::Lab {
        scenario: scenario.name(),
        problem: "ended without an answer (its thread panicked)".to_owned(),
    });
    if let Some(handle) = thread.0.take() {
        let _ = tokio::task::spawn_blocking(move || handle.join()).await;
    }
    outcome?
}

/// Creates the lab and its client and engine runtimes, runs `scenario` on a task of the
/// client runtime (every socket of the cluster, the writers and the watch is created there),
/// and drops the runtimes before the lab, whose namespaces their threads live in.
fn run_in_lab(
    scenario: Scenario,
    binary: PathBuf,
    plan: BenchPlan,
) -> Result<RunFigures, DrillError> {
    let lab = Arc::new(LocalTopology::create_lab(plan.instances)?);
    let client = lab.runtime(CLIENT_NODE)?;
    let engine = lab.runtime(ENGINE_NODE)?;
    let placement = LabPlacement {
        lab: Arc::clone(&lab),
        engine: engine.handle().clone(),
    };
    let task = client.spawn(async move {
        let work = async {
            let options = ClusterOptions::synchronous(plan.instances);
            let mut cluster = LocalCluster::start_in_lab(&binary, options, placement).await?;
            let all: Vec<usize> = (0..plan.instances).collect();
            let figures = run_once(scenario, &mut cluster, &all, &plan).await;
            cluster.stop_driver().await;
            figures
        };
        tokio::select! {
            figures = work => figures,
            _ = tokio::signal::ctrl_c() => Err(DrillError::Interrupted),
        }
    });
    let outcome = client.block_on(task);
    drop(client);
    drop(engine);
    drop(lab);
    outcome.map_err(|error| DrillError::Lab {
        scenario: scenario.name(),
        problem: format!("run failed: {error}"),
    })?
}
