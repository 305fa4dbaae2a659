//! `KubeRouter`: writes go where the `-rw` Service sends them, and it selects on the pods'
//! `shanraq.org/role` label. Routing relabels every other member `replica` first, then the new
//! primary `primary` (so the Service never selects two primaries), and is confirmed only once
//! the new primary itself answers `/primary` (HAProxy checks the same endpoint).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use shanraq_api::names::{LABEL_ROLE, ROLE_PRIMARY, ROLE_REPLICA};
use shanraq_ha::adapters::driver::Router;
use shanraq_ha::adapters::instance_client::InstanceClient;
use shanraq_ha::postgres::{Member, NodeId};

use crate::engines::state_store::HA_FIELD_MANAGER;

/// Sets `role` on pod `name`. A pod that does not exist is `Ok(false)`.
pub async fn label_role(pods: &Api<Pod>, name: &str, role: &str) -> Result<bool, kube::Error> {
    let body = json!({ "metadata": { "labels": { LABEL_ROLE: role } } });
    let params = PatchParams {
        field_manager: Some(HA_FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    match pods.patch(name, &params, &Patch::Merge(&body)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

#[derive(Clone)]
pub struct KubeRouter {
    pods: Api<Pod>,
    /// Every member, in order.
    members: Vec<NodeId>,
    /// Instance-manager clients for the `/primary` confirmation; none in label-only tests.
    clients: BTreeMap<NodeId, InstanceClient>,
}

impl std::fmt::Debug for KubeRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeRouter")
            .field("members", &self.members)
            .finish_non_exhaustive()
    }
}

impl KubeRouter {
    pub fn new(
        pods: Api<Pod>,
        members: Vec<NodeId>,
        clients: BTreeMap<NodeId, InstanceClient>,
    ) -> KubeRouter {
        KubeRouter {
            pods,
            members,
            clients,
        }
    }

    /// Relabels the pods for `primary`: the others `replica`, then `primary`.
    pub async fn relabel(&self, primary: &NodeId) -> Result<(), String> {
        for member in self.members.iter().filter(|m| *m != primary) {
            // A missing replica pod (being recreated) gets its label when it comes back.
            label_role(&self.pods, member.as_str(), ROLE_REPLICA)
                .await
                .map_err(|error| format!("cannot label pod {member} {ROLE_REPLICA}: {error}"))?;
        }
        match label_role(&self.pods, primary.as_str(), ROLE_PRIMARY).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("pod {primary} does not exist")),
            Err(error) => Err(format!(
                "cannot label pod {primary} {ROLE_PRIMARY}: {error}"
            )),
        }
    }
}

impl Router for KubeRouter {
    async fn route(&self, primary: &Member, epoch: u64) -> Result<(), String> {
        self.relabel(&primary.name).await?;
        let Some(client) = self.clients.get(&primary.name) else {
            return Ok(());
        };
        match client.is_primary().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "{} is labelled primary but does not answer /primary yet (epoch {epoch})",
                primary.name
            )),
            Err(error) => Err(error.to_string()),
        }
    }
}
