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
