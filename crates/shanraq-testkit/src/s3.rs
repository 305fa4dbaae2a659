//! `S3Server`: a real S3-compatible object store (SeaweedFS's `weed server -s3`, Apache-2.0,
//! built by `scripts/install-s3-server`) on 127.0.0.1, for the backup and restore tests. The
//! S3 gateway alone may listen on another address of this machine instead (`S3Listen`): the
//! host's end of a pod network, for pods in network namespaces; the master, volume and filer
//! stay on 127.0.0.1.
//! pgBackRest speaks S3 over HTTPS only, so the server serves TLS with a certificate signed by
//! a CA made here with openssl, and authenticates every request against an identities file
//! holding one random access key pair. The keys never reach a log: the accessors hand them to
//! the caller, who passes them to pgBackRest through its environment, as a pod does.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::binaries;
use crate::process::{kill_and_reap, spawn_logged, tail, wait_for_addr};
use crate::secrets::random_secret;
use crate::{TestkitError, free_port};

const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The host name the server's certificate is for (and that resolves to 127.0.0.1).
pub const S3_HOST: &str = "localhost";
/// The S3 region the server accepts (any; pgBackRest needs one to sign requests).
pub const S3_REGION: &str = "us-east-1";

/// Where the S3 gateway listens and the name its clients use for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Listen {
    /// An address of this machine: 127.0.0.1, or one of a network device the test made.
    pub addr: Ipv4Addr,
    /// The host name of `endpoint()`; the certificate names it and `addr`.
    pub host: String,
}

impl S3Listen {
    /// `localhost` on 127.0.0.1.
    pub fn local() -> S3Listen {
        S3Listen {
            addr: Ipv4Addr::LOCALHOST,
            host: S3_HOST.to_string(),
        }
    }
}

/// The ports of one server: master, volume, filer and S3, each with its gRPC port.
#[derive(Clone, Copy, Debug)]
struct Ports {
    master: u16,
    master_grpc: u16,
    volume: u16,
    volume_grpc: u16,
    filer: u16,
    filer_grpc: u16,
    s3: u16,
    s3_grpc: u16,
}

/// A running object store with one bucket.
pub struct S3Server {
    child: Option<Child>,
    weed: PathBuf,
    listen: S3Listen,
    ports: Ports,
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
            .field("listen", &self.listen)
            .field("port", &self.ports.s3)
            .field("bucket", &self.bucket)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl S3Server {
    /// Starts the store with TLS and one bucket named `bucket` on 127.0.0.1, and waits until
    /// the bucket exists.
    pub async fn start(bucket: &str) -> Result<S3Server, TestkitError> {
        S3Server::start_on(bucket, S3Listen::local()).await
    }

    /// `start`, with the S3 gateway listening on `listen.addr` and its certificate naming
    /// `listen.host` and `listen.addr` (besides `localhost` and 127.0.0.1).
    pub async fn start_on(bucket: &str, listen: S3Listen) -> Result<S3Server, TestkitError> {
        let weed = binaries::weed()?;
        let openssl = binaries::openssl()?;
        let dir = crate::process::temp_dir("shanraq-s3-")?;
        // pgBackRest runs as the postgres user and must reach the CA bundle inside.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
                .map_err(|source| TestkitError::io("chmod S3 dir", source))?;
        }
        let ca_file = make_certificates(&openssl, dir.path(), &listen)?;
        let access_key = random_secret(20).to_ascii_uppercase();
        let secret_key = random_secret(40);
        write_identities(dir.path(), &access_key, &secret_key)?;
        std::fs::create_dir(dir.path().join("data"))
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
        let mut server = S3Server {
            child: None,
            weed,
            listen,
            ports: Ports {
                master,
                master_grpc,
                volume,
                volume_grpc,
                filer,
                filer_grpc,
                s3,
                s3_grpc,
            },
            bucket: bucket.to_string(),
            access_key,
            secret_key,
            ca_file,
            log,
            dir,
        };
        server.spawn().await?;
        Ok(server)
    }

