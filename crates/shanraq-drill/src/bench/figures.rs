//! The numbers of each run and their summary per scenario (`--json`), through HDR histograms
//! so that p50 and p99 read the same as anywhere else.

use hdrhistogram::Histogram;
use serde::Serialize;

use super::Scenario;
use crate::timeline::FailoverTimeline;

/// One run's figures.
#[derive(Clone, Debug)]
pub struct RunFigures {
    pub from: String,
    /// The primary after the heal (the old one when nothing failed over).
    pub to: String,
    /// The failover, when there was one.
    pub timeline: Option<FailoverTimeline>,
    /// Acknowledged commits of both writers the primary lacks after the heal.
    pub lost_commits: usize,
    pub max_writable_at_once: usize,
    pub unplanned_failovers: usize,
    pub false_failovers: usize,
    /// `replica-partition`: commits either writer got acknowledged while the cut held.
    pub writes_acknowledged_during_fault: Option<usize>,
    /// `kill` only: the switchover after the heal.
    pub switchover: Option<SwitchoverFigures>,
}

#[derive(Clone, Debug)]
pub struct SwitchoverFigures {
    pub from: String,
    pub to: String,
    pub pause_ms: Option<u64>,
    pub lost_commits: usize,
}

/// `--json` output of one scenario, field order as documented.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioReport {
    pub scenario: &'static str,
    pub runs: u32,
    /// `null` when no run failed over.
    pub rto_ms: Option<RtoFigures>,
    pub lost_commits: u64,
    pub max_writable_at_once: usize,
    pub false_failovers: u64,
    /// `null` for scenarios without a switchover (all but `kill`).
    pub switchover_pause_ms: Option<PauseFigures>,
    /// Unplanned failovers over all runs.
    pub failovers: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes_acknowledged_during_fault: Option<u64>,
    pub component: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct RtoFigures {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PauseFigures {
    pub p50: u64,
    pub p99: u64,
}

/// Milliseconds in an HDR histogram (1 ms to 10 min, 3 significant digits).
#[derive(Debug)]
pub(super) struct Millis(Histogram<u64>);

impl Millis {
    pub(super) fn new() -> Millis {
        // Start-up with constant bounds that hdrhistogram accepts (low >= 1, high >= 2 low).
        Millis(Histogram::new_with_bounds(1, 600_000, 3).expect("valid histogram bounds"))
    }

    pub(super) fn record(&mut self, value: u64) {
        self.0.saturating_record(value.max(1));
    }

    fn quantile(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.value_at_quantile(q)
        }
    }

    fn max(&self) -> u64 {
        if self.0.is_empty() { 0 } else { self.0.max() }
    }

    pub(super) fn summary(&self) -> String {
        format!(
            "{:>5} / {:>5} / {:>5}",
            self.quantile(0.5),
            self.quantile(0.99),
            self.max()
        )
    }
}

pub(super) fn summarise(scenario: Scenario, runs: u32, figures: &[RunFigures]) -> ScenarioReport {
    let mut rto = Millis::new();
    let mut pause = Millis::new();
    let mut lost = 0_u64;
    let mut false_failovers = 0_u64;
    let mut failovers = 0_u64;
    let mut during_fault: Option<u64> = None;
    let mut max_writable = 0;
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    for figure in figures {
        if let Some(ms) = figure.timeline.as_ref().and_then(FailoverTimeline::rto_ms) {
            rto.record(ms);
        }
        if let Some(ms) = figure.switchover.as_ref().and_then(|s| s.pause_ms) {
            pause.record(ms);
        }
        let switchover_lost = figure.switchover.as_ref().map_or(0, |s| s.lost_commits);
        lost += count(figure.lost_commits + switchover_lost);
        false_failovers += count(figure.false_failovers);
        failovers += count(figure.unplanned_failovers);
        if let Some(during) = figure.writes_acknowledged_during_fault {
            *during_fault.get_or_insert(0) += count(during);
        }
        max_writable = max_writable.max(figure.max_writable_at_once);
    }
    ScenarioReport {
        scenario: scenario.name(),
        runs,
        rto_ms: (!rto.0.is_empty()).then(|| RtoFigures {
            p50: rto.quantile(0.5),
            p99: rto.quantile(0.99),
            max: rto.max(),
        }),
        lost_commits: lost,
        max_writable_at_once: max_writable,
        false_failovers,
        switchover_pause_ms: (!pause.0.is_empty()).then(|| PauseFigures {
            p50: pause.quantile(0.5),
            p99: pause.quantile(0.99),
        }),
        failovers,
        writes_acknowledged_during_fault: during_fault,
        component: "postgres",
    }
}

#[cfg(test)]
mod tests {
    use shanraq_ha::postgres as ha;

    use super::*;
    use crate::ledger::Ack;

    fn run(rto_ms: Option<u64>) -> RunFigures {
        let timeline = rto_ms.map(|ms| FailoverTimeline {
            origin: ha::Millis(1_000),
            first_write: Some(Ack {
                id: 1,
                at: ha::Millis(1_000 + ms),
                server: std::net::SocketAddr::from(([10, 231, 0, 11], 5432)),
            }),
            ..FailoverTimeline::default()
        });
        RunFigures {
            from: "pg-0".to_owned(),
            to: "pg-1".to_owned(),
            timeline,
            lost_commits: 0,
            max_writable_at_once: 1,
            unplanned_failovers: usize::from(rto_ms.is_some()),
            false_failovers: 0,
            writes_acknowledged_during_fault: None,
            switchover: None,
        }
    }

    #[test]
    fn a_report_reads_as_documented() {
        let report = summarise(
            Scenario::EnginePartition,
            2,
            &[run(Some(900)), run(Some(1_100))],
        );
        let json = serde_json::to_string(&report).expect("serialises");
        assert_eq!(
            json,
            r#"{"scenario":"engine-partition","runs":2,"rto_ms":{"p50":900,"p99":1100,"max":1100},"lost_commits":0,"max_writable_at_once":1,"false_failovers":0,"switchover_pause_ms":null,"failovers":2,"component":"postgres"}"#
        );
    }

    #[test]
    fn a_scenario_without_failover_reports_no_rto_and_the_writes_during_the_fault() {
        let held = RunFigures {
            to: "pg-0".to_owned(),
            writes_acknowledged_during_fault: Some(0),
            ..run(None)
        };
        let report = summarise(Scenario::ReplicaPartition, 1, &[held]);
        let json = serde_json::to_string(&report).expect("serialises");
        assert_eq!(
            json,
            r#"{"scenario":"replica-partition","runs":1,"rto_ms":null,"lost_commits":0,"max_writable_at_once":1,"false_failovers":0,"switchover_pause_ms":null,"failovers":0,"writes_acknowledged_during_fault":0,"component":"postgres"}"#
        );
    }
}
