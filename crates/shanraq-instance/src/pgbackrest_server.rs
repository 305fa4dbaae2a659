//! pgBackRest's TLS server on this instance (`pgbackrest server`, as the postgres user), so that
//! a replica's pgBackRest can reach this one's while it backs up with `backup-standby`. It runs
//! whenever the manager runs with the cluster's CA, whatever the role: any instance may be the
//! primary of the next backup. It is restarted when it exits; `/status` reports it
//! (`backup_peer`) only while it runs.

use std::sync::Arc;
use std::time::Duration;

use shanraq_ha::wire::BackupPeer;

use crate::args::BackupTls;
use crate::backup_tls::Files;
use crate::error::InstanceError;
use crate::supervisor::Manager;

/// How soon an exited server is started again.
const RESTART_DELAY: Duration = Duration::from_secs(2);

/// The server's own settings, as pgBackRest's variables (beside `pgbackrest::environment`):
/// listen on the instance's address with its certificate, accept only this cluster's
/// instances (their certificates' name, issued by the same CA) for this cluster's stanza.
fn environment(tls: &BackupTls, files: &Files, stanza: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PGBACKREST_TLS_SERVER_ADDRESS", tls.address.clone()),
        ("PGBACKREST_TLS_SERVER_PORT", tls.port.to_string()),
        (
            "PGBACKREST_TLS_SERVER_CERT_FILE",
            files.cert.display().to_string(),
        ),
        (
            "PGBACKREST_TLS_SERVER_KEY_FILE",
            files.key.display().to_string(),
        ),
        (
            "PGBACKREST_TLS_SERVER_CA_FILE",
            files.ca.display().to_string(),
        ),
        (
            "PGBACKREST_TLS_SERVER_AUTH",
            format!("{}={stanza}", crate::backup_tls::CLIENT_NAME),
        ),
    ]
}

/// The options that make the backup command on a replica reach `primary` as pg1 (through its
/// TLS server, with this instance's certificate) and use the local standby as pg2.
pub fn standby_args(
    settings: &crate::args::Settings,
    files: &Files,
    primary: &BackupPeer,
) -> Vec<String> {
    vec![
        format!("--pg1-host={}", primary.host),
        "--pg1-host-type=tls".to_owned(),
        format!("--pg1-host-port={}", primary.tls_port),
        format!("--pg1-host-cert-file={}", files.cert.display()),
        format!("--pg1-host-key-file={}", files.key.display()),
        format!("--pg1-host-ca-file={}", files.ca.display()),
        format!("--pg1-path={}", primary.data_dir),
        format!("--pg1-port={}", primary.pg_port),
        format!("--pg2-path={}", settings.data_dir.display()),
        format!("--pg2-port={}", settings.pg_port),
    ]
}

/// This instance's TLS files, once `backup_tls::prepare` wrote them.
pub fn files(tls: &BackupTls) -> Files {
    Files::in_dir(&tls.dir)
}

/// Issues this instance's certificate, then runs the server until the manager stops (the
/// task is aborted; the child dies with it).
pub async fn run(manager: Arc<Manager>) {
    let Some(backup) = manager.settings.backup.clone() else {
        return;
    };
    let Some(tls) = backup.tls.clone() else {
        return;
    };
    let files = match crate::backup_tls::prepare(&tls.ca_dir, &tls.address, &tls.dir, &manager.user)
    {
        Ok(files) => files,
        Err(error) => {
            tracing::error!(%error, "pgBackRest TLS server not started: no certificate");
            return;
        }
    };
    let peer = BackupPeer {
        host: tls.address.clone(),
        tls_port: tls.port,
        data_dir: manager.settings.data_dir.display().to_string(),
        pg_port: manager.settings.pg_port,
    };
    loop {
        match serve_once(&manager, &tls, &files, &backup.stanza, &peer).await {
            Ok(status) => {
                tracing::warn!(%status, "pgBackRest TLS server exited; starting it again")
            }
            Err(error) => tracing::warn!(%error, "pgBackRest TLS server failed; starting it again"),
        }
        set_peer(&manager, None);
        tokio::time::sleep(RESTART_DELAY).await;
    }
}

fn set_peer(manager: &Manager, peer: Option<BackupPeer>) {
    if let Ok(mut slot) = manager.backup_peer.lock() {
        *slot = peer;
    }
}

async fn serve_once(
    manager: &Manager,
    tls: &BackupTls,
    files: &Files,
    stanza: &str,
    peer: &BackupPeer,
) -> Result<std::process::ExitStatus, InstanceError> {
    if let Some(backup) = &manager.settings.backup {
        crate::config::private_dir(&backup.lock_dir, &manager.user)?;
    }
    let mut command = manager.user.command(std::path::Path::new("pgbackrest"));
    command
        .envs(crate::pgbackrest::environment(&manager.settings))
        .envs(environment(tls, files, stanza))
        .arg("server")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|source| InstanceError::io("starting pgbackrest server", source))?;
    // Advertised in `/status` only once it accepts connections: a server that cannot bind
    // exits instead, and no backup is planned against it.
    let listening = async {
        let mut delay = Duration::from_millis(20);
        while tokio::net::TcpStream::connect((tls.address.as_str(), tls.port))
            .await
            .is_err()
        {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    };
    tokio::select! {
        exited = child.wait() => {
            return exited.map_err(|source| InstanceError::io("waiting for pgbackrest server", source));
        }
        () = listening => {}
    }
    tracing::info!(address = %tls.address, port = tls.port, "pgBackRest TLS server listening");
    set_peer(manager, Some(peer.clone()));
    child
        .wait()
        .await
        .map_err(|source| InstanceError::io("waiting for pgbackrest server", source))
}
