//! The file store writes atomically and reads back what it wrote.

use crate::adapters::state_store::{FileStateStore, StateStore, StateStoreError};
use crate::postgres::{HaState, NodeId};

#[tokio::test]
async fn file_store_round_trips_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FileStateStore::new(dir.path().join("ha.json"));
    assert_eq!(
        store.load().await.expect("load"),
        None,
        "no file yet means no state"
    );
    let state = HaState::with_primary(NodeId::new("pg-0"), 7);
    store.save(&state).await.expect("save");
    let mut next = state.clone();
    next.epoch = 8;
    store.save(&next).await.expect("save again");
    assert_eq!(store.load().await.expect("load"), Some(next));
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("ha.json")]);
}

#[tokio::test]
async fn corrupt_file_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ha.json");
    std::fs::write(&path, b"{not json").expect("write");
    let error = FileStateStore::new(&path)
        .load()
        .await
        .expect_err("corrupt");
    assert!(matches!(error, StateStoreError::Parse { .. }));
    assert!(error.to_string().contains("ha.json"), "{error}");
}
