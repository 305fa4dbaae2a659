//! The project's own images (images/*/Dockerfile), built by `scripts/images` and run the way
//! the rendered pods run them: each rendered container's command, environment, numeric user
//! and volumes (ConfigMaps and Secrets as read-only directories, emptyDirs and volume claims
//! as tmpfs), with the listeners moved to free ports on 127.0.0.1. The servers must come up
//! and answer (the PostgreSQL instance manager bootstraps a primary that the application user
//! logs in to, Redis answers the readiness probe, HAProxy its health check, a Kafka node its
//! JMX exporter), the exporter sidecars, started from the same images as their own containers,
//! must serve every metric name `exporters/*.txt` promises the alert rules and the dashboard,
//! and nothing may be written to an image's root filesystem outside those volumes, as the
//! pods' root filesystems are read-only.
//!
//! Containers run with `buildah run --isolation chroot`: the host's network (hence the
//! free ports) and PID namespace, so every process of a container is found by its root
//! directory and killed when the test ends.
//!
//! The operator and PostgreSQL images are built from this test build's `shanraq` binary (the
//! dev profile; see `dev_binary`), unless SHANRAQ_BINARY names another.
//!
//! Needs root (buildah's storage, debootstrap); `scripts/images` installs buildah and debootstrap
//! when missing and reaches Debian's mirror, the Go module proxy and Maven Central. The first
//! run builds the base and every image (about ten minutes on two cores); later runs find them
//! cached. Without root the tests are skipped, except under CI, where they fail.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use shanraq_render::{Child as Rendered, Rendered as RenderedCluster, haproxy, kafka, postgres};
use shanraq_testkit::free_port;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false")
}

/// Whether the image tests can run: `scripts/images` needs root. Under CI they must.
fn can_run(test: &str) -> bool {
    let uid = Command::new("id").arg("-u").output().expect("id -u runs");
    if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        return true;
    }
    assert!(
        !in_ci(),
        "{test}: building and running the images needs root (scripts/images); CI must run it"
    );
    eprintln!("skipping {test}: building and running the images needs root (scripts/images)");
    false
}

/// `scripts/images`, once per test process: image -> its docker-archive.
fn images() -> &'static BTreeMap<String, PathBuf> {
    static IMAGES: OnceLock<BTreeMap<String, PathBuf>> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let started = Instant::now();
        let mut command = Command::new(repo_file("scripts/images"));
        command.current_dir(repo_file(""));
        if std::env::var_os("SHANRAQ_BINARY").is_none() {
            command.env("SHANRAQ_BINARY", dev_binary());
        }
        let output = command
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/images starts");
        assert!(
            output.status.success(),
            "scripts/images failed (its log is above)"
        );
        eprintln!("scripts/images took {:.1?}", started.elapsed());
        let images: BTreeMap<String, PathBuf> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| {
                let (image, archive) = line
                    .split_once('\t')
                    .unwrap_or_else(|| panic!("scripts/images printed {line:?}"));
                (image.to_owned(), PathBuf::from(archive))
            })
            .collect();
        for name in ["operator", "postgres", "redis", "haproxy", "kafka"] {
            let image = local_image(name);
            let archive = images
                .get(&image)
                .unwrap_or_else(|| panic!("scripts/images did not build {image}: {images:?}"));
            assert_archive_names(archive, &image);
        }
        images
    })
}

/// The `shanraq` binary of this test build (the dev profile), which the operator and PostgreSQL
/// images are built from here: what the test checks is the images and how the pods run them,
/// and a release build would cost the suite most of an hour on two cores. `scripts/images` run
/// by hand builds the release binary users get. Built now when the workspace build did not.
fn dev_binary() -> PathBuf {
    let profile_dir = std::env::current_exe()
        .expect("the test's own path")
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from <target>/<profile>/deps")
        .to_path_buf();
    let binary = profile_dir.join("shanraq");
    if !binary.is_file() {
        let target_dir = profile_dir.parent().expect("<target>/<profile>");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
            .args([
                "build",
                "--locked",
                "-p",
                "shanraq-operator",
                "--bin",
                "shanraq",
            ])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(repo_file(""))
            .status()
            .expect("cargo build starts");
        assert!(status.success(), "cargo build of the shanraq binary failed");
    }
    binary
}

fn local_image(name: &str) -> String {
    format!("localhost/shanraq-{name}:{VERSION}")
}

/// A docker-archive (`ctr images import`, `docker load`) whose manifest tags `image`.
fn assert_archive_names(archive: &Path, image: &str) {
    let output = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg("manifest.json")
        .output()
        .expect("tar runs");
    let manifest = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && manifest.contains(&format!("\"{image}\"")),
        "{} is not a docker-archive of {image}: {manifest}",
        archive.display()
    );
}

