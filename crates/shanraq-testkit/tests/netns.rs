//! Each fault of `NetLab` really happens on the wire: TCP and UDP between tasks on the nodes'
//! runtimes (each socket in its node's namespace) stop, slow down or lose packets as promised,
//! and come back on `heal`; the lab leaves no namespace behind. Every wait is bounded and waits
//! on a condition.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use shanraq_testkit::NetLab;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::runtime::Runtime;

const ECHO_PORT: u16 = 7000;
const COUNT_PORT: u16 = 7001;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const BOUND: Duration = Duration::from_secs(20);

/// Runs `future` as a task of `runtime` (so in its namespace) and waits for it.
fn on<T: Send + 'static>(runtime: &Runtime, future: impl Future<Output = T> + Send + 'static) -> T {
    runtime
        .block_on(runtime.spawn(future))
        .expect("task on a lab runtime")
}

/// A TCP echo server on `ip:ECHO_PORT`, spawned on `runtime`.
fn start_echo(runtime: &Runtime, ip: Ipv4Addr) -> SocketAddr {
    let addr = SocketAddr::from((ip, ECHO_PORT));
    on(runtime, async move {
        let listener = TcpListener::bind(addr).await.expect("echo server binds");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0_u8; 64];
                    while let Ok(read) = socket.read(&mut buffer).await {
                        if read == 0 || socket.write_all(&buffer[..read]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    });
    addr
}

/// Writes `ping` on `stream` and reads it back within `timeout`; the round trip.
async fn ping(stream: &mut TcpStream, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let round_trip = async {
        stream.write_all(b"ping").await?;
        let mut buffer = [0_u8; 4];
        stream.read_exact(&mut buffer).await?;
        Ok::<_, std::io::Error>(buffer)
    };
    match tokio::time::timeout(timeout, round_trip).await {
        Ok(Ok(buffer)) if &buffer == b"ping" => Ok(started.elapsed()),
        Ok(Ok(buffer)) => Err(format!("echo returned {buffer:?}")),
        Ok(Err(error)) => Err(format!("echo failed: {error}")),
        Err(_) => Err("echo timed out".to_string()),
    }
}

async fn connect(to: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(timeout, TcpStream::connect(to)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(format!("connect to {to} failed: {error}")),
        Err(_) => Err(format!("connect to {to} timed out")),
    }
}

/// A fresh connection to `to` and one echo over it; the echo's round trip.
fn echo_from(
    runtime: &Runtime,
    to: SocketAddr,
    connect_timeout: Duration,
) -> Result<Duration, String> {
    on(runtime, async move {
        let mut stream = connect(to, connect_timeout).await?;
        ping(&mut stream, Duration::from_secs(10)).await
    })
}

/// Retries `echo_from` until it succeeds, within `BOUND`.
fn eventually_echo(runtime: &Runtime, to: SocketAddr) -> Duration {
    let deadline = Instant::now() + BOUND;
    loop {
        match echo_from(runtime, to, CONNECT_TIMEOUT) {
            Ok(round_trip) => return round_trip,
            Err(error) if Instant::now() >= deadline => {
                panic!("{to} still unreachable after {BOUND:?}: {error}")
            }
            Err(_) => {}
        }
    }
}

fn assert_silent_failure(result: Result<Duration, String>, what: &str) {
    let error = result.expect_err(what);
    assert!(
        error.contains("timed out"),
        "{what}: a partition is silence, not a refusal or a reset: {error}"
    );
}

#[test]
fn sockets_of_a_runtime_live_in_its_node() {
    let lab = NetLab::create(&["a", "b"]).expect("lab (needs root, iproute2, nftables, iptables)");
    let a = lab.addr("a").expect("a");
    assert_eq!(a, Ipv4Addr::new(10, 231, 0, 10));
    assert_eq!(lab.addr("b").expect("b"), Ipv4Addr::new(10, 231, 0, 11));
    let missing = lab.addr("nope").expect_err("unknown node");
    assert!(missing.to_string().contains("nope"), "{missing}");
    let in_a = lab.runtime("a").expect("runtime a");
    let in_b = lab.runtime("b").expect("runtime b");
    let lab = std::sync::Arc::new(lab);
    let seen = std::sync::Arc::clone(&lab);
    assert!(
        on(
            &in_a,
            async move { seen.is_current("a").expect("is_current") }
        ),
        "a task on a's runtime lives in a"
    );
    assert!(
        !lab.is_current("a").expect("is_current"),
        "the test thread does not"
    );
    on(&in_a, async move {
        UdpSocket::bind((a, 0))
            .await
            .expect("a's address exists in a");
    });
    on(&in_b, async move {
        UdpSocket::bind((a, 0))
            .await
            .expect_err("a's address does not exist in b");
    });
    std::net::UdpSocket::bind((a, 0)).expect_err("nor in the test's own namespace");
    let output = lab
        .command("b", "ip")
        .expect("command")
        .args(["-o", "-4", "addr", "show", "dev", "eth0"])
        .output()
        .expect("ip in b");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("10.231.0.11/24"), "{text}");
}

