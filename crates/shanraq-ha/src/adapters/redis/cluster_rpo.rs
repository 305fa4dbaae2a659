//! Redis Cluster's RPO, sampled: `INFO replication` of every master serving slots in a
//! `CLUSTER NODES` view, at once, each bounded by `timeout`, then judged by the pure
//! `redis::cluster::rpo`.

use std::time::Duration;

use crate::objectives::RpoMeasurement;
use crate::redis::cluster::{ClusterView, MasterAnswers, rpo};

use super::client::{NodeClient, RedisPassword};

/// Asks each master of `view` (by the address `CLUSTER NODES` gives) for `INFO replication`
/// and returns the worst shard's measurement; `None` while no master serves slots.
pub async fn sample_cluster_rpo(
    view: &ClusterView,
    password: Option<RedisPassword>,
    timeout: Duration,
) -> Option<RpoMeasurement> {
    let probes = view.masters().into_iter().map(|master| {
        let address = master.address.clone();
        let password = password.clone();
        async move {
            let answer = match address
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()))
            {
                Some((host, Ok(port))) => {
                    NodeClient::new(address.as_str(), host, port, password, timeout)
                        .info_replication()
                        .await
                        .map_err(|error| error.to_string())
                }
                _ => Err(format!("{address} is not an ip:port")),
            };
            (address, answer)
        }
    });
    let answers: MasterAnswers = futures::future::join_all(probes)
        .await
        .into_iter()
        .collect();
    rpo(view, &answers)
}
