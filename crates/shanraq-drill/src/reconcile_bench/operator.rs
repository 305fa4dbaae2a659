//! The operator under measurement: the separate process a user deploys (HA tasks off),
//! watched at its `/healthz`, its peak RSS read from /proc, SIGKILLed by PID when dropped; a
//! failed wait carries its last log lines.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::SETUP_TIMEOUT;
use crate::error::DrillError;

/// The operator under measurement, SIGKILLed by PID when dropped.
pub(super) struct OperatorProcess {
    child: Child,
    metrics: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl OperatorProcess {
    pub(super) fn start(
        binary: &Path,
        kubeconfig: &Path,
        namespace: &str,
        port: u16,
    ) -> Result<OperatorProcess, DrillError> {
        let dir = tempfile::tempdir().map_err(|error| DrillError::Operator {
            problem: format!("no directory for its log: {error}"),
        })?;
        let log = dir.path().join("operator.log");
        let out = std::fs::File::create(&log).map_err(|error| DrillError::Operator {
            problem: format!("cannot create {}: {error}", log.display()),
        })?;
        let err = out.try_clone().map_err(|error| DrillError::Operator {
            problem: format!("cannot share {}: {error}", log.display()),
        })?;
        let metrics = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(binary)
            .arg("operator")
            .arg("--leader-election=false")
            .env("KUBECONFIG", kubeconfig)
            .env("SHANRAQ_HA", "false")
            .env("SHANRAQ_WATCH_NAMESPACES", namespace)
            .env("SHANRAQ_METRICS_ADDR", metrics.to_string())
            .env("SHANRAQ_LOG_LEVEL", "warn")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|error| DrillError::Operator {
                problem: format!("{} operator did not start: {error}", binary.display()),
            })?;
        Ok(OperatorProcess {
            child,
            metrics,
            log,
            _dir: dir,
        })
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(20).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Whether `/healthz` answers 200 (the operator serves; the first cluster's convergence
    /// then shows that its controller acts).
    fn ready(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&self.metrics, Duration::from_secs(1))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        if stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
    }

    pub(super) async fn wait_ready(&mut self) -> Result<(), DrillError> {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(DrillError::Operator {
                    problem: format!(
                        "exited ({status}) before it was ready:\n{}",
                        self.log_tail()
                    ),
                });
            }
            if self.ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DrillError::timeout_with(
                    format!("the operator's /healthz on {}", self.metrics),
                    SETUP_TIMEOUT,
                    self.log_tail(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `VmHWM` of the process, in MiB.
    pub(super) fn peak_rss_mib(&self) -> Result<f64, DrillError> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).map_err(|error| DrillError::Operator {
            problem: format!("cannot read {path}: {error}"),
        })?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map(|kib| kib / 1024.0)
            .ok_or_else(|| DrillError::Operator {
                problem: format!("{path} has no VmHWM line"),
            })
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A timeout or watch failure with the operator's last log lines, which usually say why.
pub(super) fn with_log(error: DrillError, operator: &OperatorProcess) -> DrillError {
    match error {
        DrillError::Timeout {
            what,
            seconds,
            detail,
        } => DrillError::Timeout {
            what,
            seconds,
            detail: format!(
                "{detail}\noperator log (last lines):\n{}",
                operator.log_tail()
            ),
        },
        other => other,
    }
}
