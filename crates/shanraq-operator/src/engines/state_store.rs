//! `KubeStateStore`: every engine's persisted state lives in the ShanraqCluster's status, in
//! its own slot (`status.postgres`, `status.redis`): the full state as JSON in `haState`, with
//! its revision, beside the fields people read. Writes are compare-and-swap, as the engines'
//! fencing tokens need (`shanraq_ha::driver::state_store`):
//!
//! - every write is a JSON merge patch of `/status` carrying the `metadata.resourceVersion`
//!   last seen, so the API server refuses it (409) if anything at all changed in between;
//! - after a 409 the store re-reads the object. If the slot still holds the revision this
//!   engine expected, the conflict came from another writer of the status (the reconcile's
//!   conditions): it retries with the fresh resourceVersion, a bounded number of times. If the
//!   slot holds another revision, another engine wrote: the write is refused as a `Conflict`,
//!   and the driver stands down or resumes from what it holds.
//!
//! So a paused or partitioned operator that wakes up cannot overwrite a newer state, whatever
//! epoch it carries: it never saw the revision now stored.

use std::marker::PhantomData;
use std::sync::Mutex;

use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use shanraq_api::ShanraqCluster;
use shanraq_ha::driver::state_store::{
    Claimed, StateStore, StateStoreError, Stored, conflict, decode, encode,
};
use shanraq_ha::postgres::HaState;
use shanraq_ha::redis::RedisHaState;

/// The field manager of every HA write (status and pod labels), distinct from the reconcile's.
pub const HA_FIELD_MANAGER: &str = "shanraq-ha";

/// Writes retried after a resourceVersion conflict from another status writer.
pub const CONFLICT_RETRIES: usize = 5;

/// Where one engine's state lives in the status, and the readable fields beside it.
pub trait StatusSlot: Send + Sync + 'static {
    type State: Claimed;
    /// The key under `status`.
    const KEY: &'static str;
    /// `status.<KEY>.haState`, when present.
    fn stored(cluster: &ShanraqCluster) -> Option<&str>;
    /// The readable fields of `status.<KEY>` for `state` (without `haState`).
    fn readable(state: &Self::State) -> Result<Value, serde_json::Error>;
}

/// `status.postgres`.
#[derive(Debug)]
pub struct PostgresSlot;

impl StatusSlot for PostgresSlot {
    type State = HaState;
    const KEY: &'static str = "postgres";

    fn stored(cluster: &ShanraqCluster) -> Option<&str> {
        cluster
            .status
            .as_ref()?
            .postgres
            .as_ref()?
            .ha_state
            .as_deref()
    }

    fn readable(state: &HaState) -> Result<Value, serde_json::Error> {
        crate::engines::postgres::status_map::postgres_patch(state)
    }
}

/// `status.redis`.
#[derive(Debug)]
pub struct RedisSlot;

impl StatusSlot for RedisSlot {
    type State = RedisHaState;
    const KEY: &'static str = "redis";

    fn stored(cluster: &ShanraqCluster) -> Option<&str> {
        cluster.status.as_ref()?.redis.as_ref()?.ha_state.as_deref()
    }

    fn readable(state: &RedisHaState) -> Result<Value, serde_json::Error> {
        crate::engines::redis::status_map::redis_patch(state)
    }
}

/// The merge patch value of `status.<KEY>` for `state` at `revision`.
pub fn slot_patch<S: StatusSlot>(
    revision: u64,
    state: &S::State,
) -> Result<Value, serde_json::Error> {
    let mut value = S::readable(state)?;
    if let Some(fields) = value.as_object_mut() {
        fields.insert(
            "haState".to_owned(),
            Value::String(encode(revision, state)?),
        );
    }
    Ok(value)
}

/// What `status.<KEY>.haState` of `cluster` holds.
pub fn stored_state<S: StatusSlot>(
    cluster: &ShanraqCluster,
) -> Result<Option<Stored<S::State>>, serde_json::Error> {
    S::stored(cluster).map(decode).transpose()
}

