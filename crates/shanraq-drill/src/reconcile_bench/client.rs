//! The API server the benchmark measures against: which kubeconfig, a client from it, and
//! the CRD applied and Established before anything else.

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::CustomResourceExt;
use kube::runtime::{conditions, wait};
use shanraq_api::ShanraqCluster;
use shanraq_api::names::CRD_NAME;

use super::{KUBECONFIG_ENVS, MANAGER, SETUP_TIMEOUT};
use crate::error::DrillError;

/// The kubeconfig to use: the flag, else the first of [`KUBECONFIG_ENVS`] that is set.
pub fn kubeconfig_path(flag: Option<&Path>) -> Result<PathBuf, DrillError> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    KUBECONFIG_ENVS
        .iter()
        .filter_map(std::env::var_os)
        .find(|value| !value.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| DrillError::InvalidOption {
            option: "--kubeconfig",
            reason: format!(
                "no kubeconfig: pass --kubeconfig or set {} (scripts/e2e sets the latter)",
                KUBECONFIG_ENVS.join(" or ")
            ),
        })
}

pub(super) fn kube_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> DrillError {
    let what = what.into();
    move |source| DrillError::Kube { what, source }
}

pub(super) async fn client(path: &Path) -> Result<Client, DrillError> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|error| DrillError::InvalidOption {
        option: "--kubeconfig",
        reason: format!("cannot read {}: {error}", path.display()),
    })?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|error| DrillError::InvalidOption {
            option: "--kubeconfig",
            reason: format!("{} is not usable: {error}", path.display()),
        })?;
    Client::try_from(config).map_err(kube_error("building a Kubernetes client"))
}

pub(super) async fn install_crd(client: &Client) -> Result<(), DrillError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        CRD_NAME,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&ShanraqCluster::crd()),
    )
    .await
    .map_err(kube_error(format!("applying the CRD {CRD_NAME}")))?;
    let established = wait::await_condition(api, CRD_NAME, conditions::is_crd_established());
    tokio::time::timeout(SETUP_TIMEOUT, established)
        .await
        .map_err(|_| {
            DrillError::timeout(
                format!("the CRD {CRD_NAME} to be Established"),
                SETUP_TIMEOUT,
            )
        })?
        .map_err(|error| DrillError::Watch {
            what: format!("the CRD {CRD_NAME}"),
            detail: error.to_string(),
        })?;
    Ok(())
}
