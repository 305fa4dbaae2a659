//! Admission, offline: the checks the API server applies to a ShanraqCluster (the CRD's OpenAPI
//! schema and its CEL rules), evaluated from the generated CRD itself. `shanraq render` uses it
//! on files, and the operator re-checks every object with it, so a cluster whose CRD was
//! installed without the rules still cannot drive the operator into an invalid state.

use std::fmt;
use std::sync::OnceLock;

use kube::core::CustomResourceExt;
use serde_json::Value;

use crate::cluster::ShanraqCluster;

/// One rejected field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.kafka.controllers`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn crd_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let crd = ShanraqCluster::crd();
        let schema = crd
            .spec
            .versions
            .first()
            .and_then(|version| version.schema.as_ref())
            .and_then(|schema| schema.open_api_v3_schema.as_ref());
        serde_json::to_value(schema).unwrap_or(Value::Null)
    })
}

fn schema_validator() -> Option<&'static jsonschema::Validator> {
    static VALIDATOR: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| jsonschema::validator_for(crd_schema()).ok())
        .as_ref()
}

/// `/spec/kafka/controllers` -> `spec.kafka.controllers`, `/spec/kafka/topics/0/name` ->
/// `spec.kafka.topics[0].name`.
fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').filter(|s| !s.is_empty()) {
        if segment.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment.replace("~1", "/").replace("~0", "~"));
        }
    }
    if out.is_empty() {
        "<root>".to_owned()
    } else {
        out
    }
}

/// The OpenAPI part: types, ranges, patterns, enums, list-map key uniqueness.
pub fn check_schema(object: &Value) -> Vec<FieldError> {
    let Some(validator) = schema_validator() else {
        return vec![FieldError {
            field: "<crd>".to_owned(),
            message: "the generated CRD schema does not compile".to_owned(),
        }];
    };
    let mut errors: Vec<FieldError> = validator
        .iter_errors(object)
        .map(|error| FieldError {
            field: dotted(error.instance_path().as_str()),
            message: error.to_string(),
        })
        .collect();
    errors.extend(duplicate_list_keys(object));
    errors
}

/// `x-kubernetes-list-type: map` uniqueness, which plain JSON Schema does not know.
fn duplicate_list_keys(object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (pointer, field) in [
        ("/spec/kafka/topics", "spec.kafka.topics"),
        ("/spec/haproxy/backends", "spec.haproxy.backends"),
    ] {
        let Some(items) = object.pointer(pointer).and_then(Value::as_array) else {
            continue;
        };
        let mut seen = std::collections::BTreeSet::new();
        for (index, item) in items.iter().enumerate() {
            if let Some(name) = item.get("name").and_then(Value::as_str)
                && !seen.insert(name)
            {
                errors.push(FieldError {
                    field: format!("{field}[{index}].name"),
                    message: format!("duplicate name {name:?}"),
                });
            }
        }
    }
    errors
}

/// The CEL part (`x-kubernetes-validations`), on a defaulted object. `old` enables the
/// transition rules that compare with `oldSelf`.
pub fn check_rules(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    match kube::core::cel::Validator::new().validate(crd_schema(), object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .map(|error| FieldError {
                field: cel_field(&error.field_path),
                message: error.message,
            })
            .collect(),
    }
}

fn cel_field(path: &str) -> String {
    let trimmed = path.trim_start_matches('.');
    if trimmed.is_empty() {
        "<root>".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Everything the API server would check, on a cluster as users write it: the schema on the
/// object as given, then the CEL rules on the object with defaults applied.
pub fn check(cluster: &ShanraqCluster, old: Option<&ShanraqCluster>) -> Vec<FieldError> {
    let object = match serde_json::to_value(cluster) {
        Ok(object) => object,
        Err(error) => {
            return vec![FieldError {
                field: "<root>".to_owned(),
                message: error.to_string(),
            }];
        }
    };
    let mut errors = check_schema(&object);
    let old = old.and_then(|old| serde_json::to_value(old).ok());
    errors.extend(check_rules(&object, old.as_ref()));
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_become_field_paths() {
        assert_eq!(
            dotted("/spec/kafka/topics/0/name"),
            "spec.kafka.topics[0].name"
        );
        assert_eq!(
            dotted("/metadata/labels/app.kubernetes.io~1name"),
            "metadata.labels.app.kubernetes.io/name"
        );
        assert_eq!(dotted(""), "<root>");
    }
}
