//! A running redis-server on a caller's config, on a free 127.0.0.1 port (or a given port, or
//! inside a `NetLab` node on its lab address), killed on drop. `port`, `bind`, `dir` and
//! `daemonize` are forced on the command line (which overrides the file), so a rendered
//! redis.conf can be started as it is. A server started on a given port is how tests restart a
//! node in place: same address, empty directory.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ports::start_on_free_port;
use crate::process::{
    ensure_alive, kill_and_reap, signal_group, spawn_logged, tail, wait_for_port,
};
use crate::{NetLab, TestkitError, binaries};

/// What redis-server logs once it accepts clients.
const READY_LINE: &str = "Ready to accept connections";

const READY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    log: PathBuf,
    dir: TempDir,
    /// How it was started, for `restart_in_place` (`None`: started by `start`).
    bind: Option<Ipv4Addr>,
}

impl RedisServer {
    pub async fn start(config: &str) -> Result<RedisServer, TestkitError> {
        let redis_server = binaries::redis_server()?;
        let dir = crate::process::temp_dir("shanraq-redis-")?;
        let config_path = dir.path().join("redis.conf");
        std::fs::write(&config_path, config).map_err(|source| {
            TestkitError::io(format!("writing {}", config_path.display()), source)
        })?;
        let log = dir.path().join("redis.log");
        let (child, port) = start_on_free_port(&log, "Address already in use", async |port| {
            let mut command = Command::new(&redis_server);
            command
                .arg(&config_path)
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .arg("--dir")
                .arg(dir.path())
                .args(["--daemonize", "no", "--logfile", ""]);
            let mut child =
                spawn_logged(&mut command, &log, "redis-server").map_err(|e| (None, e))?;
            match wait_for_port(&mut child, port, "redis-server", &log, READY_TIMEOUT).await {
                Ok(()) => Ok(child),
                Err(error) => Err((Some(child), error)),
            }
        })
        .await?;
        Ok(RedisServer {
            child,
            port,
            log,
            dir,
            bind: None,
        })
    }

    /// A server on `bind:port` (in `lab`'s node `node` when given), with an empty directory.
    /// Ready once it logs that it accepts connections (a lab address cannot be dialled from
    /// the caller's namespace).
    pub async fn start_at(
        config: &str,
        bind: Ipv4Addr,
        port: u16,
        lab: Option<(&NetLab, &str)>,
    ) -> Result<RedisServer, TestkitError> {
        let redis_server = binaries::redis_server()?;
        let dir = crate::process::temp_dir("shanraq-redis-")?;
        let config_path = dir.path().join("redis.conf");
        std::fs::write(&config_path, config).map_err(|source| {
            TestkitError::io(format!("writing {}", config_path.display()), source)
        })?;
        let log = dir.path().join("redis.log");
        let mut command = match lab {
            Some((lab, node)) => lab.command(node, &redis_server)?,
            None => Command::new(&redis_server),
        };
        command
            .arg(&config_path)
            .args(["--port", &port.to_string()])
            .args(["--bind", &bind.to_string()])
            .arg("--dir")
            .arg(dir.path())
            .args(["--daemonize", "no", "--logfile", ""]);
        let mut child = spawn_logged(&mut command, &log, "redis-server")?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Err(error) = ensure_alive(&mut child, "redis-server", &log) {
                kill_and_reap(&mut child);
                return Err(error);
            }
            if std::fs::read_to_string(&log).is_ok_and(|text| text.contains(READY_LINE)) {
                return Ok(RedisServer {
                    child,
                    port,
                    log,
                    dir,
                    bind: Some(bind),
                });
            }
            if Instant::now() >= deadline {
                kill_and_reap(&mut child);
                return Err(TestkitError::NotReady {
                    what: "redis-server".to_owned(),
                    seconds: READY_TIMEOUT.as_secs(),
                    detail: format!("{bind}:{port} never logged readiness:\n{}", tail(&log, 40)),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGKILL of the server (kill -9); the directory stays until drop.
    pub fn kill(&mut self) {
        kill_and_reap(&mut self.child);
    }

    /// Starts the server again (after `kill`) on its address, with its directory as it was:
    /// what a pod restarted on its volume does. Loopback servers of `start_at` only.
    pub async fn restart_in_place(&mut self) -> Result<(), TestkitError> {
        let bind = self.bind.unwrap_or(Ipv4Addr::LOCALHOST);
        kill_and_reap(&mut self.child);
        let redis_server = binaries::redis_server()?;
        let config_path = self.dir.path().join("redis.conf");
        let mut command = Command::new(&redis_server);
        command
            .arg(&config_path)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", &bind.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--daemonize", "no", "--logfile", ""]);
        let before =
            std::fs::read_to_string(&self.log).map_or(0, |text| text.matches(READY_LINE).count());
        self.child = spawn_logged(&mut command, &self.log, "redis-server")?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            ensure_alive(&mut self.child, "redis-server", &self.log)?;
            let ready = std::fs::read_to_string(&self.log)
                .map_or(0, |text| text.matches(READY_LINE).count());
            if ready > before {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(TestkitError::NotReady {
                    what: "redis-server".to_owned(),
                    seconds: READY_TIMEOUT.as_secs(),
                    detail: format!(
                        "restart on {bind}:{} never logged readiness:\n{}",
                        self.port,
                        tail(&self.log, 40)
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `redis://127.0.0.1:PORT` (no password: add one if the config sets `requirepass`).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's working directory (RDB and AOF files land here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGSTOP: the server stops answering but keeps its sockets, as on a frozen host.
    pub fn pause(&self) {
        signal_group(self.child.id(), nix::sys::signal::Signal::SIGSTOP);
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) {
        signal_group(self.child.id(), nix::sys::signal::Signal::SIGCONT);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn command(port: u16, request: &[u8]) -> String {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to redis");
        stream.write_all(request).await.expect("send");
        let mut buffer = vec![0_u8; 256];
        let read = stream.read(&mut buffer).await.expect("read reply");
        String::from_utf8_lossy(&buffer[..read]).into_owned()
    }

    #[tokio::test]
    async fn runs_the_given_config() {
        let server = RedisServer::start("maxmemory 3mb\nmaxmemory-policy allkeys-lru\n")
            .await
            .expect("redis starts");
        assert_eq!(command(server.port(), b"PING\r\n").await, "+PONG\r\n");
        let reply = command(server.port(), b"CONFIG GET maxmemory-policy\r\n").await;
        assert!(reply.contains("allkeys-lru"), "{reply}");
    }

    #[tokio::test]
    async fn a_bad_config_fails_with_the_server_log() {
        let error = RedisServer::start("no-such-directive yes\n")
            .await
            .expect_err("redis must refuse an unknown directive");
        assert!(
            error.to_string().contains("no-such-directive"),
            "error should quote redis' complaint: {error}"
        );
    }
}
