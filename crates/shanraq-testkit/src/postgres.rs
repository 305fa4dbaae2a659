//! A throwaway PostgreSQL 15: initdb in a temp dir, started with a caller's postgresql.conf
//! fragment, reachable on a 127.0.0.1 port, killed and removed on drop. Used to prove that a
//! rendered postgresql.conf is accepted by the real server, and as a plain database in tests.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use tempfile::TempDir;

use crate::ports::start_on_free_port;
use crate::process::{ensure_alive, kill_and_reap, spawn_logged, tail};
use crate::secrets::random_secret;
use crate::user::PostgresUser;
use crate::{TestkitError, binaries};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running throwaway PostgreSQL. Superuser `postgres` with a random password.
#[derive(Debug)]
pub struct TempPostgres {
    child: Child,
    port: u16,
    password: String,
    data_dir: PathBuf,
    log: PathBuf,
    // Dropped last: removes the data dir after the server is gone.
    _dir: TempDir,
}

impl TempPostgres {
    /// initdb, then start with `fragment` included in postgresql.conf. `port`,
    /// `listen_addresses` and `unix_socket_directories` are forced on the command line so the
    /// server binds 127.0.0.1 on a free port whatever the fragment says.
    pub async fn start(fragment: &str) -> Result<TempPostgres, TestkitError> {
        let bin = binaries::pg_bin_dir()?;
        let user = PostgresUser::lookup()?;
        let dir = crate::process::temp_dir("shanraq-pg-")?;
        user.own(dir.path())?;
        let data_dir = dir.path().join("data");
        let socket_dir = dir.path().join("socket");
        std::fs::create_dir(&socket_dir)
            .map_err(|source| TestkitError::io("creating socket dir", source))?;
        user.own(&socket_dir)?;
        let password = random_secret(24);
        let pwfile = dir.path().join("pwfile");
        write(&pwfile, &password)?;
        user.own(&pwfile)?;
        let output = user
            .command(bin.join("initdb"))
            .arg("--pgdata")
            .arg(&data_dir)
            .args([
                "--username=postgres",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .map_err(|source| TestkitError::io("running initdb", source))?;
        let _ = std::fs::remove_file(&pwfile);
        if !output.status.success() {
            return Err(TestkitError::CommandFailed {
                command: "initdb".to_string(),
                status: output.status.to_string(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
        let fragment_path = data_dir.join("shanraq-test.conf");
        write(&fragment_path, fragment)?;
        user.own(&fragment_path)?;
        append(
            &data_dir.join("postgresql.conf"),
            "\ninclude 'shanraq-test.conf'\n",
        )?;
        let log = dir.path().join("postgres.log");
        let (child, port) = start_on_free_port(&log, "could not bind", async |port| {
            let mut command = user.command(bin.join("postgres"));
            command
                .arg("-D")
                .arg(&data_dir)
                .arg("-c")
                .arg(format!("port={port}"))
                .arg("-c")
                .arg("listen_addresses=127.0.0.1")
                .arg("-c")
                .arg(format!("unix_socket_directories={}", socket_dir.display()));
            let mut child = spawn_logged(&mut command, &log, "postgres").map_err(|e| (None, e))?;
            let options = connect_options(port, &password);
            match wait_ready(&mut child, &options, &log).await {
                Ok(()) => Ok(child),
                Err(error) => Err((Some(child), error)),
            }
        })
        .await?;
        Ok(TempPostgres {
            child,
            port,
            password,
            data_dir,
            log,
            _dir: dir,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's random password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres",
            self.password, self.port
        )
    }

    pub fn connect_options(&self) -> PgConnectOptions {
        connect_options(self.port, &self.password)
    }

    pub async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect_with(&self.connect_options()).await
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

async fn wait_ready(
    child: &mut Child,
    options: &PgConnectOptions,
    log: &Path,
) -> Result<(), TestkitError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        ensure_alive(child, "postgres", log)?;
        match PgConnection::connect_with(options).await {
            Ok(connection) => {
                let _ = connection.close().await;
                return Ok(());
            }
            Err(error) if Instant::now() >= deadline => {
                return Err(TestkitError::NotReady {
                    what: "postgres".to_string(),
                    seconds: READY_TIMEOUT.as_secs(),
                    detail: format!("{error}; log tail:\n{}", tail(log, 40)),
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn connect_options(port: u16, password: &str) -> PgConnectOptions {
    PgConnectOptions::new_without_pgpass()
        .host("127.0.0.1")
        .port(port)
        .username("postgres")
        .password(password)
        .database("postgres")
        .ssl_mode(PgSslMode::Disable)
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

fn write(path: &Path, text: &str) -> Result<(), TestkitError> {
    std::fs::write(path, text)
        .map_err(|source| TestkitError::io(format!("writing {}", path.display()), source))
}

fn append(path: &Path, text: &str) -> Result<(), TestkitError> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|source| TestkitError::io(format!("opening {}", path.display()), source))?;
    file.write_all(text.as_bytes())
        .map_err(|source| TestkitError::io(format!("appending to {}", path.display()), source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_with_a_fragment_and_applies_it() {
        let server = TempPostgres::start("work_mem = '7MB'\n")
            .await
            .expect("postgres starts");
        let mut connection = server.connect().await.expect("connect");
        let work_mem: String = sqlx::query_scalar("SHOW work_mem")
            .fetch_one(&mut connection)
            .await
            .expect("show work_mem");
        assert_eq!(work_mem, "7MB");
    }

    #[tokio::test]
    async fn a_bad_fragment_fails_with_the_server_log() {
        let error = TempPostgres::start("no_such_setting_at_all = 1\n")
            .await
            .expect_err("postgres must refuse an unknown setting");
        let message = error.to_string();
        assert!(
            message.contains("no_such_setting_at_all"),
            "error should quote the server's complaint: {message}"
        );
    }

    #[tokio::test]
    async fn drop_removes_the_server_and_its_files() {
        let server = TempPostgres::start("").await.expect("postgres starts");
        let data_dir = server.data_dir().to_path_buf();
        let port = server.port();
        drop(server);
        assert!(!data_dir.exists(), "data dir left behind");
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err(),
            "server still listening after drop"
        );
    }
}
