//! The fencing token, persisted beside the data dir so that it survives a restart of the
//! manager and a re-clone of the data dir: the highest epoch this instance was told about and
//! the engine that claimed it. An instance refuses commands from an older epoch, or from the
//! same epoch claimed by another engine (`shanraq_ha::wire::admits`), and answers `/primary`
//! only while it holds the epoch it was promoted at.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::InstanceError;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    /// The highest epoch this instance has been told about.
    pub epoch: u64,
    /// The engine that claimed `epoch`; `None` until a command that names its owner arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The epoch at which this instance was made primary (bootstrap or promote); none once
    /// demoted.
    pub primary_epoch: Option<u64>,
    /// Fenced by the operator: stays down until demoted.
    pub fenced: bool,
}

impl PersistedState {
    /// True when the instance holds the primary role for its current epoch.
    pub fn holds_primary_epoch(&self) -> bool {
        self.primary_epoch == Some(self.epoch) && !self.fenced
    }
}

/// The file that holds [`PersistedState`]; written atomically (temp file + rename + fsync).
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: PathBuf) -> StateFile {
        StateFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored state, or `None` when the file does not exist yet.
    pub fn load(&self) -> Result<Option<PersistedState>, InstanceError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                serde_json::from_str(&text)
                    .map(Some)
                    .map_err(|error| InstanceError::State {
                        path: self.path.display().to_string(),
                        reason: error.to_string(),
                    })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(InstanceError::io(
                format!("reading {}", self.path.display()),
                source,
            )),
        }
    }

    pub fn store(&self, state: &PersistedState) -> Result<(), InstanceError> {
        use std::io::Write;
        let text = serde_json::to_string_pretty(state).map_err(|error| InstanceError::State {
            path: self.path.display().to_string(),
            reason: error.to_string(),
        })?;
        let temp = self.path.with_extension("tmp");
        let mut file = std::fs::File::create(&temp)
            .map_err(|source| InstanceError::io(format!("creating {}", temp.display()), source))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| InstanceError::io(format!("writing {}", temp.display()), source))?;
        std::fs::rename(&temp, &self.path).map_err(|source| {
            InstanceError::io(format!("renaming to {}", self.path.display()), source)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_missing_file_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = StateFile::new(dir.path().join("state.json"));
        assert_eq!(file.load().expect("load"), None);
        let state = PersistedState {
            epoch: 7,
            owner: Some("operator-a".to_owned()),
            primary_epoch: Some(7),
            fenced: false,
        };
        file.store(&state).expect("store");
        assert_eq!(file.load().expect("load"), Some(state.clone()));
        assert!(state.holds_primary_epoch());
    }

    #[test]
    fn a_state_written_before_owners_were_recorded_still_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        std::fs::write(
            &path,
            r#"{"epoch": 4, "primary_epoch": 4, "fenced": false}"#,
        )
        .expect("write");
        let loaded = StateFile::new(path).load().expect("load").expect("state");
        assert_eq!((loaded.epoch, loaded.owner), (4, None));
    }

    #[test]
    fn a_later_epoch_or_a_fence_drops_the_primary_claim() {
        let mut state = PersistedState {
            epoch: 3,
            primary_epoch: Some(3),
            ..PersistedState::default()
        };
        state.epoch = 4;
        assert!(!state.holds_primary_epoch());
        state.primary_epoch = Some(4);
        state.fenced = true;
        assert!(!state.holds_primary_epoch());
    }
}
