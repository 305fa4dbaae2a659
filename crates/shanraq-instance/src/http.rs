//! The HTTP face of the manager, per `shanraq_ha::wire`: health and role checks for HAProxy and
//! kubelet, `/status` for the operator, and the bearer-token commands. The token is compared in
//! constant time and checked before the body is even parsed.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use shanraq_ha::wire::{BackupReply, BackupRequest, CommandReply, InstanceRole, InstanceStatus};

use crate::InstanceError;
use crate::commands::{self, CommandError};
use crate::lease;
use crate::status;
use crate::supervisor::{Manager, Phase};

pub fn router(manager: Arc<Manager>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/primary", get(primary))
        .route("/replica", get(replica))
        .route("/status", get(status_handler))
        .route("/promote", post(promote))
        .route("/fence", post(fence))
        .route("/demote", post(demote))
        .route("/repoint", post(repoint))
        .route("/detach", post(detach))
        .route("/synchronous", post(synchronous))
        .route("/backup", post(backup))
        .route("/backups", get(backups))
        .with_state(manager)
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    manager: Arc<Manager>,
) -> std::io::Result<()> {
    axum::serve(listener, router(manager)).await
}

/// The full status, also while postgres is down.
pub async fn collect_status(manager: &Manager) -> InstanceStatus {
    let snapshot = manager.snapshot();
    let observed = match (&snapshot.pool, snapshot.running) {
        (Some(pool), true) => Some(status::observe(pool).await),
        _ => None,
    };
    let persisted = &snapshot.persisted;
    let role = if persisted.fenced {
        InstanceRole::Fenced
    } else {
        match (snapshot.phase, &observed) {
            (Phase::Running, Some(Ok(observed))) if observed.in_recovery => InstanceRole::Replica,
            (Phase::Running, Some(Ok(_))) => InstanceRole::Primary,
            (Phase::Stopped, _) => InstanceRole::Stopped,
            _ => InstanceRole::Starting,
        }
    };
    let mut message = snapshot.message.clone();
    if message.is_none() {
        message = match &observed {
            Some(Err(error)) => Some(format!("postgres not answering: {error}")),
            None if !snapshot.running => Some("postgres is not running".to_string()),
            _ => None,
        };
    }
    let observed = observed.and_then(Result::ok);
    let mut status = InstanceStatus {
        name: manager.settings.name.clone(),
        role,
        epoch: persisted.epoch,
        epoch_owner: persisted.owner.clone(),
        primary_epoch: persisted.primary_epoch.filter(|_| !persisted.fenced),
        fenced: persisted.fenced,
        running: snapshot.running,
        in_recovery: None,
        timeline: snapshot.stopped_timeline,
        current_lsn: None,
        received_lsn: None,
        replayed_lsn: None,
        replay_paused: None,
        streaming: None,
        detached: false,
        writable: None,
        replay_lag_seconds: None,
        replication: Vec::new(),
        synchronous_standby_names: None,
        final_lsn: snapshot.final_lsn,
        message,
        archiver: None,
        repository: None,
        backup_peer: manager
            .backup_peer
            .lock()
            .ok()
            .and_then(|peer| peer.clone().map(Box::new)),
    };
    if let Some(observed) = observed {
        status.in_recovery = Some(observed.in_recovery);
        status.timeline = observed.timeline.or(status.timeline);
        status.current_lsn = observed.current_lsn;
        status.received_lsn = observed.received_lsn;
        status.replayed_lsn = observed.replayed_lsn;
        status.replay_paused = observed.replay_paused;
        status.streaming = observed.streaming;
        status.detached = observed.in_recovery
            && crate::config::primary_conninfo_empty(&manager.settings.data_dir);
        status.replay_lag_seconds = observed.replay_lag_seconds;
        status.replication = observed.replication;
        status.synchronous_standby_names = observed.synchronous_standby_names;
        if role == InstanceRole::Primary {
            status.writable = Some(primary_answer(manager).await.is_ok());
        }
        if manager.settings.backup.is_some()
            && let Some(pool) = &snapshot.pool
        {
            status.archiver = status::archiver(pool).await.ok().map(Box::new);
            if role == InstanceRole::Primary {
                status.repository = manager.repository().map(Box::new);
            }
        }
    }
    status
}

