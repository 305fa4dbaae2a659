//! `INFO replication persistence keyspace` parsed into what the engine decides on: the role,
//! where a replica points and whether its link is up, the replication offset and id, the
//! replicas a master sees (offset and lag), and whether the node holds a data set it loaded
//! from its append-only file. Pure text in, data out, so tests feed captured replies.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Replica,
}

/// One replica as its master reports it (`slaveN:ip=..,port=..,state=..,offset=..,lag=..`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaLink {
    pub ip: String,
    pub port: u16,
    /// `state=online`: past the initial sync and streaming.
    pub online: bool,
    pub offset: u64,
    /// Seconds since the replica's last acknowledgement.
    pub lag_seconds: u64,
}

/// What one `INFO replication` reply says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationInfo {
    pub role: Role,
    /// Replica: its configured master.
    #[serde(default)]
    pub master_host: Option<String>,
    #[serde(default)]
    pub master_port: Option<u16>,
    /// Replica: `master_link_status:up`.
    #[serde(default)]
    pub link_up: bool,
    /// Replica: a full sync is running (its data set is being replaced).
    #[serde(default)]
    pub sync_in_progress: bool,
    /// The replication offset: `master_repl_offset` on a master, the offset processed from the
    /// master (`slave_repl_offset`) on a replica.
    pub offset: u64,
    /// The replication history id (`master_replid`): changes on promotion, and when a master
    /// restarts without its data.
    pub replid: String,
    /// Master: the replicas it sees.
    #[serde(default)]
    pub replicas: Vec<ReplicaLink>,
    /// Master: `min_slaves_good_slaves`, present when `min-replicas-to-write` is set.
    #[serde(default)]
    pub good_replicas: Option<u32>,
    /// `INFO keyspace`: the keys of every database, when the reply had that section.
    #[serde(default)]
    pub keys: Option<u64>,
    /// `INFO persistence`: `aof_enabled:1`.
    #[serde(default)]
    pub aof_enabled: bool,
    /// `INFO persistence`: `loading:1`, the data set is still being read from disk.
    #[serde(default)]
    pub loading: bool,
    /// `INFO persistence`: an append-only file rewrite is running or scheduled
    /// (`aof_rewrite_in_progress:1` or `aof_rewrite_scheduled:1`).
    #[serde(default)]
    pub aof_rewriting: bool,
}

impl ReplicationInfo {
    pub fn is_master(&self) -> bool {
        self.role == Role::Master
    }

    /// A replica pointed at `host:port`.
    pub fn replicates_from(&self, host: &str, port: u16) -> bool {
        self.role == Role::Replica
            && self.master_host.as_deref() == Some(host)
            && self.master_port == Some(port)
    }

    /// It holds a data set it read from its own append-only file. Redis 7 does not keep the
    /// replication id and offset in that file: a node restarted from it reports a new id and
    /// offset 0 (1 as a replica of nowhere), exactly like a node restarted empty. Its keys tell
    /// them apart.
    pub fn restored_from_disk(&self) -> bool {
        self.aof_enabled && !self.loading && self.keys.is_some_and(|keys| keys > 0)
    }

    /// Its append-only file holds the data set it serves. A replica that finished a full sync
    /// starts a new file with a rewrite, and until the rewrite is done the file on disk (its
    /// manifest) is still the one from before the sync: killed then, it comes back with that
    /// older data set, whatever it acknowledged since. The sync's end and the rewrite's start
    /// happen in one step of Redis's event loop, so no answer falls between them.
    pub fn aof_settled(&self) -> bool {
        self.aof_enabled && !self.aof_rewriting && !self.loading && !self.sync_in_progress
    }

