//! What a run is asked to do and the figures it returns, as JSON or as a few lines for a
//! person.

use std::path::PathBuf;

use serde::Serialize;

/// What one run does.
#[derive(Clone, Debug)]
pub struct ReconcilePlan {
    pub clusters: usize,
    pub samples: usize,
    /// Cluster applies in flight at once.
    pub concurrency: usize,
    pub kubeconfig: Option<PathBuf>,
}

/// The figures of one run, printed as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct ReconcileReport {
    pub scenario: &'static str,
    pub clusters: usize,
    /// From the first apply of the N clusters until every one had
    /// `observedGeneration == generation`.
    pub converged_s: f64,
    pub single_apply_to_status_ms: LatencyFigures,
    /// `VmHWM` of the operator process at the end of the run.
    pub operator_peak_rss_mib: f64,
    /// Whether the operator ran its HA tasks (never here: see the module comment).
    pub ha: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct LatencyFigures {
    pub samples: usize,
    pub p50: f64,
    pub p99: f64,
}

/// The figures as a few lines for a person.
pub fn summary(report: &ReconcileReport) -> String {
    let single = &report.single_apply_to_status_ms;
    format!(
        "reconcile: {} clusters converged in {:.1} s\n\
         one cluster, apply to status: p50 {:.0} ms, p99 {:.0} ms ({} samples)\n\
         operator peak RSS: {:.1} MiB (HA tasks {})\n",
        report.clusters,
        report.converged_s,
        single.p50,
        single.p99,
        single.samples,
        report.operator_peak_rss_mib,
        if report.ha { "on" } else { "off" },
    )
}

/// The `quantile` (0..=1) of `samples` by nearest rank; 0 when there are none.
pub fn nearest_rank(samples: &[f64], quantile: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_a_sample() {
        let samples: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(nearest_rank(&samples, 0.50), 10.0);
        assert_eq!(nearest_rank(&samples, 0.99), 20.0);
        assert_eq!(nearest_rank(&[7.0], 0.99), 7.0);
        assert_eq!(nearest_rank(&[], 0.5), 0.0);
    }
}
