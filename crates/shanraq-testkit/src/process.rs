//! Child processes in their own process groups, so that one signal reaches a server and
//! everything it forked, plus the bounded waits that tell when a server is ready.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::TestkitError;

/// Spawns `command` as the leader of a new process group, output appended to `log`.
pub(crate) fn spawn_logged(
    command: &mut Command,
    log: &Path,
    what: &str,
) -> Result<Child, TestkitError> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|source| TestkitError::io(format!("opening log {}", log.display()), source))?;
    let err = out
        .try_clone()
        .map_err(|source| TestkitError::io(format!("opening log {}", log.display()), source))?;
    command
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|source| TestkitError::io(format!("spawning {what}"), source))
}

/// Sends `signal` to the process group led by `pid`; a group already gone is not an error.
pub(crate) fn signal_group(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    if let Err(error) = killpg(Pid::from_raw(raw), signal)
        && error != nix::errno::Errno::ESRCH
    {
        tracing::warn!(pid, ?signal, %error, "signalling process group");
    }
}

/// SIGKILLs the group and reaps the leader.
pub(crate) fn kill_and_reap(child: &mut Child) {
    signal_group(child.id(), Signal::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
}

/// The last `lines` lines of a log file, for error messages.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

/// Fails when the child has exited, with the log's tail.
pub(crate) fn ensure_alive(child: &mut Child, what: &str, log: &Path) -> Result<(), TestkitError> {
    match child.try_wait() {
        Ok(Some(status)) => Err(TestkitError::Exited {
            what: what.to_string(),
            status: status.to_string(),
            log: tail(log, 40),
        }),
        Ok(None) => Ok(()),
        Err(source) => Err(TestkitError::io(format!("waiting for {what}"), source)),
    }
}

/// Waits until 127.0.0.1:`port` accepts TCP connections while `child` stays alive.
pub(crate) async fn wait_for_port(
    child: &mut Child,
    port: u16,
    what: &str,
    log: &Path,
    timeout: Duration,
) -> Result<(), TestkitError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    wait_for_addr(child, addr, what, log, timeout).await
}

/// Waits until `addr` accepts TCP connections (from the caller's network namespace) while
/// `child` stays alive.
pub(crate) async fn wait_for_addr(
    child: &mut Child,
    addr: SocketAddr,
    what: &str,
    log: &Path,
    timeout: Duration,
) -> Result<(), TestkitError> {
    let deadline = Instant::now() + timeout;
    loop {
        ensure_alive(child, what, log)?;
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(TestkitError::NotReady {
                what: what.to_string(),
                seconds: timeout.as_secs(),
                detail: format!("{addr} never accepted; log tail:\n{}", tail(log, 40)),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A directory of its own for one server (`prefix` names it in /tmp), removed when dropped.
pub(crate) fn temp_dir(prefix: &str) -> Result<tempfile::TempDir, TestkitError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|source| TestkitError::io(format!("creating a {prefix}* directory"), source))
}
