//! The configuration files a topology writes itself: pg_hba.conf for the lab's subnet and the
//! built-in haproxy.cfg (a test may pass its own through `TopologyOptions::haproxy_config`).

use super::HaproxyLayout;
use crate::netns::{LAB_PREFIX_LEN, LAB_SUBNET};

/// pg_hba.conf of a topology in namespaces: scram-sha-256 from the node itself and from the
/// lab's subnet, for everything and for replication.
pub(super) fn lab_hba() -> String {
    let subnet = format!("{LAB_SUBNET}/{LAB_PREFIX_LEN}");
    format!(
        "# Written by the shanraq testkit for a topology in network namespaces.\n\
         host all all 127.0.0.1/32 scram-sha-256\n\
         host replication all 127.0.0.1/32 scram-sha-256\n\
         host all all {subnet} scram-sha-256\n\
         host replication all {subnet} scram-sha-256\n"
    )
}

/// The built-in haproxy.cfg: `rw` to the member answering `/primary`, `ro` round robin over
/// those answering `/replica`, checked every 100 ms on each manager's HTTP port.
pub(super) fn haproxy_config(layout: &HaproxyLayout) -> String {
    let servers: String = layout
        .members
        .iter()
        .map(|member| {
            format!(
                "    server {} {}:{} check port {}\n",
                member.name, member.host, member.pg_port, member.http_port
            )
        })
        .collect();
    format!(
        "global\n\
         \x20   stats socket {socket} mode 600 level admin\n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   timeout connect 1s\n\
         \x20   timeout client 1h\n\
         \x20   timeout server 1h\n\
         \x20   timeout check 1s\n\
         frontend rw\n\
         \x20   bind {rw_bind}\n\
         \x20   default_backend rw\n\
         backend rw\n\
         \x20   option httpchk GET /primary\n\
         \x20   http-check expect status 200\n\
         \x20   default-server inter 100ms fall 1 rise 1 on-marked-down shutdown-sessions\n\
         {rw_servers}\
         frontend ro\n\
         \x20   bind {ro_bind}\n\
         \x20   default_backend ro\n\
         backend ro\n\
         \x20   balance roundrobin\n\
         \x20   option httpchk GET /replica\n\
         \x20   http-check expect status 200\n\
         \x20   default-server inter 100ms fall 1 rise 1 on-marked-down shutdown-sessions\n\
         {ro_servers}",
        socket = layout.stats_socket.display(),
        rw_bind = layout.rw_bind,
        ro_bind = layout.ro_bind,
        rw_servers = servers,
        ro_servers = servers,
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::topology::MemberInfo;

    #[test]
    fn haproxy_config_routes_rw_by_primary_check_and_is_valid() {
        let layout = HaproxyLayout {
            members: (0..3)
                .map(|index| MemberInfo {
                    name: format!("pg-{index}"),
                    host: format!("10.231.0.{}", 10 + index),
                    http_url: String::new(),
                    http_port: 8000,
                    pg_port: 5432,
                    data_dir: PathBuf::new(),
                    log_path: PathBuf::new(),
                })
                .collect(),
            rw_bind: "10.231.0.13:5432".parse().expect("addr"),
            ro_bind: "10.231.0.13:5433".parse().expect("addr"),
            stats_socket: PathBuf::from("/tmp/x.sock"),
        };
        let config = haproxy_config(&layout);
        assert!(config.contains("option httpchk GET /primary"), "{config}");
        assert!(config.contains("bind 10.231.0.13:5432"), "{config}");
        assert!(
            config.contains("server pg-2 10.231.0.12:5432 check port 8000"),
            "{config}"
        );
        crate::check_config(&config).expect("haproxy accepts the topology config");
    }

    #[test]
    fn lab_hba_allows_the_subnet_with_scram_only() {
        let hba = lab_hba();
        assert!(
            hba.contains("host replication all 10.231.0.0/24 scram-sha-256"),
            "{hba}"
        );
        assert!(!hba.contains("trust"), "{hba}");
    }
}
