//! One run from start to end: the client, the CRD and a namespace of its own, the binder, the
//! operator, both measurements, and the namespace deleted whatever the outcome.

use std::path::Path;

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use kube::core::ObjectMeta;
use shanraq_api::ShanraqCluster;

use super::binder::bind_pods;
use super::client::{client, install_crd, kube_error, kubeconfig_path};
use super::clusters::minimal_spec;
use super::measure::{many_clusters, single_cluster};
use super::operator::{OperatorProcess, with_log};
use super::{LatencyFigures, ReconcilePlan, ReconcileReport, nearest_rank};
use crate::error::DrillError;

/// Runs the benchmark and returns its figures. The namespace is deleted and the operator
/// stopped whatever the outcome.
pub async fn run(binary: &Path, plan: &ReconcilePlan) -> Result<ReconcileReport, DrillError> {
    if plan.samples == 0 || plan.concurrency == 0 {
        return Err(DrillError::InvalidOption {
            option: "--samples/--concurrency",
            reason: "both must be at least 1".to_owned(),
        });
    }
    let kubeconfig = kubeconfig_path(plan.kubeconfig.as_deref())?;
    let client = client(&kubeconfig).await?;
    let spec = minimal_spec()?;
    install_crd(&client).await?;

    let namespace = format!(
        "shanraq-bench-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_second()
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let body = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &body)
        .await
        .map_err(kube_error(format!("creating the namespace {namespace}")))?;

    let binder = tokio::spawn(bind_pods(Api::namespaced(client.clone(), &namespace)));
    let outcome = measure(binary, &kubeconfig, &client, &namespace, &spec, plan).await;
    binder.abort();
    let deleted = namespaces
        .delete(&namespace, &DeleteParams::background())
        .await
        .map_err(kube_error(format!("deleting the namespace {namespace}")));
    let report = outcome?;
    deleted?;
    Ok(report)
}

async fn measure(
    binary: &Path,
    kubeconfig: &Path,
    client: &Client,
    namespace: &str,
    spec: &serde_json::Value,
    plan: &ReconcilePlan,
) -> Result<ReconcileReport, DrillError> {
    let port = shanraq_testkit::free_port()?;
    let mut operator = OperatorProcess::start(binary, kubeconfig, namespace, port)?;
    operator.wait_ready().await?;
    let clusters: Api<ShanraqCluster> = Api::namespaced(client.clone(), namespace);

    let latencies = single_cluster(&clusters, spec, plan.samples)
        .await
        .map_err(|error| with_log(error, &operator))?;
    let converged_s = many_clusters(&clusters, spec, plan)
        .await
        .map_err(|error| with_log(error, &operator))?;
    let peak = operator.peak_rss_mib()?;
    drop(operator);
    Ok(ReconcileReport {
        scenario: "reconcile",
        clusters: plan.clusters,
        converged_s: round(converged_s, 3),
        single_apply_to_status_ms: LatencyFigures {
            samples: latencies.len(),
            p50: round(nearest_rank(&latencies, 0.50), 1),
            p99: round(nearest_rank(&latencies, 0.99), 1),
        },
        operator_peak_rss_mib: round(peak, 1),
        ha: false,
    })
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}