#[test]
fn cut_and_isolate_are_silent_partitions_that_heal() {
    let lab = NetLab::create(&["a", "b", "c"]).expect("lab");
    let (in_a, in_b, in_c) = (
        lab.runtime("a").expect("a"),
        lab.runtime("b").expect("b"),
        lab.runtime("c").expect("c"),
    );
    let server = start_echo(&in_a, lab.addr("a").expect("a"));
    echo_from(&in_b, server, CONNECT_TIMEOUT).expect("b reaches a");
    echo_from(&in_c, server, CONNECT_TIMEOUT).expect("c reaches a");
    let mut held = on(&in_b, async move {
        let mut stream = connect(server, CONNECT_TIMEOUT).await.expect("b connects");
        ping(&mut stream, CONNECT_TIMEOUT).await.expect("echo");
        stream
    });

    lab.cut("a", "b").expect("cut a-b");
    assert_silent_failure(
        echo_from(&in_b, server, CONNECT_TIMEOUT),
        "b connects to a across the cut",
    );
    echo_from(&in_c, server, CONNECT_TIMEOUT).expect("c still reaches a");
    let (stream, stalled) = on(&in_b, async move {
        let result = ping(&mut held, Duration::from_secs(1)).await;
        (held, result)
    });
    held = stream;
    assert_eq!(
        stalled,
        Err("echo timed out".to_string()),
        "an open connection stalls (no reset) across the cut"
    );

    lab.heal().expect("heal");
    eventually_echo(&in_b, server);
    // The open connection survived: TCP retransmits the ping written during the cut.
    let survived = on(&in_b, async move {
        let mut buffer = [0_u8; 4];
        tokio::time::timeout(BOUND, held.read_exact(&mut buffer))
            .await
            .map(|read| read.map(|_| buffer))
    });
    assert!(
        matches!(survived, Ok(Ok(buffer)) if &buffer == b"ping"),
        "the connection open across the cut delivers after heal: {survived:?}"
    );

    lab.isolate("a").expect("isolate a");
    assert_silent_failure(
        echo_from(&in_b, server, CONNECT_TIMEOUT),
        "b reaches isolated a",
    );
    assert_silent_failure(
        echo_from(&in_c, server, CONNECT_TIMEOUT),
        "c reaches isolated a",
    );
    lab.heal().expect("heal");
    eventually_echo(&in_b, server);
    eventually_echo(&in_c, server);
}

/// Counts `d` datagrams on `ip:COUNT_PORT`; answers `end` with the count so far.
fn start_counter(runtime: &Runtime, ip: Ipv4Addr) -> SocketAddr {
    let addr = SocketAddr::from((ip, COUNT_PORT));
    on(runtime, async move {
        let socket = UdpSocket::bind(addr).await.expect("counter binds");
        tokio::spawn(async move {
            let mut count: u64 = 0;
            let mut buffer = [0_u8; 16];
            while let Ok((read, from)) = socket.recv_from(&mut buffer).await {
                match &buffer[..read] {
                    b"d" => count += 1,
                    b"end" => {
                        let _ = socket.send_to(count.to_string().as_bytes(), from).await;
                    }
                    _ => {}
                }
            }
        });
    });
    addr
}

