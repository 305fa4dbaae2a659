//! The instance manager's HTTP contract, shared by the server (`shanraq-instance`) and its
//! client (`adapters::instance`). Kept here, as plain data, so that both sides compile against
//! one definition and the engine can reason about what an instance reports.
//!
//! Endpoints (all JSON):
//! - `GET  /health`  200 when postgres runs and accepts connections, else 503.
//! - `GET  /primary` 200 only when running, out of recovery, not fenced, holding an epoch that
//!   the operator granted with `promote`, AND able to commit: its synchronous quorum is
//!   connected (synchronous mode), or it holds the operator's lease or has a streaming replica
//!   (asynchronous mode); else 503. HAProxy's `httpchk` uses it.
//! - `GET  /replica` 200 when running and in recovery, else 503.
//! - `GET  /status`  always 200 with [`InstanceStatus`] (also while postgres is down). With the
//!   bearer token and `?lease_epoch=E&lease_ms=M` it also renews the primary's lease for M ms,
//!   when E is the epoch the instance holds the primary role at (see [`LEASE_EPOCH_PARAM`]).
//! - `POST /promote`, `/fence`, `/demote`, `/repoint`, `/detach`, `/synchronous`: bearer-token
//!   authenticated commands,
//!   bodies below, answered with [`CommandReply`]. Each carries a fencing token: the epoch and
//!   the identity of the engine that claimed it (`owner`). A command whose epoch is lower than
//!   the instance's own, or equal to it but claimed by another owner, is refused with 409 so
//!   that a stale engine cannot act (see [`admits`]).

use serde::{Deserialize, Serialize};

/// Query parameter of `GET /status` naming the epoch whose primary lease is renewed.
pub const LEASE_EPOCH_PARAM: &str = "lease_epoch";
/// Query parameter of `GET /status`: how long the renewed lease lasts, in milliseconds.
pub const LEASE_MS_PARAM: &str = "lease_ms";
/// Query parameter of `GET /status`: the engine renewing the lease (the owner of its epoch).
pub const LEASE_OWNER_PARAM: &str = "lease_owner";

/// Why an instance refuses a fencing token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenRefusal {
    /// The token's epoch is lower than the instance's: a newer engine acted since.
    Older,
    /// Same epoch, claimed by another engine: two engines can never share an epoch, so the
    /// sender's view is stale (or it never claimed the epoch at all).
    OtherOwner,
}

/// The fencing rule every instance applies to a command (PostgreSQL's instance manager) and
/// every engine applies to what it sees: `(epoch, owner)` is admitted by an instance that
/// holds `(held_epoch, held_owner)` when its epoch is higher, or equal and from the same
/// owner. An instance that holds no owner yet (never commanded since it was created) admits
/// any owner at its epoch and records it.
pub fn admits(
    held_epoch: u64,
    held_owner: Option<&str>,
    epoch: u64,
    owner: Option<&str>,
) -> Result<(), TokenRefusal> {
    if epoch < held_epoch {
        return Err(TokenRefusal::Older);
    }
    if epoch == held_epoch
        && let Some(held) = held_owner
        && owner != Some(held)
    {
        return Err(TokenRefusal::OtherOwner);
    }
    Ok(())
}

/// A standby counts as connected to its primary (for `/primary` and the self-fence) while it
/// streams and replied within the primary's lease plus this slack. A standby partitioned away
/// keeps its `pg_stat_replication` row until `wal_sender_timeout` but stops replying; live ones
/// reply every second (`wal_receiver_status_interval = 1s`).
pub const REPLY_SLACK: std::time::Duration = std::time::Duration::from_secs(2);

/// A PostgreSQL write-ahead-log position, as a plain byte offset (`pg_lsn` `X/Y` is
/// `(X << 32) | Y`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses PostgreSQL's textual form `16/B374D848`.
    pub fn parse(text: &str) -> Option<Lsn> {
        let (hi, lo) = text.trim().split_once('/')?;
        let hi = u64::from_str_radix(hi, 16).ok()?;
        let lo = u64::from_str_radix(lo, 16).ok()?;
        if hi > u64::from(u32::MAX) || lo > u64::from(u32::MAX) {
            return None;
        }
        Some(Lsn((hi << 32) | lo))
    }

    /// Bytes from `self` forward to `later`, zero when `later` is behind.
    pub fn bytes_until(self, later: Lsn) -> u64 {
        later.0.saturating_sub(self.0)
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// What an instance believes it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceRole {
    /// Running and out of recovery.
    Primary,
    /// Running and in recovery (streaming or replaying archived WAL).
    Replica,
    /// Stopped on the operator's order; will not start until demoted.
    Fenced,
    /// Bootstrapping, restarting, or crashed and waiting for backoff.
    #[default]
    Starting,
    /// Not running, and not fenced.
    Stopped,
}

