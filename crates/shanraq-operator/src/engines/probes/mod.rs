//! The operator's client-side probes: every critical path a client uses, probed through the
//! Services the client would use, from inside the cluster network where the operator runs.
//! PostgreSQL a read and a committed write through HAProxy's `pg-rw`, Redis a `GET` and a `SET`
//! (with `WAIT` when the RPO needs it) through HAProxy's Redis port, Kafka a produce with
//! `acks=all` through the bootstrap Service.
//!
//! - `plan`: which paths a cluster has, and where (pure);
//! - `window`: what the probes measured (latency per path, outages, availability counts);
//! - `postgres`, `redis`, `kafka`: one prober each, at the edge;
//! - `task`: one task per cluster running its probers;
//! - `verdicts`: the window judged against the objectives, for the status.

pub mod kafka;
pub mod plan;
pub mod postgres;
pub mod redis;
pub mod task;
pub mod verdicts;
pub mod window;

use std::time::{Duration, Instant};

pub use plan::{ProbePath, ProbePlan};
pub use task::ProbeRegistry;
pub use verdicts::ProbeVerdicts;
pub use window::{ProbeTrouble, ProbeWindow};

/// How often every path is probed (one round).
pub const PROBE_PERIOD: Duration = Duration::from_secs(1);
/// While a write path fails, how often it is tried again to time the outage's end.
pub const RETRY_PERIOD: Duration = Duration::from_millis(100);
/// A probe slower than this counts as failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an unreadable Secret is read again.
pub const SECRET_RETRY: Duration = Duration::from_secs(10);
/// The longest error text kept for a condition's message.
const ERROR_TEXT_MAX: usize = 200;

/// An error as a condition may show it: bounded, on one line. (Connection errors name the
/// host, user and database, never the password.)
pub(crate) fn error_text(error: &dyn std::fmt::Display) -> String {
    let text = error.to_string().replace('\n', " ");
    match text.char_indices().nth(ERROR_TEXT_MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// Resolves `host` the way a connection will: an operator that cannot resolve the Service
/// name (outside the cluster's DNS, say) cannot probe, and says so.
async fn resolves(host: &str, port: u16) -> Result<(), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(mut addresses)) => match addresses.next() {
            Some(_) => Ok(()),
            None => Err(format!("the operator resolves {host} to no address")),
        },
        Ok(Err(error)) => Err(format!(
            "the operator cannot resolve {host}: {}",
            error_text(&error)
        )),
        Err(_) => Err(format!(
            "the operator cannot resolve {host}: no answer within {PROBE_TIMEOUT:?}"
        )),
    }
}

/// Whether a failing write path's next retry fits before the next round.
fn retry_due(window: &ProbeWindow, path: ProbePath, next_round: Instant) -> bool {
    window.failing(path) && Instant::now() + RETRY_PERIOD < next_round
}

/// The start of the round after the one that started at `round`: one period later, or now
/// when a slow round overran it (missed rounds are not made up).
fn next_round(round: Instant) -> Instant {
    (round + PROBE_PERIOD).max(Instant::now())
}

/// `result` of a probe that started at `started`, bounded by `PROBE_TIMEOUT`: its latency, or
/// the error (`what` names the step).
async fn timed<T, E: std::fmt::Display>(
    what: &str,
    started: Instant,
    probe: impl Future<Output = Result<T, E>>,
) -> Result<(Duration, T), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(value)) => Ok((started.elapsed(), value)),
        Ok(Err(error)) => Err(format!("{what}: {}", error_text(&error))),
        Err(_) => Err(format!("{what}: no answer within {PROBE_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unresolvable_service_name_says_so() {
        let why = resolves("shanraq-probe-test.invalid", 5432)
            .await
            .expect_err("the .invalid top-level domain never resolves");
        assert!(
            why.starts_with("the operator cannot resolve shanraq-probe-test.invalid"),
            "{why}"
        );
        assert!(resolves("127.0.0.1", 5432).await.is_ok());
    }

    #[test]
    fn error_text_is_one_bounded_line() {
        let long = "x".repeat(500);
        let text = error_text(&format!("first\n{long}"));
        assert!(!text.contains('\n'));
        assert_eq!(text.chars().count(), ERROR_TEXT_MAX + 3);
    }
}
