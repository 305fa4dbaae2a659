//! Packet delay without netem (this kernel has no `sch_netem`): the node's iptables rules hand
//! every packet crossing its `eth0` to NFQUEUE 0, and a thread living in the node's network
//! namespace holds each one for the delay before it gives the ACCEPT verdict. The queue is
//! bound before the rules exist and unbound after they are gone, so no packet is ever queued
//! with nobody listening (which the kernel would drop).

use std::collections::VecDeque;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nfq::{Message, Queue, Verdict};
use nix::sched::{CloneFlags, setns};

use crate::TestkitError;

/// The NFQUEUE number the rules use; queue numbers are per network namespace.
pub(crate) const QUEUE: u16 = 0;
/// Packets the kernel keeps waiting for a verdict before it drops new ones.
const QUEUE_MAX_LEN: u32 = 65_536;
/// How often the thread looks for new packets: the delay is exact to about this much.
const POLL: Duration = Duration::from_millis(1);
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running delay thread of one node; stopped (every held packet released) on drop.
#[derive(Debug)]
pub(crate) struct DelayQueue {
    delay_nanos: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DelayQueue {
    /// Starts the thread in the namespace `netns` (an open `/run/netns/NAME`) and returns once
    /// it has bound the queue.
    pub(crate) fn start(
        netns: File,
        node: &str,
        delay: Duration,
    ) -> Result<DelayQueue, TestkitError> {
        let delay_nanos = Arc::new(AtomicU64::new(nanos(delay)));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), QueueError>>();
        let thread = {
            let delay_nanos = Arc::clone(&delay_nanos);
            let stop = Arc::clone(&stop);
            let name = node.to_string();
            std::thread::Builder::new()
                .name(format!("delay-{node}"))
                .spawn(move || match open_queue(&netns) {
                    Ok(queue) => {
                        let _ = ready_tx.send(Ok(()));
                        hold_and_release(queue, &name, &delay_nanos, &stop);
                    }
                    Err(problem) => {
                        let _ = ready_tx.send(Err(problem));
                    }
                })
                .map_err(|source| {
                    TestkitError::io(format!("spawning the delay thread of {node}"), source)
                })?
        };
        let mut queue = DelayQueue {
            delay_nanos,
            stop,
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(())) => Ok(queue),
            Ok(Err(problem)) => {
                queue.shutdown();
                Err(TestkitError::Lab {
                    lab: node.to_string(),
                    problem: format!("NFQUEUE {QUEUE} of the delay: {problem}"),
                })
            }
            Err(_) => {
                queue.shutdown();
                Err(TestkitError::NotReady {
                    what: format!("delay thread of {node}"),
                    seconds: READY_TIMEOUT.as_secs(),
                    detail: "never bound its NFQUEUE".to_string(),
                })
            }
        }
    }

    /// Changes the delay of packets queued from now on.
    pub(crate) fn set_delay(&self, delay: Duration) {
        self.delay_nanos.store(nanos(delay), Ordering::Relaxed);
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DelayQueue {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn nanos(delay: Duration) -> u64 {
    u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX)
}

/// Why the delay thread could not bind its queue.
#[derive(Debug, thiserror::Error)]
enum QueueError {
    #[error("setns: {0}")]
    Setns(nix::Error),
    #[error("{step}: {error}")]
    Netlink {
        step: &'static str,
        error: std::io::Error,
    },
}

/// Enters the namespace (this thread only) and binds the queue there, copying no payload: the
/// delay is the same for every packet, so only the packet id matters.
fn open_queue(netns: &File) -> Result<Queue, QueueError> {
    let netlink = |step: &'static str| move |error| QueueError::Netlink { step, error };
    setns(netns, CloneFlags::CLONE_NEWNET).map_err(QueueError::Setns)?;
    let mut queue = Queue::open().map_err(netlink("opening the netlink socket"))?;
    queue.bind(QUEUE).map_err(netlink("binding"))?;
    queue
        .set_copy_range(QUEUE, 0)
        .map_err(netlink("setting the copy range"))?;
    queue
        .set_queue_max_len(QUEUE, QUEUE_MAX_LEN)
        .map_err(netlink("setting the queue length"))?;
    queue.set_nonblocking(true);
    Ok(queue)
}

/// Holds every packet until its deadline (arrival plus the delay at arrival), then accepts it;
/// on stop, accepts whatever it still holds and unbinds.
fn hold_and_release(mut queue: Queue, node: &str, delay_nanos: &AtomicU64, stop: &AtomicBool) {
    let mut held: VecDeque<(Instant, Message)> = VecDeque::new();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        loop {
            match queue.recv() {
                Ok(message) => {
                    let delay = Duration::from_nanos(delay_nanos.load(Ordering::Relaxed));
                    held.push_back((Instant::now() + delay, message));
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    tracing::warn!(node, %error, "delay queue: receiving a packet");
                    break;
                }
            }
        }
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| stopping || *due <= now) {
            if let Some((_, mut message)) = held.pop_front() {
                message.set_verdict(Verdict::Accept);
                if let Err(error) = queue.verdict(message) {
                    tracing::warn!(node, %error, "delay queue: accepting a packet");
                }
            }
        }
        if stopping {
            if let Err(error) = queue.unbind(QUEUE) {
                tracing::warn!(node, %error, "delay queue: unbinding");
            }
            return;
        }
        let wait = held.front().map_or(POLL, |(due, _)| {
            due.saturating_duration_since(now).min(POLL)
        });
        std::thread::sleep(wait);
    }
}
