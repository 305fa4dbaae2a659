//! What the plugin asks of the API server: read a cluster and its Pods, and ask the operator
//! for a switchover or a failover drill through the annotations it already acts on
//! (`shanraq.org/switchover`, `shanraq.org/drill`). The plugin never touches the database
//! itself: the operator checks, acts and answers with Events and `status`.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use shanraq_api::ShanraqCluster;
use shanraq_api::names::{ANNOTATION_DRILL, ANNOTATION_SWITCHOVER, KIND, LABEL_CLUSTER};
use shanraq_api::status::DrillStatus;

use crate::error::{ClusterRef, PluginError, is_not_found, reason};

/// The field manager of the plugin's annotation patches.
pub const FIELD_MANAGER: &str = "kubectl-shanraq";

/// Reads the ShanraqCluster.
pub async fn get(client: &kube::Client, at: &ClusterRef) -> Result<ShanraqCluster, PluginError> {
    let api: Api<ShanraqCluster> = Api::namespaced(client.clone(), &at.namespace);
    api.get(&at.name).await.map_err(|error| {
        if is_not_found(&error) {
            PluginError::NotFound {
                cluster: at.clone(),
            }
        } else {
            PluginError::Read {
                cluster: at.clone(),
                reason: reason(&error),
            }
        }
    })
}

/// The cluster's Pods (every component's Pods carry `shanraq.org/cluster=<name>`).
pub async fn pods(client: &kube::Client, at: &ClusterRef) -> Result<Vec<Pod>, PluginError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &at.namespace);
    let params = ListParams::default().labels(&format!("{LABEL_CLUSTER}={}", at.name));
    api.list(&params)
        .await
        .map(|list| list.items)
        .map_err(|error| PluginError::ListPods {
            cluster: at.clone(),
            reason: reason(&error),
        })
}

