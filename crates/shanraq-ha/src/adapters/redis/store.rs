//! Where the Redis driver persists `RedisHaState`: a trait for the Kubernetes status writer and
//! a JSON file for the local drill, replaced atomically (temp file, fsync, rename) so a crash
//! never leaves half a state.

use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;

use crate::adapters::state_store::StateStoreError;
use crate::redis::RedisHaState;

/// `save` must be durable when it returns: the driver executes a step's commands only after.
pub trait RedisStateStore: Send + Sync + 'static {
    fn load(&self) -> impl Future<Output = Result<Option<RedisHaState>, StateStoreError>> + Send;
    fn save(
        &self,
        state: &RedisHaState,
    ) -> impl Future<Output = Result<(), StateStoreError>> + Send;
}

#[derive(Clone, Debug)]
pub struct FileRedisStateStore {
    path: PathBuf,
}

impl FileRedisStateStore {
    pub fn new(path: impl Into<PathBuf>) -> FileRedisStateStore {
        FileRedisStateStore { path: path.into() }
    }
}

impl RedisStateStore for FileRedisStateStore {
    async fn load(&self) -> Result<Option<RedisHaState>, StateStoreError> {
        let bytes = match tokio::fs::read(&self.path).await {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateStoreError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateStoreError::Parse {
                path: self.path.clone(),
                source,
            })
    }

    async fn save(&self, state: &RedisHaState) -> Result<(), StateStoreError> {
        let path = self.path.clone();
        let bytes = serde_json::to_vec_pretty(state).map_err(|source| StateStoreError::Parse {
            path: path.clone(),
            source,
        })?;
        tokio::task::spawn_blocking(move || {
            let temp = path.with_extension("tmp");
            let write = |target: &PathBuf| -> std::io::Result<()> {
                let mut file = std::fs::File::create(target)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
                std::fs::rename(target, &path)
            };
            write(&temp).map_err(|source| StateStoreError::Write {
                path: path.clone(),
                source,
            })
        })
        .await
        .map_err(|error| StateStoreError::Other(format!("state writer task failed: {error}")))?
    }
}

/// Keeps the state in memory only (tests, and a drill that needs no restart).
#[derive(Clone, Debug, Default)]
pub struct MemoryRedisStateStore {
    state: std::sync::Arc<std::sync::Mutex<Option<RedisHaState>>>,
}

impl RedisStateStore for MemoryRedisStateStore {
    async fn load(&self) -> Result<Option<RedisHaState>, StateStoreError> {
        Ok(self.state.lock().ok().and_then(|s| s.clone()))
    }

    async fn save(&self, state: &RedisHaState) -> Result<(), StateStoreError> {
        let mut slot = self
            .state
            .lock()
            .map_err(|_| StateStoreError::Other("state lock poisoned".to_owned()))?;
        *slot = Some(state.clone());
        Ok(())
    }
}
