//! Kubernetes Events about a ShanraqCluster. Which events to publish is decided purely, from the
//! conditions before and after a reconcile, so each one is published once per transition and
//! never on a reconcile that changed nothing.
//!
//! The reasons are a small, stable set (alerting and runbooks match on them):
//!
//! | reason | type | when |
//! |---|---|---|
//! | `InvalidSpec` | Warning | `Stalled` became True: the spec was refused (the note lists every field) |
//! | `ClusterReady` | Normal | `Ready` became True |
//! | `ClusterNotReady` | Warning | `Ready` went from True to False (not because of an invalid spec) |
//! | `ObjectiveViolated` | Warning | an objective condition (`RPOMet`, ...) became False |
//! | `SecretCreated` | Normal | a generated Secret was created (its name only, never a value) |
//! | `OrphanDeleted` | Normal | a child no longer rendered was deleted |

use std::borrow::Cow;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::{Event, EventType, Recorder};
use shanraq_api::conditions::{
    AVAILABILITY_MET, LATENCY_MET, READY, REASON_INVALID_SPEC, RPO_MET, RTO_MET, STALLED,
};

pub const CLUSTER_READY: &str = "ClusterReady";
pub const CLUSTER_NOT_READY: &str = "ClusterNotReady";
pub const OBJECTIVE_VIOLATED: &str = "ObjectiveViolated";
pub const SECRET_CREATED: &str = "SecretCreated";
pub const ORPHAN_DELETED: &str = "OrphanDeleted";
pub const INVALID_SPEC: &str = REASON_INVALID_SPEC;

/// Events are limited to 1 kB of note.
const MAX_NOTE: usize = 1000;

/// One event to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub reason: Cow<'static, str>,
    pub warning: bool,
    pub note: String,
    /// The object acted on, when it is not the cluster itself (a created Secret, a deleted
    /// orphan). Also keeps two such events apart instead of counting them as one series.
    pub related: Option<ObjectReference>,
}

impl Notice {
    pub fn normal(reason: impl Into<Cow<'static, str>>, note: impl Into<String>) -> Self {
        Notice {
            reason: reason.into(),
            warning: false,
            note: note.into(),
            related: None,
        }
    }

    pub fn warning(reason: impl Into<Cow<'static, str>>, note: impl Into<String>) -> Self {
        Notice {
            reason: reason.into(),
            warning: true,
            note: note.into(),
            related: None,
        }
    }

    /// The same notice about `related`.
    pub fn about(mut self, related: ObjectReference) -> Self {
        self.related = Some(related);
        self
    }
}

fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn became(previous: &[Condition], next: &[Condition], type_: &str, status: &str) -> bool {
    let now = find(next, type_).map(|c| c.status.as_str());
    let before = find(previous, type_).map(|c| c.status.as_str());
    now == Some(status) && before != Some(status)
}

/// The events that the change from `previous` to `next` conditions deserves.
pub fn transitions(previous: &[Condition], next: &[Condition]) -> Vec<Notice> {
    let mut notices = Vec::new();
    let message = |type_: &str| {
        find(next, type_)
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };
    if became(previous, next, STALLED, "True") {
        notices.push(Notice::warning(INVALID_SPEC, message(STALLED)));
    }
    if became(previous, next, READY, "True") {
        notices.push(Notice::normal(CLUSTER_READY, message(READY)));
    }
    let was_ready = find(previous, READY).is_some_and(|c| c.status == "True");
    let stalled = find(next, STALLED).is_some_and(|c| c.status == "True");
    if was_ready && !stalled && became(previous, next, READY, "False") {
        notices.push(Notice::warning(CLUSTER_NOT_READY, message(READY)));
    }
    for objective in [RPO_MET, RTO_MET, LATENCY_MET, AVAILABILITY_MET] {
        if became(previous, next, objective, "False") {
            notices.push(Notice::warning(
                OBJECTIVE_VIOLATED,
                format!("{objective}: {}", message(objective)),
            ));
        }
    }
    notices
}

fn truncate(note: &str) -> String {
    if note.len() <= MAX_NOTE {
        return note.to_owned();
    }
    let mut end = MAX_NOTE - 3;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}