/// One row of the primary's `pg_stat_replication`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationPeer {
    /// `application_name`, which the instance manager sets to the instance's name.
    pub application_name: String,
    /// `state`: `streaming`, `catchup`, `startup`, `backup`, `stopping`.
    pub state: String,
    /// `sync_state`: `sync`, `quorum`, `potential` or `async`.
    pub sync_state: String,
    pub sent_lsn: Option<Lsn>,
    pub write_lsn: Option<Lsn>,
    pub flush_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
}

/// `GET /status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// The instance's stable name (pod name in Kubernetes), also its `application_name`.
    pub name: String,
    pub role: InstanceRole,
    /// The highest epoch this instance has been told about (promote, fence, demote, repoint).
    pub epoch: u64,
    /// The engine that claimed `epoch` (sent the first command at it), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_owner: Option<String>,
    /// The epoch this instance took office as primary at (its promotion or adoption), while
    /// not fenced. A former primary restarted at a later epoch reports its old one here: it
    /// answers as a primary out of recovery, but has not been promoted at the new epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_epoch: Option<u64>,
    /// True after `fence` until `demote`.
    pub fenced: bool,
    /// True when a postgres postmaster is running under this manager.
    pub running: bool,
    /// `pg_is_in_recovery()`, when postgres answers.
    pub in_recovery: Option<bool>,
    /// Current timeline id, when postgres answers.
    pub timeline: Option<u32>,
    /// Primary: `pg_current_wal_lsn()`. Replica: none.
    pub current_lsn: Option<Lsn>,
    /// Replica: `pg_last_wal_receive_lsn()` (flushed to the replica's disk).
    pub received_lsn: Option<Lsn>,
    /// Replica: `pg_last_wal_replay_lsn()`.
    pub replayed_lsn: Option<Lsn>,
    /// Replica: `pg_is_wal_replay_paused()`.
    pub replay_paused: Option<bool>,
    /// Replica: whether the WAL receiver is streaming (`pg_stat_wal_receiver.status`).
    pub streaming: Option<bool>,
    /// Replica: detached from every upstream (`primary_conninfo` is empty, no WAL receiver),
    /// so it acknowledges nobody's commits. Set by `detach`, cleared by `repoint` and `demote`.
    #[serde(default)]
    pub detached: bool,
    /// Primary: what `/primary` answers right now (designated, and able to commit).
    #[serde(default)]
    pub writable: Option<bool>,
    /// Replica: seconds since the last replayed transaction, when known.
    pub replay_lag_seconds: Option<f64>,
    /// Primary: `pg_stat_replication`.
    pub replication: Vec<ReplicationPeer>,
    /// Primary: the effective `synchronous_standby_names`.
    pub synchronous_standby_names: Option<String>,
    /// After a clean stop (fence or shutdown): `Latest checkpoint location` from pg_controldata,
    /// the last LSN this instance wrote. Switchover waits for the target to replay it.
    pub final_lsn: Option<Lsn>,
    /// Human-readable reason when postgres is not running or not answering.
    pub message: Option<String>,
    /// WAL archiving (`pg_stat_archiver`), when backups are configured and postgres answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archiver: Option<Box<ArchiverStatus>>,
    /// Primary with backups: the stanza's backups as pgBackRest last listed them (refreshed
    /// after every backup and once a minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<Box<RepositoryInfo>>,
    /// With backups and the cluster's pgBackRest CA: how peers reach this instance's
    /// pgBackRest TLS server, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_peer: Option<Box<BackupPeer>>,
}