    /// `weed server` on this server's ports, data and keys; waits until the S3 gateway
    /// accepts connections and the bucket exists (created the first time, found afterwards).
    async fn spawn(&mut self) -> Result<(), TestkitError> {
        let dir = self.dir.path();
        let ports = self.ports;
        let mut command = Command::new(&self.weed);
        command
            .arg("server")
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-dir={}", dir.join("data").display()))
            .arg(format!("-master.port={}", ports.master))
            .arg(format!("-master.port.grpc={}", ports.master_grpc))
            .arg("-master.telemetry=false")
            .arg("-master.volumeSizeLimitMB=64")
            .arg(format!("-volume.port={}", ports.volume))
            .arg(format!("-volume.port.grpc={}", ports.volume_grpc))
            .arg("-filer")
            .arg(format!("-filer.port={}", ports.filer))
            .arg(format!("-filer.port.grpc={}", ports.filer_grpc))
            .arg("-s3")
            .arg(format!("-s3.ip.bind={}", self.listen.addr))
            .arg(format!("-s3.port={}", ports.s3))
            .arg(format!("-s3.port.grpc={}", ports.s3_grpc))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!(
                "-s3.config={}",
                dir.join("identities.json").display()
            ))
            .arg(format!(
                "-s3.cert.file={}",
                dir.join("server.crt").display()
            ))
            .arg(format!("-s3.key.file={}", dir.join("server.key").display()))
            .current_dir(dir);
        let mut child = spawn_logged(&mut command, &self.log, "weed server")?;
        let addr = SocketAddr::new(IpAddr::V4(self.listen.addr), ports.s3);
        let ready = wait_for_addr(&mut child, addr, "weed s3", &self.log, START_TIMEOUT).await;
        self.child = Some(child);
        ready?;
        let weed = self.weed.clone();
        self.create_bucket(
            &weed,
            (ports.master, ports.master_grpc),
            (ports.filer, ports.filer_grpc),
        )
        .await
    }

    /// Stops the server (SIGKILL, as a crashed store); its data stays for `restart`.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    /// Starts a stopped server again on the same address, ports, data, keys and certificate.
    pub async fn restart(&mut self) -> Result<(), TestkitError> {
        self.stop();
        self.spawn().await
    }

    /// With `refuse`, restarts the server knowing only a key pair nobody was given, so that
    /// every request signed with `access_key()` is refused (403, as after a rotation at the
    /// store that the clients missed); without, restarts it with the real pair again.
    pub async fn refuse_keys(&mut self, refuse: bool) -> Result<(), TestkitError> {
        self.stop();
        if refuse {
            let other_access = random_secret(20).to_ascii_uppercase();
            let other_secret = random_secret(40);
            write_identities(self.dir.path(), &other_access, &other_secret)?;
        } else {
            write_identities(self.dir.path(), &self.access_key, &self.secret_key)?;
        }
        self.spawn().await
    }

    /// True while the server process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
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

    /// `https://HOST:PORT` (`localhost` unless `start_on` named another host): what
    /// `spec.backup.endpoint` holds for this server.
    pub fn endpoint(&self) -> String {
        format!("https://{}:{}", self.listen.host, self.ports.s3)
    }

    /// The address the S3 gateway listens on.
    pub fn addr(&self) -> Ipv4Addr {
        self.listen.addr
    }

    pub fn port(&self) -> u16 {
        self.ports.s3
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

/// The identities file: one identity with every action, holding the given key pair.
fn write_identities(dir: &Path, access_key: &str, secret_key: &str) -> Result<(), TestkitError> {
    let identities = serde_json::json!({
        "identities": [{
            "name": "shanraq-backup",
            "credentials": [{ "accessKey": access_key, "secretKey": secret_key }],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]
    });
    write_private(&dir.join("identities.json"), &identities.to_string())
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

/// The certificate's subjectAltName: `localhost` and 127.0.0.1, and the listen host and
/// address. pgBackRest before 2.46 matches DNS names only, so the address is a DNS name too.
fn subject_alt_names(listen: &S3Listen) -> String {
    let mut names = vec![format!("DNS:{S3_HOST}"), "IP:127.0.0.1".to_string()];
    for name in [
        format!("DNS:{}", listen.host),
        format!("IP:{}", listen.addr),
        format!("DNS:{}", listen.addr),
    ] {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.join(",")
}

/// A CA and a server certificate for the names of `subject_alt_names` signed by it, in
/// `dir`; returns the CA's PEM file.
fn make_certificates(
    openssl: &Path,
    dir: &Path,
    listen: &S3Listen,
) -> Result<PathBuf, TestkitError> {
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
        format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\n",
            subject_alt_names(listen)
        ),
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
    fn the_certificate_names_the_listen_host_and_address_once() {
        assert_eq!(
            subject_alt_names(&S3Listen::local()),
            "DNS:localhost,IP:127.0.0.1,DNS:127.0.0.1"
        );
        let listen = S3Listen {
            addr: Ipv4Addr::new(10, 78, 255, 254),
            host: "s3.example.test".to_string(),
        };
        assert_eq!(
            subject_alt_names(&listen),
            "DNS:localhost,IP:127.0.0.1,DNS:s3.example.test,IP:10.78.255.254,DNS:10.78.255.254"
        );
    }

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
