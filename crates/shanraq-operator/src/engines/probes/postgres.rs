//! PostgreSQL as a client sees it: through HAProxy's `pg-rw` with the application's
//! credentials, on a kept connection (so connection set-up is not timed). Every round a
//! `SELECT 1` and a write, `SELECT pg_logical_emit_message(true, 'shanraq-probe', '')`: a
//! transactional WAL record of a few bytes, so its commit waits for the synchronous standbys
//! like any application commit, and it fails on anything but a writable primary. (Merely
//! assigning a transaction id writes no WAL and would not wait.) No table is created in the
//! application's database.
//!
//! While the application Secret cannot be read (retried every `SECRET_RETRY`, and read again
//! while connections fail, so rotated credentials are picked up) or the Service name does not
//! resolve, no round is recorded (that is the operator's trouble, not the cluster's) and the
//! window says why.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use shanraq_api::objectives::ObjectiveComponent;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use super::plan::{PostgresProbe, ProbePath};
use super::window::ProbeWindow;
use super::{
    PROBE_TIMEOUT, RETRY_PERIOD, SECRET_RETRY, error_text, next_round, resolves, retry_due, timed,
};
use crate::engines::start_error::{StartError, secret_value};

const COMPONENT: ObjectiveComponent = ObjectiveComponent::Postgres;
const WRITE: &str = "SELECT pg_logical_emit_message(true, 'shanraq-probe', '')";

async fn connect(options: &PgConnectOptions) -> Result<PgConnection, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(format!("connect: {}", error_text(&error))),
        Err(_) => Err(format!("connect: no answer within {PROBE_TIMEOUT:?}")),
    }
}

/// Both paths on one kept connection, reopened after any failure (a broken or read-only one,
/// to the old primary say, is never reused).
#[allow(missing_debug_implementations)] // the connection has none
pub struct PostgresProber {
    options: PgConnectOptions,
    connection: Option<PgConnection>,
}

impl PostgresProber {
    pub fn new(options: PgConnectOptions) -> Self {
        PostgresProber {
            options,
            connection: None,
        }
    }

    /// Whether a connection is kept for the next probe.
    pub fn connected(&self) -> bool {
        self.connection.is_some()
    }

    async fn connection(&mut self) -> Result<&mut PgConnection, String> {
        if self.connection.is_none() {
            self.connection = Some(connect(&self.options).await?);
        }
        self.connection
            .as_mut()
            .ok_or_else(|| "connect: no connection".to_owned())
    }

    /// `SELECT 1`: its latency, or why it failed.
    pub async fn read(&mut self) -> Result<std::time::Duration, String> {
        let connection = self.connection().await?;
        let started = Instant::now();
        let result = timed(
            "read",
            started,
            sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut *connection),
        )
        .await;
        match result {
            Ok((latency, 1)) => Ok(latency),
            Ok((_, other)) => Err(format!("read: SELECT 1 returned {other}")),
            Err(error) => Err(error),
        }
        .inspect_err(|_| self.connection = None)
    }

    /// The committed write: its latency, or why it failed.
    pub async fn write(&mut self) -> Result<std::time::Duration, String> {
        let connection = self.connection().await?;
        let started = Instant::now();
        timed(
            "write",
            started,
            sqlx::query(WRITE).execute(&mut *connection),
        )
        .await
        .map(|(latency, _)| latency)
        .inspect_err(|_| self.connection = None)
    }
}

/// The probes' connection options, with the application's credentials from its Secret.
async fn options(
    client: &Client,
    namespace: &str,
    target: &PostgresProbe,
) -> Result<PgConnectOptions, StartError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let username = secret_value(&secrets, &target.secret, "username").await?;
    let password = secret_value(&secrets, &target.secret, "password").await?;
    Ok(PgConnectOptions::new()
        .host(&target.host)
        .port(target.port)
        .database(&target.database)
        .username(&username)
        .password(&password)
        .application_name("shanraq-probe"))
}

/// Reads the credentials, then probes every round until the task is aborted.
pub async fn run(
    client: Client,
    namespace: String,
    target: PostgresProbe,
    window: Arc<ProbeWindow>,
) {
    let mut warned = false;
    let first = loop {
        match options(&client, &namespace, &target).await {
            Ok(options) => break options,
            Err(error) => {
                if !warned {
                    tracing::warn!(%namespace, secret = %target.secret, %error, "no PostgreSQL probes until the application Secret can be read");
                    warned = true;
                }
                window.set_not_running(
                    COMPONENT,
                    Some(format!("the application Secret cannot be read: {error}")),
                );
                tokio::time::sleep(SECRET_RETRY).await;
            }
        }
    };
    window.set_not_running(COMPONENT, None);
    let mut prober = PostgresProber::new(first);
    let mut options_read = Instant::now();
    let mut round = Instant::now();
    loop {
        tokio::time::sleep_until(round.into()).await;
        round = Instant::now();
        // Credentials rotated in the Secret would fail every connection from then on, and
        // count as an outage: while connections fail, the Secret is read again.
        if prober.connection.is_none()
            && window.failing(ProbePath::PostgresWrite)
            && options_read.elapsed() >= SECRET_RETRY
        {
            options_read = Instant::now();
            if let Ok(fresh) = options(&client, &namespace, &target).await {
                prober.options = fresh;
            }
        }
        if prober.connection.is_none()
            && let Err(why) = resolves(&target.host, target.port).await
        {
            window.set_not_running(COMPONENT, Some(why));
            round = next_round(round);
            continue;
        }
        window.set_not_running(COMPONENT, None);
        for path in [ProbePath::PostgresRead, ProbePath::PostgresWrite] {
            let started = Instant::now();
            let result = match path {
                ProbePath::PostgresRead => prober.read().await,
                _ => prober.write().await,
            };
            if let Err(error) = &result {
                window.note_error(COMPONENT, error.clone());
            }
            window.record(path, started, result.ok());
        }
        round = next_round(round);
        while retry_due(&window, ProbePath::PostgresWrite, round) {
            tokio::time::sleep(RETRY_PERIOD).await;
            let started = Instant::now();
            let ok = prober.write().await.is_ok();
            window.retried(ProbePath::PostgresWrite, started, ok);
        }
    }
}