pub struct KubeStateStore<S: StatusSlot> {
    api: Api<ShanraqCluster>,
    name: String,
    resource_version: Mutex<Option<String>>,
    slot: PhantomData<S>,
}

impl<S: StatusSlot> std::fmt::Debug for KubeStateStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStateStore")
            .field("name", &self.name)
            .field("slot", &S::KEY)
            .finish_non_exhaustive()
    }
}

impl<S: StatusSlot> KubeStateStore<S> {
    pub fn new(api: Api<ShanraqCluster>, name: impl Into<String>) -> KubeStateStore<S> {
        KubeStateStore {
            api,
            name: name.into(),
            resource_version: Mutex::new(None),
            slot: PhantomData,
        }
    }

    fn remember(&self, version: Option<String>) {
        *self
            .resource_version
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = version;
    }

    fn remembered(&self) -> Option<String> {
        self.resource_version
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads the cluster from the API server (a quorum read): its resourceVersion and what
    /// the slot holds.
    async fn read(&self) -> Result<(Option<String>, Option<Stored<S::State>>), StateStoreError> {
        let cluster = self.api.get(&self.name).await.map_err(|error| {
            StateStoreError::Other(format!("cannot read ShanraqCluster {}: {error}", self.name))
        })?;
        let stored = stored_state::<S>(&cluster).map_err(|error| {
            StateStoreError::Other(format!(
                "status.{}.haState of ShanraqCluster {} is not valid: {error}",
                S::KEY,
                self.name
            ))
        })?;
        Ok((cluster.metadata.resource_version, stored))
    }
}

impl<S: StatusSlot> StateStore<S::State> for KubeStateStore<S> {
    async fn load(&self) -> Result<Option<Stored<S::State>>, StateStoreError> {
        let (version, stored) = self.read().await?;
        self.remember(version);
        Ok(stored)
    }

    async fn compare_and_swap(
        &self,
        expected: u64,
        state: &S::State,
    ) -> Result<u64, StateStoreError> {
        let revision = expected + 1;
        let fields = slot_patch::<S>(revision, state).map_err(|error| {
            StateStoreError::Other(format!("cannot serialise the HA state: {error}"))
        })?;
        let params = PatchParams {
            field_manager: Some(HA_FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let mut version = match self.remembered() {
            Some(version) => version,
            None => {
                let (version, stored) = self.read().await?;
                let found = stored.as_ref().map_or(0, |s| s.revision);
                if found != expected {
                    return Err(conflict(expected, stored.as_ref()));
                }
                version.unwrap_or_default()
            }
        };
        for _ in 0..=CONFLICT_RETRIES {
            let body = json!({
                "metadata": { "resourceVersion": version },
                "status": { S::KEY: fields },
            });
            match self
                .api
                .patch_status(&self.name, &params, &Patch::Merge(&body))
                .await
            {
                Ok(written) => {
                    self.remember(written.metadata.resource_version);
                    return Ok(revision);
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    let (fresh, stored) = self.read().await?;
                    let found = stored.as_ref().map_or(0, |s| s.revision);
                    if found != expected {
                        self.remember(fresh);
                        return Err(conflict(expected, stored.as_ref()));
                    }
                    tracing::debug!(cluster = %self.name, slot = S::KEY, "status conflict; retrying with a fresh resourceVersion");
                    version = fresh.unwrap_or_default();
                }
                Err(error) => {
                    return Err(StateStoreError::Other(format!(
                        "cannot write status.{} of ShanraqCluster {}: {error}",
                        S::KEY,
                        self.name
                    )));
                }
            }
        }
        Err(StateStoreError::Other(format!(
            "status.{} of ShanraqCluster {} kept changing: {} conflicts in a row",
            S::KEY,
            self.name,
            CONFLICT_RETRIES + 1
        )))
    }
}
