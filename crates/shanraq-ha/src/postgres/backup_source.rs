//! Which instance takes a backup. A backup reads every data file, so it is taken from a
//! replica when one can: the primary's pgBackRest only starts and stops it and sends the few
//! files a standby does not replicate (`backup-standby`). The replica must be streaming from
//! the current primary (a detached, fenced or lagging one could hold a copy the primary no
//! longer matches, and pgBackRest would wait for it to replay the backup's start), and both
//! must run pgBackRest's TLS server. Otherwise the primary backs up alone. Pure.

use crate::wire::{BackupKind, BackupRequest, InstanceRole, InstanceStatus};

/// A replica further behind than this (seconds since its last replayed transaction, while
/// the primary writes) is passed over: pgBackRest would wait for it to catch up.
pub const MAX_REPLAY_LAG_SECONDS: f64 = 30.0;

/// Where to send `POST /backup`, and what to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupPlan {
    pub instance: String,
    pub request: BackupRequest,
}

impl BackupPlan {
    /// True when a replica takes it.
    pub fn from_standby(&self) -> bool {
        self.request.primary.is_some()
    }
}

/// The plan for a backup of `kind`, given the last status of every instance and the name of
/// the current primary. `None` when the primary is not in `sample` or not serving.
pub fn plan(sample: &[InstanceStatus], primary: &str, kind: BackupKind) -> Option<BackupPlan> {
    let leader = sample
        .iter()
        .find(|status| status.name == primary && status.role == InstanceRole::Primary)?;
    let alone = BackupPlan {
        instance: leader.name.clone(),
        request: BackupRequest {
            kind,
            primary: None,
        },
    };
    let Some(peer) = &leader.backup_peer else {
        return Some(alone);
    };
    let best = sample
        .iter()
        .filter(|status| eligible(status, primary))
        .max_by(|a, b| {
            a.replayed_lsn
                .cmp(&b.replayed_lsn)
                // Ties go to the first name, so the choice is stable.
                .then_with(|| b.name.cmp(&a.name))
        });
    Some(match best {
        Some(replica) => BackupPlan {
            instance: replica.name.clone(),
            request: BackupRequest {
                kind,
                primary: Some((**peer).clone()),
            },
        },
        None => alone,
    })
}

fn eligible(status: &InstanceStatus, primary: &str) -> bool {
    status.name != primary
        && status.role == InstanceRole::Replica
        && status.running
        && !status.fenced
        && !status.detached
        && status.in_recovery == Some(true)
        && status.streaming == Some(true)
        && status.replay_paused != Some(true)
        && status
            .replay_lag_seconds
            .is_none_or(|lag| lag <= MAX_REPLAY_LAG_SECONDS)
        && status.backup_peer.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{BackupPeer, Lsn};

    fn peer(name: &str) -> BackupPeer {
        BackupPeer {
            host: format!("{name}.example"),
            tls_port: 8432,
            data_dir: "/var/lib/postgresql/data/pgdata".to_owned(),
            pg_port: 5432,
        }
    }

    fn primary(name: &str) -> InstanceStatus {
        InstanceStatus {
            name: name.to_owned(),
            role: InstanceRole::Primary,
            running: true,
            in_recovery: Some(false),
            backup_peer: Some(Box::new(peer(name))),
            ..InstanceStatus::default()
        }
    }

    fn replica(name: &str, replayed: u64) -> InstanceStatus {
        InstanceStatus {
            name: name.to_owned(),
            role: InstanceRole::Replica,
            running: true,
            in_recovery: Some(true),
            streaming: Some(true),
            replayed_lsn: Some(Lsn(replayed)),
            replay_lag_seconds: Some(0.2),
            backup_peer: Some(Box::new(peer(name))),
            ..InstanceStatus::default()
        }
    }

    #[test]
    fn the_most_advanced_streaming_replica_backs_up_with_the_primarys_help() {
        let sample = [primary("pg-0"), replica("pg-1", 100), replica("pg-2", 200)];
        let plan = plan(&sample, "pg-0", BackupKind::Full).expect("a plan");
        assert_eq!(plan.instance, "pg-2");
        assert_eq!(plan.request.primary, Some(peer("pg-0")));
        assert!(plan.from_standby());
        // Equal positions: the first name, every time.
        let sample = [primary("pg-0"), replica("pg-2", 100), replica("pg-1", 100)];
        let plan = super::plan(&sample, "pg-0", BackupKind::Diff).expect("a plan");
        assert_eq!(plan.instance, "pg-1");
        assert_eq!(plan.request.kind, BackupKind::Diff);
    }

    #[test]
    fn replicas_that_could_not_back_up_are_passed_over() {
        let mut detached = replica("pg-1", 900);
        detached.detached = true;
        let mut not_streaming = replica("pg-2", 900);
        not_streaming.streaming = Some(false);
        let mut lagging = replica("pg-3", 900);
        lagging.replay_lag_seconds = Some(MAX_REPLAY_LAG_SECONDS + 1.0);
        let mut fenced = replica("pg-4", 900);
        fenced.fenced = true;
        let mut no_server = replica("pg-5", 900);
        no_server.backup_peer = None;
        let mut paused = replica("pg-6", 900);
        paused.replay_paused = Some(true);
        let healthy = replica("pg-7", 10);
        let mut sample = vec![
            primary("pg-0"),
            detached,
            not_streaming,
            lagging,
            fenced,
            no_server,
            paused,
        ];
        let alone = plan(&sample, "pg-0", BackupKind::Full).expect("a plan");
        assert_eq!(alone.instance, "pg-0", "no replica qualifies: the primary");
        assert_eq!(alone.request.primary, None);
        sample.push(healthy);
        let plan = plan(&sample, "pg-0", BackupKind::Full).expect("a plan");
        assert_eq!(plan.instance, "pg-7");
    }

    #[test]
    fn without_the_primarys_tls_server_or_primary_there_is_no_standby_backup() {
        let mut leader = primary("pg-0");
        leader.backup_peer = None;
        let sample = [leader, replica("pg-1", 100)];
        let plan = plan(&sample, "pg-0", BackupKind::Full).expect("a plan");
        assert_eq!(
            (plan.instance.as_str(), plan.from_standby()),
            ("pg-0", false)
        );
        let sample = [replica("pg-1", 100)];
        assert_eq!(super::plan(&sample, "pg-0", BackupKind::Full), None);
        assert_eq!(super::plan(&sample, "pg-1", BackupKind::Full), None);
    }
}
