//! Async client of one instance manager's HTTP contract (`crate::wire`): status probes and the
//! bearer-authenticated commands, each bounded by its own timeout. A 409 becomes a typed
//! stale-epoch error so the engine can tell "someone newer acted" from "it failed". The token
//! never appears in logs, errors or `Debug` output.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wire::{
    CommandReply, DemoteRequest, DetachRequest, FenceRequest, InstanceStatus, LEASE_EPOCH_PARAM,
    LEASE_MS_PARAM, LEASE_OWNER_PARAM, PromoteRequest, RepointRequest, Upstream,
};

/// A bearer token whose `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    pub fn new(token: impl Into<String>) -> BearerToken {
        BearerToken(token.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Per-call timeouts. `status` should stay below the probe period; `demote` covers pg_rewind
/// or a fresh base backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientTimeouts {
    pub status: Duration,
    pub promote: Duration,
    /// Added to the fence's own `timeout_ms` (the instance stops postgres within it).
    pub fence_margin: Duration,
    pub repoint: Duration,
    pub demote: Duration,
    /// Covers the instance's own wait for its WAL receiver to stop.
    pub detach: Duration,
    /// Covers the instance's own wait for new sessions to see the setting.
    pub synchronous: Duration,
}

impl ClientTimeouts {
    /// Timeouts fitted to a probe period: status at 80 % of it.
    pub fn for_probe_period(probe_period: Duration) -> ClientTimeouts {
        ClientTimeouts {
            status: probe_period.mul_f64(0.8).max(Duration::from_millis(50)),
            promote: Duration::from_secs(15),
            fence_margin: Duration::from_secs(2),
            repoint: Duration::from_secs(10),
            demote: Duration::from_secs(300),
            detach: Duration::from_secs(5),
            synchronous: Duration::from_secs(10),
        }
    }
}

/// Why a call to an instance manager failed.
#[derive(Debug, thiserror::Error)]
pub enum InstanceClientError {
    #[error(
        "instance {node}: {endpoint} refused epoch {sent}: the instance holds epoch {instance_epoch}{}",
        holder.as_deref().map(|h| format!(" claimed by {h}")).unwrap_or_default()
    )]
    StaleEpoch {
        node: String,
        endpoint: &'static str,
        sent: u64,
        instance_epoch: u64,
        /// The engine that claimed the instance's epoch, when it says.
        holder: Option<String>,
    },
    #[error("instance {node}: {endpoint} did not answer within {timeout:?}")]
    Timeout {
        node: String,
        endpoint: &'static str,
        timeout: Duration,
    },
    #[error("instance {node}: {endpoint} answered HTTP {status}: {message}")]
    Http {
        node: String,
        endpoint: &'static str,
        status: u16,
        message: String,
    },
    #[error("instance {node}: {endpoint} did not succeed: {message}")]
    Refused {
        node: String,
        endpoint: &'static str,
        message: String,
    },
    #[error("instance {node}: {endpoint} unreachable: {source}")]
    Transport {
        node: String,
        endpoint: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("instance {node}: {endpoint} answered something unreadable: {source}")]
    Decode {
        node: String,
        endpoint: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("instance {node}: cannot build an HTTP client: {source}")]
    Build {
        node: String,
        #[source]
        source: reqwest::Error,
    },
}

impl InstanceClientError {
    /// The connection was refused: nothing listens on the manager's port.
    pub fn is_connection_refused(&self) -> bool {
        let InstanceClientError::Transport { source, .. } = self else {
            return false;
        };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source);
        while let Some(error) = cause {
            if let Some(io) = error.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::ConnectionRefused
            {
                return true;
            }
            cause = error.source();
        }
        false
    }
}

/// The client of one instance manager (`base_url` such as `http://127.0.0.1:28001`). Clones
/// share the base URL: when a pod comes back with a new IP, `set_base_url` on one clone moves
/// every user of the client (the driver's probes and commands, the router's confirmation).
#[derive(Clone, Debug)]
pub struct InstanceClient {
    http: reqwest::Client,
    node: String,
    base_url: Arc<RwLock<String>>,
    token: BearerToken,
    timeouts: ClientTimeouts,
    /// The engine whose fencing token this client's commands and lease renewals carry.
    owner: Option<String>,
}