/// The Event an engine's decision deserves, if any, as the engine ranks it (timeline steps
/// stay in the logs).
pub fn notice_of<E: shanraq_ha::engine::Notable>(event: &E) -> Option<Notice> {
    use shanraq_ha::engine::Importance;
    match event.importance() {
        Importance::Log => None,
        Importance::Normal => Some(Notice::normal(event.reason(), event.message())),
        Importance::Warning => Some(Notice::warning(event.reason(), event.message())),
    }
}

/// Publishes every notice about `reference`. A failed publish is logged and otherwise ignored:
/// events are informative, and the status already says the same.
pub async fn publish(recorder: &Recorder, reference: &ObjectReference, notices: &[Notice]) {
    for notice in notices {
        let event = Event {
            type_: if notice.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: notice.reason.to_string(),
            note: Some(truncate(&notice.note)),
            action: "Reconcile".to_owned(),
            secondary: notice.related.clone(),
        };
        if let Err(error) = recorder.publish(&event, reference).await {
            tracing::warn!(reason = %notice.reason, %error, "cannot publish event");
        }
    }
}

#[cfg(test)]
mod tests {
    /// Each engine ranks its own events: a suspected primary is a Warning, a completed
    /// failover Normal, a timeline step no Event at all.
    #[test]
    fn an_engine_event_becomes_the_event_its_engine_ranks_it() {
        use shanraq_ha::events::Lifecycle;
        use shanraq_ha::postgres::{Event, EventKind, Millis, NodeId};
        let event = |kind| Event {
            at: Millis(0),
            epoch: 2,
            kind,
        };
        let started = notice_of(&event(EventKind::Lifecycle(Lifecycle::FailoverStarted {
            from: NodeId::new("pg-0"),
            reason: "3 failed probes".to_owned(),
        })))
        .expect("a Warning");
        assert!(started.warning);
        assert_eq!(started.reason, "FailoverStarted");
        let elected = notice_of(&event(EventKind::Elected {
            node: NodeId::new("pg-1"),
            received_lsn: "0/1".to_owned(),
        }));
        assert_eq!(elected, None, "a timeline step stays in the logs");
        let redis = notice_of(&shanraq_ha::redis::Event {
            at: Millis(0),
            epoch: 2,
            kind: shanraq_ha::redis::EventKind::MasterBootstrapped {
                node: NodeId::new("redis-0"),
                offset: 0,
            },
        })
        .expect("a Normal Event");
        assert!(!redis.warning);
    }

    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn condition(type_: &str, status: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "R".into(),
            message: format!("{type_} is {status}"),
            observed_generation: Some(1),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        }
    }

    #[test]
    fn one_event_per_transition() {
        type Conditions<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Conditions, Conditions, &[&str])] = &[
            (&[], &[(READY, "False"), (STALLED, "False")], &[]),
            (&[(READY, "False")], &[(READY, "True")], &[CLUSTER_READY]),
            (&[(READY, "True")], &[(READY, "True")], &[]),
            (
                &[(READY, "True")],
                &[(READY, "False"), (STALLED, "False")],
                &[CLUSTER_NOT_READY],
            ),
            (
                &[(READY, "True"), (STALLED, "False")],
                &[(READY, "False"), (STALLED, "True")],
                &[INVALID_SPEC],
            ),
            (&[(STALLED, "True")], &[(STALLED, "True")], &[]),
            (
                &[(RTO_MET, "True")],
                &[(RTO_MET, "False")],
                &[OBJECTIVE_VIOLATED],
            ),
            (&[(RPO_MET, "Unknown")], &[(RPO_MET, "Unknown")], &[]),
            (&[(RTO_MET, "False")], &[(RTO_MET, "False")], &[]),
        ];
        for (before, after, expected) in cases {
            let before: Vec<Condition> = before.iter().map(|(t, s)| condition(t, s)).collect();
            let after: Vec<Condition> = after.iter().map(|(t, s)| condition(t, s)).collect();
            let notices = transitions(&before, &after);
            let reasons: Vec<&str> = notices.iter().map(|n| n.reason.as_ref()).collect();
            assert_eq!(&reasons, expected, "{before:?} -> {after:?}");
        }
    }

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        let note = "ж".repeat(800);
        let cut = truncate(&note);
        assert!(cut.len() <= MAX_NOTE);
        assert!(cut.ends_with("..."));
    }
}
