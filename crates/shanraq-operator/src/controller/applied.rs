//! What each cluster last had applied in full: a digest of its rendering and the version of
//! every child (and generated Secret) that apply left behind. Most reconciles are triggered by
//! a workload's status moving or by the periodic requeue, with a rendering that has not
//! changed; with a mark that still holds, such a reconcile reads its workloads (a few GETs)
//! instead of re-applying every child and listing every owned kind (dozens of requests), which
//! is what lets one operator keep hundreds of clusters converged.
//!
//! A mark stops holding, and the next reconcile applies in full, when:
//! - the rendering's digest differs (spec, primary, monitoring availability changed), or the
//!   cluster was recreated under the same name (another uid);
//! - anyone else changed or deleted a child: the child watches report its generation, or its
//!   resourceVersion for kinds without a generation, and one that is not what the apply left
//!   marks the cluster dirty (a status update moves neither a workload's generation nor, for
//!   the kinds without status, anything at all);
//! - a workload read back is missing or has another generation;
//! - [`FULL_APPLY_PERIOD`] passed since the last full apply (a safety net).
//!
//! A child may be changed or deleted while a full apply is still in flight (after its own
//! patch returned, before the mark is written). What the watches report in that window is kept
//! and checked against the versions once they are known, so such a change is not lost.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::core::DynamicObject;
use shanraq_render::Child;

/// The longest a cluster goes without a full apply, whatever the watches saw.
pub const FULL_APPLY_PERIOD: Duration = Duration::from_secs(600);

/// The kinds whose status the reconcile reads back (`status::Workload`).
pub const WORKLOAD_KINDS: &[&str] = &["StatefulSet", "Deployment", "Job"];

/// A child as the last full apply left it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Version {
    generation: Option<i64>,
    resource_version: Option<String>,
}

impl Version {
    /// Whether `seen` (from a watch or a read) is the object this version describes: the same
    /// generation where the kind has one, else the same resourceVersion.
    fn matches(&self, generation: Option<i64>, resource_version: Option<&str>) -> bool {
        match (self.generation, generation) {
            (Some(ours), Some(seen)) => ours == seen,
            _ => {
                self.resource_version.is_some()
                    && self.resource_version.as_deref() == resource_version
            }
        }
    }
}

/// What a child watch reported: kind, name, generation, resourceVersion.
type Seen = (String, String, Option<i64>, Option<String>);

#[derive(Debug)]
enum Entry {
    /// A full apply is in flight: what the watches reported since it began.
    Applying(Vec<Seen>),
    Applied(Mark),
}

#[derive(Debug)]
struct Mark {
    uid: String,
    digest: u64,
    at: Instant,
    children: HashMap<(String, String), Version>,
    dirty: bool,
}

/// The marks of every cluster this operator reconciles, by `namespace/name`.
#[derive(Debug, Default)]
pub struct AppliedMarks {
    marks: Mutex<HashMap<String, Entry>>,
}

/// The digest of one rendering: every child and Secret template as JSON, and whether the
/// monitoring kinds were included.
pub fn digest(children: &[Child], secret_names: &[String], monitoring_available: bool) -> u64 {
    let mut hasher = DefaultHasher::new();
    for child in children {
        child.api_resource().kind.hash(&mut hasher);
        match child.to_json() {
            Ok(json) => json.to_string().hash(&mut hasher),
            // Cannot happen for rendered objects; a fresh value forces the full apply, whose
            // own serialisation then reports the error.
            Err(_) => Instant::now().hash(&mut hasher),
        }
    }
    secret_names.hash(&mut hasher);
    monitoring_available.hash(&mut hasher);
    hasher.finish()
}

impl AppliedMarks {
    /// The workloads (kind, name) to read back when the mark of `key` still holds for this
    /// uid and digest at `now`; `None` when the reconcile must apply in full.
    pub fn holds(
        &self,
        key: &str,
        uid: &str,
        digest: u64,
        now: Instant,
    ) -> Option<Vec<(String, String)>> {
        let marks = self.marks.lock().ok()?;
        let Entry::Applied(mark) = marks.get(key)? else {
            return None;
        };
        let holds = mark.uid == uid
            && mark.digest == digest
            && !mark.dirty
            && now.saturating_duration_since(mark.at) < FULL_APPLY_PERIOD;
        holds.then(|| {
            let mut workloads: Vec<(String, String)> = mark
                .children
                .keys()
                .filter(|(kind, _)| WORKLOAD_KINDS.contains(&kind.as_str()))
                .cloned()
                .collect();
            workloads.sort();
            workloads
        })
    }