/// A cluster whose pods run the locally built images, as a cluster pointed at a private
/// registry does. One PostgreSQL instance (no operator renews a lease here), hence no
/// synchronous standby and an RPO above zero.
fn cluster() -> shanraq_api::ValidCluster {
    with_spec(&format!(
        "  objectives:\n    rpo: 5s\n  postgres:\n    instances: 1\n    synchronous:\n      number: 0\n    image: {}\n  redis:\n    image: {}\n  haproxy:\n    image: {}\n  kafka:\n    image: {}",
        local_image("postgres"),
        local_image("redis"),
        local_image("haproxy"),
        local_image("kafka"),
    ))
}

// --- containers -----------------------------------------------------------------------------

fn buildah(args: &[&str]) -> String {
    let output = Command::new("buildah")
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("buildah {}: {error}", args.join(" ")));
    assert!(
        output.status.success(),
        "buildah {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The user an image runs as (`USER`).
fn image_user(image: &str) -> String {
    buildah(&[
        "inspect",
        "--type",
        "image",
        "--format",
        "{{.OCIv1.Config.User}}",
        image,
    ])
}

/// A working container of an image, mounted so that its processes and writes can be found;
/// removed, with every process still running in it, on drop.
struct Sandbox {
    id: String,
    root: PathBuf,
    upper: PathBuf,
}

impl Sandbox {
    fn new(image: &str) -> Sandbox {
        let id = buildah(&["from", "--pull-never", image]);
        let root = PathBuf::from(buildah(&["mount", &id]));
        let options = Command::new("findmnt")
            .args(["-n", "-o", "OPTIONS", "--mountpoint"])
            .arg(&root)
            .output()
            .expect("findmnt runs");
        let upper = String::from_utf8_lossy(&options.stdout)
            .split(',')
            .find_map(|option| option.trim().strip_prefix("upperdir=").map(PathBuf::from))
            .unwrap_or_else(|| panic!("no overlay upper directory for {}", root.display()));
        Sandbox { id, root, upper }
    }

    /// `path` inside the container with its symbolic links followed within the container's
    /// root, as a runtime resolves a mount's destination (`/var/run/x` is `/run/x` on Debian):
    /// buildah's chroot runtime would follow an absolute link out of the container instead.
    fn resolve(&self, path: &str) -> String {
        let mut resolved = PathBuf::from("/");
        let mut pending: Vec<String> = path.split('/').rev().map(str::to_owned).collect();
        let mut links = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    resolved.pop();
                    continue;
                }
                _ => {}
            }
            let candidate = resolved.join(&part);
            let inside = self
                .root
                .join(candidate.strip_prefix("/").unwrap_or(&candidate));
            match std::fs::symlink_metadata(&inside) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    links += 1;
                    assert!(links < 40, "too many symbolic links in {path}");
                    let target = std::fs::read_link(&inside).expect("read link");
                    let target = target.to_string_lossy().into_owned();
                    if target.starts_with('/') {
                        resolved = PathBuf::from("/");
                    }
                    pending.extend(target.split('/').rev().map(str::to_owned));
                }
                _ => resolved = candidate,
            }
        }
        resolved.display().to_string()
    }

    fn command(
        &self,
        user: &str,
        volumes: &Volumes,
        env: &[(String, String)],
        argv: &[String],
    ) -> Command {
        let mut command = Command::new("buildah");
        command.args(["run", "--isolation", "chroot", "--user", user]);
        for path in &volumes.tmpfs {
            command
                .arg("--mount")
                .arg(format!("type=tmpfs,destination={}", self.resolve(path)));
        }
        for (host, path) in &volumes.read_only {
            command
                .arg("--volume")
                .arg(format!("{}:{}:ro", host.display(), self.resolve(path)));
        }
        for (host, path) in &volumes.read_write {
            command
                .arg("--volume")
                .arg(format!("{}:{}", host.display(), self.resolve(path)));
        }
        for (name, value) in env {
            command.arg("--env").arg(format!("{name}={value}"));
        }
        command.arg(&self.id).arg("--").args(argv);
        // Its own process group: the container's processes inherit it, so they can be signalled
        // together.
        command.process_group(0);
        command
    }

    /// Runs a command to completion (bounded): its exit status, and its stdout and stderr
    /// together. The output goes to a file in a directory mounted for it rather than through
    /// `buildah run`'s own stdout, which now and then came back empty for a command that had
    /// printed (several runs in parallel).
    fn run(&self, user: &str, argv: &[&str]) -> (ExitStatus, String) {
        let output_dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(output_dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let volumes = Volumes {
            read_write: vec![(output_dir.path().to_path_buf(), OUTPUT_DIR.to_owned())],
            ..Volumes::default()
        };
        let mut wrapped = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            format!("\"$@\" >{OUTPUT_DIR}/output 2>&1"),
            "sh".to_owned(),
        ];
        wrapped.extend(argv.iter().map(|arg| (*arg).to_owned()));
        let mut child = self
            .command(user, &volumes, &[], &wrapped)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("buildah run starts");
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for buildah run") {
                break status;
            }
            if Instant::now() > deadline {
                signal_group(child.id(), "KILL");
                panic!(
                    "`{}` in {} did not finish within 120 s",
                    argv.join(" "),
                    self.id
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut errors = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = stderr.read_to_string(&mut errors);
        }
        let output = std::fs::read_to_string(output_dir.path().join("output")).unwrap_or_default();
        (status, format!("{output}{errors}"))
    }

    /// Runs a command that must succeed; its stdout and stderr together.
    fn run_ok(&self, user: &str, argv: &[&str]) -> String {
        let (status, text) = self.run(user, argv);
        assert!(
            status.success(),
            "`{}` failed in {} as {user}: {text}",
            argv.join(" "),
            self.id
        );
        text
    }

    /// Files written to the container's root filesystem (its overlay upper directory), beyond
    /// the directories that volume mount points need.
    fn written_files(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![self.upper.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read the upper directory") {
                let entry = entry.expect("directory entry");
                let kind = entry.file_type().expect("file type");
                if kind.is_dir() {
                    stack.push(entry.path());
                } else {
                    let path = entry.path();
                    let relative = path.strip_prefix(&self.upper).unwrap_or(&path);
                    found.push(format!("/{}", relative.display()));
                }
            }
        }
        found.sort();
        found
    }

    /// Every process whose root directory is this container's (`buildah run` chroots into a
    /// bind mount of it: the same device and inode).
    fn processes(&self) -> Vec<u32> {
        use std::os::unix::fs::MetadataExt;
        let Ok(root) = std::fs::metadata(&self.root) else {
            return Vec::new();
        };
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if std::fs::metadata(entry.path().join("root"))
                .is_ok_and(|seen| seen.dev() == root.dev() && seen.ino() == root.ino())
            {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for pid in self.processes() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = Command::new("buildah").args(["rm", &self.id]).output();
    }
}