impl InstanceClient {
    pub fn new(
        node: impl Into<String>,
        base_url: impl Into<String>,
        token: BearerToken,
        timeouts: ClientTimeouts,
    ) -> Result<InstanceClient, InstanceClientError> {
        let node = node.into();
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.status)
            .build()
            .map_err(|source| InstanceClientError::Build {
                node: node.clone(),
                source,
            })?;
        let base_url = Arc::new(RwLock::new(
            base_url.into().trim_end_matches('/').to_owned(),
        ));
        Ok(InstanceClient {
            http,
            node,
            base_url,
            token,
            timeouts,
            owner: None,
        })
    }

    /// This client (sharing its address with every clone) speaking for the engine `owner`:
    /// its commands and lease renewals carry that identity beside their epoch.
    pub fn owned_by(&self, owner: impl Into<String>) -> InstanceClient {
        InstanceClient {
            owner: Some(owner.into()),
            ..self.clone()
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Where the instance manager is reached now.
    pub fn base_url(&self) -> String {
        self.base_url
            .read()
            .map(|url| url.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Moves this client and all its clones to `base_url`; true when it changed.
    pub fn set_base_url(&self, base_url: &str) -> bool {
        let wanted = base_url.trim_end_matches('/');
        let mut slot = self
            .base_url
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *slot == wanted {
            return false;
        }
        wanted.clone_into(&mut slot);
        true
    }

    /// `GET /status`.
    pub async fn status(&self) -> Result<InstanceStatus, InstanceClientError> {
        self.probe(self.http.get(self.url("/status"))).await
    }

    /// `GET /status`, renewing the primary's lease for `lease` when the instance is primary at
    /// `epoch` (authenticated: nobody but the operator keeps a primary writable).
    pub async fn status_renewing(
        &self,
        epoch: u64,
        lease: Duration,
    ) -> Result<InstanceStatus, InstanceClientError> {
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        let mut url = reqwest::Url::parse(&self.url("/status")).map_err(|error| {
            InstanceClientError::Refused {
                node: self.node.clone(),
                endpoint: "/status",
                message: format!("invalid URL: {error}"),
            }
        })?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair(LEASE_EPOCH_PARAM, &epoch.to_string())
                .append_pair(LEASE_MS_PARAM, &lease_ms.to_string());
            if let Some(owner) = &self.owner {
                query.append_pair(LEASE_OWNER_PARAM, owner);
            }
        }
        let request = self.http.get(url).bearer_auth(self.token.expose());
        self.probe(request).await
    }

    async fn probe(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<InstanceStatus, InstanceClientError> {
        let endpoint = "/status";
        let response = self.send(request, endpoint, self.timeouts.status).await?;
        if !response.status().is_success() {
            return Err(self.http_error(endpoint, response).await);
        }
        response
            .json()
            .await
            .map_err(|source| self.decode_error(endpoint, source))
    }

    /// `GET /primary`: whether the instance would take writes through HAProxy's check.
    pub async fn is_primary(&self) -> Result<bool, InstanceClientError> {
        let endpoint = "/primary";
        let response = self
            .send(
                self.http.get(self.url(endpoint)),
                endpoint,
                self.timeouts.status,
            )
            .await?;
        Ok(response.status().is_success())
    }

    pub async fn promote(&self, epoch: u64) -> Result<CommandReply, InstanceClientError> {
        self.command(
            "/promote",
            epoch,
            &PromoteRequest {
                epoch,
                owner: self.owner.clone(),
            },
            self.timeouts.promote,
        )
        .await
    }

    /// `POST /fence`; the instance gets `stop_within` to stop postgres, the call that plus the
    /// fence margin.
    pub async fn fence(
        &self,
        epoch: u64,
        stop_within: Duration,
    ) -> Result<CommandReply, InstanceClientError> {
        let timeout_ms = u64::try_from(stop_within.as_millis()).unwrap_or(u64::MAX);
        let request = FenceRequest {
            epoch,
            owner: self.owner.clone(),
            timeout_ms,
        };
        self.command(
            "/fence",
            epoch,
            &request,
            stop_within + self.timeouts.fence_margin,
        )
        .await
    }

    pub async fn demote(
        &self,
        epoch: u64,
        upstream: Upstream,
    ) -> Result<CommandReply, InstanceClientError> {
        self.command(
            "/demote",
            epoch,
            &DemoteRequest {
                epoch,
                owner: self.owner.clone(),
                upstream,
            },
            self.timeouts.demote,
        )
        .await
    }

    pub async fn repoint(
        &self,
        epoch: u64,
        upstream: Upstream,
    ) -> Result<CommandReply, InstanceClientError> {
        self.command(
            "/repoint",
            epoch,
            &RepointRequest {
                epoch,
                owner: self.owner.clone(),
                upstream,
            },
            self.timeouts.repoint,
        )
        .await
    }

    pub async fn detach(&self, epoch: u64) -> Result<CommandReply, InstanceClientError> {
        self.command(
            "/detach",
            epoch,
            &DetachRequest {
                epoch,
                owner: self.owner.clone(),
            },
            self.timeouts.detach,
        )
        .await
    }

    /// `POST /synchronous`: lowers the primary's `synchronous_standby_names` to
    /// `standby_names`, or restores its configured setting when `None`.
    pub async fn synchronous(
        &self,
        epoch: u64,
        standby_names: Option<String>,
    ) -> Result<CommandReply, InstanceClientError> {
        self.command(
            "/synchronous",
            epoch,
            &crate::wire::SynchronousRequest {
                epoch,
                owner: self.owner.clone(),
                standby_names,
            },
            self.timeouts.synchronous,
        )
        .await
    }

    /// `POST /backup`: a pgBackRest backup of this instance, answered when it is done (or
    /// failed, with pgBackRest's error in the reply). `timeout` bounds the whole backup.
    pub async fn backup(
        &self,
        request: &crate::wire::BackupRequest,
        timeout: Duration,
    ) -> Result<crate::wire::BackupReply, InstanceClientError> {
        let endpoint = "/backup";
        let request = self
            .http
            .post(self.url(endpoint))
            .bearer_auth(self.token.expose())
            .json(request);
        let response = self.send(request, endpoint, timeout).await?;
        let status = response.status();
        // Failures carry a BackupReply too (409 when one runs already, 5xx with the error).
        match self
            .read::<crate::wire::BackupReply>(endpoint, response)
            .await
        {
            Ok(reply) => Ok(reply),
            Err(_) if !status.is_success() => Err(InstanceClientError::Refused {
                node: self.node.clone(),
                endpoint,
                message: format!("POST /backup answered {status}"),
            }),
            Err(error) => Err(error),
        }
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}{endpoint}", self.base_url())
    }

    async fn command<B: Serialize>(
        &self,
        endpoint: &'static str,
        epoch: u64,
        body: &B,
        timeout: Duration,
    ) -> Result<CommandReply, InstanceClientError> {
        let request = self
            .http
            .post(self.url(endpoint))
            .bearer_auth(self.token.expose())
            .json(body);
        let response = self.send(request, endpoint, timeout).await?;
        let status = response.status();
        if status == reqwest::StatusCode::CONFLICT {
            let (instance_epoch, holder) = self
                .read::<CommandReply>(endpoint, response)
                .await
                .map_or((0, None), |reply| (reply.epoch, reply.holder));
            return Err(InstanceClientError::StaleEpoch {
                node: self.node.clone(),
                endpoint,
                sent: epoch,
                instance_epoch,
                holder,
            });
        }
        if !status.is_success() {
            return Err(self.http_error(endpoint, response).await);
        }
        let reply: CommandReply = self.read(endpoint, response).await?;
        if !reply.ok {
            return Err(InstanceClientError::Refused {
                node: self.node.clone(),
                endpoint,
                message: reply.message,
            });
        }
        Ok(reply)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        endpoint: &'static str,
        timeout: Duration,
    ) -> Result<reqwest::Response, InstanceClientError> {
        request.timeout(timeout).send().await.map_err(|source| {
            if source.is_timeout() {
                InstanceClientError::Timeout {
                    node: self.node.clone(),
                    endpoint,
                    timeout,
                }
            } else {
                InstanceClientError::Transport {
                    node: self.node.clone(),
                    endpoint,
                    source: source.without_url(),
                }
            }
        })
    }

    async fn read<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        response: reqwest::Response,
    ) -> Result<T, InstanceClientError> {
        response
            .json()
            .await
            .map_err(|source| self.decode_error(endpoint, source))
    }

    fn decode_error(&self, endpoint: &'static str, source: reqwest::Error) -> InstanceClientError {
        if source.is_timeout() {
            return InstanceClientError::Timeout {
                node: self.node.clone(),
                endpoint,
                timeout: self.timeouts.status,
            };
        }
        InstanceClientError::Decode {
            node: self.node.clone(),
            endpoint,
            source: source.without_url(),
        }
    }

    async fn http_error(
        &self,
        endpoint: &'static str,
        response: reqwest::Response,
    ) -> InstanceClientError {
        let status = response.status().as_u16();
        let mut message = response.text().await.unwrap_or_default();
        message.truncate(300);
        InstanceClientError::Http {
            node: self.node.clone(),
            endpoint,
            status,
            message,
        }
    }
}
