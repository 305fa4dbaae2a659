//! The operator image carries `shanraq` built from this package: it must not link the lab
//! (`shanraq-testkit`: network namespaces, the S3 and Kafka process managers, `nfq`) nor the
//! local drill. Read from `cargo tree` of the package's normal and build dependencies, which is
//! what `cargo build -p shanraq-operator --bin shanraq` links.

use std::process::Command;

fn tree(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--locked", "--offline", "--prefix", "none"])
        .args(["--edges", "normal,build", "-p", package])
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

const LAB: [&str; 3] = ["shanraq-testkit", "shanraq-drill", "nfq"];

#[test]
fn the_image_binary_links_neither_the_lab_nor_the_drill() {
    let crates = tree("shanraq-operator");
    assert!(
        crates.iter().any(|name| name == "shanraq-instance"),
        "the tree lists the instance manager the image runs: {crates:?}"
    );
    for lab in LAB {
        assert!(
            !crates.iter().any(|name| name == lab),
            "shanraq-operator links {lab}"
        );
    }
}

/// The same reading finds the lab where it is linked, so the test above can fail.
#[test]
fn the_drill_binary_is_where_the_lab_is_linked() {
    let crates = tree("shanraq-drill");
    for lab in ["shanraq-testkit", "nfq", "shanraq-operator"] {
        assert!(
            crates.iter().any(|name| name == lab),
            "shanraq-drill links {lab}: {crates:?}"
        );
    }
}
