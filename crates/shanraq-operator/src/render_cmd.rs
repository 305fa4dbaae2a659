//! `shanraq crdgen` and `shanraq render`: offline tools that print what the operator would apply.

/// Flags of `shanraq render`.
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// A file holding one ShanraqCluster manifest (YAML).
    pub manifest: std::path::PathBuf,
}

pub fn crdgen() -> anyhow::Result<()> {
    print!("{}", shanraq_api::crd::crd_yaml()?);
    Ok(())
}

pub fn render(_args: RenderArgs) -> anyhow::Result<()> {
    anyhow::bail!("render is not wired yet")
}
