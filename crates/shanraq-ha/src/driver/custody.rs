//! A driver's custody of its engine's persisted state: the one place where an engine proves,
//! right before it acts, that it still may. Every driver (PostgreSQL's, Redis's) goes through
//! it before executing a step's commands:
//!
//! 1. its authority holds (in Kubernetes, the leader Lease with a margin, on a monotonic clock;
//!    a lease says a process *was* leader, so it is checked at the point of action);
//! 2. the state that decided the commands is written by compare-and-swap against the revision
//!    the engine last read or wrote (a new epoch is *claimed* this way), or, when the step did
//!    not change the state, the store is read back and must still hold that revision.
//!
//! A refused write or a moved store means another engine acted. The custody re-reads the
//! store: a state claimed by another owner makes this engine stand down for good
//! ([`Lapse::Superseded`]); a state still its own (the same identity wrote it, from a restarted
//! task) is handed back to resume from ([`Lapse::Resume`]). Nothing of the step is executed in
//! either case.

use std::sync::Arc;

use super::state_store::{Claimed, StateStore, StateStoreError, Stored};

/// Whether this process may act right now. Checked before every round of commands.
pub trait Authority: Send + Sync + std::fmt::Debug + 'static {
    /// `Err` with the reason when it may not (leadership lost or about to be).
    fn check(&self) -> Result<(), Denied>;
}

/// Why an authority refused: its own error, whatever the authority is.
pub type Denied = Box<dyn std::error::Error + Send + Sync>;

/// Always allowed: the local drill and tests, where the store alone arbitrates.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unconditional;

impl Authority for Unconditional {
    fn check(&self) -> Result<(), Denied> {
        Ok(())
    }
}

/// Why a driver may not execute a step's commands.
#[derive(Debug)]
pub enum Lapse<T> {
    /// Another engine claimed the state (a higher epoch, or the same epoch as another owner):
    /// this engine stops acting.
    Superseded { epoch: u64, owner: Option<String> },
    /// The store moved on but still holds this engine's own claim: resume from it.
    Resume(T),
    /// The process lost its authority (its leadership).
    Unauthorized(String),
    /// The store could not be read or written; nothing is known to have changed.
    Store(StateStoreError),
}

impl<T> std::fmt::Display for Lapse<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lapse::Superseded { epoch, owner } => write!(
                f,
                "superseded: the HA state holds epoch {epoch} claimed by {}",
                owner.as_deref().unwrap_or("an unnamed engine")
            ),
            Lapse::Resume(_) => f.write_str("the HA state moved on; resuming from it"),
            Lapse::Unauthorized(reason) => write!(f, "not authorised to act: {reason}"),
            Lapse::Store(error) => write!(f, "{error}"),
        }
    }
}

/// The driver's hold on the store.
pub struct Custody<T: Claimed, S: StateStore<T>> {
    store: S,
    identity: String,
    authority: Arc<dyn Authority>,
    /// The revision last read or written.
    revision: u64,
    /// The state at that revision, when this driver has one.
    persisted: Option<T>,
}

impl<T: Claimed, S: StateStore<T>> std::fmt::Debug for Custody<T, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Custody")
            .field("identity", &self.identity)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

impl<T: Claimed, S: StateStore<T>> Custody<T, S> {
    /// Reads the store; returns the custody and the state found, if any.
    pub async fn open(
        store: S,
        identity: impl Into<String>,
        authority: Arc<dyn Authority>,
    ) -> Result<(Custody<T, S>, Option<T>), StateStoreError> {
        let loaded = store.load().await?;
        let (revision, persisted) = match loaded {
            Some(Stored { revision, state }) => (revision, Some(state)),
            None => (0, None),
        };
        let custody = Custody {
            store,
            identity: identity.into(),
            authority,
            revision,
            persisted: persisted.clone(),
        };
        Ok((custody, persisted))
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The last state this driver read or wrote.
    pub fn persisted(&self) -> Option<&T> {
        self.persisted.as_ref()
    }

    /// Makes the engine's `state` safe to act on before a step's commands run: the authority
    /// holds, and the store holds `state` (written now by compare-and-swap when it changed,
    /// read back when `acting` on an unchanged one). `Ok(true)` when it wrote.
    pub async fn secure(&mut self, state: &T, acting: bool) -> Result<bool, Lapse<T>> {
        let changed = self.persisted.as_ref() != Some(state);
        if !changed && !acting {
            return Ok(false);
        }
        self.authority
            .check()
            .map_err(|denied| Lapse::Unauthorized(denied.to_string()))?;
        if changed {
            return match self.store.compare_and_swap(self.revision, state).await {
                Ok(revision) => {
                    self.revision = revision;
                    self.persisted = Some(state.clone());
                    Ok(true)
                }
                Err(StateStoreError::Conflict { .. }) => Err(self.reread().await),
                Err(error) => Err(Lapse::Store(error)),
            };
        }
        self.confirm().await.map(|()| false)
    }

    /// After a member was seen holding a newer claim than the engine's: re-reads the store.
    /// `Ok` when it still holds this driver's revision (the member's epoch came from outside
    /// any claim, a reset store say: the engine goes on and its next epoch passes it).
    pub async fn confirm(&mut self) -> Result<(), Lapse<T>> {
        match self.store.load().await {
            Ok(found) if found.as_ref().map_or(0, |s| s.revision) == self.revision => Ok(()),
            Ok(_) => Err(self.reread().await),
            Err(error) => Err(Lapse::Store(error)),
        }
    }

    /// The store moved on: whose is it now?
    async fn reread(&mut self) -> Lapse<T> {
        let found = match self.store.load().await {
            Ok(found) => found,
            Err(error) => return Lapse::Store(error),
        };
        let Some(Stored { revision, state }) = found else {
            return Lapse::Store(StateStoreError::Other(
                "the HA state disappeared from the store".to_owned(),
            ));
        };
        if state.owner() == Some(self.identity.as_str()) {
            self.revision = revision;
            self.persisted = Some(state.clone());
            Lapse::Resume(state)
        } else {
            Lapse::Superseded {
                epoch: state.epoch(),
                owner: state.owner().map(str::to_owned),
            }
        }
    }
}
