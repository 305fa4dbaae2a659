//! `shanraq bench failover`: runs of one or more scenarios, each under two writers that
//! commit one ledger row at a time (one through HAProxy, one holding a connection straight to
//! the primary) and a split-brain watch (the `/primary` answers and a write probe straight to
//! every member). A scenario is a value: what it injects into the primary's side, how many
//! failovers it may cause, and how it heals.
//!
//! `kill` runs on one loopback cluster (a fresh one only after a run that could not finish);
//! every other scenario is a network or process fault in a network lab (one namespace per
//! instance, HAProxy, the engine and the clients: `shanraq_testkit::NetLab`), and each of its
//! runs gets a fresh lab and cluster on a thread of its own, since the lab's runtimes cannot
//! be made or dropped inside the benchmark's async entry.
//!
//! A run waits until the cluster converged, injects the fault and then:
//! - scenarios that must fail over (`kill`, `engine-partition`, `primary-isolated`,
//!   `manager-freeze`) wait for the failover; RTO is from the injection to the first commit
//!   the HAProxy writer got acknowledged by the new primary (told apart by address and port);
//! - scenarios that hold the fault (`replica-partition` 10 s, `lossy-link` for
//!   `--lossy-seconds`) keep it that long; `replica-partition` counts the commits either
//!   writer got acknowledged while it held (the primary has no quorum: there must be none);
//!   when `lossy-link` fails over, its RTO is from the engine's first failed probe of the old
//!   primary (`lastFailover.detectedAt`) to the first commit on the new one, since the
//!   injection itself does not make the primary unavailable.
//!
//! It then heals (restart, thaw, or the lab's links as created) and waits until every member
//! streams from the primary, and counts the commits either writer got acknowledged that the
//! primary lacks. Only `kill` then switches over under load (the write pause around it), so
//! lab runs stay short. Failovers beyond the scenario's most are false failovers. If a run
//! cannot finish, it says so and is retried once on a fresh cluster, so every figure comes
//! from a healthy one. Figures go through HDR histograms; what bounds the RTO (detection,
//! promotion, routing, first write) is read from the engine's own events and printed to
//! stderr.

//!
//! The parts: `scenario` (the faults, how each is injected and healed), `run` (one run and the
//! loop over runs and scenarios), `lab` (a lab run on a thread of its own), `figures` (each
//! run's numbers and their summary per scenario) and `table` (what a person reads).

mod figures;
mod lab;
mod run;
mod scenario;
mod table;

use std::time::Duration;

pub use figures::{PauseFigures, RtoFigures, RunFigures, ScenarioReport, SwitchoverFigures};
pub use run::{BenchPlan, failover, run_once};
pub use scenario::{ExpectedFailovers, Fault, Scenario, ScenarioSelection, UnknownScenario};
pub use table::table;

const STEP_TIMEOUT: Duration = Duration::from_secs(60);
