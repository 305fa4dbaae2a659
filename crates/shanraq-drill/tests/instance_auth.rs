//! The instance manager's commands are authenticated and epoch-checked: without the bearer
//! token nothing happens (401), a command from an older epoch is refused (409) and changes
//! nothing, and a malformed body is rejected (400).

mod common;

use serde_json::json;
use shanraq_testkit::{LocalTopology, TopologyOptions};

#[tokio::test]
async fn commands_need_the_token_and_refuse_a_stale_epoch() {
    let topology = LocalTopology::start(common::binary(), TopologyOptions::asynchronous(2))
        .await
        .expect("topology starts");
    let fence = json!({ "epoch": 5, "timeout_ms": 1000 });

    for token in [None, Some("wrong-token")] {
        let (code, reply) = topology
            .command_with_token(0, "/fence", &fence, token)
            .await
            .expect("post");
        assert_eq!(code, 401, "{reply}");
        assert_eq!(reply["ok"], false, "{reply}");
    }
    assert_eq!(
        topology.get(0, "/primary").await.expect("get"),
        200,
        "unauthenticated fence acted"
    );

    let (code, reply) = topology
        .command(0, "/fence", &json!({ "epoch": "x" }))
        .await
        .expect("post");
    assert_eq!(code, 400, "{reply}");

    // Raise the replica's epoch with an authenticated, harmless repoint to the same primary.
    let primary_port = topology.member(0).expect("member").pg_port;
    let upstream = json!({ "host": "127.0.0.1", "port": primary_port, "name": "pg-0" });
    let (code, reply) = topology
        .command(1, "/repoint", &json!({ "epoch": 3, "upstream": upstream }))
        .await
        .expect("post");
    assert_eq!(code, 200, "{reply}");
    assert_eq!(reply["epoch"], 3, "{reply}");

    // A command from epoch 2 is stale for the replica: refused, nothing changes.
    let (code, reply) = topology
        .command(1, "/promote", &json!({ "epoch": 2 }))
        .await
        .expect("post");
    assert_eq!(code, 409, "{reply}");
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["epoch"], 3, "{reply}");
    let status = topology.status(1).await.expect("status");
    assert_eq!(status["role"], "replica", "{status}");
    assert_eq!(topology.get(1, "/primary").await.expect("get"), 503);

    // A repoint aimed at the primary is refused: it must be demoted instead.
    let (code, reply) = topology
        .command(0, "/repoint", &json!({ "epoch": 3, "upstream": upstream }))
        .await
        .expect("post");
    assert_eq!(code, 422, "{reply}");
    assert_eq!(
        topology.get(0, "/primary").await.expect("get"),
        503,
        "epoch 3 was not granted to pg-0 by promote"
    );
}
