//! `INFO replication` replies as redis-server 7.0 prints them.

use crate::redis::{Role, parse_replication_info};

const MASTER: &str = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nmin_slaves_good_slaves:2\r\n\
slave0:ip=127.0.0.1,port=24012,state=online,offset=2916,lag=0\r\n\
slave1:ip=127.0.0.1,port=24013,state=wait_bgsave,offset=0,lag=1\r\n\
master_failover_state:no-failover\r\nmaster_replid:cf4c3707540e2670825abd5840232cf837847626\r\n\
master_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:2916\r\n\
second_repl_offset:-1\r\nrepl_backlog_active:1\r\n";

const DETACHED: &str = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:0\r\n\
master_link_status:down\r\nmaster_last_io_seconds_ago:-1\r\nmaster_sync_in_progress:0\r\n\
slave_read_repl_offset:2916\r\nslave_repl_offset:2916\r\nmaster_link_down_since_seconds:-1\r\n\
slave_priority:100\r\nslave_read_only:1\r\nreplica_announced:1\r\nconnected_slaves:0\r\n\
master_failover_state:no-failover\r\nmaster_replid:cf4c3707540e2670825abd5840232cf837847626\r\n\
master_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:2916\r\n";

/// A node restarted (kill -9) from its append-only file under the rendered `replicaof 127.0.0.1 0`,
/// as redis-server 7.0.15 answers `INFO replication persistence keyspace`: a new replication id
/// and offset 0, like an empty node, but its keys.
const RESTORED: &str = "# Persistence\r\n\
loading:0\r\n\
async_loading:0\r\n\
rdb_changes_since_last_save:0\r\n\
aof_enabled:1\r\n\
aof_rewrite_in_progress:0\r\n\
aof_current_size:3196\r\n\
aof_base_size:89\r\n\
# Replication\r\n\
role:slave\r\n\
master_host:127.0.0.1\r\n\
master_port:0\r\n\
master_link_status:down\r\n\
master_last_io_seconds_ago:-1\r\n\
master_sync_in_progress:0\r\n\
slave_read_repl_offset:1\r\n\
slave_repl_offset:1\r\n\
master_link_down_since_seconds:-1\r\n\
slave_priority:100\r\n\
slave_read_only:1\r\n\
replica_announced:1\r\n\
connected_slaves:0\r\n\
master_failover_state:no-failover\r\n\
master_replid:522f0e41c490773262bd4814422d40e1ca36835d\r\n\
master_replid2:0000000000000000000000000000000000000000\r\n\
master_repl_offset:0\r\n\
second_repl_offset:-1\r\n\
repl_backlog_active:0\r\n\
# Keyspace\r\n\
db0:keys=100,expires=0,avg_ttl=0\r\n";

#[test]
fn a_master_reports_its_offset_and_its_replicas() {
    let info = parse_replication_info(MASTER).expect("parses");
    assert_eq!(info.role, Role::Master);
    assert_eq!(info.offset, 2916);
    assert_eq!(info.good_replicas, Some(2));
    assert_eq!(info.replicas.len(), 2);
    assert!(info.replicas[0].online);
    assert!(!info.replicas[1].online);
    assert_eq!(info.replicas[1].lag_seconds, 1);
    assert!(!info.is_detached());
}

#[test]
fn a_detached_replica_is_recognised_with_its_final_offset() {
    let info = parse_replication_info(DETACHED).expect("parses");
    assert_eq!(info.role, Role::Replica);
    assert!(info.is_detached());
    assert!(!info.link_up);
    assert_eq!(info.offset, 2916);
}

#[test]
fn a_reply_without_a_role_is_an_error_that_names_the_field() {
    let error =
        parse_replication_info("# Replication\r\nmaster_replid:x\r\n").expect_err("no role");
    assert!(error.to_string().contains("role"), "{error}");
}

#[test]
fn a_replica_without_its_cached_master_still_reports_where_its_data_is() {
    let text = DETACHED.replace("slave_repl_offset:2916", "slave_repl_offset:1");
    let info = parse_replication_info(&text).expect("parses");
    assert_eq!(info.offset, 2916);
}

#[test]
fn a_node_restarted_from_its_append_only_file_is_told_from_an_empty_one() {
    let info = parse_replication_info(RESTORED).expect("parses");
    assert!(info.is_detached());
    assert_eq!(
        info.offset, 1,
        "Redis 7 keeps no offset in the append-only file"
    );
    assert_eq!(info.keys, Some(100));
    assert!(info.aof_enabled);
    assert!(!info.loading);
    assert!(info.restored_from_disk());
    assert!(info.aof_settled());
    let rewriting = RESTORED.replace("aof_rewrite_in_progress:0", "aof_rewrite_in_progress:1");
    assert!(
        !parse_replication_info(&rewriting)
            .expect("parses")
            .aof_settled()
    );
    let empty = RESTORED.replace("db0:keys=100,expires=0,avg_ttl=0\r\n", "");
    let info = parse_replication_info(&empty).expect("parses");
    assert_eq!(info.keys, Some(0), "the section is there, with no database");
    assert!(!info.restored_from_disk());
    let loading = RESTORED.replace("loading:0", "loading:1");
    assert!(
        !parse_replication_info(&loading)
            .expect("parses")
            .restored_from_disk()
    );
    let without_aof = RESTORED.replace("aof_enabled:1", "aof_enabled:0");
    assert!(
        !parse_replication_info(&without_aof)
            .expect("parses")
            .restored_from_disk()
    );
    // A reply of the replication section alone says nothing about the data set.
    assert_eq!(parse_replication_info(DETACHED).expect("parses").keys, None);
}
