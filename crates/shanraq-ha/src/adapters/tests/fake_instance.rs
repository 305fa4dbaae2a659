//! A cluster of fake instance managers: each serves `crate::wire` on its own 127.0.0.1 port
//! and applies commands to a shared in-memory model (tokens checked by `wire::admits`, 409 on
//! a stale one, bearer token required). A primary reports the others' replication rows, so the engine
//! learns a synchronous set as it would from PostgreSQL.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Json, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

use crate::wire::{
    CommandReply, DemoteRequest, DetachRequest, FenceRequest, InstanceRole, InstanceStatus, Lsn,
    PromoteRequest, ReplicationPeer, RepointRequest,
};

pub const TOKEN: &str = "test-token-5f2b";

#[derive(Debug, Default)]
pub struct Model {
    pub instances: BTreeMap<String, InstanceStatus>,
    pub dead: BTreeMap<String, bool>,
    /// Every command received: (instance, endpoint, epoch).
    pub received: Vec<(String, &'static str, u64)>,
    /// Every command obeyed: (instance, endpoint, epoch, owner).
    pub obeyed: Vec<(String, &'static str, u64, Option<String>)>,
    /// Extra delay before answering `/status`.
    pub status_delay: Duration,
    /// `/status` requests answered.
    pub statuses_served: u64,
}

pub type Shared = Arc<Mutex<Model>>;

#[derive(Clone, Debug)]
struct Ctx {
    name: String,
    model: Shared,
}

pub fn status(name: &str, role: InstanceRole, epoch: u64) -> InstanceStatus {
    InstanceStatus {
        name: name.to_owned(),
        role,
        epoch,
        epoch_owner: None,
        primary_epoch: (role == InstanceRole::Primary).then_some(epoch),
        fenced: role == InstanceRole::Fenced,
        running: matches!(role, InstanceRole::Primary | InstanceRole::Replica),
        in_recovery: Some(role == InstanceRole::Replica),
        timeline: Some(1),
        current_lsn: (role == InstanceRole::Primary).then_some(Lsn(5000)),
        received_lsn: (role == InstanceRole::Replica).then_some(Lsn(5000)),
        replayed_lsn: (role == InstanceRole::Replica).then_some(Lsn(5000)),
        replay_paused: None,
        streaming: Some(role == InstanceRole::Replica),
        detached: false,
        writable: None,
        replay_lag_seconds: None,
        replication: Vec::new(),
        synchronous_standby_names: None,
        final_lsn: None,
        message: None,
        archiver: None,
        repository: None,
        backup_peer: None,
    }
}

fn with_replication(model: &Model, name: &str) -> Option<InstanceStatus> {
    let mut me = model.instances.get(name)?.clone();
    if me.role == InstanceRole::Primary {
        me.replication = model
            .instances
            .values()
            .filter(|other| {
                other.role == InstanceRole::Replica
                    && !other.detached
                    && !model.dead.get(&other.name).copied().unwrap_or(false)
            })
            .map(|other| ReplicationPeer {
                application_name: other.name.clone(),
                state: "streaming".to_owned(),
                sync_state: "quorum".to_owned(),
                sent_lsn: me.current_lsn,
                write_lsn: me.current_lsn,
                flush_lsn: me.current_lsn,
                replay_lsn: me.current_lsn,
            })
            .collect();
    }
    Some(me)
}

fn is_dead(ctx: &Ctx) -> bool {
    ctx.model
        .lock()
        .map(|m| m.dead.get(&ctx.name).copied().unwrap_or(false))
        .unwrap_or(true)
}

async fn get_status(State(ctx): State<Ctx>) -> Result<Json<InstanceStatus>, StatusCode> {
    let delay = ctx.model.lock().map(|m| m.status_delay).unwrap_or_default();
    tokio::time::sleep(delay).await;
    if is_dead(&ctx) {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    let mut model = ctx
        .model
        .lock()
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    model.statuses_served += 1;
    with_replication(&model, &ctx.name)
        .map(Json)
        .ok_or(StatusCode::NOT_FOUND)
}

async fn get_primary(State(ctx): State<Ctx>) -> StatusCode {
    if is_dead(&ctx) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let serving = ctx
        .model
        .lock()
        .ok()
        .and_then(|m| {
            m.instances
                .get(&ctx.name)
                .map(|s| s.role == InstanceRole::Primary && !s.fenced)
        })
        .unwrap_or(false);
    if serving {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Applies a command when the token and epoch allow it.
fn apply(
    ctx: &Ctx,
    headers: &HeaderMap,
    endpoint: &'static str,
    epoch: u64,
    owner: Option<String>,
    change: impl FnOnce(&mut InstanceStatus),
) -> (StatusCode, Json<CommandReply>) {
    let reply = |ok: bool, epoch: u64, message: &str, status: Option<InstanceStatus>| {
        Json(CommandReply {
            ok,
            epoch,
            holder: status.as_ref().and_then(|s| s.epoch_owner.clone()),
            message: message.to_owned(),
            status,
        })
    };
    if is_dead(ctx) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            reply(false, 0, "dead", None),
        );
    }
    let authorised = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if !authorised {
        return (
            StatusCode::UNAUTHORIZED,
            reply(false, 0, "unauthorised", None),
        );
    }
    let Ok(mut model) = ctx.model.lock() else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            reply(false, 0, "poisoned", None),
        );
    };
    model.received.push((ctx.name.clone(), endpoint, epoch));
    let Some(me) = model.instances.get_mut(&ctx.name) else {
        return (StatusCode::NOT_FOUND, reply(false, 0, "unknown", None));
    };
    if crate::wire::admits(me.epoch, me.epoch_owner.as_deref(), epoch, owner.as_deref()).is_err() {
        let held = me.epoch;
        let holder = me.clone();
        return (
            StatusCode::CONFLICT,
            reply(false, held, "stale token", Some(holder)),
        );
    }
    if epoch > me.epoch || me.epoch_owner.is_none() {
        me.epoch_owner = owner.clone();
    }
    me.epoch = epoch;
    change(me);
    model
        .obeyed
        .push((ctx.name.clone(), endpoint, epoch, owner));
    let after = with_replication(&model, &ctx.name);
    (StatusCode::OK, reply(true, epoch, "done", after))
}

async fn promote(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Json(body): Json<PromoteRequest>,
) -> (StatusCode, Json<CommandReply>) {
    apply(
        &ctx,
        &headers,
        "promote",
        body.epoch,
        body.owner.clone(),
        |me| {
            me.role = InstanceRole::Primary;
            me.fenced = false;
            me.running = true;
            me.in_recovery = Some(false);
            me.current_lsn = me.current_lsn.or(me.received_lsn);
            me.received_lsn = None;
            me.replayed_lsn = None;
        },
    )
}

async fn fence(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Json(body): Json<FenceRequest>,
) -> (StatusCode, Json<CommandReply>) {
    apply(
        &ctx,
        &headers,
        "fence",
        body.epoch,
        body.owner.clone(),
        |me| {
            me.final_lsn = me.current_lsn.or(me.replayed_lsn);
            me.role = InstanceRole::Fenced;
            me.fenced = true;
            me.running = false;
        },
    )
}

async fn demote(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Json(body): Json<DemoteRequest>,
) -> (StatusCode, Json<CommandReply>) {
    apply(
        &ctx,
        &headers,
        "demote",
        body.epoch,
        body.owner.clone(),
        |me| {
            let lsn = me.final_lsn.or(me.current_lsn);
            *me = status(&me.name, InstanceRole::Replica, body.epoch);
            me.received_lsn = lsn.or(me.received_lsn);
        },
    )
}

async fn repoint(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Json(body): Json<RepointRequest>,
) -> (StatusCode, Json<CommandReply>) {
    apply(
        &ctx,
        &headers,
        "repoint",
        body.epoch,
        body.owner.clone(),
        |me| {
            me.detached = false;
            me.streaming = Some(true);
        },
    )
}

async fn detach(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Json(body): Json<DetachRequest>,
) -> (StatusCode, Json<CommandReply>) {
    apply(
        &ctx,
        &headers,
        "detach",
        body.epoch,
        body.owner.clone(),
        |me| {
            if me.role == InstanceRole::Replica {
                me.detached = true;
                me.streaming = Some(false);
            }
        },
    )
}

/// A port in 20000-32000, from the process's random hasher seed.
fn random_port() -> u16 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(u64::from(std::process::id()));
    20000 + u16::try_from(hasher.finish() % 12000).unwrap_or(0)
}

