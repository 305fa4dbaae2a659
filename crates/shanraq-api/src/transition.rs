//! Changes to a running cluster that no admission rule can judge, because they depend on what
//! runs: a scale-in that would delete the current PostgreSQL primary or Redis master, and
//! turning a stateful component off while its pods still run without the user's confirmation
//! (annotation `shanraq.org/confirm-delete`). Each refusal names its field and says what to do;
//! the operator reports it as `Stalled` and touches nothing until the spec or the annotation
//! changes. Pure: the live facts come in [`LiveState`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::admission::FieldError;
use crate::cluster::ShanraqClusterSpec;
use crate::names::{ANNOTATION_CONFIRM_DELETE, Component, Names};
use crate::redis::RedisMode;

/// A component whose pods hold data: deleting them needs a confirmation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stateful {
    Postgres,
    Redis,
    Kafka,
}

impl Stateful {
    pub const ALL: [Stateful; 3] = [Stateful::Postgres, Stateful::Redis, Stateful::Kafka];

    /// The word the confirmation annotation lists.
    pub fn as_str(self) -> &'static str {
        match self {
            Stateful::Postgres => "postgres",
            Stateful::Redis => "redis",
            Stateful::Kafka => "kafka",
        }
    }

    pub fn parse(word: &str) -> Option<Stateful> {
        Stateful::ALL.into_iter().find(|c| c.as_str() == word)
    }

    /// The field that turns it off.
    pub fn enabled_field(self) -> &'static str {
        match self {
            Stateful::Postgres => "spec.postgres.enabled",
            Stateful::Redis => "spec.redis.enabled",
            Stateful::Kafka => "spec.kafka.enabled",
        }
    }

    /// Its StatefulSets.
    pub fn workloads(self) -> &'static [Component] {
        match self {
            Stateful::Postgres => &[Component::Postgres],
            Stateful::Redis => &[Component::Redis],
            Stateful::Kafka => &[Component::KafkaController, Component::KafkaBroker],
        }
    }

    pub fn enabled(self, spec: &ShanraqClusterSpec) -> bool {
        match self {
            Stateful::Postgres => spec.postgres.enabled,
            Stateful::Redis => spec.redis.enabled,
            Stateful::Kafka => spec.kafka.enabled,
        }
    }
}

impl fmt::Display for Stateful {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Facts from the live cluster that some rules depend on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveState {
    /// The PostgreSQL primary recorded in the status, if any.
    pub current_postgres_primary: Option<String>,
    /// The Redis master recorded in the status (replication mode), if any.
    pub current_redis_master: Option<String>,
    /// StatefulSets that still exist, per component the spec turns off without confirmation.
    /// The operator reads only those, so a reconcile of an unchanged cluster reads nothing more.
    pub running: BTreeMap<Stateful, Vec<String>>,
}

/// The components `shanraq.org/confirm-delete` names (`postgres,redis`); unknown words are
/// ignored, as an annotation cannot be refused at admission.
pub fn confirmed_deletions(annotations: &BTreeMap<String, String>) -> BTreeSet<Stateful> {
    annotations
        .get(ANNOTATION_CONFIRM_DELETE)
        .map(|value| {
            value
                .split(',')
                .filter_map(|word| Stateful::parse(word.trim()))
                .collect()
        })
        .unwrap_or_default()
}

/// The stateful components the spec turns off and no confirmation covers: whether their pods
/// still run must be known before the spec may be acted on.
pub fn unconfirmed_disabled(
    spec: &ShanraqClusterSpec,
    annotations: &BTreeMap<String, String>,
) -> Vec<Stateful> {
    let confirmed = confirmed_deletions(annotations);
    Stateful::ALL
        .into_iter()
        .filter(|c| !c.enabled(spec) && !confirmed.contains(c))
        .collect()
}

/// Why a change cannot be carried out on the running cluster as written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error(
        "turning {component} off deletes its running pods ({}); annotate the cluster {ANNOTATION_CONFIRM_DELETE}={component} to proceed (volumes and Secrets are kept), or set it back to true",
        running.join(", ")
    )]
    DeletionNotConfirmed {
        component: Stateful,
        running: Vec<String>,
    },
    #[error(
        "scaling to {instances} instances would delete the current primary {primary}; switch over to a lower ordinal first (annotation shanraq.org/switchover)"
    )]
    PrimaryScaledAway { instances: i32, primary: String },
    #[error(
        "scaling to {instances} instances would delete the current Redis master {master}; switch over to a lower ordinal first (annotation shanraq.org/redis-switchover)"
    )]
    MasterScaledAway { instances: i32, master: String },
}