fn signal_group(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

/// The volumes of a container: tmpfs mounts and host directories.
#[derive(Default)]
struct Volumes {
    tmpfs: Vec<String>,
    read_only: Vec<(PathBuf, String)>,
    read_write: Vec<(PathBuf, String)>,
}

/// Where [`Sandbox::run`] collects a command's output.
const OUTPUT_DIR: &str = "/shanraq-test-output";

/// A server running in a container, stopped (SIGTERM to its process group, then SIGKILL) on
/// drop; its output goes to a log file.
struct Running {
    child: Child,
    log: PathBuf,
    what: String,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log when the server has exited.
    fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.what, self.log());
        }
    }

    /// Stops the server and waits for it (bounded).
    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        signal_group(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        signal_group(self.child.id(), "KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

// --- rendered pods --------------------------------------------------------------------------

/// Text replacements that move a pod's listeners to free ports on 127.0.0.1, applied to the
/// command, the environment and the ConfigMap files. Each must apply somewhere, so a changed
/// rendering cannot silently put a server back on its real port.
struct Relocation {
    replacements: Vec<(String, String)>,
    used: std::cell::RefCell<Vec<bool>>,
}

impl Relocation {
    fn new(replacements: Vec<(String, String)>) -> Relocation {
        let used = std::cell::RefCell::new(vec![false; replacements.len()]);
        Relocation { replacements, used }
    }

    fn apply(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (index, (from, to)) in self.replacements.iter().enumerate() {
            if text.contains(from.as_str()) {
                text = text.replace(from.as_str(), to);
                self.used.borrow_mut()[index] = true;
            }
        }
        text
    }

    fn assert_all_used(&self) {
        for ((from, _), used) in self.replacements.iter().zip(self.used.borrow().iter()) {
            assert!(
                *used,
                "the rendered pod no longer contains {from:?}: update this test"
            );
        }
    }
}

fn pod_spec(rendered: &RenderedCluster, kind: &str, name: &str) -> PodSpec {
    let template = match find(rendered, kind, name) {
        Rendered::StatefulSet(set) => set.spec.template.clone(),
        Rendered::Deployment(deployment) => deployment.spec.template.clone(),
        other => panic!("{} has no pod template", other.name()),
    };
    template.spec.expect("pod spec")
}

/// A rendered pod whose exporter sidecar runs from the component's own image: its main
/// container and the exporter, both checked to name `local_image(image_name)`, the main one to
/// run as the image's user. Returns the pod, the image and both containers.
fn with_own_exporter(
    rendered: &RenderedCluster,
    workload: &str,
    main: &str,
    exporter: &str,
    image_name: &str,
) -> (PodSpec, String, Container, Container) {
    let pod = pod_spec(rendered, "StatefulSet", workload);
    let main = container(&pod, main).clone();
    let exporter = container(&pod, exporter).clone();
    let image = local_image(image_name);
    assert_eq!(main.image.as_deref(), Some(image.as_str()));
    assert_eq!(
        exporter.image.as_deref(),
        Some(image.as_str()),
        "the exporter runs from the {image_name} image"
    );
    assert_runs_as_rendered(&image, &main);
    (pod, image, main, exporter)
}

fn container<'a>(pod: &'a PodSpec, name: &str) -> &'a Container {
    pod.containers
        .iter()
        .find(|container| container.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// `uid:gid` of a rendered container.
fn user_of(container: &Container) -> String {
    let security = container
        .security_context
        .as_ref()
        .expect("security context");
    let uid = security.run_as_user.expect("runAsUser");
    let gid = security.run_as_group.unwrap_or(uid);
    format!("{uid}:{gid}")
}

/// Secret data as the operator would create it: the fixed keys, and random values for the
/// generated ones.
fn secret_data(rendered: &RenderedCluster, name: &str) -> BTreeMap<String, String> {
    let template = rendered
        .secrets
        .iter()
        .find(|secret| secret.name == name)
        .unwrap_or_else(|| panic!("no Secret {name} rendered"));
    let mut data = template.fixed.clone();
    for (key, length) in &template.generated {
        data.insert(
            key.clone(),
            shanraq_testkit::secrets::random_secret(*length),
        );
    }
    data
}

/// A rendered container prepared to run: its volumes materialised under `dir`, its
/// environment resolved (the pod's name, the Secrets' values), relocated.
struct Prepared {
    user: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    volumes: Volumes,
}

// Each argument is a different view of the one rendered pod; bundling them would only move
// the same names into a struct built at the single call site.
#[allow(clippy::too_many_arguments)]
fn prepare(
    rendered: &RenderedCluster,
    pod: &PodSpec,
    pod_name: &str,
    container: &Container,
    secrets: &BTreeMap<String, BTreeMap<String, String>>,
    relocation: &Relocation,
    files: &BTreeMap<(String, String), String>,
    dir: &Path,
) -> Prepared {
    let mut volumes = Volumes::default();
    for mount in container.volume_mounts.clone().unwrap_or_default() {
        let volume = pod
            .volumes
            .as_ref()
            .and_then(|volumes| volumes.iter().find(|volume| volume.name == mount.name));
        let host = dir.join(format!("{}-{}", container.name, mount.name));
        match volume {
            Some(volume) if volume.config_map.is_some() => {
                let map = volume
                    .config_map
                    .as_ref()
                    .map(|c| c.name.clone())
                    .unwrap_or_default();
                let data = match find(rendered, "ConfigMap", &map) {
                    Rendered::ConfigMap(map) => map.data.clone().unwrap_or_default(),
                    _ => unreachable!(),
                };
                std::fs::create_dir_all(&host).expect("config dir");
                for (key, text) in data {
                    let text = files
                        .get(&(mount.name.clone(), key.clone()))
                        .cloned()
                        .unwrap_or_else(|| relocation.apply(&text));
                    write_readable(&host.join(&key), &text);
                }
                volumes.read_only.push((host, mount.mount_path.clone()));
            }
            Some(volume) if volume.secret.is_some() => {
                let secret = volume
                    .secret
                    .as_ref()
                    .and_then(|s| s.secret_name.clone())
                    .unwrap_or_default();
                std::fs::create_dir_all(&host).expect("secret dir");
                for (key, value) in &secrets[&secret] {
                    write_readable(&host.join(key), value);
                }
                volumes.read_only.push((host, mount.mount_path.clone()));
            }
            // emptyDir volumes, and the volume claims of a StatefulSet.
            _ => volumes.tmpfs.push(mount.mount_path.clone()),
        }
    }
    let mut env = Vec::new();
    for var in container.env.clone().unwrap_or_default() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => relocation.apply(value),
            (None, Some(source)) if source.field_ref.is_some() => pod_name.to_owned(),
            (None, Some(source)) => {
                let key = source
                    .secret_key_ref
                    .as_ref()
                    .expect("a Secret key reference");
                secrets[&key.name][&key.key].clone()
            }
            (None, None) => String::new(),
        };
        env.push((var.name.clone(), value));
    }
    let mut argv: Vec<String> = container.command.clone().unwrap_or_default();
    argv.extend(container.args.clone().unwrap_or_default());
    let argv = argv.iter().map(|arg| relocation.apply(arg)).collect();
    Prepared {
        user: user_of(container),
        argv,
        env,
        volumes,
    }
}

