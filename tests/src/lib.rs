//! Helpers shared by the repository-level tests: where the repository is, finding the external
//! tools they drive (helm, kubectl, kubernetes-validate, lua5.4), running them, and reading
//! YAML. A missing tool fails the test with the command that installs it: these checks must
//! never pass by skipping.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

pub mod lua;
pub mod schema;

/// The workspace root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .unwrap_or_else(|| panic!("{} has no parent directory", manifest_dir.display()))
        .to_path_buf()
}

/// The chart directory, `charts/shanraq-operator`.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/shanraq-operator")
}

/// Absolute path of `name` found on `PATH` (or in /usr/local/bin, where scripts/install-deps
/// puts helm and kubectl). Panics, naming the install script, when it is missing.
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.push(PathBuf::from("/usr/local/bin"));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not installed (not on PATH nor in /usr/local/bin): run `scripts/install-deps` \
         as root to install it"
    );
}

/// Output of one finished command.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program` with `args` in the repository root, feeding `stdin` when given.
pub fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(repo_root())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", program.display()));
    if let Some(input) = stdin {
        let mut pipe = child
            .stdin
            .take()
            .unwrap_or_else(|| panic!("no stdin pipe for {}", program.display()));
        pipe.write_all(input.as_bytes())
            .unwrap_or_else(|error| panic!("cannot write stdin of {}: {error}", program.display()));
    }
    let output = child
        .wait_with_output()
        .unwrap_or_else(|error| panic!("cannot wait for {}: {error}", program.display()));
    Output {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Like [`run`], but panics with the command's output when it fails; returns stdout.
pub fn run_ok(program: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let output = run(program, args, stdin);
    assert!(
        output.success,
        "`{} {}` failed\nstdout:\n{}\nstderr:\n{}",
        program.display(),
        args.join(" "),
        output.stdout,
        output.stderr
    );
    output.stdout
}

/// Every non-empty document of a multi-document YAML stream, as JSON values.
pub fn yaml_documents(text: &str, origin: &str) -> Vec<Value> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(text)
        .unwrap_or_else(|error| panic!("{origin} is not valid YAML: {error}"));
    documents
        .into_iter()
        .filter(|document| !document.is_null())
        .collect()
}

/// Reads one YAML file (relative to the repository root) as a JSON value.
pub fn read_yaml(relative: &str) -> Value {
    let path = repo_root().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_saphyr::from_str(&text)
        .unwrap_or_else(|error| panic!("{} is not valid YAML: {error}", path.display()))
}

/// `helm template shanraq-operator charts/shanraq-operator -n shanraq-system` with extra
/// arguments (`--set ...`), as parsed objects.
pub fn helm_template(extra: &[&str]) -> Vec<Value> {
    let chart = chart_dir();
    let chart = chart.to_string_lossy();
    let mut args = vec![
        "template",
        "shanraq-operator",
        &*chart,
        "--namespace",
        "shanraq-system",
    ];
    args.extend_from_slice(extra);
    let stdout = run_ok(&tool("helm"), &args, None);
    yaml_documents(&stdout, "helm template output")
}

/// `kubectl kustomize deploy/`, as parsed objects.
pub fn kustomize_build() -> Vec<Value> {
    let deploy = repo_root().join("deploy");
    let stdout = run_ok(
        &tool("kubectl"),
        &["kustomize", &deploy.to_string_lossy()],
        None,
    );
    yaml_documents(&stdout, "kubectl kustomize deploy/ output")
}

/// Kinds that kubernetes-validate has no schema for (custom resources of other projects).
pub const UNKNOWN_TO_VALIDATOR: &[&str] = &["ServiceMonitor"];

/// Validates objects with `kubernetes-validate --strict -k 1.35.0` and checks that every object
/// was really validated (the tool only warns about kinds it does not know). Objects whose kind
/// is in [`UNKNOWN_TO_VALIDATOR`] are left out: no schema for them ships with the tool.
pub fn validate_objects(objects: &[Value], origin: &str) {
    let known: Vec<&Value> = objects
        .iter()
        .filter(|object| !UNKNOWN_TO_VALIDATOR.contains(&kind(object)))
        .collect();
    assert!(!known.is_empty(), "{origin}: nothing to validate");
    // JSON is YAML: one JSON document per `---`.
    let stream: String = known
        .iter()
        .map(|object| format!("---\n{object}\n"))
        .collect();
    let output = run(
        &tool("kubernetes-validate"),
        &["--strict", "-k", "1.35.0", "-"],
        Some(&stream),
    );
    let passed = output.stdout.matches("passed for resource").count()
        + output.stderr.matches("passed for resource").count();
    assert!(
        output.success && passed == known.len(),
        "{origin}: kubernetes-validate accepted {passed} of {} objects\nstdout:\n{}\nstderr:\n{}",
        known.len(),
        output.stdout,
        output.stderr
    );
}

/// `.kind` of an object, or "" when absent.
pub fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or("")
}

/// `.metadata.name` of an object, or "" when absent.
pub fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}

/// All objects of one kind.
pub fn of_kind<'a>(objects: &'a [Value], wanted: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|object| kind(object) == wanted)
        .collect()
}

/// The single object of `wanted` kind named `object_name`.
pub fn find<'a>(objects: &'a [Value], wanted: &str, object_name: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|object| kind(object) == wanted && name(object) == object_name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {wanted} named {object_name}, found {}",
        found.len()
    );
    found[0]
}

/// The strings of a JSON array field, empty when absent.
pub fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}
