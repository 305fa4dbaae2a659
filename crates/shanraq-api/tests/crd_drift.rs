//! `crds/` holds exactly what `shanraq crdgen` prints. Regenerate with
//! `SHANRAQ_UPDATE_GOLDEN=1 cargo test -p shanraq-api --test crd_drift` and review the diff.

use std::path::PathBuf;

use shanraq_api::crd::{BACKUP_CRD_FILE, CRD_FILE, backup_crd_yaml, crd_yaml};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn checked_in_crd_matches_the_types() {
    let generated = crd_yaml().expect("CRD serialises");
    let path = repo_root().join(CRD_FILE);
    if std::env::var_os("SHANRAQ_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &generated).expect("write CRD");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{CRD_FILE} is out of date with the API types: run `shanraq crdgen > {CRD_FILE}` (or SHANRAQ_UPDATE_GOLDEN=1 cargo test -p shanraq-api --test crd_drift) and review the diff"
    );
}

#[test]
fn checked_in_backup_crd_matches_the_types() {
    let generated = backup_crd_yaml().expect("CRD serialises");
    let path = repo_root().join(BACKUP_CRD_FILE);
    if std::env::var_os("SHANRAQ_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &generated).expect("write CRD");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{BACKUP_CRD_FILE} is out of date with the API types: run `shanraq crdgen --backup > {BACKUP_CRD_FILE}` (or SHANRAQ_UPDATE_GOLDEN=1 cargo test -p shanraq-api --test crd_drift) and review the diff"
    );
}

#[test]
fn crd_has_the_columns_and_subresources_users_rely_on() {
    let generated = crd_yaml().expect("CRD serialises");
    for needle in [
        "shortNames:",
        "- sqc",
        "status: {}",
        "name: Ready",
        "name: Primary",
        "name: RPO",
        "name: RTO",
        "name: P99",
        "name: Age",
        "x-kubernetes-validations:",
        "scope: Namespaced",
    ] {
        assert!(generated.contains(needle), "CRD lacks {needle:?}");
    }
}
