//! `KubeStateStore`: the engine's state lives in the ShanraqCluster's `status.postgres`.
//! Every save is a JSON merge patch of `/status` that carries the `metadata.resourceVersion`
//! last seen, so the API server refuses it (409) if anything changed in between. After a
//! conflict the store re-reads the object: if another writer already holds a newer epoch the
//! save fails (the driver then reports the step's commands as not executed, so two operators
//! never both act); otherwise it retries a bounded number of times with the fresh version.
//! Once a newer epoch was seen, every later save of an older one fails without a request: the
//! fresh resourceVersion would otherwise let the next save overwrite the newer state.

use std::sync::Mutex;

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use shanraq_api::ShanraqCluster;
use shanraq_ha::adapters::state_store::{StateStore, StateStoreError};
use shanraq_ha::postgres::HaState;

use super::status_map::{parse_state, postgres_patch};

/// The field manager of every HA write (status and pod labels), distinct from the reconcile's.
pub const HA_FIELD_MANAGER: &str = "shanraq-ha";

/// Saves retried after a resourceVersion conflict before giving up.
pub const CONFLICT_RETRIES: usize = 5;

pub struct KubeStateStore {
    api: Api<ShanraqCluster>,
    name: String,
    resource_version: Mutex<Option<String>>,
    /// The highest epoch another writer was seen to hold.
    superseded_by: Mutex<Option<u64>>,
}

impl std::fmt::Debug for KubeStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStateStore")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl KubeStateStore {
    pub fn new(api: Api<ShanraqCluster>, name: impl Into<String>) -> KubeStateStore {
        KubeStateStore {
            api,
            name: name.into(),
            resource_version: Mutex::new(None),
            superseded_by: Mutex::new(None),
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

    fn superseded(&self, epoch: u64) -> Option<u64> {
        let newer = self.superseded_by.lock().ok().and_then(|s| *s)?;
        (newer > epoch).then_some(newer)
    }

    fn refused(&self, stored_epoch: u64, epoch: u64) -> StateStoreError {
        StateStoreError::Other(format!(
            "ShanraqCluster {} holds HA epoch {stored_epoch}, newer than this operator's {epoch}: another operator acted",
            self.name
        ))
    }

    /// Reads the cluster: its resourceVersion and the state it holds.
    async fn read(&self) -> Result<(Option<String>, Option<HaState>), StateStoreError> {
        let cluster = self.api.get(&self.name).await.map_err(|error| {
            StateStoreError::Other(format!("cannot read ShanraqCluster {}: {error}", self.name))
        })?;
        let text = cluster
            .status
            .as_ref()
            .and_then(|s| s.postgres.as_ref())
            .and_then(|p| p.ha_state.as_deref());
        let state = parse_state(text).map_err(|error| {
            StateStoreError::Other(format!(
                "status.postgres.haState of ShanraqCluster {} is not valid: {error}",
                self.name
            ))
        })?;
        Ok((cluster.metadata.resource_version, state))
    }
}

impl StateStore for KubeStateStore {
    async fn load(&self) -> Result<Option<HaState>, StateStoreError> {
        let (version, state) = self.read().await?;
        self.remember(version);
        Ok(state)
    }

    async fn save(&self, state: &HaState) -> Result<(), StateStoreError> {
        if let Some(newer) = self.superseded(state.epoch) {
            return Err(self.refused(newer, state.epoch));
        }
        let postgres = postgres_patch(state).map_err(|error| {
            StateStoreError::Other(format!("cannot serialise the HA state: {error}"))
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
                "status": { "postgres": postgres },
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
                        if let Ok(mut superseded) = self.superseded_by.lock() {
                            *superseded =
                                Some(superseded.map_or(stored_epoch, |e| e.max(stored_epoch)));
                        }
                        return Err(self.refused(stored_epoch, state.epoch));
                    }
                    tracing::debug!(cluster = %self.name, "status conflict; retrying with a fresh resourceVersion");
                    version = fresh.unwrap_or_default();
                }
                Err(error) => {
                    return Err(StateStoreError::Other(format!(
                        "cannot write status.postgres of ShanraqCluster {}: {error}",
                        self.name
                    )));
                }
            }
        }
        Err(StateStoreError::Other(format!(
            "status.postgres of ShanraqCluster {} kept changing: {} conflicts in a row",
            self.name,
            CONFLICT_RETRIES + 1
        )))
    }
}