/// `pg_stat_archiver`: what `archive_command` (pgBackRest's `archive-push`) did last.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiverStatus {
    pub archived_count: i64,
    pub last_archived_wal: Option<String>,
    /// RFC 3339.
    pub last_archived_at: Option<String>,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    /// RFC 3339.
    pub last_failed_at: Option<String>,
}

impl ArchiverStatus {
    /// Archiving works: nothing failed since the last success.
    pub fn healthy(&self) -> bool {
        match (&self.last_failed_at, &self.last_archived_at) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(failed), Some(archived)) => {
                let parse = |text: &str| text.parse::<jiff::Timestamp>().ok();
                match (parse(failed), parse(archived)) {
                    (Some(failed), Some(archived)) => archived > failed,
                    _ => false,
                }
            }
        }
    }
}

/// The kind of a pgBackRest backup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    #[default]
    Full,
    Diff,
    Incr,
}

impl BackupKind {
    /// pgBackRest's `--type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Full => "full",
            BackupKind::Diff => "diff",
            BackupKind::Incr => "incr",
        }
    }
}

/// `POST /backup`: take a pgBackRest backup of this instance now; answers when it is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRequest {
    #[serde(default, rename = "type")]
    pub kind: BackupKind,
    /// On a replica: the primary, whose pgBackRest starts and stops the backup while the
    /// replica copies the data (`backup-standby`). Absent: this instance is the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<BackupPeer>,
}

/// How another instance's pgBackRest reaches this one's (its TLS server) and its postgres.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupPeer {
    /// The address the TLS server listens on and its certificate names.
    pub host: String,
    pub tls_port: u16,
    /// postgres, as seen on that instance: its data dir and port.
    pub data_dir: String,
    pub pg_port: u16,
}

/// One backup in the repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    pub label: String,
    /// `full`, `diff` or `incr`.
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339.
    pub started_at: String,
    pub completed_at: String,
    /// The instance that took it, when known.
    #[serde(default)]
    pub instance: Option<String>,
}

/// A stanza's contents: backups oldest first, the archived WAL range.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryInfo {
    pub backups: Vec<BackupInfo>,
    pub archive_min: Option<String>,
    pub archive_max: Option<String>,
}

/// The answer to `POST /backup` and `GET /backups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupReply {
    pub ok: bool,
    /// What happened; pgBackRest's error on failure (secrets scrubbed).
    pub message: String,
    /// The backup taken.
    #[serde(default)]
    pub backup: Option<BackupInfo>,
    /// The repository after it.
    #[serde(default)]
    pub repository: Option<RepositoryInfo>,
    /// Wall time of the backup, in milliseconds.
    #[serde(default)]
    pub elapsed_ms: Option<u64>,
}

/// `POST /promote`: end recovery (`pg_promote(wait => true)`) and take `epoch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteRequest {
    pub epoch: u64,
    /// The engine that claimed `epoch` (see [`admits`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// `POST /fence`: stop answering `/primary` at once, stop postgres (fast shutdown; immediate if
/// it does not stop within `timeout_ms`, then SIGKILL), and stay down until demoted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceRequest {
    pub epoch: u64,
    /// The engine that claimed `epoch` (see [`admits`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub timeout_ms: u64,
}

/// `POST /detach`: stop streaming from any upstream (`primary_conninfo = ''`, reload, and wait
/// until the WAL receiver is gone), then report the final received LSN in the reply's status.
/// A replica detached this way can no longer acknowledge a synchronous commit of the old
/// primary: the engine detaches a quorum of the synchronous set before it promotes anyone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachRequest {
    pub epoch: u64,
    /// The engine that claimed `epoch` (see [`admits`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// `POST /synchronous`: set a primary's `synchronous_standby_names` (ALTER SYSTEM, reload, and
/// wait until new sessions see it). `standby_names: None` restores the instance's configured
/// setting (`--synchronous`); a value lowers it. Only the engine lowers it, under
/// `dataDurability: preferred`, after it recorded the fallback in its persisted state: a
/// primary never lowers its own quorum, so an engine that cannot reach it (a partition) never
/// loses the quorum fencing it relies on. Refused by a replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynchronousRequest {
    pub epoch: u64,
    /// The engine that claimed `epoch` (see [`admits`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_names: Option<String>,
}

