//! A three-instance synchronous topology of real instance managers behind HAProxy: instance 0
//! bootstraps as primary, the others clone from it, HAProxy's rw frontend reaches the primary,
//! writes replicate to every replica, and each manager's `/status` tells the truth about it.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;
use std::sync::{Arc, Mutex};

use shanraq_testkit::{HaproxyLayout, LocalTopology, TopologyOptions};
use sqlx::Connection;

const BOUND: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_synchronous_topology_routes_writes_to_the_primary_and_replicates() {
    let started = Instant::now();
    let topology = LocalTopology::start(common::binary(), TopologyOptions::default())
        .await
        .expect("topology starts");
    println!(
        "measured: 3-instance synchronous topology formed in {} ms",
        started.elapsed().as_millis()
    );

    // Roles as the managers report them, with LSNs.
    let primary = topology.status(0).await.expect("status 0");
    assert_eq!(primary["role"], "primary", "{primary}");
    assert_eq!(primary["epoch"], 1, "{primary}");
    assert_eq!(primary["in_recovery"], false, "{primary}");
    assert!(
        primary["current_lsn"].as_u64().is_some_and(|lsn| lsn > 0),
        "{primary}"
    );
    assert_eq!(
        primary["synchronous_standby_names"], "ANY 1 (*)",
        "{primary}"
    );
    let peers: Vec<&Value> = primary["replication"]
        .as_array()
        .expect("replication")
        .iter()
        .collect();
    let mut names: Vec<&str> = peers
        .iter()
        .filter_map(|peer| peer["application_name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["pg-1", "pg-2"],
        "application_name is the instance name: {primary}"
    );
    for peer in &peers {
        assert_eq!(peer["sync_state"], "quorum", "{primary}");
    }
    for index in 1..3 {
        let replica = topology.status(index).await.expect("status");
        assert_eq!(replica["role"], "replica", "{replica}");
        assert_eq!(replica["in_recovery"], true, "{replica}");
        assert_eq!(replica["streaming"], true, "{replica}");
        assert_eq!(replica["timeline"], 1, "{replica}");
        assert!(
            replica["received_lsn"].as_u64().is_some_and(|lsn| lsn > 0),
            "{replica}"
        );
    }

    // Only the primary answers /primary; only replicas answer /replica; all are healthy.
    assert_eq!(topology.get(0, "/primary").await.expect("get"), 200);
    assert_eq!(topology.get(0, "/replica").await.expect("get"), 503);
    for index in 1..3 {
        assert_eq!(topology.get(index, "/primary").await.expect("get"), 503);
        assert_eq!(topology.get(index, "/replica").await.expect("get"), 200);
    }
    for index in 0..3 {
        assert_eq!(topology.get(index, "/health").await.expect("get"), 200);
    }

    // A write through HAProxy rw lands on the primary and reaches both replicas.
    let mut rw = sqlx::PgConnection::connect_with(&topology.rw_options())
        .await
        .expect("connect through rw");
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut rw)
        .await
        .expect("query");
    assert!(!in_recovery, "rw must reach the primary");
    sqlx::query("CREATE TABLE payments (id int PRIMARY KEY, amount int)")
        .execute(&mut rw)
        .await
        .expect("create");
    sqlx::query("INSERT INTO payments VALUES (1, 100), (2, 250)")
        .execute(&mut rw)
        .await
        .expect("insert");
    for index in 1..3 {
        let mut replica =
            sqlx::PgConnection::connect_with(&topology.member_options(index).expect("member"))
                .await
                .expect("connect replica");
        let deadline = Instant::now() + BOUND;
        loop {
            let total: Option<i64> = sqlx::query_scalar("SELECT sum(amount) FROM payments")
                .fetch_one(&mut replica)
                .await
                .ok()
                .flatten();
            if total == Some(350) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "pg-{index} never replayed the write"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // ro reaches a replica, which refuses writes.
    let mut ro = sqlx::PgConnection::connect_with(&topology.ro_options())
        .await
        .expect("connect through ro");
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut ro)
        .await
        .expect("query");
    assert!(in_recovery, "ro must reach a replica");
    assert!(
        sqlx::query("INSERT INTO payments VALUES (3, 1)")
            .execute(&mut ro)
            .await
            .is_err(),
        "a replica must refuse writes"
    );

    // The application owner created at bootstrap logs in to its own database through rw and
    // owns what it creates there; it is not a superuser.
    let mut app = sqlx::PgConnection::connect_with(&topology.app_rw_options())
        .await
        .expect("the application owner connects to the application database");
    let (database, user, superuser): (String, String, bool) = sqlx::query_as(
        "SELECT current_database(), current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
    )
    .fetch_one(&mut app)
    .await
    .expect("query identity");
    assert_eq!(
        (database.as_str(), user.as_str(), superuser),
        ("app", "app", false)
    );
    sqlx::query("CREATE TABLE ledger (id bigint PRIMARY KEY)")
        .execute(&mut app)
        .await
        .expect("the owner can create tables in its database");
}

/// The topology's HAProxy runs the config a test makes from the layout: here `ro` reaches
/// pg-2 only, where the built-in config would spread over both replicas.
#[tokio::test]
async fn a_custom_haproxy_config_replaces_the_built_in_one() {
    let seen: Arc<Mutex<Option<HaproxyLayout>>> = Arc::default();
    let recorder = Arc::clone(&seen);
    let options = TopologyOptions {
        haproxy_config: Some(Arc::new(move |layout: &HaproxyLayout| {
            *recorder.lock().expect("layout lock") = Some(layout.clone());
            let server = |index: usize| {
                let member = &layout.members[index];
                format!(
                    "    server {} {}:{} check port {}\n",
                    member.name, member.host, member.pg_port, member.http_port
                )
            };
            format!(
                "global\n    stats socket {socket} mode 600 level admin\n\
                 defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 1h\n\
                 \x20   timeout server 1h\n    timeout check 1s\n\
                 listen rw\n    bind {rw}\n    option httpchk GET /primary\n\
                 \x20   default-server inter 100ms fall 1 rise 1\n{primary}\
                 listen ro\n    bind {ro}\n    option httpchk GET /replica\n\
                 \x20   default-server inter 100ms fall 1 rise 1\n{last}",
                socket = layout.stats_socket.display(),
                rw = layout.rw_bind,
                ro = layout.ro_bind,
                primary = (0..layout.members.len()).map(server).collect::<String>(),
                last = server(2),
            )
        })),
        ..TopologyOptions::asynchronous(3)
    };
    let topology = LocalTopology::start(common::binary(), options)
        .await
        .expect("topology starts with a custom HAProxy config");
    let layout = seen
        .lock()
        .expect("layout lock")
        .clone()
        .expect("the config function saw the layout");
    assert_eq!(layout.members, topology.members());
    assert_eq!(layout.rw_bind.port(), topology.rw_port());
    assert_eq!(layout.stats_socket, topology.haproxy_socket());
    let pg2 = topology.member(2).expect("pg-2").pg_port.to_string();
    // HAProxy marks pg-2 up at its first passing /replica check: wait for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if sqlx::PgConnection::connect_with(&topology.ro_options())
            .await
            .is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "ro never reached pg-2");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..4 {
        let mut ro = sqlx::PgConnection::connect_with(&topology.ro_options())
            .await
            .expect("connect through ro");
        let port: String = sqlx::query_scalar("SHOW port")
            .fetch_one(&mut ro)
            .await
            .expect("port");
        assert_eq!(port, pg2, "the custom ro frontend reaches pg-2 only");
        let _ = ro.close().await;
    }
}
