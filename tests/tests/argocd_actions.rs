//! The Argo CD resource actions of a ShanraqCluster (`deploy/argocd/shanraq.org/ShanraqCluster/
//! actions/`): `discovery.lua` offers switchover and drill, enabled or not, as listed in
//! `action_test.yaml`, and each `action.lua` returns the object its expected output file
//! holds. Every case runs through a real Lua interpreter the way Argo CD runs them: the object
//! is a global `obj` table; discovery returns a table of actions, an action the changed object.

use std::collections::BTreeMap;

use serde_json::Value;
use shanraq_repo_tests::lua::{TO_JSON, lua_literal, lua_string, normalise};
use shanraq_repo_tests::{read_yaml, repo_root, run, tool};

const ACTIONS_DIR: &str = "deploy/argocd/shanraq.org/ShanraqCluster/actions";
/// What `os.date` returns inside the scripts, so the drill's request id is known.
const FIXED_NOW: &str = "2026-12-01T11:00:00Z";

/// Runs `script` (relative to the actions directory) on `object`; returns what it returned,
/// as JSON.
fn evaluate(script: &str, object: &Value) -> Value {
    let path = repo_root().join(ACTIONS_DIR).join(script);
    let chunk = format!(
        "{TO_JSON}\n\
         os.date = function(format) return {now} end\n\
         obj = {object}\n\
         local result = dofile({path})\n\
         assert(type(result) == 'table', '{script} returned ' .. type(result))\n\
         io.write(to_json(result))\n",
        now = lua_string(FIXED_NOW),
        object = lua_literal(object),
        path = lua_string(&path.to_string_lossy()),
    );
    let output = run(&tool("lua5.4"), &["-"], Some(&chunk));
    assert!(
        output.success,
        "lua5.4 failed on {script} (install the Debian package lua5.4, e.g. with \
         scripts/install-deps)\nstderr:\n{}",
        output.stderr
    );
    serde_json::from_str(&output.stdout)
        .unwrap_or_else(|error| panic!("{script} gave no JSON ({error}): {}", output.stdout))
}

fn cases() -> Value {
    read_yaml(&format!("{ACTIONS_DIR}/action_test.yaml"))
}

fn input(case: &Value, key: &str) -> (String, Value) {
    let path = case[key]
        .as_str()
        .unwrap_or_else(|| panic!("a case without {key}: {case}"))
        .to_owned();
    let object = read_yaml(&format!("{ACTIONS_DIR}/{path}"));
    (path, object)
}

#[test]
fn discovery_offers_each_action_enabled_only_when_the_operator_would_act() {
    let cases = cases();
    let tests = cases["discoveryTests"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(tests.len() >= 5, "only {} discovery cases", tests.len());
    let mut failures = Vec::new();
    let mut states = std::collections::BTreeSet::new();
    for case in &tests {
        let (path, object) = input(case, "inputPath");
        let offered = evaluate("discovery.lua", &object);
        let offered: BTreeMap<String, bool> = offered
            .as_object()
            .unwrap_or_else(|| panic!("{path}: discovery.lua returned {offered}"))
            .iter()
            .map(|(name, action)| (name.clone(), action["disabled"] == true))
            .collect();
        let expected: BTreeMap<String, bool> = case["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap_or_default().to_owned(),
                    a["disabled"] == true,
                )
            })
            .collect();
        for (name, disabled) in &offered {
            states.insert((name.clone(), *disabled));
        }
        if offered != expected {
            failures.push(format!("{path}: expected {expected:?}, got {offered:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "discovery.lua disagrees:\n{}",
        failures.join("\n")
    );
    for action in ["switchover", "drill"] {
        for disabled in [false, true] {
            assert!(
                states.contains(&(action.to_owned(), disabled)),
                "no case shows {action} with disabled={disabled}"
            );
        }
    }
}

#[test]
fn each_action_sets_the_annotation_the_operator_acts_on() {
    let cases = cases();
    let tests = cases["actionTests"].as_array().cloned().unwrap_or_default();
    let mut actions = std::collections::BTreeSet::new();
    for case in &tests {
        let action = case["action"].as_str().unwrap_or_default().to_owned();
        let (path, object) = input(case, "inputPath");
        let (expected_path, expected) = input(case, "expectedOutputPath");
        let changed = evaluate(&format!("{action}/action.lua"), &object);
        assert_eq!(
            normalise(&changed),
            normalise(&expected),
            "{action} on {path} does not give {expected_path}"
        );
        actions.insert(action);
    }
    assert_eq!(
        actions.into_iter().collect::<Vec<_>>(),
        vec!["drill".to_owned(), "switchover".to_owned()],
        "every action has a case"
    );
}

#[test]
fn the_annotations_are_the_ones_the_operator_reads() {
    // The names the operator honours (crates/shanraq-api/src/names.rs).
    let names = std::fs::read_to_string(repo_root().join("crates/shanraq-api/src/names.rs"))
        .expect("names.rs");
    for (action, annotation) in [
        ("switchover", "shanraq.org/switchover"),
        ("drill", "shanraq.org/drill"),
    ] {
        assert!(
            names.contains(&format!("\"{annotation}\"")),
            "the operator does not define {annotation}"
        );
        let script = std::fs::read_to_string(
            repo_root()
                .join(ACTIONS_DIR)
                .join(action)
                .join("action.lua"),
        )
        .expect("action.lua");
        assert!(
            script.contains(annotation),
            "{action} does not set {annotation}"
        );
    }
}

#[test]
fn every_testdata_file_is_used_and_a_valid_shanraq_cluster() {
    let text = std::fs::read_to_string(repo_root().join(ACTIONS_DIR).join("action_test.yaml"))
        .expect("action_test.yaml");
    let crd = read_yaml("crds/shanraq.org_shanraqclusters.yaml");
    let schema = shanraq_repo_tests::schema::crd_version_schema(&crd, "v1alpha1");
    let dir = repo_root().join(ACTIONS_DIR).join("testdata");
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("testdata").flatten() {
        let file = format!("testdata/{}", entry.file_name().to_string_lossy());
        if !text.contains(&file) {
            problems.push(format!("{file} is not used by action_test.yaml"));
        }
        let object = read_yaml(&format!("{ACTIONS_DIR}/{file}"));
        for violation in shanraq_repo_tests::schema::object_violations(schema, &object) {
            problems.push(format!("{file}: {violation}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
