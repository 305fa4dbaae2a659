//! Where the driver persists `HaState`: a trait for the Kubernetes status writer and the
//! demo's local file, which is written atomically (temp file, fsync, rename) so a crash never
//! leaves half a state that would restart a failover from nothing.

use std::future::Future;
use std::path::{Path, PathBuf};

use crate::postgres::HaState;

#[derive(Debug, thiserror::Error)]
pub enum StateStoreError {
    #[error("cannot read HA state from {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write HA state to {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("HA state in {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// For stores other than files (a Kubernetes status conflict, say).
    #[error("cannot persist HA state: {0}")]
    Other(String),
}

/// Persists the engine's state. `save` must be durable when it returns: the driver executes
/// the commands of a step only after the state that decided them is saved.
pub trait StateStore: Send + Sync + 'static {
    fn load(&self) -> impl Future<Output = Result<Option<HaState>, StateStoreError>> + Send;
    fn save(&self, state: &HaState) -> impl Future<Output = Result<(), StateStoreError>> + Send;
}

/// A JSON file, replaced atomically on every save.
#[derive(Clone, Debug)]
pub struct FileStateStore {
    path: PathBuf,
}

impl FileStateStore {
    pub fn new(path: impl Into<PathBuf>) -> FileStateStore {
        FileStateStore { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn temp_path(&self) -> PathBuf {
        let mut name = self
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(".tmp");
        self.path.with_file_name(name)
    }
}

impl StateStore for FileStateStore {
    async fn load(&self) -> Result<Option<HaState>, StateStoreError> {
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

    async fn save(&self, state: &HaState) -> Result<(), StateStoreError> {
        use tokio::io::AsyncWriteExt;
        let json = serde_json::to_vec_pretty(state).map_err(|source| StateStoreError::Parse {
            path: self.path.clone(),
            source,
        })?;
        let temp = self.temp_path();
        let write_error = |source| StateStoreError::Write {
            path: temp.clone(),
            source,
        };
        let mut file = tokio::fs::File::create(&temp).await.map_err(write_error)?;
        file.write_all(&json).await.map_err(write_error)?;
        file.sync_all().await.map_err(write_error)?;
        drop(file);
        tokio::fs::rename(&temp, &self.path)
            .await
            .map_err(|source| StateStoreError::Write {
                path: self.path.clone(),
                source,
            })
    }
}
