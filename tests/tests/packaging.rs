//! Packaging stays consistent with the workspace: the scripts CI runs are executable and parse,
//! the Dockerfile builds with the workspace's Rust version and produces both images, and the
//! chart's appVersion is the workspace version.

use std::os::unix::fs::PermissionsExt;

use shanraq_repo_tests::{read_yaml, repo_root, run_ok, tool};

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// `version` and `rust-version` from `[workspace.package]` of the root Cargo.toml.
fn workspace_field(field: &str) -> String {
    let manifest = read("Cargo.toml");
    let section = manifest
        .split("[workspace.package]")
        .nth(1)
        .unwrap_or_else(|| panic!("Cargo.toml has no [workspace.package]"));
    section
        .lines()
        .take_while(|line| !line.starts_with('['))
        .find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == field).then(|| value.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("[workspace.package] has no {field}"))
}

#[test]
fn ci_scripts_are_executable_and_parse() {
    let bash = tool("bash");
    for script in [
        ".ci/run",
        "scripts/test",
        "scripts/install-deps",
        "scripts/sync-crds",
        "scripts/demo",
    ] {
        let path = repo_root().join(script);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|error| panic!("{script}: {error}"))
            .permissions()
            .mode();
        assert!(
            mode & 0o111 == 0o111,
            "{script} is not executable (mode {mode:o})"
        );
        assert!(
            read(script).starts_with("#!/usr/bin/env bash\n"),
            "{script}: wrong shebang"
        );
        run_ok(&bash, &["-n", &path.to_string_lossy()], None);
    }
    let ci = read(".ci/run");
    assert!(
        ci.contains("set -euo pipefail"),
        ".ci/run must stop on the first error"
    );
    assert!(
        ci.contains("exec scripts/test"),
        ".ci/run must run the documented test command"
    );
    let test = read("scripts/test");
    assert!(test.contains("scripts/install-deps"));
    assert!(test.contains("cargo test --workspace --locked"));
    assert!(
        !test.contains("--release"),
        "CI tests build in the dev profile"
    );
}

#[test]
fn dockerfile_builds_both_images_with_the_workspace_toolchain() {
    let dockerfile = read("Dockerfile");
    let rust_version = workspace_field("rust-version");
    assert!(
        dockerfile.contains(&format!("ARG RUST_VERSION={rust_version}\n")),
        "the Dockerfile's builder must use the workspace rust-version {rust_version}"
    );
    assert!(dockerfile.contains("FROM rust:${RUST_VERSION}-bookworm AS builder"));
    assert!(
        dockerfile.contains("cargo build --release --locked -p shanraq-operator --bin shanraq")
    );
    assert!(dockerfile.contains("FROM postgres:15-bookworm AS postgres"));
    assert!(dockerfile.contains(r#"ENTRYPOINT ["shanraq", "instance", "postgres"]"#));
    assert!(dockerfile.contains("USER postgres"));
    assert!(dockerfile.contains(":nonroot AS operator"));
    assert!(dockerfile.contains(r#"CMD ["operator"]"#));
    let ignore = read(".dockerignore");
    assert!(
        ignore.lines().any(|line| line == "target/"),
        ".dockerignore must leave out target/"
    );
}

#[test]
fn chart_app_version_is_the_workspace_version() {
    let chart = read_yaml("charts/shanraq-operator/Chart.yaml");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["appVersion"], workspace_field("version").as_str());
}
