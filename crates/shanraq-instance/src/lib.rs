//! The PostgreSQL instance manager (`shanraq instance postgres`): the entrypoint of each
//! PostgreSQL pod, and of each instance of the local drill. It bootstraps its data dir,
//! supervises postgres, and serves the HTTP contract of `shanraq_ha::wire` that HAProxy and the
//! operator rely on. It never promotes itself: only the operator's `promote` does.

pub mod args;
pub mod backup_tls;
pub mod bootstrap;
pub mod commands;
pub mod config;
pub mod epoch;
pub mod error;
pub mod http;
pub mod lease;
pub mod osuser;
pub mod pgbackrest;
pub mod pgbackrest_server;
pub mod postmaster;
pub mod status;
pub mod supervisor;
pub mod tools;

use std::sync::Arc;

pub use args::{BootstrapMode, InstanceArgs, Settings};
pub use error::InstanceError;

/// Entry point of `shanraq instance postgres`.
pub fn main(args: InstanceArgs) -> anyhow::Result<()> {
    init_tracing();
    let settings = Settings::resolve(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(settings))
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Another subscriber may already be installed by the caller; that one wins.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Runs the manager until SIGTERM or SIGINT, then stops postgres and returns.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};

    let user = osuser::PgUser::lookup()?;
    let http_addr = settings.http_addr;
    let manager = supervisor::Manager::new(settings, user)?;
    let listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .map_err(|source| InstanceError::io(format!("binding HTTP on {http_addr}"), source))?;
    tracing::info!(%http_addr, name = %manager.settings.name, "instance manager listening");
    let server = tokio::spawn(http::serve(listener, Arc::clone(&manager)));
    let guard = tokio::spawn(lease::guard(Arc::clone(&manager)));
    let repository = tokio::spawn(list_backups(Arc::clone(&manager)));
    let backup_server = tokio::spawn(pgbackrest_server::run(Arc::clone(&manager)));

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        }
    };
    tokio::pin!(shutdown);

    let bootstrapped = tokio::select! {
        result = bootstrap::run(&manager) => Some(result),
        signal = &mut shutdown => {
            tracing::info!(signal, "signal during bootstrap");
            None
        }
    };
    let outcome = match bootstrapped {
        Some(Err(error)) => {
            tracing::error!(%error, "bootstrap failed");
            Err(anyhow::Error::new(error).context("bootstrap"))
        }
        Some(Ok(())) => {
            let signal = (&mut shutdown).await;
            tracing::info!(signal, "shutting down");
            Ok(())
        }
        None => Ok(()),
    };
    guard.abort();
    repository.abort();
    backup_server.abort();
    manager.shutdown().await;
    server.abort();
    outcome
}

/// How often a primary with backups lists its stanza's backups for `/status`.
const REPOSITORY_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

/// On the primary, lists the stanza's backups once a minute (the operator reports the last
/// one and the first recoverability point from it).
async fn list_backups(manager: Arc<supervisor::Manager>) {
    if manager.settings.backup.is_none() {
        return;
    }
    let mut ticks = tokio::time::interval(REPOSITORY_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let snapshot = manager.snapshot();
        if snapshot.running && snapshot.persisted.holds_primary_epoch() {
            manager.refresh_repository().await;
        }
    }
}
