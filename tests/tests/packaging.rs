//! Packaging stays consistent with the workspace: the scripts CI runs are executable and parse;
//! every image under images/ is built on the one Debian base with pinned packages and a numeric
//! user, the `shanraq` binary with the workspace's Rust version, the Kafka image with the pom's
//! jars and agent; the exporter lists name the versions built; the chart, the CRD's defaults and
//! the docs name the same images; and the chart's appVersion is the workspace version.
//! (crates/shanraq-render/tests/images.rs builds the images and runs them.)

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
        "scripts/images",
        "images/exporters/build",
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

/// The images, one Dockerfile each under images/.
const IMAGES: [&str; 5] = ["operator", "postgres", "redis", "haproxy", "kafka"];

/// `name=version` pins of every `apt-get install` in a Dockerfile, and the packages without one.
fn apt_packages(dockerfile: &str) -> (Vec<String>, Vec<String>) {
    let joined = dockerfile.replace("\\\n", " ");
    let (mut pinned, mut unpinned) = (Vec::new(), Vec::new());
    for line in joined.lines() {
        for command in line.split(';').flat_map(|part| part.split("&&")) {
            let Some(rest) = command.trim().strip_prefix("apt-get install") else {
                continue;
            };
            for word in rest
                .split_whitespace()
                .filter(|word| !word.starts_with('-'))
            {
                if word.contains('=') {
                    pinned.push(word.to_owned());
                } else {
                    unpinned.push(word.to_owned());
                }
            }
        }
    }
    (pinned, unpinned)
}

/// `FROM image AS stage` lines: (image, stage).
fn stages(dockerfile: &str) -> Vec<(String, String)> {
    dockerfile
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("FROM ")?;
            let (image, stage) = rest.split_once(" AS ")?;
            Some((image.trim().to_owned(), stage.trim().to_owned()))
        })
        .collect()
}

#[test]
fn every_image_is_built_from_one_debian_base_with_pinned_packages() {
    let script = read("scripts/images");
    for name in IMAGES {
        let path = format!("images/{name}/Dockerfile");
        let dockerfile = read(&path);
        assert!(
            dockerfile.contains("ARG BASE=docker.io/library/debian:bookworm-slim\n"),
            "{path}: the base is an argument defaulting to the official bookworm-slim"
        );
        let stages = stages(&dockerfile);
        let last = stages
            .last()
            .unwrap_or_else(|| panic!("{path}: no FROM ... AS"));
        assert_eq!(
            last,
            &("${BASE}".to_owned(), name.to_owned()),
            "{path}: the image is its last stage, named {name}, on the base"
        );
        // Every other stage builds an input on a connected machine, and scripts/images passes
        // that input instead (a named build context replaces the stage of the same name).
        for (image, stage) in &stages[..stages.len() - 1] {
            assert!(
                image.starts_with("docker.io/library/"),
                "{path}: builder stage {stage} from {image}"
            );
            assert!(
                script.contains(&format!(" {stage}")) && script.contains("--build-context"),
                "{path}: scripts/images must pass stage {stage} as a --build-context"
            );
        }
        let (pinned, unpinned) = apt_packages(&dockerfile);
        assert!(!pinned.is_empty(), "{path} installs no Debian package");
        assert!(
            unpinned.is_empty(),
            "{path}: Debian packages without a version pin: {unpinned:?}"
        );
        let user = dockerfile
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix("USER "))
            .unwrap_or_else(|| panic!("{path} sets no USER"));
        let numeric = |id: &str| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit());
        let (uid, gid) = user
            .split_once(':')
            .unwrap_or_else(|| panic!("{path}: USER {user} has no group"));
        assert!(
            numeric(uid) && numeric(gid) && uid != "0",
            "{path}: USER {user} must be numeric and not root (runAsNonRoot needs a number)"
        );
    }
}

