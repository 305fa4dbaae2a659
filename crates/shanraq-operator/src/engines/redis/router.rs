//! `KubeRedisRouter`: writes go where the `-redis-master` Service sends them, and it selects on
//! the pods' `shanraq.org/role` label. Routing relabels every other node `replica` first, then
//! the new master `master`, so the Service never has two endpoints. HAProxy's `redis-master`
//! backend follows the nodes' own answer (`role:master`), which the promotion already changed.

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use shanraq_api::names::{ROLE_MASTER, ROLE_REPLICA};
use shanraq_ha::adapters::redis::RedisRouter;
use shanraq_ha::redis::{NodeId, RedisMember};

use crate::engines::postgres::router::label_role;

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

    pub async fn relabel(&self, master: &NodeId) -> Result<(), String> {
        for member in self.members.iter().filter(|m| *m != master) {
            label_role(&self.pods, member.as_str(), ROLE_REPLICA)
                .await
                .map_err(|error| format!("cannot label pod {member} {ROLE_REPLICA}: {error}"))?;
        }
        match label_role(&self.pods, master.as_str(), ROLE_MASTER).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("pod {master} does not exist")),
            Err(error) => Err(format!("cannot label pod {master} {ROLE_MASTER}: {error}")),
        }
    }
}

impl RedisRouter for KubeRedisRouter {
    async fn route(&self, master: &RedisMember, _epoch: u64) -> Result<(), String> {
        self.relabel(&master.name).await
    }
}
