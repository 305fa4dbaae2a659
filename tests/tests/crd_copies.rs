//! The generated CRD (`crds/`, from `shanraq crdgen`) is shipped twice more: in the Helm
//! chart's crds/ directory and in the kustomize base. Both copies must be byte-identical to the
//! source; `scripts/sync-crds` refreshes them.

use shanraq_repo_tests::repo_root;

const SOURCE: &str = "crds/shanraq.org_shanraqclusters.yaml";
const BACKUP_SOURCE: &str = "crds/shanraq.org_shanraqbackups.yaml";

fn assert_copy(copy: &str) {
    assert_copy_of(SOURCE, copy);
}

fn assert_copy_of(source_file: &str, copy: &str) {
    let root = repo_root();
    let source = root.join(source_file);
    let expected = std::fs::read_to_string(&source).unwrap_or_else(|error| {
        panic!(
            "{source_file} cannot be read ({error}); generate it with \
             `cargo run -p shanraq-operator --bin shanraq -- crdgen [--backup] > {source_file}`"
        )
    });
    let actual = std::fs::read_to_string(root.join(copy))
        .unwrap_or_else(|error| panic!("{copy} cannot be read ({error}); run scripts/sync-crds"));
    assert!(
        actual == expected,
        "{copy} differs from {source_file}; run scripts/sync-crds"
    );
}

#[test]
fn chart_crd_equals_the_generated_crd() {
    assert_copy("charts/shanraq-operator/crds/shanraq.org_shanraqclusters.yaml");
}

#[test]
fn kustomize_crd_equals_the_generated_crd() {
    assert_copy("deploy/crds/shanraq.org_shanraqclusters.yaml");
}

#[test]
fn the_backup_crd_is_shipped_with_the_cluster_crd() {
    assert_copy_of(
        BACKUP_SOURCE,
        "charts/shanraq-operator/crds/shanraq.org_shanraqbackups.yaml",
    );
    assert_copy_of(BACKUP_SOURCE, "deploy/crds/shanraq.org_shanraqbackups.yaml");
    let crd = shanraq_repo_tests::read_yaml(BACKUP_SOURCE);
    assert_eq!(crd["metadata"]["name"], "shanraqbackups.shanraq.org");
    assert_eq!(crd["spec"]["names"]["kind"], "ShanraqBackup");
}

#[test]
fn the_crd_is_the_shanraq_cluster() {
    let crd = shanraq_repo_tests::read_yaml(SOURCE);
    assert_eq!(crd["kind"], "CustomResourceDefinition");
    assert_eq!(crd["metadata"]["name"], "shanraqclusters.shanraq.org");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "sqc");
    let versions = crd["spec"]["versions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let v1alpha1 = versions
        .iter()
        .find(|version| version["name"] == "v1alpha1")
        .unwrap_or_else(|| panic!("{SOURCE} has no v1alpha1 version"));
    assert!(
        v1alpha1["subresources"].get("status").is_some(),
        "no status subresource"
    );
}
