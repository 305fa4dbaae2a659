//! `shanraq bench reconcile`: how the operator keeps up with many ShanraqClusters, measured
//! against a real API server (the one `scripts/e2e` starts, or any other the kubeconfig
//! names). It lives apart from the failover benchmark because it needs no local PostgreSQL:
//! what it measures is the control loop (watches, renders, server-side applies, status
//! writes), so the operator runs as the separate process a user deploys, with the HA tasks
//! off (behind kwok pods there is no instance to probe, and probing their IPs would send
//! traffic off the machine).
//!
//! One run, in a namespace of its own that is deleted at the end:
//! 1. the CRD is applied (server-side), the operator started watching only that namespace,
//!    and the namespace's pods are bound to the kwok nodes (there is no scheduler), so the
//!    workloads really roll out and their pods' changes reach the operator as they would;
//! 2. one cluster is created and, once converged, its spec changed `samples` times: each
//!    sample is the time from the apply to a watch event showing
//!    `status.observedGeneration == metadata.generation`;
//! 3. N more clusters are applied (a bounded number at once) and timed until a watch shows
//!    every one of them converged;
//! 4. the operator's peak RSS is read from `/proc/<pid>/status` (`VmHWM`) before it is
//!    stopped by PID.
//!
//! Every cluster gets the spec of `deploy/examples/minimal.yaml`: what a user applies, the
//! whole production stack.

//!
//! The parts: `run` (the run's steps in order), `client` (the kubeconfig, the client and the
//! CRD), `binder` (the scheduler's part: pods bound to the kwok nodes), `operator` (the process
//! under measurement), `clusters` (applying a ShanraqCluster and waiting for its status),
//! `measure` (the single-cluster samples and the N clusters) and `report` (the figures).

mod binder;
mod client;
mod clusters;
mod measure;
mod operator;
mod report;
mod run;

use std::time::Duration;

pub use client::kubeconfig_path;
pub use report::{LatencyFigures, ReconcilePlan, ReconcileReport, nearest_rank, summary};
pub use run::run;

/// What a user applies: the whole production stack with its defaults.
const MINIMAL_EXAMPLE: &str = include_str!("../../../../deploy/examples/minimal.yaml");

/// The field manager of the benchmark's own writes (never the operator's).
const MANAGER: &str = "shanraq-bench";
/// The nodes `scripts/e2e` registers.
pub const NODES: [&str; 3] = ["kwok-node-0", "kwok-node-1", "kwok-node-2"];
/// The cluster the single-cluster samples change.
const LATENCY_CLUSTER: &str = "latency";
/// Bounds of each wait.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(60);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(900);
/// Bindings in flight at once.
const BIND_CONCURRENCY: usize = 16;
/// The environment variables that may name the kubeconfig, in order.
pub const KUBECONFIG_ENVS: [&str; 2] = ["KUBECONFIG", "SHANRAQ_E2E_KUBECONFIG"];
