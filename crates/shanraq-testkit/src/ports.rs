//! Free TCP ports on 127.0.0.1, picked at random in 20000-32000: below the kernel's ephemeral
//! range (32768-60999), where an outgoing connection (a replication stream, say) could take a
//! server's port between the pick and the bind. Ports handed out once in this process are never
//! handed out again, so tests running in parallel threads do not collide with each other.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::Child;
use std::sync::Mutex;

use rand::RngExt;

use crate::TestkitError;

pub const PORT_LOW: u16 = 20000;
pub const PORT_HIGH: u16 = 32000;
const ATTEMPTS: u32 = 500;

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port on 127.0.0.1 that nothing listened on when it was picked.
pub fn free_port() -> Result<u16, TestkitError> {
    let mut rng = rand::rng();
    for _ in 0..ATTEMPTS {
        let port = rng.random_range(PORT_LOW..=PORT_HIGH);
        let mut taken = HANDED_OUT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.insert(port);
            return Ok(port);
        }
    }
    Err(TestkitError::NoFreePort {
        low: PORT_LOW,
        high: PORT_HIGH,
        attempts: ATTEMPTS,
    })
}

/// How many ports a server is tried on before its start fails.
const START_ATTEMPTS: u32 = 5;

/// Starts a server on a free port: `start(port)` spawns it and waits until it is ready,
/// handing back the child (on failure with why, and the child when one was spawned). A server that lost its port to another
/// process between the pick and its bind (its log, `log`, says `conflict`) is stopped and
/// started again on another port; any other failure is returned at once.
pub async fn start_on_free_port(
    log: &std::path::Path,
    conflict: &str,
    mut start: impl AsyncFnMut(u16) -> Result<Child, (Option<Child>, TestkitError)>,
) -> Result<(Child, u16), TestkitError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_port()?;
        match start(port).await {
            Ok(child) => return Ok((child, port)),
            Err((None, error)) => return Err(error),
            Err((Some(mut child), error)) => {
                crate::process::kill_and_reap(&mut child);
                let lost_port = crate::process::tail(log, 20).contains(conflict);
                if !lost_port || attempt >= START_ATTEMPTS {
                    return Err(error);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_in_range_distinct_and_bindable() {
        let ports: Vec<u16> = (0..20).map(|_| free_port().expect("free port")).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
        for port in ports {
            assert!(
                (PORT_LOW..=PORT_HIGH).contains(&port),
                "{port} out of range"
            );
            TcpListener::bind(("127.0.0.1", port)).expect("port is bindable");
        }
    }
}
