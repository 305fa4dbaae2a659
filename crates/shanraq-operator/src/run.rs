//! `shanraq operator`: process start-up (logging, metrics server, leader election, controllers)
//! and a clean shutdown on SIGTERM/SIGINT: controllers stop after their in-flight reconciles,
//! the Lease is released so a standby takes over at once, and the process exits 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::events::Reporter;
use kube::{Api, Client};
use shanraq_api::names::MANAGED_BY;
use tokio::sync::watch;

use crate::controller::{self, Context, discovery::Discovery};
use crate::engines::leadership::{Elector, Leadership, Timings};
use crate::engines::postgres::{HaSettings, InstanceAddress};
use crate::http::{self, Health};
use crate::metrics::Metrics;

/// Command-line flags of `shanraq operator`; every flag also reads an environment variable so
/// that the Helm chart can set them.
#[derive(Debug, clap::Args)]
pub struct OperatorArgs {
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "SHANRAQ_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// Namespaces to watch, comma-separated; empty means all namespaces.
    #[arg(
        long,
        env = "SHANRAQ_WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub namespaces: Vec<String>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "SHANRAQ_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Log filter, in `tracing_subscriber::EnvFilter` syntax (for example `info,kube=warn`).
    #[arg(long, env = "SHANRAQ_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Take a coordination.k8s.io Lease before acting, so that only one replica reconciles.
    #[arg(long, env = "SHANRAQ_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "SHANRAQ_LEASE_NAME", default_value = "shanraq-operator")]
    pub lease_name: String,
    /// Namespace of the leader-election Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "shanraq-system")]
    pub lease_namespace: String,
    /// Run the PostgreSQL and Redis failover engines for each cluster (probes, failover,
    /// switchover). Without them Redis in replication mode has no master: every Redis pod
    /// starts as a replica of nothing and waits for the engine to promote one.
    #[arg(long, env = "SHANRAQ_HA", default_value_t = true, action = clap::ArgAction::Set)]
    pub ha: bool,
    /// The cluster DNS domain, used to reach each PostgreSQL pod's instance manager at
    /// `<pod>.<cluster>-pg.<namespace>.svc.<domain>`.
    #[arg(long, env = "SHANRAQ_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// How the failover engine reaches the instance managers: `pod-ip` (the pods' IPs from
    /// the API server, no cluster DNS on the failover path) or `dns` (per-pod DNS names).
    #[arg(long, env = "SHANRAQ_INSTANCE_ADDRESS", value_enum, default_value_t = InstanceAddress::PodIp)]
    pub instance_address: InstanceAddress,
}

/// How long a Lease stays valid without renewal: a standby takes over once it saw the holder's
/// record unchanged this long. The holder renews every third of it and stops acting a third
/// before a standby may take over (`engines::leadership`).
const LEASE_DURATION: std::time::Duration = std::time::Duration::from_secs(15);

pub fn main(args: OperatorArgs) -> anyhow::Result<()> {
    init_tracing(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the Tokio runtime")?;
    runtime.block_on(operate(args))
}

fn init_tracing(args: &OperatorArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("invalid --log-level {:?}", args.log_level))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format.as_str() {
        "json" => builder.json().try_init(),
        "text" => builder.try_init(),
        other => anyhow::bail!("invalid --log-format {other:?}: expected text or json"),
    }
    .map_err(|error| anyhow::anyhow!("cannot install the log subscriber: {error}"))
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

/// This replica's identity in the Lease: the pod name from the downward API when present.
fn identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| format!("{MANAGED_BY}-{}", controller::secrets::generate(8)))
}

async fn operate(args: OperatorArgs) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("cannot configure the Kubernetes client (in-cluster or KUBECONFIG)")?;
    let (metrics, registry) = Metrics::registered();
    let ready = Arc::new(AtomicBool::new(false));
    let health = Health {
        registry: Arc::new(registry),
        ready: ready.clone(),
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_addr))?;
    tracing::info!(addr = %args.metrics_addr, "serving /metrics, /healthz and /readyz");
    let mut http_stop = stop_rx.clone();
    let server = tokio::spawn(http::serve(listener, health, async move {
        let _ = http_stop.wait_for(|stop| *stop).await;
    }));
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });

    let reporter = Reporter {
        controller: MANAGED_BY.to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let identity = identity();
    let leadership = if args.leader_election {
        Leadership::elected()
    } else {
        Leadership::default()
    };
    let ctx = Arc::new(
        Context::new(client.clone(), metrics, reporter, Discovery::default()).with_ha(HaSettings {
            enabled: args.ha,
            cluster_domain: args.cluster_domain.clone(),
            instance_address: args.instance_address,
            identity: identity.clone(),
            leadership: leadership.clone(),
        }),
    );

    if args.leader_election {
        lead(&args, client, ctx, identity, leadership, ready, stop_rx).await?;
    } else {
        controller::run(ctx, &args.namespaces, ready, stop_rx).await;
    }
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "HTTP server failed"),
        Err(error) => tracing::error!(%error, "HTTP server task failed"),
    }
    tracing::info!("operator stopped");
    Ok(())
}

/// Runs the controllers only while this replica holds the Lease; stops them the moment it
/// lapses (on this process's own clock, without waiting for the API server) and waits to be
/// elected again. Every engine also checks the Lease itself before each command, so a replica
/// that was paused past its Lease acts on nothing even before its controllers stop. On
/// shutdown the Lease is released.
async fn lead(
    args: &OperatorArgs,
    client: Client,
    ctx: Arc<Context>,
    identity: String,
    leadership: Leadership,
    ready: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client, &args.lease_namespace);
    let elector = Elector::new(
        leases,
        &args.lease_name,
        &identity,
        Timings::for_duration(LEASE_DURATION),
        leadership.clone(),
    );
    let mut leader = leadership.subscribe();
    // Released only after the controllers stopped, so no reconcile of this replica overlaps
    // with the next holder's.
    let (release, released) = watch::channel(false);
    let election = tokio::spawn(elector.run(released));
    tracing::info!(%identity, lease = %args.lease_name, "waiting for leadership");
    // A standby is healthy and ready: it only waits.
    ready.store(true, Ordering::SeqCst);

    loop {
        if *stop.borrow() {
            break;
        }
        if *leader.borrow_and_update() {
            tracing::info!(%identity, "leader: starting controllers");
            ready.store(false, Ordering::SeqCst);
            let (lost_tx, lost_rx) = watch::channel(false);
            let mut leader_watch = leader.clone();
            let mut outer_stop = stop.clone();
            let watchdog = tokio::spawn(async move {
                tokio::select! {
                    _ = leader_watch.wait_for(|leading| !*leading) => {
                        tracing::warn!("leadership lost: stopping controllers");
                    }
                    _ = outer_stop.wait_for(|stop| *stop) => {}
                }
                let _ = lost_tx.send(true);
            });
            controller::run(ctx.clone(), &args.namespaces, ready.clone(), lost_rx).await;
            watchdog.abort();
            ready.store(true, Ordering::SeqCst);
            continue;
        }
        tokio::select! {
            changed = leader.changed() => {
                if changed.is_err() {
                    anyhow::bail!("the leader-election task ended unexpectedly");
                }
            }
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }

    let _ = release.send(true);
    if let Err(error) = election.await {
        tracing::warn!(%error, "the leader-election task failed");
    }
    Ok(())
}
