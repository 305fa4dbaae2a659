//! The local failover drill: the same HA engine and instance managers as in Kubernetes, run
//! against real PostgreSQL processes on 127.0.0.1. `shanraq demo` runs it once and prints the
//! timeline; `shanraq bench failover` runs it N times and prints figures.

/// Flags of `shanraq demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

/// Flags of `shanraq bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

pub fn demo(_args: DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("the drill is not wired yet")
}

pub fn bench(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("the benchmark is not wired yet")
}