/// Serves instance `name` of `model`; returns its base URL and the server task.
pub async fn serve(name: &str, model: Shared) -> (String, tokio::task::JoinHandle<()>) {
    let ctx = Ctx {
        name: name.to_owned(),
        model,
    };
    let app = axum::Router::new()
        .route("/status", get(get_status))
        .route("/primary", get(get_primary))
        .route("/promote", post(promote))
        .route("/fence", post(fence))
        .route("/demote", post(demote))
        .route("/repoint", post(repoint))
        .route("/detach", post(detach))
        .with_state(ctx);
    for _ in 0..50 {
        let port = random_port();
        if let Ok(listener) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            return (format!("http://127.0.0.1:{port}"), task);
        }
    }
    panic!("no free port in 20000-32000 after 50 tries");
}

/// pg-0 primary and pg-1, pg-2 replicas, all at `epoch`.
pub async fn cluster(epoch: u64) -> (Shared, Vec<(String, String, tokio::task::JoinHandle<()>)>) {
    let model: Shared = Arc::default();
    {
        let mut m = model.lock().expect("fresh lock");
        m.instances
            .insert("pg-0".into(), status("pg-0", InstanceRole::Primary, epoch));
        m.instances
            .insert("pg-1".into(), status("pg-1", InstanceRole::Replica, epoch));
        m.instances
            .insert("pg-2".into(), status("pg-2", InstanceRole::Replica, epoch));
    }
    let mut servers = Vec::new();
    for name in ["pg-0", "pg-1", "pg-2"] {
        let (url, task) = serve(name, Arc::clone(&model)).await;
        servers.push((name.to_owned(), url, task));
    }
    (model, servers)
}