#[test]
fn the_shanraq_binary_is_built_with_the_workspace_toolchain() {
    let rust_version = workspace_field("rust-version");
    for name in ["operator", "postgres"] {
        let path = format!("images/{name}/Dockerfile");
        let dockerfile = read(&path);
        assert!(
            dockerfile.contains(&format!("ARG RUST_VERSION={rust_version}\n")),
            "{path}: the builder must use the workspace rust-version {rust_version}"
        );
        // bookworm's glibc: the binary runs on the bookworm base.
        assert!(
            dockerfile.contains("FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS shanraq")
        );
        assert!(
            dockerfile.contains("cargo build --release --locked -p shanraq-operator --bin shanraq"),
            "{path}: the lean binary, without the drill"
        );
        assert!(dockerfile.contains("COPY --from=shanraq /shanraq /usr/local/bin/shanraq"));
    }
    let operator = read("images/operator/Dockerfile");
    assert!(operator.contains("USER 65532:65532"));
    assert!(operator.contains(r#"CMD ["operator"]"#));
    let postgres = read("images/postgres/Dockerfile");
    assert!(postgres.contains(r#"ENTRYPOINT ["shanraq", "instance", "postgres"]"#));
    assert!(
        !std::path::Path::new(&repo_root().join("Dockerfile")).exists(),
        "the images are built from images/*/Dockerfile only"
    );
    let ignore = read(".dockerignore");
    assert!(
        ignore.lines().any(|line| line == "target/"),
        ".dockerignore must leave out target/"
    );
}

/// `<version>` of `<property>` in scripts/kafka/pom.xml.
fn pom_property(property: &str) -> String {
    let pom = read("scripts/kafka/pom.xml");
    let open = format!("<{property}>");
    let start = pom
        .find(&open)
        .unwrap_or_else(|| panic!("the pom has no {property}"))
        + open.len();
    let end = start + pom[start..].find('<').expect("closing tag");
    pom[start..end].to_owned()
}

#[test]
fn the_kafka_image_carries_the_pom_jars_and_the_agent() {
    let dockerfile = read("images/kafka/Dockerfile");
    assert!(dockerfile.contains("COPY scripts/kafka/pom.xml ./"));
    let agent = pom_property("jmx.exporter.version");
    assert!(
        dockerfile.contains(&format!("ARG JMX_EXPORTER_VERSION={agent}\n")),
        "images/kafka/Dockerfile must put the pom's JMX exporter {agent} in the image"
    );
    assert!(
        dockerfile.contains("sha256sum -c -"),
        "the agent is checked"
    );
    // The path the renderer's -javaagent names.
    let render = read("crates/shanraq-render/src/kafka.rs");
    assert!(render.contains("\"/opt/kafka/agent/jmx_prometheus_javaagent.jar\""));
    assert!(dockerfile.contains("/opt/kafka/agent/jmx_prometheus_javaagent.jar"));
    // The scripts the rendered start command calls.
    for script in [
        "kafka-storage.sh",
        "kafka-server-start.sh",
        "kafka-run-class.sh",
    ] {
        let path = format!("images/kafka/bin/{script}");
        let mode = std::fs::metadata(repo_root().join(&path))
            .unwrap_or_else(|error| panic!("{path}: {error}"))
            .permissions()
            .mode();
        assert!(mode & 0o111 == 0o111, "{path} is not executable");
        run_ok(
            &tool("sh"),
            &["-n", &repo_root().join(&path).to_string_lossy()],
            None,
        );
        assert!(
            script == "kafka-run-class.sh" || render.contains(&format!("/bin/{script}")),
            "the renderer no longer calls {script}"
        );
    }
}

#[test]
fn the_exporter_lists_name_the_versions_the_images_build() {
    for (module, list, exporter) in [
        (
            "postgres",
            "postgres_exporter.txt",
            "github.com/prometheus-community/postgres_exporter",
        ),
        (
            "redis",
            "redis_exporter.txt",
            "github.com/oliver006/redis_exporter",
        ),
    ] {
        let gomod = read(&format!("images/exporters/{module}/go.mod"));
        let version = gomod
            .lines()
            .find_map(|line| {
                let rest = line.trim().strip_prefix(exporter)?;
                Some(rest.split_whitespace().next()?.to_owned())
            })
            .unwrap_or_else(|| {
                panic!("images/exporters/{module}/go.mod does not require {exporter}")
            });
        assert!(
            gomod.contains(&format!("\ntool {exporter}")),
            "images/exporters/{module}/go.mod names the exporter as a tool"
        );
        let names = read(&format!("crates/shanraq-render/exporters/{list}"));
        let first = names.lines().next().unwrap_or_default();
        assert!(
            first.contains(&format!(" {version} ")),
            "exporters/{list} must say which version it was checked against ({version}): {first}"
        );
        assert!(
            std::path::Path::new(&repo_root().join(format!("images/exporters/{module}/go.sum")))
                .exists()
        );
    }
}

#[test]
fn chart_defaults_and_docs_name_the_same_images() {
    let version = workspace_field("version");
    let values = read_yaml("charts/shanraq-operator/values.yaml");
    let repository = values["image"]["repository"]
        .as_str()
        .expect("image.repository")
        .to_owned();
    let registry = repository
        .strip_suffix("/shanraq-operator")
        .unwrap_or_else(|| {
            panic!("image.repository {repository} is not <registry>/shanraq-operator")
        });
    let crd = read_yaml("crds/shanraq.org_shanraqclusters.yaml");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let install = read("docs/install.md");
    let reference = read("docs/spec.md");
    for name in ["postgres", "redis", "haproxy", "kafka"] {
        let default = spec[name]["properties"]["image"]["default"]
            .as_str()
            .unwrap_or_else(|| panic!("the CRD has no default for spec.{name}.image"));
        let expected = format!("{registry}/shanraq-{name}:{version}");
        assert_eq!(
            default, expected,
            "spec.{name}.image defaults to the chart's registry"
        );
        assert!(
            std::path::Path::new(&repo_root().join(format!("images/{name}/Dockerfile"))).exists(),
            "{default} has no images/{name}/Dockerfile"
        );
        assert!(
            install.contains(&format!("`spec.{name}.image`"))
                && install.contains(&format!("shanraq-{name}")),
            "docs/install.md must say how spec.{name}.image names the shanraq-{name} image"
        );
        assert!(
            reference.contains(&format!("`{registry}/shanraq-{name}:<operator version>`")),
            "docs/spec.md must give the default of spec.{name}.image"
        );
    }
    for command in [
        "scripts/images",
        "buildah push",
        "docker push",
        "image.repository",
    ] {
        assert!(
            install.contains(command),
            "docs/install.md must mention {command}"
        );
    }
}

#[test]
fn chart_app_version_is_the_workspace_version() {
    let chart = read_yaml("charts/shanraq-operator/Chart.yaml");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["appVersion"], workspace_field("version").as_str());
}