    /// A replica pointed at the address that refuses: detached by a failover.
    pub fn is_detached(&self) -> bool {
        self.replicates_from(super::model::DETACHED_HOST, super::model::DETACHED_PORT)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InfoError {
    #[error("INFO replication has no {field} field")]
    Missing { field: &'static str },
    #[error("INFO replication field {field} is not valid: {value:?}")]
    Invalid { field: &'static str, value: String },
}

fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let line = line.trim_end_matches('\r');
        let (key, value) = line.split_once(':')?;
        (key == name).then_some(value)
    })
}

fn number<T: std::str::FromStr>(text: &str, name: &'static str) -> Result<Option<T>, InfoError> {
    match field(text, name) {
        None => Ok(None),
        Some(value) => value.parse().map(Some).map_err(|_| InfoError::Invalid {
            field: name,
            value: value.to_owned(),
        }),
    }
}

fn replica_link(value: &str) -> Option<ReplicaLink> {
    let mut ip = None;
    let mut port = None;
    let mut online = false;
    let mut offset = 0;
    let mut lag_seconds = 0;
    for pair in value.split(',') {
        let (key, value) = pair.split_once('=')?;
        match key {
            "ip" => ip = Some(value.to_owned()),
            "port" => port = value.parse().ok(),
            "state" => online = value == "online",
            "offset" => offset = value.parse().unwrap_or(0),
            "lag" => lag_seconds = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    Some(ReplicaLink {
        ip: ip?,
        port: port?,
        online,
        offset,
        lag_seconds,
    })
}

/// Parses the text of `INFO replication`.
pub fn parse_replication_info(text: &str) -> Result<ReplicationInfo, InfoError> {
    let role = match field(text, "role") {
        Some("master") => Role::Master,
        Some("slave") => Role::Replica,
        Some(other) => {
            return Err(InfoError::Invalid {
                field: "role",
                value: other.to_owned(),
            });
        }
        None => return Err(InfoError::Missing { field: "role" }),
    };
    let replid = field(text, "master_replid")
        .ok_or(InfoError::Missing {
            field: "master_replid",
        })?
        .to_owned();
    let master_offset: u64 = number(text, "master_repl_offset")?.unwrap_or(0);
    // A replica's own `master_repl_offset` follows what it applied, like `slave_repl_offset`,
    // but survives the loss of its cached master (then `slave_repl_offset` reads 1): the larger
    // of the two is where its data is.
    let offset = match role {
        Role::Master => master_offset,
        Role::Replica => number::<u64>(text, "slave_repl_offset")?
            .unwrap_or(0)
            .max(master_offset),
    };
    let mut replicas = Vec::new();
    for index in 0.. {
        let Some(value) = field(text, &format!("slave{index}")) else {
            break;
        };
        if let Some(link) = replica_link(value) {
            replicas.push(link);
        }
    }
    Ok(ReplicationInfo {
        role,
        master_host: field(text, "master_host").map(str::to_owned),
        master_port: number(text, "master_port")?,
        link_up: field(text, "master_link_status") == Some("up"),
        sync_in_progress: field(text, "master_sync_in_progress") == Some("1"),
        offset,
        replid,
        replicas,
        good_replicas: number(text, "min_slaves_good_slaves")?,
        keys: keyspace(text),
        aof_enabled: field(text, "aof_enabled") == Some("1"),
        loading: field(text, "loading") == Some("1"),
        aof_rewriting: field(text, "aof_rewrite_in_progress") == Some("1")
            || field(text, "aof_rewrite_scheduled") == Some("1"),
    })
}

/// The keys of every `dbN:keys=..,expires=..` line, when the reply has a keyspace section
/// (an empty data set has the header and no line).
fn keyspace(text: &str) -> Option<u64> {
    let mut found = false;
    let mut keys = 0_u64;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line == "# Keyspace" {
            found = true;
            continue;
        }
        let Some((db, value)) = line.split_once(':') else {
            continue;
        };
        if !(db.starts_with("db") && db[2..].chars().all(|c| c.is_ascii_digit())) {
            continue;
        }
        found = true;
        let count = value
            .split(',')
            .find_map(|pair| pair.strip_prefix("keys="))
            .and_then(|count| count.parse::<u64>().ok())
            .unwrap_or(0);
        keys = keys.saturating_add(count);
    }
    found.then_some(keys)
}