async fn annotate(
    client: &kube::Client,
    at: &ClusterRef,
    cluster: &ShanraqCluster,
    annotation: &'static str,
    value: &str,
) -> Result<(), PluginError> {
    let api: Api<ShanraqCluster> = Api::namespaced(client.clone(), &at.namespace);
    // Guarded by the uid: a cluster deleted and re-created meanwhile is not the one asked about.
    let body = json!({
        "metadata": {
            "uid": cluster.metadata.uid,
            "annotations": { annotation: value },
        },
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(&at.name, &params, &Patch::Merge(&body))
        .await
        .map(|_| ())
        .map_err(|error| PluginError::Annotate {
            cluster: at.clone(),
            annotation,
            reason: reason(&error),
        })
}

fn refused(at: &ClusterRef, reason: impl Into<String>) -> PluginError {
    PluginError::Refused {
        cluster: at.clone(),
        reason: reason.into(),
    }
}

/// The PostgreSQL members of `cluster`, `<name>-pg-<ordinal>`.
fn members(cluster: &ShanraqCluster, at: &ClusterRef) -> Vec<String> {
    let names = shanraq_api::names::Names::new(&at.name);
    (0..cluster.spec.postgres.instances)
        .map(|n| names.pod(shanraq_api::names::Component::Postgres, n))
        .collect()
}

/// The reasons of the operator's answer to a switchover request
/// (`shanraq-operator/src/engines/postgres/switchover.rs`).
pub const SWITCHOVER_REQUESTED: &str = "SwitchoverRequested";
pub const SWITCHOVER_REFUSED: &str = "SwitchoverRefused";

/// How far the operator's clock may be behind this machine's when its answer is matched to
/// the request by time.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Asks for a switchover to `to` (the best replica when `None`) and, unless `waiting` says
/// not to, waits for the operator's answer: its `SwitchoverRequested` Event, or the reason of
/// its `SwitchoverRefused` as an error.
pub async fn switchover(
    client: &kube::Client,
    at: &ClusterRef,
    to: Option<&str>,
    waiting: Waiting,
    out: &mut dyn Write,
) -> Result<(), PluginError> {
    let cluster = get(client, at).await?;
    if !cluster.spec.postgres.enabled {
        return Err(refused(
            at,
            "PostgreSQL is not enabled, so there is nothing to switch over",
        ));
    }
    if let Some(pending) = cluster
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_SWITCHOVER))
    {
        return Err(refused(
            at,
            format!(
                "a switchover is already requested ({ANNOTATION_SWITCHOVER}={pending}) and not yet answered by the operator"
            ),
        ));
    }
    let primary = cluster
        .status
        .as_ref()
        .and_then(|s| s.postgres.as_ref())
        .and_then(|p| p.current_primary.clone());
    if let Some(to) = to {
        let members = members(&cluster, at);
        if !members.iter().any(|m| m == to) {
            return Err(refused(
                at,
                format!(
                    "{to} is not one of its PostgreSQL instances ({})",
                    members.join(", ")
                ),
            ));
        }
        if primary.as_deref() == Some(to) {
            return Err(refused(at, format!("{to} is already the primary")));
        }
    }
    let value = to.unwrap_or("any");
    let requested_at = jiff::Timestamp::now();
    annotate(client, at, &cluster, ANNOTATION_SWITCHOVER, value).await?;
    let output = |e: std::io::Error| PluginError::Output(e.to_string());
    let target = to.map_or_else(|| "the best replica".to_owned(), str::to_owned);
    writeln!(
        out,
        "{at}: switchover from {} to {target} requested ({ANNOTATION_SWITCHOVER}={value})",
        primary.as_deref().unwrap_or("the current primary"),
    )
    .map_err(output)?;
    let Some(timeout) = waiting.timeout else {
        return writeln!(
            out,
            "The operator answers with a {SWITCHOVER_REQUESTED} or {SWITCHOVER_REFUSED} Event: \
             kubectl get events -n {} --field-selector involvedObject.name={}",
            at.namespace, at.name
        )
        .map_err(output);
    };
    // The operator removes the annotation once it has answered.
    let started = Instant::now();
    loop {
        let seen = get(client, at).await?;
        let pending = seen
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(ANNOTATION_SWITCHOVER));
        if !pending {
            break;
        }
        if started.elapsed() >= timeout {
            return Err(refused(
                at,
                format!(
                    "the operator did not answer the switchover request within {}s (is it running?)",
                    timeout.as_secs()
                ),
            ));
        }
        tokio::time::sleep(waiting.interval).await;
    }
    match switchover_answer(client, at, requested_at).await? {
        Some((reason, note)) if reason == SWITCHOVER_REFUSED => Err(refused(at, note)),
        Some((_, note)) => writeln!(out, "{at}: {note}").map_err(output),
        None => writeln!(
            out,
            "{at}: the operator removed the request but no {SWITCHOVER_REQUESTED} or \
             {SWITCHOVER_REFUSED} Event was found (kubectl get events -n {} --field-selector involvedObject.name={})",
            at.namespace, at.name
        )
        .map_err(output),
    }
}

/// The newest `SwitchoverRequested` or `SwitchoverRefused` Event about the cluster, if it is
/// recent enough to answer a request made at `requested_at`: `(reason, note)`.
async fn switchover_answer(
    client: &kube::Client,
    at: &ClusterRef,
    requested_at: jiff::Timestamp,
) -> Result<Option<(String, String)>, PluginError> {
    let api: Api<Event> = Api::namespaced(client.clone(), &at.namespace);
    let params = ListParams::default().fields(&format!("regarding.name={}", at.name));
    let events = api
        .list(&params)
        .await
        .map_err(|error| PluginError::ListEvents {
            cluster: at.clone(),
            reason: reason(&error),
        })?;
    let skew = jiff::SignedDuration::try_from(CLOCK_SKEW).unwrap_or_default();
    let newest = events
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some(KIND))
        .filter_map(|e| {
            let reason = e.reason.clone()?;
            if reason != SWITCHOVER_REQUESTED && reason != SWITCHOVER_REFUSED {
                return None;
            }
            let time = e
                .series
                .as_ref()
                .map(|s| s.last_observed_time.0)
                .or(e.event_time.as_ref().map(|t| t.0))?;
            Some((time, reason, e.note.clone().unwrap_or_default()))
        })
        .filter(|(time, _, _)| time.duration_since(requested_at) >= -skew)
        .max_by_key(|(time, _, _)| *time);
    Ok(newest.map(|(_, reason, note)| (reason, note)))
}

