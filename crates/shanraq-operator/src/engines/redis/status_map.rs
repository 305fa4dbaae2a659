//! The Redis engine's state as it appears in `status.redis`: the full `RedisHaState` as JSON
//! (what a restarted operator resumes from) and the fields people read (current master, epoch,
//! phase, failovers, the last failover's timeline). Pure.

use serde_json::{Value, json};
use shanraq_api::status::FailoverRecord as StatusRecord;
use shanraq_ha::redis::RedisHaState;

use crate::engines::status_record::failover_record;

/// The `status.redis` keys the Redis HA task owns; the reconcile's status writer never sends
/// them.
pub const HA_FIELDS: [&str; 7] = [
    "cluster",
    "currentMaster",
    "epoch",
    "phase",
    "failovers",
    "lastFailover",
    "haState",
];

/// The readable fields of `status.redis` for `state` (the store adds `haState`).
pub fn redis_patch(state: &RedisHaState) -> Result<Value, serde_json::Error> {
    let last = state.last_failover.as_ref().map(|record| StatusRecord {
        data_lost: record.detail.data_lost.clone(),
        ..failover_record(record)
    });
    Ok(json!({
        "currentMaster": state.current_primary.as_ref().map(ToString::to_string),
        "epoch": state.epoch,
        "phase": state.phase.to_string(),
        "failovers": state.failovers,
        "lastFailover": serde_json::to_value(last)?,
    }))
}

/// `status.redis.cluster` for a view, with the failovers seen so far.
pub fn cluster_status(
    view: &shanraq_ha::redis::cluster::ClusterView,
    failovers_seen: u64,
) -> shanraq_api::status::RedisClusterStatus {
    shanraq_api::status::RedisClusterStatus {
        state: if view.state_ok { "ok" } else { "fail" }.to_owned(),
        slots_covered: i32::try_from(view.slots_ok).unwrap_or(i32::MAX),
        masters: view
            .masters()
            .iter()
            .map(|m| {
                format!(
                    "{} ({} slots, {} replicas)",
                    m.address,
                    m.slots,
                    view.replicas_of(&m.id)
                )
            })
            .collect(),
        failovers_seen: i64::try_from(failovers_seen).unwrap_or(i64::MAX),
    }
}

/// Removes the Redis HA-owned keys from a `status` JSON object (the reconcile's SSA body).
pub fn strip_ha_fields(status: &mut Value) {
    if let Some(redis) = status.get_mut("redis").and_then(Value::as_object_mut) {
        for key in HA_FIELDS {
            redis.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shanraq_ha::redis::{NodeId, Phase};

    #[test]
    fn the_state_round_trips_and_the_readable_fields_follow_it() {
        let state = RedisHaState {
            epoch: 4,
            current_primary: Some(NodeId::new("demo-redis-1")),
            phase: Phase::Healthy,
            failovers: 2,
            ..RedisHaState::default()
        };
        let patch =
            crate::engines::state_store::slot_patch::<crate::engines::state_store::RedisSlot>(
                3, &state,
            )
            .expect("serialises");
        assert_eq!(patch["currentMaster"], "demo-redis-1");
        assert_eq!(patch["epoch"], 4);
        assert_eq!(patch["failovers"], 2);
        let text = patch["haState"].as_str().expect("a string");
        let stored = shanraq_ha::driver::state_store::decode::<RedisHaState>(text).expect("parses");
        assert_eq!((stored.revision, stored.state), (3, state));
        let mut status = json!({ "redis": patch, "postgres": { "epoch": 1 } });
        strip_ha_fields(&mut status);
        assert_eq!(status["redis"], json!({}));
        assert_eq!(status["postgres"]["epoch"], 1);
    }

    #[test]
    fn a_failover_that_lost_data_says_so_in_last_failover() {
        let mut record = shanraq_ha::redis::FailoverRecord::failover::<()>(
            5,
            NodeId::new("demo-redis-0"),
            None,
            shanraq_ha::redis::Millis(1_000),
            shanraq_ha::redis::RecordDetail::default(),
        );
        record.detail.data_lost = Some("every node came back without its data".to_owned());
        let state = RedisHaState {
            epoch: 5,
            last_failover: Some(record),
            ..RedisHaState::default()
        };
        let patch = redis_patch(&state).expect("serialises");
        assert_eq!(
            patch["lastFailover"]["dataLost"],
            "every node came back without its data"
        );
        assert!(patch["lastFailover"].get("lostBytes").is_none());
    }
}
