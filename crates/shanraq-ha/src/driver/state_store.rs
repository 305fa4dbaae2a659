//! Where a driver persists its engine's state, for every engine alike: a compare-and-swap
//! store. Each write names the revision it was computed from and succeeds only if the store
//! still holds it, so an engine that was paused, partitioned or simply slower than another can
//! never overwrite a state it has not seen: its write is refused as a [`StateStoreError::Conflict`]
//! and it must reload. That is how an epoch is *claimed* (ARCHITECTURE, fencing tokens): the
//! bump is written by compare-and-swap before any command carries it.
//!
//! Implementations: [`FileStateStore`] (the local drill; a lock file serialises writers across
//! processes, and each write is atomic: temp file, fsync, rename, fsync of the directory),
//! [`MemoryStateStore`] (tests), and the operator's status store (resourceVersion precondition).

use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use crate::claim::Claimed;

/// What a store holds: a state and its revision (0 when nothing was ever written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored<T> {
    pub revision: u64,
    pub state: T,
}

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
    /// Someone else wrote since this engine last read or wrote: its view is stale.
    #[error(
        "the HA state moved on: it holds revision {found} (epoch {epoch}{}), this engine expected revision {expected}",
        owner.as_deref().map(|o| format!(" claimed by {o}")).unwrap_or_default()
    )]
    Conflict {
        expected: u64,
        found: u64,
        epoch: u64,
        owner: Option<String>,
    },
    /// For stores other than files (a Kubernetes API error, say).
    #[error("cannot persist HA state: {0}")]
    Other(String),
}

/// Persists an engine's state. `compare_and_swap` must be durable when it returns: the driver
/// executes the commands of a step only after the state that decided them is saved.
pub trait StateStore<T: Claimed>: Send + Sync + 'static {
    fn load(&self) -> impl Future<Output = Result<Option<Stored<T>>, StateStoreError>> + Send;

    /// Writes `state` as revision `expected + 1` if the store still holds revision `expected`
    /// (0: nothing stored yet); returns the new revision, or `Conflict` with what it holds.
    fn compare_and_swap(
        &self,
        expected: u64,
        state: &T,
    ) -> impl Future<Output = Result<u64, StateStoreError>> + Send;
}

/// The stored form of a state: its fields, plus the revision. A state written before
/// revisions existed reads as revision 0.
#[derive(Serialize, Deserialize)]
struct Document<T> {
    #[serde(default)]
    revision: u64,
    #[serde(flatten)]
    state: T,
}

/// The text a store keeps for `state` at `revision` (the file's contents, or the status
/// field's value in Kubernetes).
pub fn encode<T: Claimed>(revision: u64, state: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(&Document {
        revision,
        state: state.clone(),
    })
}

/// The state and revision `encode` wrote.
pub fn decode<T: Claimed>(text: &str) -> Result<Stored<T>, serde_json::Error> {
    let document: Document<T> = serde_json::from_str(text)?;
    Ok(Stored {
        revision: document.revision,
        state: document.state,
    })
}

/// The refusal of a write computed from `expected` when the store holds `found`.
pub fn conflict<T: Claimed>(expected: u64, found: Option<&Stored<T>>) -> StateStoreError {
    StateStoreError::Conflict {
        expected,
        found: found.map_or(0, |stored| stored.revision),
        epoch: found.map_or(0, |stored| stored.state.epoch()),
        owner: found.and_then(|stored| stored.state.owner().map(str::to_owned)),
    }
}

/// A JSON file, replaced atomically on every write. Writers in any process take an exclusive
/// lock on `<file>.lock` around the read-compare-write, so two engines on one machine (the
/// local drill's stale-engine tests) serialise their claims.
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

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(suffix);
        self.path.with_file_name(name)
    }

    fn read<T: Claimed>(path: &Path) -> Result<Option<Stored<T>>, StateStoreError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateStoreError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        decode(&text)
            .map(Some)
            .map_err(|source| StateStoreError::Parse {
                path: path.to_path_buf(),
                source,
            })
    }

    fn swap<T: Claimed>(&self, expected: u64, state: &T) -> Result<u64, StateStoreError> {
        let lock_path = self.sibling(".lock");
        let write_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateStoreError::Write { path, source }
        };
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(write_error(&lock_path))?;
        lock.lock().map_err(write_error(&lock_path))?;
        let found = Self::read::<T>(&self.path)?;
        let revision = found.as_ref().map_or(0, |stored| stored.revision);
        if revision != expected {
            return Err(conflict(expected, found.as_ref()));
        }
        let next = expected + 1;
        let text = encode(next, state).map_err(|source| StateStoreError::Parse {
            path: self.path.clone(),
            source,
        })?;
        let temp = self.sibling(".tmp");
        let mut file = std::fs::File::create(&temp).map_err(write_error(&temp))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(write_error(&temp))?;
        drop(file);
        std::fs::rename(&temp, &self.path).map_err(write_error(&self.path))?;
        // The rename is durable once the directory is.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(write_error(dir))?;
        }
        Ok(next)
    }
}

impl<T: Claimed> StateStore<T> for FileStateStore {
    async fn load(&self) -> Result<Option<Stored<T>>, StateStoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || FileStateStore::read(&path))
            .await
            .map_err(|error| StateStoreError::Other(format!("state reader task failed: {error}")))?
    }

    async fn compare_and_swap(&self, expected: u64, state: &T) -> Result<u64, StateStoreError> {
        let store = self.clone();
        let state = state.clone();
        tokio::task::spawn_blocking(move || store.swap(expected, &state))
            .await
            .map_err(|error| StateStoreError::Other(format!("state writer task failed: {error}")))?
    }
}

/// Keeps the state in memory only (tests, and a drill that needs no restart). Clones share
/// one slot, so several engines can be pointed at one store.
#[derive(Clone, Debug)]
pub struct MemoryStateStore<T> {
    slot: Arc<Mutex<Option<Stored<T>>>>,
}

impl<T> Default for MemoryStateStore<T> {
    fn default() -> Self {
        MemoryStateStore {
            slot: Arc::new(Mutex::new(None)),
        }
    }
}

impl<T: Claimed> StateStore<T> for MemoryStateStore<T> {
    async fn load(&self) -> Result<Option<Stored<T>>, StateStoreError> {
        Ok(self
            .slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone())
    }

    async fn compare_and_swap(&self, expected: u64, state: &T) -> Result<u64, StateStoreError> {
        let mut slot = self
            .slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let revision = slot.as_ref().map_or(0, |stored| stored.revision);
        if revision != expected {
            return Err(conflict(expected, slot.as_ref()));
        }
        *slot = Some(Stored {
            revision: expected + 1,
            state: state.clone(),
        });
        Ok(expected + 1)
    }
}
