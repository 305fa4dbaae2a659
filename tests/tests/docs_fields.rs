//! The docs name only fields that exist: every `spec.*` and `status.*` path in `docs/*.md` and
//! README.md resolves in the generated CRD's schema (`crds/`). A renamed or removed field, or a
//! promised one that was never added, fails here instead of misleading a reader.

use serde_json::Value;
use shanraq_repo_tests::{read_yaml, repo_root};

/// Paths of other kinds the docs quote beside the kind's name: (path, kind named on its line).
const OTHER_KINDS: &[(&str, &[&str])] = &[
    ("spec.replicas", &["StatefulSet", "Deployment"]),
    ("status.succeeded", &["Job"]),
];

/// `spec.`/`status.` paths in `line`, each segment a field name or `[]`; not file names
/// (`spec.md`) and not the tail of a longer path (`.spec.replicas`, `x.status`).
fn paths(line: &str) -> Vec<String> {
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    for root in ["spec.", "status."] {
        let mut from = 0;
        while let Some(offset) = line[from..].find(root) {
            let start = from + offset;
            from = start + root.len();
            let before = start.checked_sub(1).map(|i| bytes[i]);
            if before.is_some_and(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b)) {
                continue;
            }
            let mut end = start;
            while end < bytes.len() {
                if bytes[end].is_ascii_alphanumeric() || b"._".contains(&bytes[end]) {
                    end += 1;
                } else if bytes[end..].starts_with(b"[]") {
                    end += 2;
                } else {
                    break;
                }
            }
            let path = line[start..end].trim_end_matches('.');
            let last = path.rsplit('.').next().unwrap_or_default();
            if ["md", "rs", "yaml", "lua"].contains(&last) {
                continue;
            }
            if path.len() > root.len() {
                found.push(path.to_owned());
            }
        }
    }
    found
}

/// Whether `path` exists below `schema` (`[]` steps into array items; a map field's keys are
/// free, so the path may go on below it).
fn resolves(schema: &Value, path: &str) -> bool {
    let mut node = schema;
    for segment in path.split('.') {
        let (name, arrays) = match segment.find("[]") {
            Some(at) => (&segment[..at], segment[at..].matches("[]").count()),
            None => (segment, 0),
        };
        if node.get("additionalProperties").is_some()
            || node["x-kubernetes-preserve-unknown-fields"] == true
        {
            return true;
        }
        let Some(next) = node["properties"].get(name) else {
            return false;
        };
        node = next;
        for _ in 0..arrays {
            match node.get("items") {
                Some(items) => node = items,
                None => return false,
            }
        }
    }
    true
}

fn crd_schema() -> Value {
    let crd = read_yaml("crds/shanraq.org_shanraqclusters.yaml");
    shanraq_repo_tests::schema::crd_version_schema(&crd, "v1alpha1").clone()
}

#[test]
fn the_path_reader_finds_field_paths_only() {
    let line = "see [spec.md](spec.md) and `spec.postgres.instances`, the StatefulSet's .spec.replicas, \
                `status.postgres.instances[].role` and status.rs";
    assert_eq!(
        paths(line),
        vec![
            "spec.postgres.instances",
            "status.postgres.instances[].role"
        ]
    );
    let schema = crd_schema();
    assert!(resolves(&schema, "status.postgres.instances[].role"));
    assert!(resolves(&schema, "spec.postgres.parameters.work_mem"));
    assert!(!resolves(&schema, "status.redis.master"));
    assert!(!resolves(&schema, "spec.postgres.replicas"));
}

#[test]
fn every_spec_and_status_path_in_the_docs_is_in_the_crd() {
    let schema = crd_schema();
    let root = repo_root();
    let mut files: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    files.push(root.join("README.md"));
    files.sort();
    let mut missing = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable doc");
        for (number, line) in text.lines().enumerate() {
            for path in paths(line) {
                if let Some((_, kinds)) = OTHER_KINDS.iter().find(|(p, _)| *p == path) {
                    assert!(
                        kinds.iter().any(|kind| line.contains(kind)),
                        "{}:{}: {path} is quoted without naming its kind {kinds:?}",
                        file.display(),
                        number + 1
                    );
                    continue;
                }
                checked += 1;
                if !resolves(&schema, &path) {
                    missing.push(format!("{}:{}: {path}", file.display(), number + 1));
                }
            }
        }
    }
    assert!(checked >= 20, "only {checked} paths found in the docs");
    assert!(
        missing.is_empty(),
        "fields the docs name but the CRD does not have:\n{}",
        missing.join("\n")
    );
}
