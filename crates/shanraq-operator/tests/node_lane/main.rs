//! The real-node lane's tests, on the single node `scripts/e2e --node` starts (kubelet,
//! containerd, kube-proxy, CoreDNS, a pool of local volumes):
//! - `smoke`: pods under the `restricted` Pod Security level reach each other through a Service
//!   and cluster DNS;
//! - `stack`: the operator installed by its Helm chart from its own image runs a whole cluster
//!   from one ShanraqCluster, takes writes through HAProxy and fails over without losing one;
//! - `redis_cluster`: a Redis Cluster formed by the rendered Job, scaled out, every key kept.
//!
//! They share the node's two cores, so `scripts/test` runs them one at a time.
//!
//! Ignored in a plain `cargo test` (the kwok lane has no kubelet); `scripts/test` runs them as
//! `scripts/e2e --node cargo test -p shanraq-operator --test node_lane -- --include-ignored`.
//! Run without the node lane they say why they did nothing, except under CI (`CI` set), where
//! that is a failure. Every wait is bounded and polls a condition.

mod redis_cluster;
mod smoke;
mod stack;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, HTTPGetAction, Namespace, Pod, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecurityContext, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::ObjectMeta;

const KUBECONFIG_ENV: &str = "SHANRAQ_E2E_KUBECONFIG";
/// Set by `scripts/e2e --node` only: the node's name.
const NODE_ENV: &str = "SHANRAQ_E2E_NODE";
/// The lane's probe image (`scripts/node-probe`), imported into the node's containerd.
const PROBE_IMAGE_ENV: &str = "SHANRAQ_E2E_NODE_PROBE_IMAGE";
const SERVER: &str = "probe-web";
const CLIENT: &str = "probe-client";
const PORT: i32 = 8080;
/// A pod from creation to Ready on a loaded 2-core machine takes seconds; this bounds a hang.
const TIMEOUT: Duration = Duration::from_secs(120);

struct Lane {
    client: Client,
    node: String,
    probe_image: String,
}

/// The node lane's client, or `None` (after saying why) outside it. Under CI a missing node
/// fails the test: it is only ever run in the node lane there.
async fn lane() -> Option<Lane> {
    let node = std::env::var(NODE_ENV).ok().filter(|v| !v.is_empty());
    let kubeconfig = std::env::var_os(KUBECONFIG_ENV).filter(|v| !v.is_empty());
    let (Some(node), Some(kubeconfig)) = (node, kubeconfig) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{NODE_ENV} or {KUBECONFIG_ENV} is not set under CI: run this test through \
             scripts/e2e --node (scripts/test does)"
        );
        println!("skipped: no real node ({NODE_ENV} is set by scripts/e2e --node only)");
        return None;
    };
    let probe_image = std::env::var(PROBE_IMAGE_ENV)
        .unwrap_or_else(|_| panic!("{PROBE_IMAGE_ENV} is set by scripts/e2e --node"));
    let kubeconfig = Kubeconfig::read_from(&kubeconfig).expect("the node lane's kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    let client = Client::try_from(config).expect("a Kubernetes client");
    Some(Lane {
        client,
        node,
        probe_image,
    })
}

async fn wait_for<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_up_to(TIMEOUT, what, check).await
}

/// Polls `check` until it gives a value, failing the test after `timeout`.
async fn wait_up_to<T, F, Fut>(timeout: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll_until(timeout, check)
        .await
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Polls `check` until it gives a value, or `None` once `timeout` has passed.
async fn poll_until<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
