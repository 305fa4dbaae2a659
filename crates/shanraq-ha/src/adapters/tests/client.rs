//! The instance client maps the wire contract's answers to typed results.

use std::time::Duration;

use super::fake_instance::{TOKEN, cluster};
use crate::adapters::instance_client::{
    BearerToken, ClientTimeouts, InstanceClient, InstanceClientError,
};
use crate::wire::{InstanceRole, Upstream};

fn timeouts() -> ClientTimeouts {
    ClientTimeouts::for_probe_period(Duration::from_millis(500))
}

#[tokio::test]
async fn status_and_commands_round_trip_and_a_stale_epoch_is_typed() {
    let (model, servers) = cluster(3).await;
    let url = &servers[1].1;
    let client =
        InstanceClient::new("pg-1", url, BearerToken::new(TOKEN), timeouts()).expect("client");
    let status = client.status().await.expect("status");
    assert_eq!(
        (status.name.as_str(), status.role, status.epoch),
        ("pg-1", InstanceRole::Replica, 3)
    );
    assert!(!client.is_primary().await.expect("primary check"));

    let reply = client.promote(4).await.expect("promote");
    assert_eq!(reply.epoch, 4);
    assert_eq!(reply.status.map(|s| s.role), Some(InstanceRole::Primary));
    assert!(client.is_primary().await.expect("primary check"));

    match client.fence(3, Duration::from_secs(1)).await {
        Err(InstanceClientError::StaleEpoch {
            instance_epoch: 4,
            sent: 3,
            ..
        }) => {}
        other => panic!("expected a stale epoch, got {other:?}"),
    }
    let upstream = Upstream {
        host: "127.0.0.1".into(),
        port: 25432,
        name: "pg-0".into(),
    };
    client
        .repoint(4, upstream.clone())
        .await
        .expect("repoint at the same epoch");
    let received = model.lock().expect("lock").received.clone();
    assert_eq!(
        received.iter().filter(|(n, _, _)| n == "pg-1").count(),
        3,
        "{received:?}"
    );
}

#[tokio::test]
async fn wrong_token_is_refused_and_never_shown() {
    let (_model, servers) = cluster(1).await;
    let secret = "wrong-secret-value-9d1";
    let client = InstanceClient::new("pg-0", &servers[0].1, BearerToken::new(secret), timeouts())
        .expect("client");
    let error = client.promote(2).await.expect_err("unauthorised");
    assert!(
        matches!(error, InstanceClientError::Http { status: 401, .. }),
        "{error:?}"
    );
    assert!(!error.to_string().contains(secret));
    assert!(!format!("{error:?}").contains(secret));
    assert!(
        !format!("{client:?}").contains(secret),
        "the client's Debug hides the token"
    );
}

#[tokio::test]
async fn slow_and_absent_instances_are_timeouts_and_transport_errors() {
    let (model, servers) = cluster(1).await;
    model.lock().expect("lock").status_delay = Duration::from_millis(800);
    let client = InstanceClient::new("pg-0", &servers[0].1, BearerToken::new(TOKEN), timeouts())
        .expect("client");
    let error = client.status().await.expect_err("too slow");
    assert!(
        !error.is_connection_refused(),
        "a slow instance is not a refusal"
    );
    assert!(
        matches!(
            error,
            InstanceClientError::Timeout {
                endpoint: "/status",
                ..
            }
        ),
        "{error:?}"
    );

    drop(servers);
    // Port 1 on 127.0.0.1 has no listener.
    let client = InstanceClient::new(
        "pg-9",
        "http://127.0.0.1:1",
        BearerToken::new(TOKEN),
        timeouts(),
    )
    .expect("client");
    let error = client.status().await.expect_err("nobody listens");
    assert!(
        matches!(error, InstanceClientError::Transport { .. }),
        "{error:?}"
    );
    assert!(
        error.is_connection_refused(),
        "nobody listening is told apart from a slow instance: {error:?}"
    );
    assert!(
        error.to_string().contains("pg-9"),
        "errors name the instance: {error}"
    );
}

#[tokio::test]
async fn a_moved_instance_is_reached_by_every_clone_of_its_client() {
    let (_model, servers) = cluster(2).await;
    let client = InstanceClient::new("pg-0", &servers[0].1, BearerToken::new(TOKEN), timeouts())
        .expect("client");
    let clone = client.clone();
    assert_eq!(clone.status().await.expect("status").name, "pg-0");
    // The pod came back with another address (here: another instance's server, to tell).
    assert!(client.set_base_url(&format!("{}/", servers[1].1)));
    assert!(
        !client.set_base_url(&servers[1].1),
        "the same address is no change"
    );
    assert_eq!(clone.base_url(), servers[1].1.trim_end_matches('/'));
    assert_eq!(clone.status().await.expect("status").name, "pg-1");
}