/// The `n` of `synchronous_standby_names`: `ANY n (...)`, `FIRST n (...)`, `n (...)`, or a
/// plain list (one). `None` when it is empty: commits wait for nobody.
pub fn quorum_needed(synchronous_standby_names: &str) -> Option<u32> {
    let text = synchronous_standby_names.trim();
    if text.is_empty() {
        return None;
    }
    let upper = text.to_ascii_uppercase();
    let rest = upper
        .strip_prefix("ANY ")
        .or_else(|| upper.strip_prefix("FIRST "))
        .unwrap_or(&upper)
        .trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let after = rest[digits.len()..].trim_start();
    if !digits.is_empty() && after.starts_with('(') {
        return digits.parse().ok();
    }
    Some(1)
}

/// Where a replica streams from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    /// The upstream instance's name (for logs and status; the connection uses host and port).
    pub name: String,
}

/// `POST /demote`: become a replica of `upstream`. Stops postgres if it runs, runs `pg_rewind`
/// when the timelines diverged (or a fresh `pg_basebackup` when rewind is impossible), writes
/// `standby.signal` and `primary_conninfo`, and starts postgres. Clears the fence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemoteRequest {
    pub epoch: u64,
    /// The engine that claimed `epoch` (see [`admits`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub upstream: Upstream,
}

/// `POST /repoint`: change `primary_conninfo` of a running replica and reload, no restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepointRequest {
    pub epoch: u64,
    /// The engine that claimed `epoch` (see [`admits`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub upstream: Upstream,
}

/// The answer to every command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandReply {
    pub ok: bool,
    /// The instance's epoch after the command.
    pub epoch: u64,
    /// The engine that claimed that epoch, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    pub message: String,
    /// The status right after the command.
    pub status: Option<InstanceStatus>,
}

#[cfg(test)]
mod tests {

    #[test]
    fn archiving_is_healthy_until_a_failure_newer_than_the_last_success() {
        let status = |archived: Option<&str>, failed: Option<&str>| super::ArchiverStatus {
            last_archived_at: archived.map(str::to_owned),
            last_failed_at: failed.map(str::to_owned),
            ..super::ArchiverStatus::default()
        };
        assert!(status(None, None).healthy());
        assert!(status(Some("2026-12-02T04:00:00Z"), None).healthy());
        assert!(
            status(Some("2026-12-02T04:00:05Z"), Some("2026-12-02T04:00:00.5Z")).healthy(),
            "a success after the failure"
        );
        assert!(!status(Some("2026-12-02T04:00:00Z"), Some("2026-12-02T04:00:05Z")).healthy());
        assert!(!status(None, Some("2026-12-02T04:00:05Z")).healthy());
    }

    use super::*;

    #[test]
    fn lsn_round_trips_through_postgres_text() {
        let lsn = Lsn::parse("16/B374D848").expect("valid lsn");
        assert_eq!(lsn.0, (0x16 << 32) | 0xB374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!(Lsn::parse("0/0"), Some(Lsn(0)));
        assert_eq!(Lsn::parse("nonsense"), None);
        assert_eq!(Lsn::parse("1FFFFFFFF/0"), None);
    }

    #[test]
    fn a_token_is_admitted_only_when_newer_or_the_same_claim() {
        assert_eq!(admits(2, Some("a"), 3, Some("b")), Ok(()), "a newer epoch");
        assert_eq!(admits(2, Some("a"), 2, Some("a")), Ok(()), "the same claim");
        assert_eq!(admits(2, None, 2, Some("b")), Ok(()), "an unclaimed epoch");
        assert_eq!(admits(2, None, 2, None), Ok(()));
        assert_eq!(admits(2, Some("a"), 1, Some("a")), Err(TokenRefusal::Older));
        assert_eq!(
            admits(2, Some("a"), 2, Some("b")),
            Err(TokenRefusal::OtherOwner)
        );
        assert_eq!(
            admits(2, Some("a"), 2, None),
            Err(TokenRefusal::OtherOwner),
            "a token without an owner cannot use a claimed epoch"
        );
    }

    #[test]
    fn bytes_until_never_goes_negative() {
        assert_eq!(Lsn(100).bytes_until(Lsn(150)), 50);
        assert_eq!(Lsn(150).bytes_until(Lsn(100)), 0);
    }
}
