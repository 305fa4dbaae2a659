//! Waiting, bounded, until a topology is formed (every replica streaming, the `rw` frontend
//! on the primary) or a member answers as asked; a timeout carries every manager's log tail,
//! which usually says why.

use std::time::{Duration, Instant};

use super::{LocalTopology, START_TIMEOUT};
use crate::TestkitError;
use crate::process::tail;

impl LocalTopology {
    pub(super) async fn wait_until_formed(
        &mut self,
        synchronous: bool,
    ) -> Result<(), TestkitError> {
        let deadline = Instant::now() + START_TIMEOUT;
        self.wait_http(0, "/primary", deadline).await?;
        for index in 1..self.members.len() {
            self.wait_http(index, "/replica", deadline).await?;
        }
        let replicas = self.members.len() - 1;
        loop {
            let status = self.status(0).await?;
            let streaming = status["replication"]
                .as_array()
                .map(|peers| {
                    peers
                        .iter()
                        .filter(|peer| peer["state"] == "streaming")
                        .count()
                })
                .unwrap_or(0);
            if streaming >= replicas
                && (!synchronous || replicas == 0 || status["synchronous_standby_names"] != "")
            {
                break;
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready(0, format!("replicas never all streamed: {status}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.wait_routed(0, deadline).await
    }

    fn not_ready(&self, index: usize, detail: String) -> TestkitError {
        let logs: Vec<String> = self
            .members
            .iter()
            .map(|member| {
                format!(
                    "--- {} ---\n{}",
                    member.info.name,
                    tail(&member.info.log_path, 25)
                )
            })
            .collect();
        TestkitError::NotReady {
            what: format!("topology member {index}"),
            seconds: START_TIMEOUT.as_secs(),
            detail: format!("{detail}\n{}", logs.join("\n")),
        }
    }

    /// Waits until GET `path` on member `index` answers 200.
    async fn wait_http(
        &mut self,
        index: usize,
        path: &str,
        deadline: Instant,
    ) -> Result<(), TestkitError> {
        loop {
            if let Some(child) = self.members[index].child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(TestkitError::Exited {
                    what: format!("instance manager {}", self.members[index].info.name),
                    status: status.to_string(),
                    log: tail(&self.members[index].info.log_path, 40),
                });
            }
            if self.get(index, path).await.ok() == Some(200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready(index, format!("GET {path} never answered 200")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a connection through the `rw` frontend lands on member `index`.
    pub async fn wait_routed(&self, index: usize, deadline: Instant) -> Result<(), TestkitError> {
        self.member(index)?;
        loop {
            if let Ok(Some(routed)) = self.rw_backend().await
                && routed == index
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready(
                    index,
                    format!(
                        "HAProxy rw never routed to it; haproxy log:\n{}",
                        self.haproxy.log()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until GET `path` on member `index` answers `code`; false on timeout.
    pub async fn wait_for_code(
        &self,
        index: usize,
        path: &str,
        code: u16,
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.get(index, path).await.ok() == Some(code) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
