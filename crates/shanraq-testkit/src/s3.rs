//! `S3Server`: a real S3-compatible object store (SeaweedFS's `weed server -s3`, Apache-2.0,
//! built by `scripts/install-s3-server`) on 127.0.0.1, for the backup and restore tests.
//! pgBackRest speaks S3 over HTTPS only, so the server serves TLS with a certificate signed by
//! a CA made here with openssl, and authenticates every request against an identities file
//! holding one random access key pair. The keys never reach a log: the accessors hand them to
//! the caller, who passes them to pgBackRest through its environment, as a pod does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::binaries;
use crate::process::{kill_and_reap, spawn_logged, tail, wait_for_port};
use crate::secrets::random_secret;
use crate::{TestkitError, free_port};

const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The host name the server's certificate is for (and that resolves to 127.0.0.1).
pub const S3_HOST: &str = "localhost";
/// The S3 region the server accepts (any; pgBackRest needs one to sign requests).
pub const S3_REGION: &str = "us-east-1";

/// A running object store with one bucket.
pub struct S3Server {
    child: Option<Child>,
    port: u16,
    bucket: String,
    access_key: String,
    secret_key: String,
    ca_file: PathBuf,
    log: PathBuf,
    dir: TempDir,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server")
            .field("port", &self.port)
            .field("bucket", &self.bucket)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl S3Server {
    /// Starts the store with TLS and one bucket named `bucket`, and waits until the bucket
    /// exists.
    pub async fn start(bucket: &str) -> Result<S3Server, TestkitError> {
        let weed = binaries::weed()?;
        let openssl = binaries::openssl()?;
        let dir = tempfile::Builder::new()
            .prefix("shanraq-s3-")
            .tempdir()
            .map_err(|source| TestkitError::io("creating S3 dir", source))?;
        // pgBackRest runs as the postgres user and must reach the CA bundle inside.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
                .map_err(|source| TestkitError::io("chmod S3 dir", source))?;
        }
        let ca_file = make_certificates(&openssl, dir.path())?;
        let access_key = random_secret(20).to_ascii_uppercase();
        let secret_key = random_secret(40);
        let identities = serde_json::json!({
            "identities": [{
                "name": "shanraq-backup",
                "credentials": [{ "accessKey": access_key, "secretKey": secret_key }],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }]
        });
        let identities_file = dir.path().join("identities.json");
        write_private(&identities_file, &identities.to_string())?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data)
            .map_err(|source| TestkitError::io("creating S3 data", source))?;

