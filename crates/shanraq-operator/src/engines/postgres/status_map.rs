//! The engine's persisted state as it appears in `status.postgres`: the full `HaState` as JSON
//! (what a restarted operator resumes from, written by `engines::state_store`) and the fields
//! people read (current and target
//! primary, epoch, phase, the last failover's timeline with RFC 3339 times). Pure.

use serde_json::{Value, json};
use shanraq_ha::postgres::HaState;

use crate::engines::status_record::failover_record;

/// The `status.postgres` keys the HA task owns; the reconcile's status writer never sends
/// them.
pub const HA_FIELDS: [&str; 6] = [
    "currentPrimary",
    "targetPrimary",
    "epoch",
    "phase",
    "lastFailover",
    "haState",
];

/// The readable fields of `status.postgres` for `state` (the store adds `haState`). Absent
/// values are explicit `null`s so that a cleared target primary is cleared in the status too.
pub fn postgres_patch(state: &HaState) -> Result<Value, serde_json::Error> {
    let last = state.last_failover.as_ref().map(|record| {
        let mut readable = failover_record(record);
        readable.possible_loss = record.detail.fallback_since.map(|since| {
            format!(
                "the commits made since {} (dataDurability: preferred had fallen back, so the old primary committed without its synchronous quorum)",
                crate::engines::status_record::rfc3339(since)
            )
        });
        readable
    });
    Ok(json!({
        "currentPrimary": state.current_primary.as_ref().map(ToString::to_string),
        "targetPrimary": state.target_primary.as_ref().map(ToString::to_string),
        "epoch": state.epoch,
        "phase": state.phase.to_string(),
        "lastFailover": serde_json::to_value(last)?,
    }))
}

/// Removes the HA-owned keys from a `status` JSON object (the reconcile's SSA body), so the
/// reconcile never takes ownership of them or writes a stale copy back.
pub fn strip_ha_fields(status: &mut Value) {
    if let Some(postgres) = status.get_mut("postgres").and_then(Value::as_object_mut) {
        for key in HA_FIELDS {
            postgres.remove(key);
        }
    }
}
