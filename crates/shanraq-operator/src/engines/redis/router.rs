//! `KubeRedisRouter`: writes go where the `-redis-master` Service sends them, and it selects on
//! the pods' `shanraq.org/role` label. Routing relabels every other node `replica` first, then
//! the new master `master`, so the Service never has two endpoints. HAProxy's `redis-master`
//! backend follows the nodes' own answer (`role:master`), which the promotion already changed.

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use shanraq_api::names::ROLE_MASTER;
use shanraq_ha::adapters::redis::RedisRouter;
use shanraq_ha::adapters::route::RouteError;
use shanraq_ha::redis::{NodeId, RedisMember};

use crate::engines::role_label::relabel;

#[derive(Clone)]
pub struct KubeRedisRouter {
    pods: Api<Pod>,
    members: Vec<NodeId>,
}

impl std::fmt::Debug for KubeRedisRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeRedisRouter")
            .field("members", &self.members)
            .finish_non_exhaustive()
    }
}

impl KubeRedisRouter {
    pub fn new(pods: Api<Pod>, members: Vec<NodeId>) -> KubeRedisRouter {
        KubeRedisRouter { pods, members }
    }

    pub async fn relabel(&self, master: &NodeId) -> Result<(), RouteError> {
        relabel(&self.pods, &self.members, master, ROLE_MASTER).await
    }
}

impl RedisRouter for KubeRedisRouter {
    async fn route(&self, master: &RedisMember, _epoch: u64) -> Result<(), RouteError> {
        self.relabel(&master.name).await
    }
}
