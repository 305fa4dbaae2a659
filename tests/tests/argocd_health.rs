//! The Argo CD health checks (`deploy/argocd/shanraq.org/<Kind>/health.lua`, for ShanraqCluster
//! and ShanraqBackup) give the status and message listed in their `health_test.yaml` for every
//! test object. Each case runs through a real Lua interpreter, the way Argo CD runs it: the
//! object is a global `obj` table and the script returns `{status, message}`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use shanraq_repo_tests::lua::{lua_literal, lua_string};
use shanraq_repo_tests::{read_yaml, repo_root, run, tool};

const HEALTH_DIR: &str = "deploy/argocd/shanraq.org/ShanraqCluster";
const BACKUP_HEALTH_DIR: &str = "deploy/argocd/shanraq.org/ShanraqBackup";

/// Each kind with a health check: its directory, its kind and its generated CRD.
const KINDS: [(&str, &str, &str); 2] = [
    (
        HEALTH_DIR,
        "ShanraqCluster",
        "crds/shanraq.org_shanraqclusters.yaml",
    ),
    (
        BACKUP_HEALTH_DIR,
        "ShanraqBackup",
        "crds/shanraq.org_shanraqbackups.yaml",
    ),
];

/// Runs the ShanraqCluster health.lua on `object` with lua5.4; returns (status, message).
fn evaluate(object: &Value) -> (String, String) {
    evaluate_in(HEALTH_DIR, object)
}

/// Runs the health.lua of `dir` (relative to the repository) on `object`.
fn evaluate_in(dir: &str, object: &Value) -> (String, String) {
    evaluate_script(&repo_root().join(dir).join("health.lua"), object)
}

/// Runs the health script at `script` on `object` with lua5.4; returns (status, message).
fn evaluate_script(script: &Path, object: &Value) -> (String, String) {
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
        "lua5.4 failed on {} (install the Debian package lua5.4, e.g. with \
         scripts/install-deps)\nstderr:\n{}",
        script.display(),
        output.stderr
    );
    let (status, message) = output
        .stdout
        .split_once('\0')
        .unwrap_or_else(|| panic!("unexpected health.lua output {:?}", output.stdout));
    (status.to_string(), message.to_string())
}

/// The cases of `dir`'s health_test.yaml: (input path, expected status, expected message).
fn cases(dir: &str) -> Vec<(String, String, String)> {
    let cases = read_yaml(&format!("{dir}/health_test.yaml"));
    cases["tests"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|case| {
            let input = case["inputPath"]
                .as_str()
                .unwrap_or_else(|| panic!("a case without inputPath: {case}"));
            let field = |name: &str| {
                case["healthStatus"][name]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            };
            (input.to_owned(), field("status"), field("message"))
        })
        .collect()
}

/// Runs every case of `dir` through `script`; returns the disagreements and the statuses seen.
fn run_cases(dir: &str, kind: &str, script: &Path) -> (Vec<String>, BTreeSet<String>) {
    let mut failures = Vec::new();
    let mut statuses_seen = BTreeSet::new();
    for (input, expected_status, expected_message) in cases(dir) {
        let object = read_yaml(&format!("{dir}/{input}"));
        assert_eq!(object["kind"], kind, "{dir}/{input} is not a {kind}");
        assert_eq!(
            object["apiVersion"], "shanraq.org/v1alpha1",
            "{dir}/{input}: wrong apiVersion"
        );
        let (status, message) = evaluate_script(script, &object);
        statuses_seen.insert(status.clone());
        if status != expected_status || message != expected_message {
            failures.push(format!(
                "{dir}/{input}: expected {expected_status} {expected_message:?}, got {status} {message:?}"
            ));
        }
    }
    (failures, statuses_seen)
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
    for (dir, kind, _) in KINDS {
        let count = cases(dir).len();
        assert!(count >= 7, "{dir}/health_test.yaml has only {count} cases");
        let script: PathBuf = repo_root().join(dir).join("health.lua");
        let (failures, statuses_seen) = run_cases(dir, kind, &script);
        assert!(
            failures.is_empty(),
            "health.lua disagrees:\n{}",
            failures.join("\n")
        );
        for needed in ["Healthy", "Progressing", "Degraded"] {
            assert!(
                statuses_seen.contains(needed),
                "no case of {dir} yields {needed}"
            );
        }
    }
}

