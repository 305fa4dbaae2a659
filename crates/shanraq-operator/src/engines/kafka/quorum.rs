//! The KRaft quorum as the controllers' JMX exporters show it: each voter's raft figures
//! (the leader it follows, its high watermark and log end offset), which voter leads, and
//! which voters are caught up. The roll planner needs both: a controller restarts only while
//! the others keep a majority, and the active one goes last. Parsing is pure; `scrape` reads
//! one `/metrics`.

use std::collections::BTreeMap;
use std::time::Duration;

use shanraq_ha::kafka::ControllerView;

/// A voter whose metadata log is this many records behind the leader's high watermark is not
/// caught up (the leader appends a no-op record about twice a second).
pub const MAX_VOTER_LAG: f64 = 100.0;

/// A controller's raft figures from its exporter.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RaftFigures {
    pub current_leader: Option<f64>,
    pub high_watermark: Option<f64>,
    pub log_end_offset: Option<f64>,
}

impl RaftFigures {
    pub fn parse(text: &str) -> RaftFigures {
        let value = |name: &str| {
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .find_map(|line| {
                    let (series, value) = line.rsplit_once(' ')?;
                    let bare = series.split('{').next()?;
                    (bare == name).then(|| value.parse::<f64>().ok()).flatten()
                })
        };
        RaftFigures {
            current_leader: value("kafka_server_raft_metrics_current_leader"),
            high_watermark: value("kafka_server_raft_metrics_high_watermark"),
            log_end_offset: value("kafka_server_raft_metrics_log_end_offset"),
        }
    }
}

/// The voters' views and the quorum's leader, from each controller's raft figures (`None`:
/// its metrics did not answer). The leader is the one the leader itself and most voters name.
pub fn controller_views(
    raft: &BTreeMap<i32, Option<RaftFigures>>,
) -> (Vec<ControllerView>, Option<i32>) {
    let mut votes: BTreeMap<i32, usize> = BTreeMap::new();
    for figures in raft.values().flatten() {
        if let Some(leader) = figures.current_leader.filter(|l| *l >= 0.0) {
            // Node ids are small integers; the exporter prints them as floats.
            #[allow(clippy::cast_possible_truncation)]
            let leader = leader as i32;
            *votes.entry(leader).or_default() += 1;
        }
    }
    let leader = votes
        .iter()
        .filter(|(id, _)| raft.get(id).is_some_and(Option::is_some))
        .max_by_key(|(_, count)| **count)
        .map(|(id, _)| *id);
    let leader_hw = leader
        .and_then(|id| raft.get(&id).copied().flatten())
        .and_then(|figures| figures.high_watermark);
    let views = raft
        .iter()
        .map(|(id, figures)| {
            let caught_up = match (figures, leader_hw) {
                (Some(figures), Some(hw)) => figures
                    .log_end_offset
                    .is_some_and(|end| end + MAX_VOTER_LAG >= hw),
                _ => false,
            };
            ControllerView {
                id: *id,
                up: figures.is_some(),
                caught_up,
            }
        })
        .collect();
    (views, leader)
}

/// A controller's `/metrics` could not be read (reqwest's message names the URL).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ScrapeError(#[from] reqwest::Error);

/// One `/metrics` text, bounded by a short timeout.
pub async fn scrape(url: &str) -> Result<String, ScrapeError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    let text = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)?
        .text()
        .await?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_and_lagging_voters_come_from_raft_figures() {
        let figures = |leader: f64, hw: f64, end: f64| {
            Some(RaftFigures {
                current_leader: Some(leader),
                high_watermark: Some(hw),
                log_end_offset: Some(end),
            })
        };
        let raft = BTreeMap::from([
            (0, figures(1.0, 900.0, 900.0)),
            (1, figures(1.0, 1000.0, 1000.0)),
            (2, figures(1.0, 500.0, 500.0)),
            (3, None),
        ]);
        let (views, leader) = controller_views(&raft);
        assert_eq!(leader, Some(1));
        let caught: Vec<(i32, bool, bool)> =
            views.iter().map(|v| (v.id, v.up, v.caught_up)).collect();
        assert_eq!(
            caught,
            vec![
                (0, true, true),
                (1, true, true),
                (2, true, false),
                (3, false, false)
            ]
        );
        let text = "# HELP x\nkafka_server_raft_metrics_current_leader 2.0\nkafka_server_raft_metrics_high_watermark{a=\"b\"} 14.0\n";
        let parsed = RaftFigures::parse(text);
        assert_eq!(parsed.current_leader, Some(2.0));
        assert_eq!(parsed.high_watermark, Some(14.0));
        assert_eq!(parsed.log_end_offset, None);
    }
}
