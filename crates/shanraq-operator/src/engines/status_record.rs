//! A failover or switchover record as people read it in the status (`lastFailover`), the same
//! for every engine: the kind, who from and to, and the timeline as RFC 3339 times. Pure.

use shanraq_api::status::FailoverRecord as StatusRecord;
use shanraq_ha::postgres::Millis;
use shanraq_ha::record::FailoverRecord;

/// Unix milliseconds as RFC 3339 (UTC).
pub fn rfc3339(at: Millis) -> String {
    i64::try_from(at.0)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| at.0.to_string(), |ts| ts.to_string())
}

/// The readable record of any engine's failover (its own detail stays in `haState`).
pub fn failover_record<D>(record: &FailoverRecord<D>) -> StatusRecord {
    StatusRecord {
        kind: record.kind.as_str().to_owned(),
        from: record.from.to_string(),
        to: record
            .to
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        detected_at: rfc3339(record.detected_at),
        promoted_at: record.promoted_at.map(rfc3339),
        routed_at: record.routed_at.map(rfc3339),
        rto_ms: record.rto_ms.and_then(|ms| i64::try_from(ms).ok()),
        lost_bytes: record.lost_bytes.and_then(|b| i64::try_from(b).ok()),
        data_lost: None,
        possible_loss: None,
    }
}