/// How `switchover` and `drill` wait for the operator's answer.
#[derive(Clone, Copy, Debug)]
pub struct Waiting {
    /// `None`: return once the request is made.
    pub timeout: Option<Duration>,
    pub interval: Duration,
}

/// Reads one answer from `input`; only `y` or `yes` confirm.
fn confirmed(input: &mut dyn BufRead) -> bool {
    let mut answer = String::new();
    input.read_line(&mut answer).is_ok()
        && matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Asks the operator for a failover drill: it deletes the primary's Pod, lets the HA engine
/// fail over, and records the measured RTO in `status.drill` and an Event.
pub async fn drill(
    client: &kube::Client,
    at: &ClusterRef,
    assume_yes: bool,
    waiting: Waiting,
    request: &str,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<Option<DrillStatus>, PluginError> {
    let output = |e: std::io::Error| PluginError::Output(e.to_string());
    let cluster = get(client, at).await?;
    if !cluster.spec.postgres.enabled {
        return Err(refused(
            at,
            "PostgreSQL is not enabled, so there is no primary to drill",
        ));
    }
    let status = cluster.status.clone().unwrap_or_default();
    if let Some(drill) = status.drill.as_ref().filter(|d| d.phase == "Running") {
        return Err(refused(
            at,
            format!("the drill {} is still running", drill.request),
        ));
    }
    let primary = status
        .postgres
        .as_ref()
        .and_then(|p| p.current_primary.clone())
        .ok_or_else(|| refused(at, "it has no primary yet (status.postgres.currentPrimary)"))?;
    if !assume_yes {
        write!(
            out,
            "This deletes Pod {}/{primary}, the primary of {at}, with no grace period: writes stop until the operator has failed over. Continue? [y/N] ",
            at.namespace
        )
        .map_err(output)?;
        out.flush().map_err(output)?;
        if !confirmed(input) {
            return Err(PluginError::NotConfirmed {
                cluster: at.clone(),
            });
        }
    }
    annotate(client, at, &cluster, ANNOTATION_DRILL, request).await?;
    writeln!(
        out,
        "{at}: failover drill {request} requested ({ANNOTATION_DRILL}); primary {primary}"
    )
    .map_err(output)?;
    let Some(timeout) = waiting.timeout else {
        writeln!(
            out,
            "Follow it with: kubectl shanraq status -n {} {}",
            at.namespace, at.name
        )
        .map_err(output)?;
        return Ok(None);
    };
    let started = Instant::now();
    loop {
        let seen = get(client, at).await?;
        let drill = seen
            .status
            .and_then(|s| s.drill)
            .filter(|d| d.request == request);
        if let Some(drill) = drill.filter(|d| d.phase != "Running") {
            if drill.phase == "Completed" {
                writeln!(out, "{at}: {}", drill.message).map_err(output)?;
                return Ok(Some(drill));
            }
            return Err(PluginError::DrillUnsuccessful {
                cluster: at.clone(),
                phase: drill.phase.to_ascii_lowercase(),
                message: drill.message,
            });
        }
        if started.elapsed() >= timeout {
            return Err(PluginError::DrillTimeout {
                cluster: at.clone(),
                request: request.to_owned(),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(waiting.interval).await;
    }
}