impl TransitionError {
    /// The field the change is refused on.
    pub fn field(&self) -> &'static str {
        match self {
            TransitionError::DeletionNotConfirmed { component, .. } => component.enabled_field(),
            TransitionError::PrimaryScaledAway { .. } => "spec.postgres.instances",
            TransitionError::MasterScaledAway { .. } => "spec.redis.instances",
        }
    }
}

impl From<TransitionError> for FieldError {
    fn from(error: TransitionError) -> FieldError {
        FieldError {
            field: error.field().to_owned(),
            message: error.to_string(),
        }
    }
}

/// The ordinal of pod `pod` of `component`'s StatefulSet, if it is one.
fn ordinal(names: &Names, component: Component, pod: &str) -> Option<i32> {
    let prefix = format!("{}-", names.workload(component));
    pod.strip_prefix(&prefix)?.parse().ok()
}

/// Every reason the running cluster cannot take `spec` as written.
pub fn check(
    name: &str,
    spec: &ShanraqClusterSpec,
    annotations: &BTreeMap<String, String>,
    live: &LiveState,
) -> Vec<TransitionError> {
    let names = Names::new(name);
    let mut errors = Vec::new();
    if spec.postgres.enabled
        && let Some(primary) = &live.current_postgres_primary
        && ordinal(&names, Component::Postgres, primary)
            .is_some_and(|n| n >= spec.postgres.instances)
    {
        errors.push(TransitionError::PrimaryScaledAway {
            instances: spec.postgres.instances,
            primary: primary.clone(),
        });
    }
    if spec.redis.enabled
        && spec.redis.mode == RedisMode::Replication
        && let Some(master) = &live.current_redis_master
        && ordinal(&names, Component::Redis, master).is_some_and(|n| n >= spec.redis.instances)
    {
        errors.push(TransitionError::MasterScaledAway {
            instances: spec.redis.instances,
            master: master.clone(),
        });
    }
    for component in unconfirmed_disabled(spec, annotations) {
        if let Some(running) = live.running.get(&component).filter(|r| !r.is_empty()) {
            errors.push(TransitionError::DeletionNotConfirmed {
                component,
                running: running.clone(),
            });
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated(value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(ANNOTATION_CONFIRM_DELETE.to_owned(), value.to_owned())])
    }

    #[test]
    fn the_confirmation_lists_components_separated_by_commas() {
        assert_eq!(
            confirmed_deletions(&annotated("postgres, redis,unknown")),
            BTreeSet::from([Stateful::Postgres, Stateful::Redis])
        );
        assert!(confirmed_deletions(&BTreeMap::new()).is_empty());
        assert!(confirmed_deletions(&annotated("Postgres")).is_empty());
    }

    #[test]
    fn turning_a_running_component_off_needs_its_confirmation() {
        let mut spec = ShanraqClusterSpec::default();
        spec.postgres.enabled = false;
        spec.kafka.enabled = false;
        let live = LiveState {
            running: BTreeMap::from([
                (Stateful::Postgres, vec!["payments-pg".to_owned()]),
                (Stateful::Kafka, vec![]),
            ]),
            ..LiveState::default()
        };
        let errors = check("payments", &spec, &BTreeMap::new(), &live);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field(), "spec.postgres.enabled");
        let message = errors[0].to_string();
        assert!(message.contains("payments-pg"), "{message}");
        assert!(
            message.contains("shanraq.org/confirm-delete=postgres"),
            "{message}"
        );
        assert!(check("payments", &spec, &annotated("kafka,postgres"), &live).is_empty());
        assert_eq!(
            unconfirmed_disabled(&spec, &annotated("postgres")),
            vec![Stateful::Kafka]
        );
    }

    #[test]
    fn a_scale_in_may_not_delete_the_primary_or_the_master() {
        let mut spec = ShanraqClusterSpec::default();
        spec.postgres.instances = 2;
        spec.redis.instances = 2;
        spec.redis.min_replicas_to_write = 1;
        let live = LiveState {
            current_postgres_primary: Some("payments-pg-2".to_owned()),
            current_redis_master: Some("payments-redis-2".to_owned()),
            ..LiveState::default()
        };
        let fields: Vec<&str> = check("payments", &spec, &BTreeMap::new(), &live)
            .iter()
            .map(TransitionError::field)
            .collect();
        assert_eq!(
            fields,
            vec!["spec.postgres.instances", "spec.redis.instances"]
        );
        spec.postgres.instances = 3;
        spec.redis.instances = 3;
        assert!(check("payments", &spec, &BTreeMap::new(), &live).is_empty());
    }
}
