//! `KubeRouter`: writes go where the `-rw` Service sends them, and it selects on the pods'
//! `shanraq.org/role` label. Routing relabels every other member `replica` first, then the new
//! primary `primary` (so the Service never selects two primaries), and is confirmed only once
//! the new primary itself answers `/primary` (HAProxy checks the same endpoint).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use shanraq_api::names::ROLE_PRIMARY;
use shanraq_ha::adapters::driver::Router;
use shanraq_ha::adapters::instance_client::InstanceClient;
use shanraq_ha::adapters::route::RouteError;
use shanraq_ha::postgres::{Member, NodeId};

use crate::engines::role_label::relabel;

#[derive(Clone, Debug)]
pub struct KubeRouter {
    pods: Api<Pod>,
    /// Every member, in order.
    members: Vec<NodeId>,
    /// Instance-manager clients for the `/primary` confirmation; none in label-only tests.
    clients: BTreeMap<NodeId, InstanceClient>,
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
    pub async fn relabel(&self, primary: &NodeId) -> Result<(), RouteError> {
        relabel(&self.pods, &self.members, primary, ROLE_PRIMARY).await
    }
}

impl Router for KubeRouter {
    async fn route(&self, primary: &Member, epoch: u64) -> Result<(), RouteError> {
        self.relabel(&primary.name).await?;
        let Some(client) = self.clients.get(&primary.name) else {
            return Ok(());
        };
        match client.is_primary().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(RouteError::NotConfirmed {
                member: primary.name.clone(),
                epoch,
                detail: ": it is labelled primary",
            }),
            Err(error) => Err(RouteError::Check {
                member: primary.name.clone(),
                source: Box::new(error),
            }),
        }
    }
}
