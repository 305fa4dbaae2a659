//! A write probe: at each tick, one INSERT (a commit of its own) straight to every member's
//! PostgreSQL at the same instant, each on a persistent connection. A member that acknowledged
//! the write of a tick accepted writes then; two in one tick is split brain, whatever
//! `pg_is_in_recovery()` says (an isolated old primary stays out of recovery but cannot
//! commit without its synchronous standby, and that is not split brain).
//!
//! No write is ever cancelled, and no `statement_timeout` is set: PostgreSQL reports a commit
//! whose wait for synchronous replication was cancelled as committed (a WARNING, then
//! success), which would count an unreplicated commit as acknowledged. A write is bounded by
//! dropping its connection instead (the server never tells the client anything after that),
//! and a member whose previous write is still outstanding is counted as not accepting and gets
//! no new one, so at most one connection per member ever waits.

use std::time::Duration;

use shanraq_ha::postgres::Millis;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::task::JoinSet;

use super::error::DrillError;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS shanraq_write_probe (\
     member text NOT NULL, \
     at bigint NOT NULL)";
const INSERT: &str = "INSERT INTO shanraq_write_probe (member, at) VALUES ($1, $2)";

/// Creates the probe's table (idempotent) through `options`, which must reach the primary.
pub async fn create_table(options: &PgConnectOptions) -> Result<(), DrillError> {
    let create = async {
        let mut connection = PgConnection::connect_with(options)
            .await
            .map_err(|source| {
                DrillError::sql("connecting to create the write probe table", source)
            })?;
        sqlx::query(CREATE_TABLE)
            .execute(&mut connection)
            .await
            .map_err(|source| DrillError::sql("creating the write probe table", source))?;
        let _ = connection.close().await;
        Ok(())
    };
    let bound = Duration::from_secs(30);
    tokio::time::timeout(bound, create)
        .await
        .map_err(|_| DrillError::timeout("creating the write probe table", bound))?
}

/// One member the probe writes to.
#[derive(Clone, Debug)]
pub struct ProbedMember {
    pub name: String,
    /// Straight to its PostgreSQL, in a database holding the probe's table.
    pub postgres: PgConnectOptions,
}

/// The members whose write of one tick was acknowledged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteTick {
    pub at: Millis,
    pub acknowledged: Vec<String>,
}

struct Finished {
    tick: usize,
    member: usize,
    acknowledged: bool,
    /// Given back for the next write; `None` when it was dropped.
    connection: Option<PgConnection>,
}

/// The probe's state between ticks. Dropping it drops every outstanding write (and so its
/// connection), never cancelling one.
pub struct WriteProbe {
    members: Vec<ProbedMember>,
    connections: Vec<Option<PgConnection>>,
    busy: Vec<bool>,
    writes: JoinSet<Finished>,
    ticks: Vec<WriteTick>,
    bound: Duration,
}

impl std::fmt::Debug for WriteProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteProbe")
            .field("members", &self.members)
            .field("busy", &self.busy)
            .field("ticks", &self.ticks.len())
            .finish_non_exhaustive()
    }
}

impl WriteProbe {
    /// Each write (with its connect, if any) may take `bound` before its connection is
    /// dropped.
    pub fn new(members: Vec<ProbedMember>, bound: Duration) -> WriteProbe {
        WriteProbe {
            connections: members.iter().map(|_| None).collect(),
            busy: vec![false; members.len()],
            members,
            writes: JoinSet::new(),
            ticks: Vec::new(),
            bound,
        }
    }

    /// Starts the writes of a tick at `at`: one to every member not still busy with an earlier
    /// one. Writes run on their own tasks, so they start now, all together.
    pub fn tick(&mut self, at: Millis) {
        while let Some(done) = self.writes.try_join_next() {
            self.record(done);
        }
        let tick = self.ticks.len();
        self.ticks.push(WriteTick {
            at,
            acknowledged: Vec::new(),
        });
        for member in 0..self.members.len() {
            if self.busy[member] {
                continue;
            }
            self.busy[member] = true;
            let connection = self.connections[member].take();
            let target = self.members[member].clone();
            let bound = self.bound;
            let stamp = i64::try_from(at.0).unwrap_or(i64::MAX);
            self.writes.spawn(async move {
                let write = write_once(&target, connection, stamp);
                // On timeout the write and its connection are dropped, not cancelled.
                let (acknowledged, connection) =
                    tokio::time::timeout(bound, write).await.unwrap_or_default();
                Finished {
                    tick,
                    member,
                    acknowledged,
                    connection,
                }
            });
        }
    }

