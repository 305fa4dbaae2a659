//! `KubeRedisStateStore`: the Redis engine's state in `status.redis` of the ShanraqCluster,
//! written with a JSON merge patch carrying the last seen `resourceVersion` (a conflict re-reads
//! and retries, and refuses when the stored epoch is newer: another operator acted).

use std::sync::Mutex;

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use shanraq_api::ShanraqCluster;
use shanraq_ha::adapters::redis::RedisStateStore;
use shanraq_ha::adapters::state_store::StateStoreError;
use shanraq_ha::redis::RedisHaState;

use super::status_map::{parse_state, redis_patch};
use crate::ha::store::{CONFLICT_RETRIES, HA_FIELD_MANAGER};

pub struct KubeRedisStateStore {
    api: Api<ShanraqCluster>,
    name: String,
    resource_version: Mutex<Option<String>>,
}

impl std::fmt::Debug for KubeRedisStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeRedisStateStore")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl KubeRedisStateStore {
    pub fn new(api: Api<ShanraqCluster>, name: impl Into<String>) -> KubeRedisStateStore {
        KubeRedisStateStore {
            api,
            name: name.into(),
            resource_version: Mutex::new(None),
        }
    }

    fn remember(&self, version: Option<String>) {
        if let Ok(mut slot) = self.resource_version.lock() {
            *slot = version;
        }
    }

    fn remembered(&self) -> Option<String> {
        self.resource_version.lock().ok().and_then(|v| v.clone())
    }

    async fn read(&self) -> Result<(Option<String>, Option<RedisHaState>), StateStoreError> {
        let cluster = self.api.get(&self.name).await.map_err(|error| {
            StateStoreError::Other(format!("cannot read ShanraqCluster {}: {error}", self.name))
        })?;
        let text = cluster
            .status
            .as_ref()
            .and_then(|s| s.redis.as_ref())
            .and_then(|r| r.ha_state.as_deref());
        let state = parse_state(text).map_err(|error| {
            StateStoreError::Other(format!(
                "status.redis.haState of ShanraqCluster {} is not valid: {error}",
                self.name
            ))
        })?;
        Ok((cluster.metadata.resource_version, state))
    }
}

impl RedisStateStore for KubeRedisStateStore {
    async fn load(&self) -> Result<Option<RedisHaState>, StateStoreError> {
        let (version, state) = self.read().await?;
        self.remember(version);
        Ok(state)
    }

    async fn save(&self, state: &RedisHaState) -> Result<(), StateStoreError> {
        let redis = redis_patch(state).map_err(|error| {
            StateStoreError::Other(format!("cannot serialise the Redis HA state: {error}"))
        })?;
        let params = PatchParams {
            field_manager: Some(HA_FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let mut version = match self.remembered() {
            Some(version) => version,
            None => self.read().await?.0.unwrap_or_default(),
        };
        for _ in 0..=CONFLICT_RETRIES {
            let body = json!({
                "metadata": { "resourceVersion": version },
                "status": { "redis": redis },
            });
            match self
                .api
                .patch_status(&self.name, &params, &Patch::Merge(&body))
                .await
            {
                Ok(written) => {
                    self.remember(written.metadata.resource_version);
                    return Ok(());
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    let (fresh, stored) = self.read().await?;
                    let stored_epoch = stored.as_ref().map_or(0, |s| s.epoch);
                    if stored_epoch > state.epoch {
                        return Err(StateStoreError::Other(format!(
                            "ShanraqCluster {} holds Redis epoch {stored_epoch}, newer than this operator's {}: \
                             another operator acted",
                            self.name, state.epoch
                        )));
                    }
                    version = fresh.unwrap_or_default();
                }
                Err(error) => {
                    return Err(StateStoreError::Other(format!(
                        "cannot write status.redis of ShanraqCluster {}: {error}",
                        self.name
                    )));
                }
            }
        }
        Err(StateStoreError::Other(format!(
            "status.redis of ShanraqCluster {} kept conflicting after {CONFLICT_RETRIES} retries",
            self.name
        )))
    }
}
