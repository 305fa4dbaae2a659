//! The operator as a user deploys it: a separate `shanraq operator` process whose only
//! credentials are a TokenRequest token of the Helm chart's own ServiceAccount, bound by the
//! chart's own RBAC objects (from `helm template`). A permission the chart forgot shows up as a
//! `forbidden` in the operator's log, which every test that runs an operator checks.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Client;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::config::Kubeconfig;
use kube::core::ObjectMeta;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::OnceCell;

use super::{OPERATOR_NAMESPACE, SHORT, kubeconfig_path, repo_root, wait_for};

/// The chart's RBAC, applied once per test process.
static CHART_RBAC: OnceCell<String> = OnceCell::const_new();

const RBAC_KINDS: &[&str] = &[
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// `helm template` of the chart, as multi-document YAML.
pub fn helm_template(extra: &[&str]) -> String {
    let output = Command::new("helm")
        .args(["template", "shanraq"])
        .arg(repo_root().join("charts/shanraq-operator"))
        .args(["--namespace", OPERATOR_NAMESPACE])
        .args(extra)
        .output()
        .expect("helm is installed (scripts/install-deps)");
    assert!(
        output.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 manifests")
}

/// The chart's ServiceAccount and RBAC objects, applied with the admin client; returns the
/// ServiceAccount's name.
async fn chart_rbac(client: &Client) -> String {
    CHART_RBAC
        .get_or_init(|| async {
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let namespace = Namespace {
                metadata: ObjectMeta {
                    name: Some(OPERATOR_NAMESPACE.to_owned()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            };
            namespaces
                .patch(
                    OPERATOR_NAMESPACE,
                    &PatchParams::apply("shanraq-e2e").force(),
                    &Patch::Apply(&namespace),
                )
                .await
                .expect("the operator's namespace");
            let mut service_account = None;
            for document in helm_template(&[]).split("\n---") {
                let Ok(object) = serde_saphyr::from_str::<serde_json::Value>(document) else {
                    continue;
                };
                let Some(kind) = object["kind"].as_str().map(str::to_owned) else {
                    continue;
                };
                if !RBAC_KINDS.contains(&kind.as_str()) {
                    continue;
                }
                let object: DynamicObject =
                    serde_json::from_value(object).expect("a Kubernetes object");
                let api_version = object
                    .types
                    .as_ref()
                    .map(|t| t.api_version.clone())
                    .expect("apiVersion");
                let (group, version) = api_version
                    .rsplit_once('/')
                    .map_or((String::new(), api_version.clone()), |(g, v)| {
                        (g.to_owned(), v.to_owned())
                    });
                let resource =
                    ApiResource::from_gvk(&GroupVersionKind::gvk(&group, &version, &kind));
                let name = object.metadata.name.clone().expect("a name");
                let api: Api<DynamicObject> = match &object.metadata.namespace {
                    Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
                    None if kind.starts_with("Cluster") => Api::all_with(client.clone(), &resource),
                    None => Api::namespaced_with(client.clone(), OPERATOR_NAMESPACE, &resource),
                };
                api.patch(
                    &name,
                    &PatchParams::apply("shanraq-e2e").force(),
                    &Patch::Apply(&object),
                )
                .await
                .unwrap_or_else(|error| panic!("applying the chart's {kind} {name}: {error}"));
                if kind == "ServiceAccount" {
                    service_account = Some(name);
                }
            }
            service_account.expect("the chart renders a ServiceAccount")
        })
        .await
        .clone()
}

/// A kubeconfig for the chart's ServiceAccount: the admin kubeconfig's server and CA, and a
/// TokenRequest token (an hour, the suite's longest run).
async fn service_account_kubeconfig(client: &Client, dir: &Path) -> PathBuf {
    let service_account = chart_rbac(client).await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: None,
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let issued: TokenRequest = accounts
        .create_subresource("token", &service_account, &PostParams::default(), &request)
        .await
        .expect("a token for the chart's ServiceAccount");
    let token = issued
        .status
        .and_then(|status| status.token)
        .expect("a token");
    let admin_path = kubeconfig_path().expect("an admin kubeconfig");
    let admin = Kubeconfig::read_from(&admin_path).expect("the admin kubeconfig");
    let cluster = admin
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .expect("a cluster in the admin kubeconfig");
    let server = cluster.server.expect("a server");
    let authority = match (
        &cluster.certificate_authority,
        &cluster.certificate_authority_data,
    ) {
        (Some(path), _) => format!("certificate-authority: {path}"),
        (None, Some(data)) => format!("certificate-authority-data: {data}"),
        (None, None) => "insecure-skip-tls-verify: true".to_owned(),
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    {authority}\n\
         users:\n- name: operator\n  user:\n    token: {token}\ncontexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: operator\n\
         current-context: e2e\n"
    );
    let path = dir.join("operator.kubeconfig");
    std::fs::write(&path, text).expect("kubeconfig written");
    path
}

/// How one operator process runs.
pub struct OperatorOptions<'a> {
    /// The only namespace it watches (each test has its own).
    pub namespace: &'a str,
    /// Its Lease in the operator namespace; operators sharing one compete for it.
    pub lease: &'a str,
    /// Its identity in the Lease (a pod name in a real deployment).
    pub identity: &'a str,
    /// Run the PostgreSQL HA tasks. Only tests whose pods run real instances do: with no
    /// instance behind a pod IP there is nothing to probe.
    pub ha: bool,
}

/// A running `shanraq operator`, SIGKILLed by PID when dropped.
pub struct OperatorProcess {
    child: Option<Child>,
    log: PathBuf,
    pub identity: String,
    metrics_port: u16,
    _dir: tempfile::TempDir,
}

impl OperatorProcess {
    pub async fn start(client: &Client, options: OperatorOptions<'_>) -> OperatorProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = service_account_kubeconfig(client, dir.path()).await;
        let metrics_port = shanraq_testkit::free_port().expect("a free port");
        let log = dir.path().join("operator.log");
        let out = std::fs::File::create(&log).expect("operator log");
        let err = out.try_clone().expect("operator log");
        let child = Command::new(env!("CARGO_BIN_EXE_shanraq"))
            .arg("operator")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAMESPACE", OPERATOR_NAMESPACE)
            .env("POD_NAME", options.identity)
            .env("SHANRAQ_WATCH_NAMESPACES", options.namespace)
            .env("SHANRAQ_LEADER_ELECTION", "true")
            .env("SHANRAQ_LEASE_NAME", options.lease)
            .env("SHANRAQ_HA", options.ha.to_string())
            .env("SHANRAQ_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
            .env("SHANRAQ_LOG_LEVEL", "info")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("shanraq operator starts");
        let operator = OperatorProcess {
            child: Some(child),
            log,
            identity: options.identity.to_owned(),
            metrics_port,
            _dir: dir,
        };
        operator.wait_http("/healthz").await;
        operator
    }

    /// The one operator of `namespace`, HA tasks off (no instance runs behind its pods), on a
    /// Lease of its own.
    pub async fn start_alone(client: &Client, namespace: &str) -> OperatorProcess {
        let lease = format!("shanraq-{namespace}");
        OperatorProcess::start(
            client,
            OperatorOptions {
                namespace,
                lease: &lease,
                identity: "operator-0",
                ha: false,
            },
        )
        .await
    }

    async fn get(&self, path: &str) -> Option<reqwest::StatusCode> {
        let url = format!("http://127.0.0.1:{}{path}", self.metrics_port);
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .ok()?;
        client.get(url).send().await.ok().map(|r| r.status())
    }

    async fn wait_http(&self, path: &str) {
        let what = format!("operator {} {path}", self.identity);
        wait_for(&what, SHORT, || async {
            self.get(path).await.filter(|s| s.is_success()).map(|_| ())
        })
        .await;
    }

    /// `/readyz` answers 200: what the chart's readiness probe, and so the Deployment's
    /// availability, waits for.
    pub async fn is_ready(&self) -> bool {
        self.get("/readyz").await.is_some_and(|s| s.is_success())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test if the API server refused the operator anything: the chart's RBAC must
    /// grant every request it makes.
    pub fn assert_no_forbidden(&self) {
        let log = self.log();
        let forbidden: Vec<&str> = log
            .lines()
            .filter(|line| line.to_lowercase().contains("forbidden"))
            .take(5)
            .collect();
        assert!(
            forbidden.is_empty(),
            "operator {} was refused by RBAC:\n{}",
            self.identity,
            forbidden.join("\n")
        );
    }

    /// SIGSTOP (a stalled process, a frozen VM, a throttled container): everything stops,
    /// the Lease is not renewed.
    pub fn pause(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), Signal::SIGSTOP);
        }
    }

    /// SIGCONT after `pause`: the process wakes with whatever it believed when paused.
    pub fn resume(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), Signal::SIGCONT);
        }
    }

    /// SIGKILL (a crashed operator pod): no Lease release, no clean-up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit (bounded), then the RBAC check.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), Signal::SIGTERM);
            let exited = wait_for("the operator to exit after SIGTERM", SHORT, || {
                let done = matches!(child.try_wait(), Ok(Some(_)));
                async move { done.then_some(()) }
            })
            .await;
            let () = exited;
        }
        self.assert_no_forbidden();
    }
}

fn signal(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(raw), signal);
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- operator {} log (last lines) ---\n{}",
                self.identity,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if let Some(mut child) = self.child.take() {
            signal(child.id(), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}