    /// Waits for the next outstanding write to finish and records it; returns at once (false)
    /// when none is outstanding.
    pub async fn settle_one(&mut self) -> bool {
        match self.writes.join_next().await {
            Some(done) => {
                self.record(done);
                true
            }
            None => false,
        }
    }

    pub fn outstanding(&self) -> usize {
        self.writes.len()
    }

    fn record(&mut self, done: Result<Finished, tokio::task::JoinError>) {
        // A write task cannot panic; a cancelled one leaves its member busy, which only
        // happens while the probe is being dropped.
        let Ok(done) = done else {
            return;
        };
        self.busy[done.member] = false;
        self.connections[done.member] = done.connection;
        if done.acknowledged
            && let Some(tick) = self.ticks.get_mut(done.tick)
        {
            tick.acknowledged
                .push(self.members[done.member].name.clone());
        }
    }

    /// Every tick so far, with the members whose write of that tick was acknowledged (a write
    /// still outstanding counts only once it is).
    pub fn ticks(&self) -> &[WriteTick] {
        &self.ticks
    }
}

/// One INSERT, connecting first when there is no connection. The connection is given back
/// unless it failed: a refusal by the server (a replica is read-only) keeps it, so replicas
/// are not reconnected every tick.
async fn write_once(
    target: &ProbedMember,
    connection: Option<PgConnection>,
    stamp: i64,
) -> (bool, Option<PgConnection>) {
    let mut connection = match connection {
        Some(open) => open,
        None => match PgConnection::connect_with(&target.postgres).await {
            Ok(open) => open,
            Err(_) => return (false, None),
        },
    };
    let outcome = sqlx::query(INSERT)
        .bind(&target.name)
        .bind(stamp)
        .execute(&mut connection)
        .await;
    match outcome {
        Ok(_) => (true, Some(connection)),
        Err(sqlx::Error::Database(_)) => (false, Some(connection)),
        Err(_) => (false, None),
    }
}

/// The largest number of members whose write of one tick was acknowledged.
pub fn max_writable_at_once(ticks: &[WriteTick]) -> usize {
    ticks
        .iter()
        .map(|tick| tick.acknowledged.len())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(at: u64, acknowledged: &[&str]) -> WriteTick {
        WriteTick {
            at: Millis(at),
            acknowledged: acknowledged.iter().map(|name| (*name).to_owned()).collect(),
        }
    }

    #[test]
    fn the_widest_tick_is_reported() {
        assert_eq!(max_writable_at_once(&[]), 0);
        let ticks = [tick(0, &["pg-0"]), tick(50, &[]), tick(100, &["pg-1"])];
        assert_eq!(max_writable_at_once(&ticks), 1);
        let ticks = [tick(0, &["pg-0"]), tick(50, &["pg-0", "pg-1"])];
        assert_eq!(max_writable_at_once(&ticks), 2);
    }

    #[tokio::test]
    async fn a_member_that_does_not_answer_is_not_accepting_and_gets_no_second_write() {
        // A listener that accepts and never answers: the startup packet is never answered.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let member = ProbedMember {
            name: "silent".to_owned(),
            postgres: PgConnectOptions::new_without_pgpass()
                .host("127.0.0.1")
                .port(port)
                .username("postgres")
                .ssl_mode(sqlx::postgres::PgSslMode::Disable),
        };
        let mut probe = WriteProbe::new(vec![member], Duration::from_millis(300));
        probe.tick(Millis(0));
        probe.tick(Millis(50));
        assert_eq!(probe.outstanding(), 1, "one write per member at most");
        assert!(probe.settle_one().await);
        assert_eq!(max_writable_at_once(probe.ticks()), 0);
        probe.tick(Millis(400));
        assert_eq!(
            probe.outstanding(),
            1,
            "a new write once the old one was dropped"
        );
        accepted.abort();
    }
}