/// Secret files as the kubelet presents them (0440 with the pod's fsGroup): readable here by
/// any uid, as the tests run each container's uid without supplementary groups.
fn write_readable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).expect("chmod");
    if let Some(parent) = path.parent() {
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

fn start(boxed: &Sandbox, prepared: &Prepared, what: &str, dir: &Path) -> Running {
    let log = dir.join(format!("{}.log", what.replace(' ', "-")));
    let file = std::fs::File::create(&log).expect("log file");
    let child = boxed
        .command(
            &prepared.user,
            &prepared.volumes,
            &prepared.env,
            &prepared.argv,
        )
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|error| panic!("starting {what}: {error}"));
    Running {
        child,
        log,
        what: what.to_owned(),
    }
}

// --- checks ---------------------------------------------------------------------------------

/// `GET path` over HTTP/1.0 on 127.0.0.1: the status code and the body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())?;
    Some((status, body))
}

/// Polls `check` every 200 ms until it gives a value, while every server stays up.
fn wait_for<T>(
    what: &str,
    timeout: Duration,
    servers: &mut [&mut Running],
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        for server in servers.iter_mut() {
            server.assert_alive();
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = servers
                .iter()
                .map(|server| format!("--- {}:\n{}", server.what, server.log()))
                .collect();
            panic!(
                "gave up waiting for {what} after {timeout:?}\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The metric names an exporter list promises (`exporters/<file>`).
fn promised_metrics(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo_file(&format!(
        "crates/shanraq-render/exporters/{file}"
    )))
    .expect("exporter list");
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The promised names missing from a Prometheus exposition.
fn missing_metrics(body: &str, promised: &[String]) -> Vec<String> {
    promised
        .iter()
        .filter(|name| {
            !body.lines().any(|line| {
                line.strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
        })
        .cloned()
        .collect()
}

/// Scrapes `port` until every promised name is served.
fn assert_serves(what: &str, port: u16, file: &str, servers: &mut [&mut Running]) {
    let promised = promised_metrics(file);
    let mut last = String::new();
    wait_for(
        &format!("{what} to serve every name of exporters/{file}"),
        Duration::from_secs(120),
        servers,
        || {
            let (status, body) = http_get(port, "/metrics")?;
            last = body.clone();
            (status == 200 && missing_metrics(&body, &promised).is_empty()).then_some(())
        },
    );
    assert!(missing_metrics(&last, &promised).is_empty());
}

fn assert_read_only(boxed: &Sandbox, what: &str) {
    let written = boxed.written_files();
    assert!(
        written.is_empty(),
        "{what} wrote to its root filesystem, which is read-only in a pod: {written:?}"
    );
}

fn assert_runs_as_rendered(image: &str, container: &Container) {
    assert_eq!(
        image_user(image),
        user_of(container),
        "{image} must run as the user the renderer gives container {}",
        container.name
    );
}

// --- the images -----------------------------------------------------------------------------

#[test]
fn the_operator_image_runs_the_lean_binary_as_65532() {
    if !can_run("the_operator_image_runs_the_lean_binary_as_65532") {
        return;
    }
    images();
    let image = local_image("operator");
    assert_eq!(image_user(&image), "65532:65532");
    let boxed = Sandbox::new(&image);
    let version = boxed.run_ok("65532:65532", &["shanraq", "--version"]);
    assert!(version.contains(VERSION), "{version}");
    let crd = boxed.run_ok("65532:65532", &["shanraq", "crdgen"]);
    assert!(crd.contains("kind: CustomResourceDefinition"), "{crd}");
    // The drill is a separate binary that the image leaves out.
    let (status, demo) = boxed.run("65532:65532", &["shanraq", "demo", "--help"]);
    assert!(
        !status.success() && demo.contains("shanraq-drill"),
        "the operator image must not run the drill: {demo}"
    );
    assert_read_only(&boxed, "the operator");
}

#[test]
fn the_postgres_image_bootstraps_a_primary_and_exports_its_metrics() {
    if !can_run("the_postgres_image_bootstraps_a_primary_and_exports_its_metrics") {
        return;
    }
    images();
    let cluster = cluster();
    let rendered = render(&cluster, true);
    let (pod, image, main, exporter) = with_own_exporter(
        &rendered,
        "demo-pg",
        "postgres",
        "postgres-exporter",
        "postgres",
    );
    let (main, exporter) = (&main, &exporter);

    let main_box = Sandbox::new(&image);
    let versions = main_box.run_ok(&user_of(main), &["sh", "-c", "postgres --version; pgbackrest version; shanraq --version; shanraq instance postgres --help"]);
    assert!(versions.contains("postgres (PostgreSQL) 15."), "{versions}");
    assert!(versions.contains("pgBackRest 2."), "{versions}");
    assert!(versions.contains("--data-dir"), "{versions}");
    let exporter_box = Sandbox::new(&image);
    let exporter_version =
        exporter_box.run_ok(&user_of(exporter), &["postgres_exporter", "--version"]);
    assert!(
        exporter_version.contains("postgres_exporter, version 0."),
        "{exporter_version}"
    );

    let (pg, status, metrics) = (
        free_port().expect("port"),
        free_port().expect("port"),
        free_port().expect("port"),
    );
    let relocation = Relocation::new(vec![
        ("--pg-listen 0.0.0.0".into(), "--pg-listen 127.0.0.1".into()),
        (
            format!("--pg-port {}", postgres::PORT),
            format!("--pg-port {pg}"),
        ),
        (
            format!("--upstream-port {}", postgres::PORT),
            format!("--upstream-port {pg}"),
        ),
        (
            format!("0.0.0.0:{}", postgres::STATUS_PORT),
            format!("127.0.0.1:{status}"),
        ),
        (
            format!("127.0.0.1:{}/", postgres::PORT),
            format!("127.0.0.1:{pg}/"),
        ),
        (":9187".into(), format!("127.0.0.1:{metrics}")),
    ]);
    let secrets: BTreeMap<String, BTreeMap<String, String>> = rendered
        .secrets
        .iter()
        .map(|secret| (secret.name.clone(), secret_data(&rendered, &secret.name)))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = BTreeMap::new();
    let main_run = prepare(
        &rendered,
        &pod,
        "demo-pg-0",
        main,
        &secrets,
        &relocation,
        &files,
        dir.path(),
    );
    let exporter_run = prepare(
        &rendered,
        &pod,
        "demo-pg-0",
        exporter,
        &secrets,
        &relocation,
        &files,
        dir.path(),
    );
    relocation.assert_all_used();

    let mut server = start(
        &main_box,
        &main_run,
        "postgres instance manager",
        dir.path(),
    );
    // The rendered readiness probe: the manager's /health answers 200 once postgres accepts.
    wait_for(
        "the instance manager's /health",
        Duration::from_secs(180),
        &mut [&mut server],
        || http_get(status, "/health").filter(|(code, _)| *code == 200),
    );
    // The application database and its owner, created at the first bootstrap (right after
    // postgres accepts connections, so possibly after /health answers), over TCP with the app
    // Secret's password (pg_hba allows only scram-sha-256 there).
    let app = &secrets[&cluster.names.pg_app_secret()];
    let options = sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(pg)
        .username(&app["username"])
        .password(&app["password"])
        .database(&app["dbname"]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let owner: String = wait_for(
        "the application user to log in",
        Duration::from_secs(60),
        &mut [&mut server],
        || {
            runtime.block_on(async {
                use sqlx::Connection;
                let mut connection = sqlx::PgConnection::connect_with(&options).await.ok()?;
                sqlx::query_scalar("SELECT current_user::text")
                    .fetch_one(&mut connection)
                    .await
                    .ok()
            })
        },
    );
    assert_eq!(owner, app["username"]);

    let mut sidecar = start(
        &exporter_box,
        &exporter_run,
        "postgres_exporter",
        dir.path(),
    );
    assert_serves(
        "postgres_exporter",
        metrics,
        "postgres_exporter.txt",
        &mut [&mut server, &mut sidecar],
    );
    let (_, body) = http_get(metrics, "/metrics").expect("metrics");
    assert!(
        body.lines()
            .any(|line| line.starts_with("pg_up ") && line.ends_with(" 1")),
        "pg_up is not 1"
    );

    sidecar.stop();
    server.stop();
    assert_read_only(&main_box, "PostgreSQL and its instance manager");
    assert_read_only(&exporter_box, "postgres_exporter");
}

#[test]
fn the_redis_image_serves_redis_its_probe_its_exporter_and_the_cluster_job() {
    if !can_run("the_redis_image_serves_redis_its_probe_its_exporter_and_the_cluster_job") {
        return;
    }
    images();
    let cluster = cluster();
    let rendered = render(&cluster, true);
    let (pod, image, main, exporter) =
        with_own_exporter(&rendered, "demo-redis", "redis", "redis-exporter", "redis");
    let (main, exporter) = (&main, &exporter);

    let main_box = Sandbox::new(&image);
    let versions = main_box.run_ok(
        &user_of(main),
        &["sh", "-c", "redis-server --version; redis-cli --version"],
    );
    assert!(versions.contains("Redis server v=7."), "{versions}");
    let exporter_box = Sandbox::new(&image);
    let exporter_version =
        exporter_box.run_ok(&user_of(exporter), &["redis_exporter", "--version"]);
    assert!(
        exporter_version.contains("Redis Metrics Exporter 1."),
        "{exporter_version}"
    );

    // The cluster-forming Job runs the same image: every program of its script is there.
    let job_script = redis_cluster_job_script();
    for program in [
        "redis-cli",
        "getent",
        "awk",
        "sed",
        "tr",
        "grep",
        "sleep",
        "cat",
    ] {
        assert!(
            job_script.contains(program),
            "the Job's script no longer uses {program}"
        );
        main_box.run_ok(
            &user_of(main),
            &["sh", "-c", &format!("command -v {program}")],
        );
    }

    let (port, metrics) = (free_port().expect("port"), free_port().expect("port"));
    let relocation = Relocation::new(vec![
        ("port 6379\n".into(), format!("port {port}\n")),
        ("bind * -::*".into(), "bind 127.0.0.1".into()),
        (
            "redis://127.0.0.1:6379".into(),
            format!("redis://127.0.0.1:{port}"),
        ),
        (":9121".into(), format!("127.0.0.1:{metrics}")),
    ]);
    let secrets: BTreeMap<String, BTreeMap<String, String>> = rendered
        .secrets
        .iter()
        .map(|secret| (secret.name.clone(), secret_data(&rendered, &secret.name)))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = BTreeMap::new();
    let main_run = prepare(
        &rendered,
        &pod,
        "demo-redis-0",
        main,
        &secrets,
        &relocation,
        &files,
        dir.path(),
    );
    let exporter_run = prepare(
        &rendered,
        &pod,
        "demo-redis-0",
        exporter,
        &secrets,
        &relocation,
        &files,
        dir.path(),
    );
    relocation.assert_all_used();

    let mut server = start(&main_box, &main_run, "redis", dir.path());
    // The rendered readiness probe, run in the container as the kubelet would.
    let probe = main
        .readiness_probe
        .as_ref()
        .and_then(|probe| probe.exec.as_ref())
        .and_then(|exec| exec.command.clone())
        .expect("an exec readiness probe");
    let probe: Vec<String> = probe
        .iter()
        .map(|arg| arg.replace("-p 6379", &format!("-p {port}")))
        .collect();
    assert!(
        probe.iter().any(|arg| arg.contains(&format!("-p {port}"))),
        "{probe:?}"
    );
    let mut probe_command = main_box.command(&main_run.user, &main_run.volumes, &[], &probe);
    wait_for(
        "the readiness probe",
        Duration::from_secs(60),
        &mut [&mut server],
        || {
            probe_command
                .output()
                .ok()
                .filter(|output| output.status.success())
        },
    );

    let mut sidecar = start(&exporter_box, &exporter_run, "redis_exporter", dir.path());
    assert_serves(
        "redis_exporter",
        metrics,
        "redis_exporter.txt",
        &mut [&mut server, &mut sidecar],
    );
    let (_, body) = http_get(metrics, "/metrics").expect("metrics");
    assert!(
        body.lines()
            .any(|line| line.starts_with("redis_up ") && line.ends_with(" 1")),
        "redis_up is not 1"
    );

    sidecar.stop();
    server.stop();
    assert_read_only(&main_box, "Redis");
    assert_read_only(&exporter_box, "redis_exporter");
}

fn redis_cluster_job_script() -> String {
    let cluster =
        with_spec("  redis:\n    mode: cluster\n    instances: 6\n    replicasPerShard: 1");
    shanraq_render::redis::cluster_init_script(&cluster)
}

#[test]
fn the_haproxy_image_runs_the_rendered_config_and_serves_its_metrics() {
    if !can_run("the_haproxy_image_runs_the_rendered_config_and_serves_its_metrics") {
        return;
    }
    images();
    let cluster = cluster();
    let rendered = render(&cluster, true);
    let pod = pod_spec(&rendered, "Deployment", "demo-haproxy");
    let main = container(&pod, "haproxy");
    let image = local_image("haproxy");
    assert_eq!(main.image.as_deref(), Some(image.as_str()));
    assert_runs_as_rendered(&image, main);

    let boxed = Sandbox::new(&image);
    let version = boxed.run_ok(&user_of(main), &["haproxy", "-v"]);
    assert!(version.contains("HAProxy version 2.6"), "{version}");

    let mut replacements = vec![(format!("bind :{}", haproxy::STATS_PORT), String::new())];
    let stats = free_port().expect("port");
    replacements[0].1 = format!("bind 127.0.0.1:{stats}");
    for port in [
        haproxy::PG_RW_PORT,
        haproxy::PG_RO_PORT,
        haproxy::REDIS_PORT,
    ] {
        let free = free_port().expect("port");
        replacements.push((format!("bind :{port}"), format!("bind 127.0.0.1:{free}")));
    }
    let relocation = Relocation::new(replacements);
    let secrets: BTreeMap<String, BTreeMap<String, String>> = rendered
        .secrets
        .iter()
        .map(|secret| (secret.name.clone(), secret_data(&rendered, &secret.name)))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let run = prepare(
        &rendered,
        &pod,
        "demo-haproxy-0",
        main,
        &secrets,
        &relocation,
        &BTreeMap::new(),
        dir.path(),
    );
    relocation.assert_all_used();

    let mut server = start(&boxed, &run, "haproxy", dir.path());
    wait_for(
        "HAProxy's /healthz",
        Duration::from_secs(60),
        &mut [&mut server],
        || http_get(stats, "/healthz").filter(|(code, _)| *code == 200),
    );
    assert_serves("HAProxy", stats, "haproxy.txt", &mut [&mut server]);
    server.stop();
    assert_read_only(&boxed, "HAProxy");
}

#[test]
fn the_kafka_image_starts_a_node_with_the_jmx_agent_inside() {
    if !can_run("the_kafka_image_starts_a_node_with_the_jmx_agent_inside") {
        return;
    }
    images();
    let cluster = cluster();
    let rendered = render(&cluster, true);
    let pod = pod_spec(&rendered, "StatefulSet", "demo-kafka-controller");
    assert!(
        pod.init_containers.as_ref().is_none_or(Vec::is_empty),
        "Kafka pods download nothing at start"
    );
    let main = container(&pod, "kafka");
    let image = local_image("kafka");
    assert_eq!(main.image.as_deref(), Some(image.as_str()));
    assert_runs_as_rendered(&image, main);

    let boxed = Sandbox::new(&image);
    let user = user_of(main);
    let java = boxed.run_ok(&user, &["java", "-version"]);
    assert!(java.contains("version \"17."), "{java}");
    boxed.run_ok(&user, &["test", "-r", kafka::JMX_AGENT_JAR]);
    // kafka.Kafka itself is proven by the node below; its jar is where the scripts look.
    let jars = boxed.run_ok(&user, &["sh", "-c", "ls /opt/kafka/libs"]);
    assert!(
        jars.contains("kafka_2.13-"),
        "no kafka_2.13 jar in /opt/kafka/libs: {jars}"
    );

    // One node in combined mode (broker and controller), so that it runs alone: the rendered
    // command picks controller-0.properties for pod demo-kafka-controller-0, and this test
    // puts a single-node configuration there, with the rendered log.dirs.
    let rendered_properties =
        config_file(&rendered, "demo-kafka-config", "controller-0.properties");
    let log_dirs = rendered_properties
        .lines()
        .find_map(|line| line.strip_prefix("log.dirs="))
        .expect("log.dirs");
    let (broker, controller, metrics) = (
        free_port().expect("port"),
        free_port().expect("port"),
        free_port().expect("port"),
    );
    let single_node = format!(
        "process.roles=broker,controller\nnode.id=0\ncontroller.quorum.voters=0@127.0.0.1:{controller}\n\
         controller.listener.names=CONTROLLER\nlisteners=PLAINTEXT://127.0.0.1:{broker},CONTROLLER://127.0.0.1:{controller}\n\
         advertised.listeners=PLAINTEXT://127.0.0.1:{broker}\ninter.broker.listener.name=PLAINTEXT\n\
         listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\nlog.dirs={log_dirs}\n\
         offsets.topic.replication.factor=1\ntransaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n"
    );
    let files = BTreeMap::from([(
        ("config".to_owned(), "controller-0.properties".to_owned()),
        single_node,
    )]);
    let relocation = Relocation::new(vec![(
        format!("={}:", kafka::METRICS_PORT),
        format!("=127.0.0.1:{metrics}:"),
    )]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut run = prepare(
        &rendered,
        &pod,
        "demo-kafka-controller-0",
        main,
        &BTreeMap::new(),
        &relocation,
        &files,
        dir.path(),
    );
    relocation.assert_all_used();
    // A smaller heap than the image's default of 1 GiB, beside the other tests.
    run.env
        .push(("KAFKA_HEAP_OPTS".to_owned(), "-Xmx384m -Xms64m".to_owned()));

    let mut server = start(&boxed, &run, "kafka", dir.path());
    wait_for(
        "the broker's listener",
        Duration::from_secs(180),
        &mut [&mut server],
        || {
            TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, broker)),
                Duration::from_secs(1),
            )
            .ok()
        },
    );
    assert_serves(
        "the JMX exporter agent",
        metrics,
        "kafka_jmx_exporter.txt",
        &mut [&mut server],
    );
    server.stop();
    assert_read_only(&boxed, "Kafka");
}