fn check(ok: bool, reason: &str) -> Response {
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(serde_json::json!({ "ok": ok, "message": reason })),
    )
        .into_response()
}

async fn health(State(manager): State<Arc<Manager>>) -> Response {
    let snapshot = manager.snapshot();
    match (&snapshot.pool, snapshot.running) {
        (Some(pool), true) => match status::ping(pool).await {
            Ok(()) => check(true, "postgres accepts connections"),
            Err(error) => check(false, &format!("postgres not answering: {error}")),
        },
        _ => check(false, "postgres is not running"),
    }
}

/// Why `/primary` or `/replica` could not answer 200: the message of its 503.
#[derive(Debug, thiserror::Error)]
enum Unavailable {
    #[error("postgres is not running")]
    NotRunning,
    #[error("postgres not answering: {0}")]
    NotAnswering(InstanceError),
    #[error("postgres exited ({how})")]
    Exited { how: String },
    #[error("not holding the primary epoch")]
    NotPrimaryEpoch,
    #[error(transparent)]
    NotWritable(#[from] lease::NotWritable),
    #[error("fenced")]
    Fenced,
}

/// In recovery or not, asked of postgres itself, tried twice so that one broken pooled
/// connection does not flap HAProxy's `fall 1` check; a postmaster exit ends the wait at once.
async fn ask_in_recovery(manager: &Manager) -> Result<bool, Unavailable> {
    let snapshot = manager.snapshot();
    let (Some(pool), Some(postmaster), true) =
        (snapshot.pool, snapshot.postmaster, snapshot.running)
    else {
        return Err(Unavailable::NotRunning);
    };
    let ask = async {
        match status::in_recovery(&pool).await {
            Ok(answer) => Ok(answer),
            Err(_) => status::in_recovery(&pool)
                .await
                .map_err(Unavailable::NotAnswering),
        }
    };
    tokio::select! {
        answer = ask => answer,
        how = postmaster.wait() => Err(Unavailable::Exited { how }),
    }
}

/// What `/primary` answers: the designated primary of its epoch, out of recovery, and able to
/// commit (see `crate::lease`). Asked of postgres itself, tried twice so that one broken
/// pooled connection does not flap HAProxy's `fall 1` check; a postmaster exit ends the wait.
async fn primary_answer(manager: &Manager) -> Result<(), Unavailable> {
    if !manager.snapshot().persisted.holds_primary_epoch() {
        return Err(Unavailable::NotPrimaryEpoch);
    }
    let snapshot = manager.snapshot();
    let (Some(pool), Some(postmaster), true) =
        (snapshot.pool, snapshot.postmaster, snapshot.running)
    else {
        return Err(Unavailable::NotRunning);
    };
    let lease = manager.settings.lease;
    let ask = async {
        match lease::commit_ability(&pool, lease).await {
            Ok(answer) => Ok(answer),
            Err(_) => lease::commit_ability(&pool, lease)
                .await
                .map_err(Unavailable::NotAnswering),
        }
    };
    let ability = tokio::select! {
        answer = ask => answer?,
        how = postmaster.wait() => return Err(Unavailable::Exited { how }),
    };
    lease::writable(&ability, manager.lease_valid(std::time::Instant::now()))?;
    // Re-checked after the query: a fence that arrived meanwhile wins.
    if !manager.snapshot().persisted.holds_primary_epoch() {
        return Err(Unavailable::Fenced);
    }
    Ok(())
}

async fn primary(State(manager): State<Arc<Manager>>) -> Response {
    match primary_answer(&manager).await {
        Ok(()) => check(true, "primary"),
        Err(reason) => check(false, &reason.to_string()),
    }
}

async fn replica(State(manager): State<Arc<Manager>>) -> Response {
    if manager.snapshot().persisted.fenced {
        return check(false, "fenced");
    }
    match ask_in_recovery(&manager).await {
        Ok(true) => check(true, "replica"),
        Ok(false) => check(false, "not in recovery"),
        Err(reason) => check(false, &reason.to_string()),
    }
}

/// The lease renewal an authenticated probe may carry.
#[derive(Debug, serde::Deserialize)]
struct LeaseQuery {
    #[serde(rename = "lease_epoch")]
    epoch: Option<u64>,
    #[serde(rename = "lease_ms")]
    ms: Option<u64>,
    #[serde(rename = "lease_owner")]
    owner: Option<String>,
}

async fn status_handler(
    State(manager): State<Arc<Manager>>,
    headers: HeaderMap,
    Query(lease): Query<LeaseQuery>,
) -> Json<InstanceStatus> {
    // Renewed before the status is taken, so the answer reflects it; only the operator (the
    // bearer token) may renew, and only for the epoch this instance is primary at.
    if let (Some(epoch), Some(ms)) = (lease.epoch, lease.ms)
        && authorised(&manager, &headers)
    {
        manager.renew_lease(
            epoch,
            lease.owner.as_deref(),
            std::time::Duration::from_millis(ms),
        );
    }
    Json(collect_status(&manager).await)
}

/// Constant-time comparison: the time taken does not depend on where the tokens differ.
fn tokens_match(expected: &[u8], given: &[u8]) -> bool {
    let mut difference = u8::from(expected.len() != given.len());
    for (index, byte) in expected.iter().enumerate() {
        difference |= byte ^ given.get(index).copied().unwrap_or(0);
    }
    std::hint::black_box(difference) == 0
}

fn authorised(manager: &Manager, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let Some(token) = value.as_bytes().strip_prefix(b"Bearer ") else {
        return false;
    };
    tokens_match(manager.settings.token.expose().as_bytes(), token)
}

async fn reply(manager: &Manager, code: StatusCode, ok: bool, message: String) -> Response {
    let status = collect_status(manager).await;
    let body = CommandReply {
        ok,
        epoch: status.epoch,
        holder: status.epoch_owner.clone(),
        message,
        status: Some(status),
    };
    (code, Json(body)).into_response()
}

/// Authenticates, parses the body, runs the command and wraps the outcome.
async fn command<R, F, Fut>(
    manager: Arc<Manager>,
    headers: HeaderMap,
    body: Bytes,
    run: F,
) -> Response
where
    R: DeserializeOwned,
    F: FnOnce(Arc<Manager>, R) -> Fut,
    Fut: std::future::Future<Output = Result<String, CommandError>> + Send + 'static,
{
    if !authorised(&manager, &headers) {
        let persisted = manager.snapshot().persisted;
        let body = CommandReply {
            ok: false,
            epoch: persisted.epoch,
            holder: persisted.owner,
            message: "missing or wrong bearer token".to_string(),
            status: None,
        };
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    let request: R = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return reply(
                &manager,
                StatusCode::BAD_REQUEST,
                false,
                format!("invalid request body: {error}"),
            )
            .await;
        }
    };
    // The command runs in its own task: an HTTP client that gives up must not abort a
    // demote half way through.
    let task = tokio::spawn(run(Arc::clone(&manager), request));
    let outcome = match task.await {
        Ok(outcome) => outcome,
        Err(error) => Err(CommandError::Refused(format!(
            "command task failed: {error}"
        ))),
    };
    match outcome {
        Ok(message) => reply(&manager, StatusCode::OK, true, message).await,
        Err(error) => {
            let code = match &error {
                CommandError::Stale(_) => StatusCode::CONFLICT,
                CommandError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
                CommandError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            tracing::warn!(%error, code = code.as_u16(), "command refused or failed");
            reply(&manager, code, false, error.to_string()).await
        }
    }
}

async fn promote(State(manager): State<Arc<Manager>>, headers: HeaderMap, body: Bytes) -> Response {
    command(manager, headers, body, |manager, request| async move {
        commands::promote(&manager, request).await
    })
    .await
}

async fn fence(State(manager): State<Arc<Manager>>, headers: HeaderMap, body: Bytes) -> Response {
    command(manager, headers, body, |manager, request| async move {
        commands::fence(&manager, request).await
    })
    .await
}

async fn demote(State(manager): State<Arc<Manager>>, headers: HeaderMap, body: Bytes) -> Response {
    command(manager, headers, body, |manager, request| async move {
        commands::demote(&manager, request).await
    })
    .await
}

async fn repoint(State(manager): State<Arc<Manager>>, headers: HeaderMap, body: Bytes) -> Response {
    command(manager, headers, body, |manager, request| async move {
        commands::repoint(&manager, request).await
    })
    .await
}

async fn detach(State(manager): State<Arc<Manager>>, headers: HeaderMap, body: Bytes) -> Response {
    command(manager, headers, body, |manager, request| async move {
        commands::detach(&manager, request).await
    })
    .await
}

async fn synchronous(
    State(manager): State<Arc<Manager>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    command(manager, headers, body, |manager, request| async move {
        commands::synchronous(&manager, request).await
    })
    .await
}

fn backup_reply(code: StatusCode, reply: BackupReply) -> Response {
    (code, Json(reply)).into_response()
}

fn backup_error(code: StatusCode, message: String) -> Response {
    backup_reply(
        code,
        BackupReply {
            ok: false,
            message,
            backup: None,
            repository: None,
            elapsed_ms: None,
        },
    )
}

/// `POST /backup`: a pgBackRest backup of this instance, answered when it is done. One runs at
/// a time; the backup runs in its own task, so a client that gives up does not abort it.
async fn backup(State(manager): State<Arc<Manager>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorised(&manager, &headers) {
        return backup_error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token".to_string(),
        );
    }
    let request: BackupRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return backup_error(
                StatusCode::BAD_REQUEST,
                format!("invalid request body: {error}"),
            );
        }
    };
    let task = tokio::spawn(async move {
        let Ok(_running) = manager.backup_running.try_lock() else {
            return backup_error(
                StatusCode::CONFLICT,
                "a backup is already running on this instance".to_string(),
            );
        };
        let started = std::time::Instant::now();
        let taken = crate::pgbackrest::backup(
            &manager.settings,
            &manager.user,
            request.kind,
            request.primary.as_ref(),
        )
        .await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match taken {
            Ok(info) => {
                tracing::info!(label = %info.label, kind = %info.kind, elapsed_ms, "backup completed");
                manager.refresh_repository().await;
                backup_reply(
                    StatusCode::OK,
                    BackupReply {
                        ok: true,
                        message: format!("backup {} completed", info.label),
                        backup: Some(info),
                        repository: None,
                        elapsed_ms: Some(elapsed_ms),
                    },
                )
            }
            Err(error) => {
                let message = crate::pgbackrest::scrub(&error.to_string());
                tracing::warn!(%message, "backup failed");
                let code = match error {
                    InstanceError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                backup_error(code, message)
            }
        }
    });
    match task.await {
        Ok(response) => response,
        Err(error) => backup_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("backup task failed: {error}"),
        ),
    }
}

