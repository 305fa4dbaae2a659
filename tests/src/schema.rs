//! A small checker for a CRD's structural OpenAPI v3 schema, enough to tell whether a test
//! object (an Argo CD health case, say) has the fields, types and required members the API
//! server would accept. It rejects unknown fields, as the API server's strict field validation
//! does, so test objects cannot drift from the real status shape unnoticed. Formats, patterns
//! and CEL rules are not checked (the API crate's own tests cover them).

use serde_json::Value;

/// Every way `value` breaks `schema`, as `path: reason` lines; empty when it conforms.
pub fn violations(schema: &Value, value: &Value, path: &str) -> Vec<String> {
    let mut found = Vec::new();
    check(schema, value, path, &mut found);
    found
}

/// The `openAPIV3Schema` of version `version` of a CRD.
pub fn crd_version_schema<'a>(crd: &'a Value, version: &str) -> &'a Value {
    crd["spec"]["versions"]
        .as_array()
        .and_then(|versions| {
            versions
                .iter()
                .find(|candidate| candidate["name"] == version)
        })
        .map(|found| &found["schema"]["openAPIV3Schema"])
        .unwrap_or_else(|| panic!("the CRD has no version {version}"))
}

/// Checks a whole custom object: apiVersion, kind and metadata are the API server's, the rest
/// follows the CRD schema.
pub fn object_violations(crd_schema: &Value, object: &Value) -> Vec<String> {
    let mut body = object.clone();
    if let Some(fields) = body.as_object_mut() {
        for implicit in ["apiVersion", "kind", "metadata"] {
            fields.remove(implicit);
        }
    }
    violations(crd_schema, &body, "")
}

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        _ => true,
    }
}

fn check(schema: &Value, value: &Value, path: &str, found: &mut Vec<String>) {
    let shown = if path.is_empty() { "." } else { path };
    if value.is_null() {
        if schema["nullable"] != true {
            found.push(format!("{shown}: null is not allowed"));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            found.push(format!(
                "{shown}: expected an integer or a string, got {value}"
            ));
        }
        return;
    }
    if let Some(expected) = schema["type"].as_str()
        && !type_matches(expected, value)
    {
        found.push(format!("{shown}: expected {expected}, got {value}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        found.push(format!("{shown}: {value} is not one of {}", schema["enum"]));
    }
    if let (Some(minimum), Some(number)) = (schema["minimum"].as_f64(), value.as_f64())
        && number < minimum
    {
        found.push(format!("{shown}: {number} is below the minimum {minimum}"));
    }
    if let (Some(maximum), Some(number)) = (schema["maximum"].as_f64(), value.as_f64())
        && number > maximum
    {
        found.push(format!("{shown}: {number} is above the maximum {maximum}"));
    }
    if let Some(items) = value.as_array() {
        for (index, item) in items.iter().enumerate() {
            check(&schema["items"], item, &format!("{path}[{index}]"), found);
        }
    }
    if let Some(fields) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            if let Some(required) = required.as_str()
                && !fields.contains_key(required)
            {
                found.push(format!("{shown}: required field {required} is missing"));
            }
        }
        let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
        for (key, field) in fields {
            let field_path = format!("{path}.{key}");
            if let Some(property) = schema["properties"].get(key) {
                check(property, field, &field_path, found);
            } else if schema["additionalProperties"].is_object() {
                check(&schema["additionalProperties"], field, &field_path, found);
            } else if !preserve && schema["additionalProperties"] != true {
                found.push(format!("{field_path}: unknown field"));
            }
        }
    }
}
