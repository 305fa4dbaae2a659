//! Admission of `spec.backup` and `spec.bootstrap.recovery`, offline: each invalid field a user
//! could write is rejected with a message naming it, and a minimal backup spec gets every
//! default (path, region, key names, TLS verification on, 7 days, archiveTimeout 30s).

use serde_json::{Value, json};
use shanraq_api::ShanraqCluster;
use shanraq_api::admission::{self, FieldError};
use shanraq_api::backup::Retention;

fn cluster(spec: Value) -> ShanraqCluster {
    let object = json!({
        "apiVersion": "shanraq.org/v1alpha1",
        "kind": "ShanraqCluster",
        "metadata": { "name": "payments", "namespace": "fintech" },
        "spec": spec,
    });
    serde_json::from_value(object).expect("test spec deserialises")
}

fn backup(extra: Value) -> Value {
    let mut backup = json!({
        "endpoint": "https://s3.example.com:9000",
        "bucket": "payments-backups",
        "credentials": { "secretName": "payments-s3" },
    });
    if let (Some(base), Some(extra)) = (backup.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            base.insert(key.clone(), value.clone());
        }
    }
    backup
}

fn errors_for(spec: Value) -> Vec<FieldError> {
    let sqc = cluster(spec);
    let mut errors = admission::check(&sqc, None);
    if errors.is_empty()
        && let Err(invalid) = shanraq_api::validate(&sqc, &shanraq_api::LiveState::default())
    {
        errors = invalid.errors;
    }
    errors
}

#[track_caller]
fn assert_rejected(spec: Value, field: &str, words: &str) {
    let errors = errors_for(spec);
    assert!(
        errors
            .iter()
            .any(|e| e.field.starts_with(field) && e.message.contains(words)),
        "expected an error on {field} mentioning {words:?}, got {errors:#?}"
    );
}

#[test]
fn a_minimal_backup_spec_is_valid_with_its_defaults() {
    let sqc = cluster(json!({ "backup": backup(json!({})) }));
    assert_eq!(admission::check(&sqc, None), vec![]);
    let backup = sqc.spec.backup.expect("backup");
    assert_eq!(backup.path, "/shanraq");
    assert_eq!(backup.region, "us-east-1");
    assert_eq!(backup.credentials.access_key_id_key, "ACCESS_KEY_ID");
    assert!(backup.tls.verify);
    assert_eq!(backup.retention.resolved(), Retention::Days(7));
    assert_eq!(backup.archive_timeout.to_string(), "30s");
    assert_eq!(sqc.spec.objectives.dr.rpo.to_string(), "1m");
}

#[test]
fn each_bad_backup_field_is_named() {
    assert_rejected(
        json!({ "backup": backup(json!({ "endpoint": "http://s3.example.com" })) }),
        "spec.backup.endpoint",
        "",
    );
    assert_rejected(
        json!({ "backup": backup(json!({ "bucket": "Bad_Bucket" })) }),
        "spec.backup.bucket",
        "",
    );
    assert_rejected(
        json!({ "backup": backup(json!({ "path": "relative/path" })) }),
        "spec.backup.path",
        "",
    );
    assert_rejected(
        json!({ "backup": backup(json!({ "archiveTimeout": "0s" })) }),
        "spec.backup.archiveTimeout",
        "at least 1s",
    );
    assert_rejected(
        json!({ "objectives": { "dr": { "rpo": "10s" } }, "backup": backup(json!({ "archiveTimeout": "30s" })) }),
        "spec.backup.archiveTimeout",
        "objectives.dr.rpo",
    );
    assert_rejected(
        json!({ "backup": backup(json!({ "retention": { "fullBackups": 4, "days": 7 } })) }),
        "spec.backup.retention.days",
        "not both",
    );
    assert_rejected(
        json!({ "backup": backup(json!({ "tls": { "ca": { "secret": { "name": "ca", "key": "ca.crt" }, "configMap": { "name": "ca", "key": "ca.crt" } } } })) }),
        "spec.backup.tls.ca",
        "exactly one",
    );
    assert_rejected(
        json!({ "backup": backup(json!({ "endpoint": "https://s3.example.com:70000" })) }),
        "spec.backup.endpoint",
        "65535",
    );
}

#[test]
fn recovery_needs_a_store_one_target_and_another_source() {
    let recovery = |target: Value| {
        let mut recovery = json!({ "source": "old-payments" });
        if let (Some(base), Some(target)) = (recovery.as_object_mut(), target.as_object()) {
            for (key, value) in target {
                base.insert(key.clone(), value.clone());
            }
        }
        recovery
    };
    assert_rejected(
        json!({ "bootstrap": { "recovery": recovery(json!({ "latest": true })) } }),
        "spec.bootstrap.recovery",
        "set spec.backup",
    );
    assert_rejected(
        json!({ "backup": backup(json!({})), "bootstrap": { "recovery": recovery(json!({})) } }),
        "spec.bootstrap.recovery",
        "exactly one",
    );
    assert_rejected(
        json!({ "backup": backup(json!({})), "bootstrap": { "recovery": recovery(json!({ "latest": true, "targetLSN": "0/3000000" })) } }),
        "spec.bootstrap.recovery",
        "exactly one",
    );
    assert_rejected(
        json!({ "backup": backup(json!({})), "bootstrap": { "recovery": recovery(json!({ "targetTime": "yesterday" })) } }),
        "spec.bootstrap.recovery.targetTime",
        "",
    );
    assert_rejected(
        json!({ "backup": backup(json!({})), "bootstrap": { "recovery": { "source": "payments", "latest": true } } }),
        "spec.bootstrap.recovery.source",
        "its own backups",
    );
    assert!(
        errors_for(json!({ "backup": backup(json!({})), "bootstrap": { "recovery": recovery(json!({ "targetTime": "2026-12-02T03:35:24.888153Z" })) } })).is_empty()
    );
}

#[test]
fn the_operator_owns_the_archiving_settings() {
    assert_rejected(
        json!({ "postgres": { "parameters": { "archive_command": "cp %p /tmp" } } }),
        "spec.postgres.parameters",
        "archive_command",
    );
}
