//! A running redis-server on a caller's config, on a free 127.0.0.1 port, killed on drop.
//! `port`, `bind`, `dir` and `daemonize` are forced on the command line (which overrides the
//! file), so a rendered redis.conf can be started as it is.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use tempfile::TempDir;

use crate::process::{kill_and_reap, signal_group, spawn_logged, tail, wait_for_port};
use crate::{TestkitError, binaries, free_port};

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const PORT_ATTEMPTS: u32 = 5;

#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    log: PathBuf,
    dir: TempDir,
}

impl RedisServer {
    pub async fn start(config: &str) -> Result<RedisServer, TestkitError> {
        let redis_server = binaries::redis_server()?;
        let dir = tempfile::Builder::new()
            .prefix("shanraq-redis-")
            .tempdir()
            .map_err(|source| TestkitError::io("creating temp dir", source))?;
        let config_path = dir.path().join("redis.conf");
        std::fs::write(&config_path, config).map_err(|source| {
            TestkitError::io(format!("writing {}", config_path.display()), source)
        })?;
        let log = dir.path().join("redis.log");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let mut command = Command::new(&redis_server);
            command
                .arg(&config_path)
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .arg("--dir")
                .arg(dir.path())
                .args(["--daemonize", "no", "--logfile", ""]);
            let mut child = spawn_logged(&mut command, &log, "redis-server")?;
            match wait_for_port(&mut child, port, "redis-server", &log, READY_TIMEOUT).await {
                Ok(()) => {
                    return Ok(RedisServer {
                        child,
                        port,
                        log,
                        dir,
                    });
                }
                Err(error) => {
                    kill_and_reap(&mut child);
                    let conflict = tail(&log, 20).contains("Address already in use");
                    if !conflict || attempt >= PORT_ATTEMPTS {
                        return Err(error);
                    }
                }
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
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
