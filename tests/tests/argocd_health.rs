//! The Argo CD health check (`deploy/argocd/shanraq.org/ShanraqCluster/health.lua`) gives the
//! status and message listed in its `health_test.yaml` for every test object. Each case runs
//! through a real Lua interpreter, the way Argo CD runs it: the object is a global `obj` table
//! and the script returns `{status, message}`.

use std::path::PathBuf;

use serde_json::Value;
use shanraq_repo_tests::lua::{lua_literal, lua_string};
use shanraq_repo_tests::{read_yaml, repo_root, run, tool};

const HEALTH_DIR: &str = "deploy/argocd/shanraq.org/ShanraqCluster";

/// Runs health.lua on `object` with lua5.4; returns (status, message).
fn evaluate(object: &Value) -> (String, String) {
    let script: PathBuf = repo_root().join(HEALTH_DIR).join("health.lua");
    let chunk = format!(
        "obj = {}\n\
         local hs = dofile({})\n\
         assert(type(hs) == 'table', 'health.lua returned ' .. type(hs))\n\
         io.write(tostring(hs.status), '\\0', tostring(hs.message))\n",
        lua_literal(object),
        lua_string(&script.to_string_lossy()),
    );
    let output = run(&tool("lua5.4"), &["-"], Some(&chunk));
    assert!(
        output.success,
        "lua5.4 failed on health.lua (install the Debian package lua5.4, e.g. with \
         scripts/install-deps)\nstderr:\n{}",
        output.stderr
    );
    let (status, message) = output
        .stdout
        .split_once('\0')
        .unwrap_or_else(|| panic!("unexpected health.lua output {:?}", output.stdout));
    (status.to_string(), message.to_string())
}

#[test]
fn lua_literal_round_trips_awkward_strings() {
    let object =
        serde_json::json!({"s": "quote \" backslash \\ newline \n tab \t ünïcode", "n": 3});
    let chunk = format!(
        "local t = {}\nio.write(t.s, '|', string.format('%d', t.n))",
        lua_literal(&object)
    );
    let output = run(&tool("lua5.4"), &["-"], Some(&chunk));
    assert!(output.success, "{}", output.stderr);
    assert_eq!(
        output.stdout,
        "quote \" backslash \\ newline \n tab \t ünïcode|3"
    );
}

#[test]
fn every_case_in_health_test_yaml_gives_the_expected_status_and_message() {
    let cases = read_yaml(&format!("{HEALTH_DIR}/health_test.yaml"));
    let cases = cases["tests"].as_array().cloned().unwrap_or_default();
    assert!(
        cases.len() >= 8,
        "health_test.yaml has only {} cases",
        cases.len()
    );
    let mut failures = Vec::new();
    let mut statuses_seen = std::collections::BTreeSet::new();
    for case in &cases {
        let input = case["inputPath"]
            .as_str()
            .unwrap_or_else(|| panic!("a case without inputPath: {case}"));
        let expected_status = case["healthStatus"]["status"].as_str().unwrap_or_default();
        let expected_message = case["healthStatus"]["message"].as_str().unwrap_or_default();
        let object = read_yaml(&format!("{HEALTH_DIR}/{input}"));
        assert_eq!(
            object["kind"], "ShanraqCluster",
            "{input} is not a ShanraqCluster"
        );
        assert_eq!(
            object["apiVersion"], "shanraq.org/v1alpha1",
            "{input}: wrong apiVersion"
        );
        let (status, message) = evaluate(&object);
        statuses_seen.insert(status.clone());
        if status != expected_status || message != expected_message {
            failures.push(format!(
                "{input}: expected {expected_status} {expected_message:?}, got {status} {message:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "health.lua disagrees:\n{}",
        failures.join("\n")
    );
    for needed in ["Healthy", "Progressing", "Degraded"] {
        assert!(statuses_seen.contains(needed), "no case yields {needed}");
    }
}

#[test]
fn every_testdata_file_is_a_case() {
    let cases = read_yaml(&format!("{HEALTH_DIR}/health_test.yaml"));
    let listed: Vec<String> = cases["tests"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|case| case["inputPath"].as_str().map(str::to_string))
        .collect();
    let dir = repo_root().join(HEALTH_DIR).join("testdata");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()));
    for entry in entries.flatten() {
        let file = format!("testdata/{}", entry.file_name().to_string_lossy());
        assert!(
            listed.contains(&file),
            "{file} is not used by health_test.yaml"
        );
    }
}

#[test]
fn a_ready_status_for_an_older_generation_is_not_healthy() {
    // The GitOps lie peers tell: Ready=True about a spec the operator has not seen yet.
    let object = serde_json::json!({
        "apiVersion": "shanraq.org/v1alpha1",
        "kind": "ShanraqCluster",
        "metadata": {"name": "payments", "generation": 7},
        "status": {
            "observedGeneration": 6,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                            "message": "All components ready", "observedGeneration": 6}]
        }
    });
    let (status, message) = evaluate(&object);
    assert_eq!(status, "Progressing");
    assert!(message.contains("generation 7"), "{message}");
}

#[test]
fn every_test_object_is_a_valid_shanraq_cluster() {
    // The cases must describe statuses the operator can really write: same field names and
    // types as the CRD, nothing the API server would reject.
    let crd = read_yaml("crds/shanraq.org_shanraqclusters.yaml");
    let schema = shanraq_repo_tests::schema::crd_version_schema(&crd, "v1alpha1");
    let dir = repo_root().join(HEALTH_DIR).join("testdata");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()));
    let mut problems = Vec::new();
    let mut checked = 0;
    for entry in entries.flatten() {
        let relative = format!(
            "{HEALTH_DIR}/testdata/{}",
            entry.file_name().to_string_lossy()
        );
        let object = read_yaml(&relative);
        for violation in shanraq_repo_tests::schema::object_violations(schema, &object) {
            problems.push(format!("{relative}: {violation}"));
        }
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} test objects found");
    assert!(
        problems.is_empty(),
        "test objects the CRD rejects:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_schema_checker_rejects_unknown_and_mistyped_fields() {
    let crd = read_yaml("crds/shanraq.org_shanraqclusters.yaml");
    let schema = shanraq_repo_tests::schema::crd_version_schema(&crd, "v1alpha1");
    let object = serde_json::json!({
        "apiVersion": "shanraq.org/v1alpha1",
        "kind": "ShanraqCluster",
        "metadata": {"name": "payments"},
        "spec": {},
        "status": {"observedGeneration": "two", "postgres": {"primary": "payments-pg-0"}}
    });
    let violations = shanraq_repo_tests::schema::object_violations(schema, &object);
    assert!(
        violations
            .iter()
            .any(|v| v.starts_with(".status.observedGeneration: expected integer")),
        "{violations:?}"
    );
    assert!(
        violations
            .iter()
            .any(|v| v == ".status.postgres.primary: unknown field"),
        "{violations:?}"
    );
}