/// Sends `sent` datagrams to the counter, then asks it (retrying: the question and the answer
/// are lossy too) how many arrived. Datagrams of one flow over the same veths arrive in order,
/// so every `d` that survived is counted before the `end` that gets an answer.
async fn datagrams_received(from: Ipv4Addr, counter: SocketAddr, sent: u32) -> u64 {
    let socket = UdpSocket::bind((from, 0)).await.expect("client binds");
    for index in 0..sent {
        socket.send_to(b"d", counter).await.expect("send");
        // Pacing, so that the counter's receive buffer never overflows.
        if index % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let mut buffer = [0_u8; 32];
    for _ in 0..40 {
        socket.send_to(b"end", counter).await.expect("send end");
        if let Ok(Ok((read, _))) =
            tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buffer)).await
        {
            return String::from_utf8_lossy(&buffer[..read])
                .parse()
                .expect("count");
        }
    }
    panic!("the counter never answered in 40 tries");
}

#[test]
fn degrade_delays_both_ways_and_loses_packets() {
    let lab = NetLab::create(&["a", "b"]).expect("lab");
    let (in_a, in_b) = (lab.runtime("a").expect("a"), lab.runtime("b").expect("b"));
    let (a, b) = (lab.addr("a").expect("a"), lab.addr("b").expect("b"));
    let server = start_echo(&in_a, a);
    let baseline = eventually_echo(&in_b, server);

    let delay = Duration::from_millis(200);
    lab.degrade("a", 0, delay).expect("degrade a with delay");
    let slow = echo_from(&in_b, server, Duration::from_secs(10)).expect("echo with delay");
    println!("measured: echo round trip {baseline:?} healthy, {slow:?} with 200 ms delay on a");
    assert!(
        slow >= delay,
        "round trip {slow:?} under the {delay:?} delay"
    );

    lab.heal().expect("heal");
    let healed = eventually_echo(&in_b, server);
    assert!(
        healed < delay,
        "round trip {healed:?} still delayed after heal"
    );

    let sent = 500;
    let counter = start_counter(&in_a, a);
    let lossless = on(&in_b, datagrams_received(b, counter, sent));
    assert_eq!(lossless, u64::from(sent), "a healthy link loses nothing");
    lab.degrade("a", 30, Duration::ZERO)
        .expect("degrade a with loss");
    let received = on(&in_b, datagrams_received(b, counter, sent));
    let lost = (u64::from(sent) - (received - lossless)) as f64 / f64::from(sent);
    println!(
        "measured: {:.1} % of {sent} datagrams lost at 30 % loss",
        lost * 100.0
    );
    assert!(
        (0.10..=0.60).contains(&lost),
        "{:.1} % lost, expected about 30 %",
        lost * 100.0
    );
    lab.heal().expect("heal");
    let after = on(&in_b, datagrams_received(b, counter, sent));
    assert_eq!(after - received, u64::from(sent), "heal stops the loss");
}

fn listed_namespaces() -> String {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn drop_deletes_every_namespace_of_the_lab() {
    let lab = NetLab::create(&["a", "b"]).expect("lab");
    lab.degrade("a", 10, Duration::from_millis(5))
        .expect("degrade");
    let names: Vec<String> = lab
        .namespaces()
        .iter()
        .map(|name| name.to_string())
        .collect();
    assert_eq!(names.len(), 3, "switch and two nodes: {names:?}");
    let before = listed_namespaces();
    for name in &names {
        assert!(
            before.contains(name.as_str()),
            "{name} missing from:\n{before}"
        );
    }
    drop(lab);
    let after = listed_namespaces();
    for name in &names {
        assert!(
            !after
                .lines()
                .any(|line| line.split_whitespace().next() == Some(name.as_str())),
            "{name} still listed after drop:\n{after}"
        );
    }
}