        let [
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
            s3,
            s3_grpc,
        ] = grpc_safe_ports()?;
        let log = dir.path().join("weed.log");
        let mut command = Command::new(&weed);
        command
            .arg("server")
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-dir={}", data.display()))
            .arg(format!("-master.port={master}"))
            .arg(format!("-master.port.grpc={master_grpc}"))
            .arg("-master.telemetry=false")
            .arg("-master.volumeSizeLimitMB=64")
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-volume.port.grpc={volume_grpc}"))
            .arg("-filer")
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-filer.port.grpc={filer_grpc}"))
            .arg("-s3")
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-s3.port.grpc={s3_grpc}"))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.config={}", identities_file.display()))
            .arg(format!(
                "-s3.cert.file={}",
                dir.path().join("server.crt").display()
            ))
            .arg(format!(
                "-s3.key.file={}",
                dir.path().join("server.key").display()
            ))
            .current_dir(dir.path());
        let mut child = spawn_logged(&mut command, &log, "weed server")?;
        let ready = wait_for_port(&mut child, s3, "weed s3", &log, START_TIMEOUT).await;
        let mut server = S3Server {
            child: Some(child),
            port: s3,
            bucket: bucket.to_string(),
            access_key,
            secret_key,
            ca_file,
            log,
            dir,
        };
        ready?;
        server
            .create_bucket(&weed, (master, master_grpc), (filer, filer_grpc))
            .await?;
        Ok(server)
    }

    /// `s3.bucket.create` through `weed shell` (which reaches the master and filer over
    /// gRPC: `host:port.grpcPort`), retried until `s3.bucket.list` shows the bucket.
    async fn create_bucket(
        &mut self,
        weed: &Path,
        master: (u16, u16),
        filer: (u16, u16),
    ) -> Result<(), TestkitError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let script = format!("s3.bucket.create -name {0}\ns3.bucket.list\n", self.bucket);
            let mut shell = tokio::process::Command::new(weed)
                .arg("shell")
                .arg(format!("-master=127.0.0.1:{}.{}", master.0, master.1))
                .arg(format!("-filer=127.0.0.1:{}.{}", filer.0, filer.1))
                .arg("-connectTimeout=10s")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|source| TestkitError::io("spawning weed shell", source))?;
            if let Some(mut stdin) = shell.stdin.take() {
                use tokio::io::AsyncWriteExt;
                stdin
                    .write_all(script.as_bytes())
                    .await
                    .map_err(|source| TestkitError::io("writing to weed shell", source))?;
            }
            let output = tokio::time::timeout(Duration::from_secs(30), shell.wait_with_output())
                .await
                .map_err(|_| TestkitError::NotReady {
                    what: "weed shell".to_string(),
                    seconds: 30,
                    detail: "s3.bucket.create did not return".to_string(),
                })?
                .map_err(|source| TestkitError::io("running weed shell", source))?;
            let stdout = String::from_utf8_lossy(&output.stdout);
            if stdout
                .lines()
                .any(|line| line.split_whitespace().next() == Some(self.bucket.as_str()))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(TestkitError::NotReady {
                    what: format!("S3 bucket {}", self.bucket),
                    seconds: START_TIMEOUT.as_secs(),
                    detail: format!(
                        "weed shell said:\n{stdout}{}\nserver log:\n{}",
                        String::from_utf8_lossy(&output.stderr),
                        self.log_tail()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `https://localhost:PORT`: what `spec.backup.endpoint` holds for this server.
    pub fn endpoint(&self) -> String {
        format!("https://{S3_HOST}:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn region(&self) -> &str {
        S3_REGION
    }

    /// The access key id (a secret of the test: pass it through the environment only).
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The secret access key (pass it through the environment only).
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The CA bundle (PEM) that signed the server's certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    pub fn ca_pem(&self) -> Result<String, TestkitError> {
        std::fs::read_to_string(&self.ca_file).map_err(|source| {
            TestkitError::io(format!("reading {}", self.ca_file.display()), source)
        })
    }

    /// The server's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log, 40)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }
}

/// Eight free ports whose gRPC neighbours (SeaweedFS defaults a gRPC port to port + 10000)
/// stay out of the ephemeral range; every port is given explicitly anyway.
fn grpc_safe_ports() -> Result<[u16; 8], TestkitError> {
    let mut ports = [0u16; 8];
    for port in &mut ports {
        *port = free_port()?;
    }
    Ok(ports)
}

fn write_private(path: &Path, text: &str) -> Result<(), TestkitError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| TestkitError::io(format!("creating {}", path.display()), source))?;
    file.write_all(text.as_bytes())
        .map_err(|source| TestkitError::io(format!("writing {}", path.display()), source))
}

/// A CA and a server certificate for `localhost` and 127.0.0.1 signed by it, in `dir`;
/// returns the CA's PEM file.
fn make_certificates(openssl: &Path, dir: &Path) -> Result<PathBuf, TestkitError> {
    let run = |args: &[&str]| -> Result<(), TestkitError> {
        let output = Command::new(openssl)
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|source| TestkitError::io("running openssl", source))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(TestkitError::CommandFailed {
                command: format!("openssl {}", args.first().copied().unwrap_or_default()),
                status: output.status.to_string(),
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            })
        }
    };
    std::fs::write(
        dir.join("server.ext"),
        format!("subjectAltName=DNS:{S3_HOST},IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"),
    )
    .map_err(|source| TestkitError::io("writing server.ext", source))?;
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=shanraq test CA",
    ])?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ])?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ])?;
    let ca = dir.join("ca.crt");
    // pgBackRest runs as the postgres user and reads the bundle.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644))
        .map_err(|source| TestkitError::io("chmod ca.crt", source))?;
    Ok(ca)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_path_follows_the_install_script() {
        let script = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install-s3-server"),
        )
        .expect("scripts/install-s3-server");
        assert!(
            script.contains(&format!(
                "SEAWEEDFS_VERSION={}",
                binaries::SEAWEEDFS_VERSION
            )),
            "binaries::SEAWEEDFS_VERSION differs from scripts/install-s3-server"
        );
    }
}
