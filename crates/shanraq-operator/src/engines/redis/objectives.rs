//! What bounds Redis data loss right now, from the driver's last probe round: the master's view
//! of its replicas (offset and seconds since the last acknowledgement). Writes confirmed with
//! `WAIT` are on a replica; the rest may be lost up to the best replica's lag. A last failover
//! that lost data no member held any more (a full outage without persistence) is said instead,
//! until another failover or a switchover replaces it.

use std::time::Duration;

use shanraq_ha::adapters::redis::RedisDriverHandle;
use shanraq_ha::objectives::RpoMeasurement;

/// The RPO measurement of a Redis group, or `None` before the engine knows its master.
pub fn measure(handle: &RedisDriverHandle) -> Option<RpoMeasurement> {
    let state = handle.state();
    let master = state.current_primary?;
    if let Some(why) = state
        .last_failover
        .as_ref()
        .and_then(|record| record.detail.data_lost.clone())
    {
        return Some(RpoMeasurement::DataLost {
            reason: format!("the last Redis failover lost data: {why}"),
        });
    }
    let infos = handle.infos();
    let Some(info) = infos.get(&master).filter(|info| info.is_master()) else {
        return Some(RpoMeasurement::NoPromotableReplica {
            reason: format!("Redis master {master} did not answer as a master in the last probe"),
        });
    };
    let best = info
        .replicas
        .iter()
        .filter(|link| link.online)
        .max_by_key(|link| (link.offset, std::cmp::Reverse(link.lag_seconds)));
    Some(match best {
        Some(link) => RpoMeasurement::Asynchronous {
            replica: format!("redis {}:{}", link.ip, link.port),
            lag_bytes: info.offset.saturating_sub(link.offset),
            lag: Duration::from_secs(link.lag_seconds),
        },
        None => RpoMeasurement::NoPromotableReplica {
            reason: format!("no Redis replica streams from master {master}"),
        },
    })
}

/// The Redis RPO measurement to publish, per cluster: an unchanged verdict keeps the last
/// published measurement for `REPUBLISH_AFTER`, as PostgreSQL's does (see
/// `engines::postgres::objectives::Published`).
#[derive(Debug, Default)]
pub struct PublishedRpo {
    by_cluster: std::sync::Mutex<
        std::collections::BTreeMap<
            String,
            std::sync::Arc<crate::engines::postgres::objectives::Published<bool, RpoMeasurement>>,
        >,
    >,
}

impl PublishedRpo {
    pub fn choose(
        &self,
        key: &str,
        cluster: &shanraq_api::ValidCluster,
        fresh: RpoMeasurement,
    ) -> RpoMeasurement {
        let target = cluster
            .spec
            .objective_targets(shanraq_api::objectives::ObjectiveComponent::Redis)
            .rpo;
        let met = shanraq_ha::objectives::rpo(target.as_std(), &fresh).met;
        let Ok(mut by_cluster) = self.by_cluster.lock() else {
            return fresh;
        };
        by_cluster
            .entry(key.to_owned())
            .or_default()
            .clone()
            .choose(met, fresh)
    }

    /// The cluster is gone: its last measurement with it.
    pub fn forget(&self, key: &str) {
        if let Ok(mut by_cluster) = self.by_cluster.lock() {
            by_cluster.remove(key);
        }
    }
}

/// `RedisReady` in cluster mode: the workloads being ready is not enough, the cluster must
/// serve every slot; the message carries what the Redis task last observed.
pub fn cluster_condition(
    mut want: crate::controller::status::Want,
    observed: Option<&shanraq_api::status::RedisClusterStatus>,
) -> crate::controller::status::Want {
    use crate::controller::status::Truth;
    let Some(cluster) = observed else {
        return want;
    };
    let summary = format!(
        "cluster_state {}, {} of {} slots covered, masters: {}, failovers seen: {}",
        cluster.state,
        cluster.slots_covered,
        shanraq_ha::redis::cluster::CLUSTER_SLOTS,
        if cluster.masters.is_empty() {
            "none".to_owned()
        } else {
            cluster.masters.join(", ")
        },
        cluster.failovers_seen
    );
    let covered = cluster.state == "ok"
        && u32::try_from(cluster.slots_covered)
            .is_ok_and(|slots| slots == shanraq_ha::redis::cluster::CLUSTER_SLOTS);
    if want.truth == Truth::True && !covered {
        want.truth = Truth::False;
        want.reason = "ClusterNotServing".to_owned();
        want.message = summary;
    } else if want.truth == Truth::True {
        want.message = format!("{}; {summary}", want.message);
    }
    want
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::status::{Truth, Want};
    use shanraq_api::status::RedisClusterStatus;

    fn ready() -> Want {
        Want::new(
            "RedisReady",
            Truth::True,
            "Ready",
            "StatefulSet demo-redis 6/6 ready",
        )
    }

    fn valid(yaml: &str) -> shanraq_api::ValidCluster {
        let spec: shanraq_api::ShanraqClusterSpec =
            serde_saphyr::from_str(yaml).expect("spec parses");
        let mut object = shanraq_api::ShanraqCluster::new("demo", spec);
        object.metadata.namespace = Some("fintech".to_owned());
        shanraq_api::validate(&object, &shanraq_api::LiveState::default()).expect("valid")
    }

    fn lagging(bytes: u64, seconds: u64) -> RpoMeasurement {
        RpoMeasurement::Asynchronous {
            replica: "redis 10.0.0.7:6379".to_owned(),
            lag_bytes: bytes,
            lag: Duration::from_secs(seconds),
        }
    }

    /// A moving lag with the same verdict is not republished; a flipped verdict is at once.
    #[test]
    fn an_unchanged_verdict_keeps_the_published_measurement() {
        let cluster = valid("redis: { objectives: { rpo: 2s } }");
        let published = PublishedRpo::default();
        let key = cluster.key();
        assert_eq!(
            published.choose(&key, &cluster, lagging(10, 0)),
            lagging(10, 0)
        );
        assert_eq!(
            published.choose(&key, &cluster, lagging(90, 1)),
            lagging(10, 0),
            "still met: the first figure stays"
        );
        assert_eq!(
            published.choose(&key, &cluster, lagging(5000, 3)),
            lagging(5000, 3),
            "over the target: published at once"
        );
        published.forget(&key);
        assert_eq!(
            published.choose(&key, &cluster, lagging(7, 0)),
            lagging(7, 0)
        );
    }

    #[test]
    fn a_cluster_that_does_not_serve_every_slot_is_not_ready_and_says_why() {
        let failing = RedisClusterStatus {
            state: "fail".to_owned(),
            slots_covered: 10923,
            masters: vec!["10.0.0.4:6379 (5461 slots, 1 replicas)".to_owned()],
            failovers_seen: 1,
        };
        let want = cluster_condition(ready(), Some(&failing));
        assert_eq!(want.truth, Truth::False);
        assert_eq!(want.reason, "ClusterNotServing");
        assert!(
            want.message.contains("10923 of 16384 slots covered"),
            "{}",
            want.message
        );
        let ok = RedisClusterStatus {
            state: "ok".to_owned(),
            slots_covered: 16384,
            ..failing
        };
        let want = cluster_condition(ready(), Some(&ok));
        assert_eq!(want.truth, Truth::True);
        assert!(
            want.message.ends_with("failovers seen: 1"),
            "{}",
            want.message
        );
        assert_eq!(cluster_condition(ready(), None), ready());
    }
}
