//! The stores write atomically, read back what they wrote, and refuse a write computed from a
//! revision they no longer hold: the compare-and-swap that makes an epoch a claim.

use crate::driver::state_store::{
    FileStateStore, MemoryStateStore, StateStore, StateStoreError, Stored,
};
use crate::postgres::{HaState, NodeId};

fn claimed(epoch: u64, owner: &str) -> HaState {
    HaState {
        owner: Some(owner.to_owned()),
        ..HaState::with_primary(NodeId::new("pg-0"), epoch)
    }
}

#[tokio::test]
async fn file_store_round_trips_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FileStateStore::new(dir.path().join("ha.json"));
    assert_eq!(
        StateStore::<HaState>::load(&store).await.expect("load"),
        None,
        "no file yet means no state"
    );
    let state = HaState::with_primary(NodeId::new("pg-0"), 7);
    assert_eq!(store.compare_and_swap(0, &state).await.expect("save"), 1);
    let mut next = state.clone();
    next.epoch = 8;
    assert_eq!(
        store.compare_and_swap(1, &next).await.expect("save again"),
        2
    );
    assert_eq!(
        store.load().await.expect("load"),
        Some(Stored {
            revision: 2,
            state: next
        })
    );
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["ha.json", "ha.json.lock"]);
}

#[tokio::test]
async fn a_write_from_a_stale_revision_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ha.json");
    // Two engines read the same state; one claims the next epoch first.
    let a = FileStateStore::new(&path);
    let b = FileStateStore::new(&path);
    a.compare_and_swap(0, &claimed(1, "engine-a"))
        .await
        .expect("first state");
    b.compare_and_swap(1, &claimed(2, "engine-b"))
        .await
        .expect("engine-b claims epoch 2");
    let refused = a
        .compare_and_swap(1, &claimed(2, "engine-a"))
        .await
        .expect_err("engine-a never saw revision 2");
    match &refused {
        StateStoreError::Conflict {
            expected: 1,
            found: 2,
            epoch: 2,
            owner: Some(owner),
        } if owner == "engine-b" => {}
        other => panic!("expected a conflict naming engine-b, got {other:?}"),
    }
    let kept: Stored<HaState> = a.load().await.expect("load").expect("stored");
    assert_eq!(
        kept.state.owner.as_deref(),
        Some("engine-b"),
        "nothing overwritten"
    );

    let memory = MemoryStateStore::<HaState>::default();
    memory
        .compare_and_swap(0, &claimed(1, "engine-a"))
        .await
        .expect("first");
    assert!(matches!(
        memory.compare_and_swap(0, &claimed(1, "engine-b")).await,
        Err(StateStoreError::Conflict { found: 1, .. })
    ));
}

#[tokio::test]
async fn concurrent_claims_of_one_revision_let_exactly_one_win() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ha.json");
    FileStateStore::new(&path)
        .compare_and_swap(0, &claimed(1, "engine-0"))
        .await
        .expect("first state");
    let attempts: Vec<_> = (0..8)
        .map(|i| {
            let store = FileStateStore::new(&path);
            tokio::spawn(async move {
                store
                    .compare_and_swap(1, &claimed(2, &format!("engine-{i}")))
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut won = 0;
    for attempt in attempts {
        won += usize::from(attempt.await.expect("joined"));
    }
    assert_eq!(
        won, 1,
        "one claim of revision 1 wins, the others are refused"
    );
}

#[tokio::test]
async fn a_state_written_before_revisions_existed_reads_as_revision_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ha.json");
    let old =
        serde_json::to_string(&HaState::with_primary(NodeId::new("pg-0"), 4)).expect("serialises");
    std::fs::write(&path, old).expect("write");
    let store = FileStateStore::new(&path);
    let loaded: Stored<HaState> = store.load().await.expect("load").expect("stored");
    assert_eq!(
        (loaded.revision, loaded.state.epoch, loaded.state.owner),
        (0, 4, None)
    );
    store
        .compare_and_swap(0, &claimed(4, "engine-a"))
        .await
        .expect("claimed from revision 0");
}

#[tokio::test]
async fn corrupt_file_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ha.json");
    std::fs::write(&path, b"{not json").expect("write");
    let error = StateStore::<HaState>::load(&FileStateStore::new(&path))
        .await
        .expect_err("corrupt");
    assert!(matches!(error, StateStoreError::Parse { .. }));
    assert!(error.to_string().contains("ha.json"), "{error}");
}