    /// Whether a workload read back is still the one the last full apply left.
    pub fn still_ours(&self, key: &str, object: &DynamicObject) -> bool {
        let Some(kind) = object.types.as_ref().map(|t| t.kind.clone()) else {
            return false;
        };
        let Some(name) = object.metadata.name.clone() else {
            return false;
        };
        let Ok(marks) = self.marks.lock() else {
            return false;
        };
        let Some(Entry::Applied(mark)) = marks.get(key) else {
            return false;
        };
        mark.children.get(&(kind, name)).is_some_and(|version| {
            version.matches(
                object.metadata.generation,
                object.metadata.resource_version.as_deref(),
            )
        })
    }

    /// A full apply of `key` begins: the old mark no longer holds, and what the watches report
    /// from now on is kept for [`AppliedMarks::record`].
    pub fn begin(&self, key: &str) {
        if let Ok(mut marks) = self.marks.lock() {
            marks.insert(key.to_owned(), Entry::Applying(Vec::new()));
        }
    }

    /// Records a full apply of `key` at `now`: the objects as the API server returned them and
    /// the generated Secrets' versions.
    pub fn record(
        &self,
        key: &str,
        uid: &str,
        digest: u64,
        objects: &[DynamicObject],
        secrets: &[(String, Option<String>)],
        now: Instant,
    ) {
        let mut children = HashMap::new();
        for object in objects {
            let (Some(types), Some(name)) = (&object.types, &object.metadata.name) else {
                continue;
            };
            children.insert(
                (types.kind.clone(), name.clone()),
                Version {
                    generation: object.metadata.generation,
                    resource_version: object.metadata.resource_version.clone(),
                },
            );
        }
        for (name, resource_version) in secrets {
            children.insert(
                ("Secret".to_owned(), name.clone()),
                Version {
                    generation: None,
                    resource_version: resource_version.clone(),
                },
            );
        }
        if let Ok(mut marks) = self.marks.lock() {
            // A child reported during the apply that is not what the apply left was changed by
            // someone else in the meantime (or is an older echo): apply in full again.
            let dirty = match marks.get(key) {
                Some(Entry::Applying(seen)) => {
                    seen.iter().any(|(kind, name, generation, version)| {
                        !children
                            .get(&(kind.clone(), name.clone()))
                            .is_some_and(|ours| ours.matches(*generation, version.as_deref()))
                    })
                }
                _ => false,
            };
            marks.insert(
                key.to_owned(),
                Entry::Applied(Mark {
                    uid: uid.to_owned(),
                    digest,
                    at: now,
                    children,
                    dirty,
                }),
            );
        }
    }

    /// A child watch saw `kind/name` of cluster `key` with this generation and version: the
    /// cluster is dirty when that is not what its last full apply left.
    pub fn observe_child(
        &self,
        key: &str,
        kind: &str,
        name: &str,
        generation: Option<i64>,
        resource_version: Option<&str>,
    ) {
        let Ok(mut marks) = self.marks.lock() else {
            return;
        };
        let mark = match marks.get_mut(key) {
            Some(Entry::Applied(mark)) => mark,
            Some(Entry::Applying(seen)) => {
                seen.push((
                    kind.to_owned(),
                    name.to_owned(),
                    generation,
                    resource_version.map(str::to_owned),
                ));
                return;
            }
            None => return,
        };
        let ours = mark
            .children
            .get(&(kind.to_owned(), name.to_owned()))
            .is_some_and(|version| version.matches(generation, resource_version));
        if !ours {
            mark.dirty = true;
        }
    }