/// `GET /backups`: the backups and archived WAL range of this cluster's stanza.
async fn backups(State(manager): State<Arc<Manager>>, headers: HeaderMap) -> Response {
    if !authorised(&manager, &headers) {
        return backup_error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token".to_string(),
        );
    }
    let Some(settings) = &manager.settings.backup else {
        return backup_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "backups are not configured (no --backup-config)".to_string(),
        );
    };
    match crate::pgbackrest::info(&manager.settings, &manager.user, &settings.stanza).await {
        Ok(repository) => backup_reply(
            StatusCode::OK,
            BackupReply {
                ok: true,
                message: format!("{} backups", repository.backups.len()),
                backup: repository.backups.last().cloned(),
                repository: Some(repository),
                elapsed_ms: None,
            },
        ),
        Err(error) => backup_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            crate::pgbackrest::scrub(&error.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::{LeaseQuery, tokens_match};
    use shanraq_ha::wire::{LEASE_EPOCH_PARAM, LEASE_MS_PARAM, LEASE_OWNER_PARAM};

    #[test]
    fn lease_query_uses_the_wire_parameter_names() {
        let query: LeaseQuery = serde_json::from_value(serde_json::json!({
            LEASE_EPOCH_PARAM: 7,
            LEASE_MS_PARAM: 1500,
            LEASE_OWNER_PARAM: "operator-a",
        }))
        .expect("parses");
        assert_eq!(
            (query.epoch, query.ms, query.owner.as_deref()),
            (Some(7), Some(1500), Some("operator-a"))
        );
    }

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(tokens_match(b"secret-token", b"secret-token"));
        assert!(!tokens_match(b"secret-token", b"secret-tokeN"));
        assert!(!tokens_match(b"secret-token", b"secret-token-longer"));
        assert!(!tokens_match(b"secret-token", b"secret"));
        assert!(!tokens_match(b"secret-token", b""));
    }
}
