//! HAProxy for tests: `check_config` asks the real binary whether a rendered haproxy.cfg is
//! valid, and `HaproxyProcess` runs one in the foreground on a config (on the host or through a
//! launcher such as `ip netns exec`), killed on drop.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use tempfile::TempDir;

use crate::process::{kill_and_reap, spawn_logged, wait_for_addr};
use crate::{TestkitError, binaries};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `haproxy -c -f` on `config`; the error carries HAProxy's own diagnostics.
pub fn check_config(config: &str) -> Result<(), TestkitError> {
    let haproxy = binaries::haproxy()?;
    let dir = crate::process::temp_dir("shanraq-haproxy-check-")?;
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, config)
        .map_err(|source| TestkitError::io(format!("writing {}", path.display()), source))?;
    let output = Command::new(&haproxy)
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .map_err(|source| TestkitError::io("running haproxy -c", source))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(TestkitError::CommandFailed {
            command: "haproxy -c -f haproxy.cfg".to_string(),
            status: output.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }
}

/// The ports of every `bind 127.0.0.1:PORT` line, used to tell when HAProxy is ready.
pub fn bound_ports(config: &str) -> Vec<u16> {
    config
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("bind")?.trim();
            let address = rest.split_whitespace().next()?;
            let (host, port) = address.rsplit_once(':')?;
            if host == "127.0.0.1" {
                port.parse().ok()
            } else {
                None
            }
        })
        .collect()
}

/// A running HAProxy (`haproxy -db -f cfg`), in its own process group, killed on drop.
#[derive(Debug)]
pub struct HaproxyProcess {
    child: Child,
    config_path: PathBuf,
    log: PathBuf,
    _dir: TempDir,
}

impl HaproxyProcess {
    /// Starts HAProxy on `config` and waits until every `bind 127.0.0.1:PORT` accepts.
    pub async fn start(config: &str) -> Result<HaproxyProcess, TestkitError> {
        let ready: Vec<SocketAddr> = bound_ports(config)
            .into_iter()
            .map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .collect();
        HaproxyProcess::start_with(config, |haproxy| Ok(Command::new(haproxy)), &ready).await
    }

    /// Starts HAProxy on `config` with the command `launch` makes of HAProxy's path (e.g.
    /// `|haproxy| lab.command("proxy", haproxy)`; `-db -f CONFIG` is appended), and waits until
    /// every address of `ready` accepts a connection from the caller's network namespace.
    pub async fn start_with(
        config: &str,
        launch: impl FnOnce(&Path) -> Result<Command, TestkitError>,
        ready: &[SocketAddr],
    ) -> Result<HaproxyProcess, TestkitError> {
        check_config(config)?;
        let haproxy = binaries::haproxy()?;
        let dir = crate::process::temp_dir("shanraq-haproxy-")?;
        let config_path = dir.path().join("haproxy.cfg");
        std::fs::write(&config_path, config).map_err(|source| {
            TestkitError::io(format!("writing {}", config_path.display()), source)
        })?;
        let log = dir.path().join("haproxy.log");
        let mut command = launch(&haproxy)?;
        command.arg("-db").arg("-f").arg(&config_path);
        let mut child = spawn_logged(&mut command, &log, "haproxy")?;
        for addr in ready {
            if let Err(error) =
                wait_for_addr(&mut child, *addr, "haproxy", &log, READY_TIMEOUT).await
            {
                kill_and_reap(&mut child);
                return Err(error);
            }
        }
        Ok(HaproxyProcess {
            child,
            config_path,
            log,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// HAProxy's output so far (alerts, warnings, health-check transitions).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for HaproxyProcess {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::free_port;

    #[test]
    fn check_config_accepts_a_valid_config_and_quotes_errors() {
        check_config("defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\nlisten x\n  bind 127.0.0.1:20001\n  server a 127.0.0.1:20002\n")
            .expect("valid config");
        let error = check_config("listen x\n  bind 127.0.0.1:20001\n  no_such_keyword on\n")
            .expect_err("invalid config");
        assert!(
            error.to_string().contains("no_such_keyword"),
            "haproxy's diagnostic should name the bad keyword: {error}"
        );
    }

    #[tokio::test]
    async fn a_running_haproxy_forwards_tcp_and_dies_on_drop() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let backend = tokio::net::TcpListener::bind(("127.0.0.1", free_port().expect("port")))
            .await
            .expect("backend listens");
        let backend_port = backend.local_addr().expect("addr").port();
        let front = free_port().expect("port");
        let config = format!(
            "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\nlisten x\n  bind 127.0.0.1:{front}\n  server a 127.0.0.1:{backend_port}\n"
        );
        // Every connection gets a greeting, the readiness probe's included.
        let server = tokio::spawn(async move {
            for _ in 0..10 {
                let Ok((mut socket, _)) = backend.accept().await else {
                    return;
                };
                let _ = socket.write_all(b"hello").await;
            }
        });
        let haproxy = HaproxyProcess::start(&config)
            .await
            .expect("haproxy starts");
        let mut client = tokio::net::TcpStream::connect(("127.0.0.1", front))
            .await
            .expect("connect through haproxy");
        let mut buffer = [0_u8; 5];
        client.read_exact(&mut buffer).await.expect("read");
        assert_eq!(&buffer, b"hello");
        server.abort();
        drop(haproxy);
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", front))
                .await
                .is_err(),
            "haproxy still listening after drop"
        );
    }
}
