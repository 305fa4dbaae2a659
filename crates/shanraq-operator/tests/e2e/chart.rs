//! The Helm chart as `helm install` sends it: a server-side dry run through the real API
//! server's admission (schema validation of every object, RBAC of the objects it creates).

use std::process::Command;

use super::{client, kubeconfig_path, repo_root};

#[tokio::test]
async fn helm_install_dry_run_server_is_accepted() {
    let Some(_client) = client().await else {
        return;
    };
    let output = Command::new("helm")
        .args(["install", "shanraq-dry-run"])
        .arg(repo_root().join("charts/shanraq-operator"))
        .args([
            "--namespace",
            "shanraq-dry-run",
            "--create-namespace",
            "--dry-run=server",
        ])
        .env("KUBECONFIG", kubeconfig_path().expect("kubeconfig"))
        .output()
        .expect("helm is installed (scripts/install-deps)");
    assert!(
        output.status.success(),
        "helm install --dry-run=server was refused:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest = String::from_utf8_lossy(&output.stdout);
    for kind in [
        "kind: Deployment",
        "kind: ServiceAccount",
        "kind: ClusterRole",
    ] {
        assert!(manifest.contains(kind), "the dry run renders a {kind}");
    }
}