    /// Forgets `key` (its next reconcile applies in full).
    pub fn forget(&self, key: &str) {
        if let Ok(mut marks) = self.marks.lock() {
            marks.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::{ApiResource, GroupVersionKind};

    fn object(kind: &str, name: &str, generation: Option<i64>, version: &str) -> DynamicObject {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", kind));
        let mut object = DynamicObject::new(name, &resource);
        object.metadata.generation = generation;
        object.metadata.resource_version = Some(version.to_owned());
        object
    }

    fn recorded() -> (AppliedMarks, Instant) {
        let marks = AppliedMarks::default();
        let now = Instant::now();
        marks.record(
            "fintech/payments",
            "uid-1",
            7,
            &[
                object("StatefulSet", "payments-pg", Some(1), "10"),
                object("ConfigMap", "payments-pg-config", None, "11"),
            ],
            &[("payments-pg-app".to_owned(), Some("12".to_owned()))],
            now,
        );
        (marks, now)
    }

    #[test]
    fn an_unchanged_rendering_reads_only_its_workloads() {
        let (marks, now) = recorded();
        assert_eq!(
            marks.holds("fintech/payments", "uid-1", 7, now),
            Some(vec![("StatefulSet".to_owned(), "payments-pg".to_owned())])
        );
    }

    #[test]
    fn another_digest_uid_or_an_old_mark_applies_in_full() {
        let (marks, now) = recorded();
        assert_eq!(marks.holds("fintech/payments", "uid-1", 8, now), None);
        assert_eq!(marks.holds("fintech/payments", "uid-2", 7, now), None);
        assert_eq!(marks.holds("fintech/ledger", "uid-1", 7, now), None);
        assert_eq!(
            marks.holds("fintech/payments", "uid-1", 7, now + FULL_APPLY_PERIOD),
            None
        );
    }

    #[test]
    fn a_status_update_keeps_the_mark_but_an_edit_by_someone_else_does_not() {
        let (marks, now) = recorded();
        // The StatefulSet controller wrote its status: a new resourceVersion, same generation.
        marks.observe_child(
            "fintech/payments",
            "StatefulSet",
            "payments-pg",
            Some(1),
            Some("20"),
        );
        // The apply's own echo.
        marks.observe_child(
            "fintech/payments",
            "ConfigMap",
            "payments-pg-config",
            None,
            Some("11"),
        );
        marks.observe_child(
            "fintech/payments",
            "Secret",
            "payments-pg-app",
            None,
            Some("12"),
        );
        assert!(marks.holds("fintech/payments", "uid-1", 7, now).is_some());

        // Someone edited the ConfigMap.
        marks.observe_child(
            "fintech/payments",
            "ConfigMap",
            "payments-pg-config",
            None,
            Some("21"),
        );
        assert_eq!(marks.holds("fintech/payments", "uid-1", 7, now), None);
    }

    #[test]
    fn an_edited_workload_spec_or_an_unknown_child_marks_the_cluster_dirty() {
        let (marks, now) = recorded();
        marks.observe_child(
            "fintech/payments",
            "StatefulSet",
            "payments-pg",
            Some(2),
            Some("30"),
        );
        assert_eq!(marks.holds("fintech/payments", "uid-1", 7, now), None);

        let (marks, now) = recorded();
        marks.observe_child(
            "fintech/payments",
            "Service",
            "payments-extra",
            None,
            Some("31"),
        );
        assert_eq!(marks.holds("fintech/payments", "uid-1", 7, now), None);
    }

    #[test]
    fn a_child_changed_while_the_apply_was_in_flight_is_not_lost() {
        let marks = AppliedMarks::default();
        let now = Instant::now();
        let applied = [
            object("StatefulSet", "payments-pg", Some(1), "10"),
            object("Service", "payments-pg-rw", None, "11"),
        ];
        // The apply's own echoes, a status update: the mark holds.
        marks.begin("fintech/payments");
        marks.observe_child(
            "fintech/payments",
            "Service",
            "payments-pg-rw",
            None,
            Some("11"),
        );
        marks.observe_child(
            "fintech/payments",
            "StatefulSet",
            "payments-pg",
            Some(1),
            Some("12"),
        );
        assert_eq!(
            marks.holds("fintech/payments", "uid-1", 7, now),
            None,
            "not while applying"
        );
        marks.record("fintech/payments", "uid-1", 7, &applied, &[], now);
        assert!(marks.holds("fintech/payments", "uid-1", 7, now).is_some());

        // The Service deleted after its patch returned, before the apply ended.
        marks.begin("fintech/payments");
        marks.observe_child(
            "fintech/payments",
            "Service",
            "payments-pg-rw",
            None,
            Some("13"),
        );
        marks.record("fintech/payments", "uid-1", 7, &applied, &[], now);
        assert_eq!(marks.holds("fintech/payments", "uid-1", 7, now), None);
    }

    #[test]
    fn a_workload_read_back_is_checked_against_the_mark() {
        let (marks, _) = recorded();
        let same = object("StatefulSet", "payments-pg", Some(1), "40");
        let edited = object("StatefulSet", "payments-pg", Some(3), "41");
        assert!(marks.still_ours("fintech/payments", &same));
        assert!(!marks.still_ours("fintech/payments", &edited));
        marks.forget("fintech/payments");
        assert!(!marks.still_ours("fintech/payments", &same));
    }
}