#[test]
fn the_backup_cases_catch_a_wrong_script() {
    // A script that maps the phases right but always says the same thing, and one that calls
    // a failed backup Progressing: each disagrees with the cases it gets wrong.
    let wrong_message = "local hs = {}\n\
        if obj.status == nil or obj.status.phase == nil or obj.status.phase == 'Running' then hs.status = 'Progressing'\n\
        elseif obj.status.phase == 'Completed' then hs.status = 'Healthy'\n\
        else hs.status = 'Degraded' end\n\
        hs.message = 'backup'\nreturn hs\n";
    let failed_is_progress =
        std::fs::read_to_string(repo_root().join(BACKUP_HEALTH_DIR).join("health.lua"))
            .expect("health.lua")
            .replace("hs.status = \"Degraded\"", "hs.status = \"Progressing\"");
    let total = cases(BACKUP_HEALTH_DIR).len();
    let failed = cases(BACKUP_HEALTH_DIR)
        .iter()
        .filter(|(_, status, _)| status == "Degraded")
        .count();
    for (name, script, wrong) in [
        ("wrong-message", wrong_message.to_owned(), total),
        ("failed-is-progress", failed_is_progress, failed),
    ] {
        let path =
            std::env::temp_dir().join(format!("shanraq-health-{name}-{}.lua", std::process::id()));
        std::fs::write(&path, script).expect("scratch script");
        let (failures, _) = run_cases(BACKUP_HEALTH_DIR, "ShanraqBackup", &path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(failures.len(), wrong, "{name}: {failures:?}");
    }
    assert!(failed >= 2, "only {failed} Degraded cases");
}

#[test]
fn a_backup_in_each_phase_gets_its_verdict_and_the_operator_s_message() {
    let backup = |status: Value| {
        serde_json::json!({
            "apiVersion": "shanraq.org/v1alpha1",
            "kind": "ShanraqBackup",
            "metadata": {"name": "nightly", "generation": 1},
            "spec": {"cluster": "payments", "type": "full"},
            "status": status,
        })
    };
    let condition = |status: &str, message: &str| {
        serde_json::json!([{"type": "Succeeded", "status": status, "reason": "R",
                             "message": message, "observedGeneration": 1}])
    };
    let cases = [
        (
            Value::Null,
            "Progressing",
            "Waiting for the operator to start the backup",
        ),
        (
            serde_json::json!({"phase": "Running", "message": "waiting",
                               "conditions": condition("Unknown", "waiting")}),
            "Progressing",
            "waiting",
        ),
        (
            serde_json::json!({"phase": "Completed", "label": "20261202-031500F",
                               "message": "backup 20261202-031500F completed",
                               "conditions": condition("True", "backup 20261202-031500F completed")}),
            "Healthy",
            "backup 20261202-031500F completed",
        ),
        (
            serde_json::json!({"phase": "Failed", "message": "ERROR: [039]: HTTP request failed",
                               "conditions": condition("False", "ERROR: [039]: HTTP request failed")}),
            "Degraded",
            "ERROR: [039]: HTTP request failed",
        ),
        (
            serde_json::json!({"phase": "Failed", "message": "the status's own message"}),
            "Degraded",
            "the status's own message",
        ),
    ];
    for (status, verdict, message) in cases {
        let got = evaluate_in(BACKUP_HEALTH_DIR, &backup(status.clone()));
        assert_eq!(
            got,
            (verdict.to_owned(), message.to_owned()),
            "status {status}"
        );
    }
}

#[test]
fn every_testdata_file_is_a_case() {
    for (dir, _, _) in KINDS {
        let listed: Vec<String> = cases(dir).into_iter().map(|(input, _, _)| input).collect();
        let testdata = repo_root().join(dir).join("testdata");
        let entries = std::fs::read_dir(&testdata)
            .unwrap_or_else(|error| panic!("cannot list {}: {error}", testdata.display()));
        for entry in entries.flatten() {
            let file = format!("testdata/{}", entry.file_name().to_string_lossy());
            assert!(
                listed.contains(&file),
                "{dir}/{file} is not used by health_test.yaml"
            );
        }
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
fn every_test_object_is_a_valid_object_of_its_kind() {
    // The cases must describe statuses the operator can really write: same field names and
    // types as the CRD, nothing the API server would reject.
    for (dir, kind, crd_file) in KINDS {
        let crd = read_yaml(crd_file);
        let schema = shanraq_repo_tests::schema::crd_version_schema(&crd, "v1alpha1");
        let testdata = repo_root().join(dir).join("testdata");
        let entries = std::fs::read_dir(&testdata)
            .unwrap_or_else(|error| panic!("cannot list {}: {error}", testdata.display()));
        let mut problems = Vec::new();
        let mut checked = 0;
        for entry in entries.flatten() {
            let relative = format!("{dir}/testdata/{}", entry.file_name().to_string_lossy());
            let object = read_yaml(&relative);
            for violation in shanraq_repo_tests::schema::object_violations(schema, &object) {
                problems.push(format!("{relative}: {violation}"));
            }
            checked += 1;
        }
        assert!(checked >= 7, "only {checked} {kind} test objects found");
        assert!(
            problems.is_empty(),
            "test objects the {kind} CRD rejects:\n{}",
            problems.join("\n")
        );
    }
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
