//! Starting a topology: the lab check, the directories, each manager's flags and secrets,
//! HAProxy, then the managers themselves. Kept apart from the waits and the controls so that
//! what a topology is made of reads in one place.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use super::config::{haproxy_config, lab_hba};
use super::{
    APP_DATABASE, APP_OWNER, CLIENT_NODE, ENGINE_NODE, HTTP_TIMEOUT, HaproxyLayout, LocalTopology,
    Member, MemberInfo, NS_HTTP_PORT, NS_PG_PORT, NS_RO_PORT, NS_RW_PORT, Network, PROXY_NODE,
    RedactedEnv, TopologyOptions,
};
use crate::haproxy::HaproxyProcess;
use crate::netns::NetLab;
use crate::process::spawn_logged;
use crate::secrets::random_secret;
use crate::user::PostgresUser;
use crate::{TestkitError, binaries, free_port};

impl LocalTopology {
    /// The lab nodes a topology of `instances` instances runs on: `pg-0`..`pg-{n-1}`,
    /// `proxy`, `engine` (for an HA engine the test runs) and `client` (for the test itself).
    pub fn lab_nodes(instances: usize) -> Vec<String> {
        (0..instances.max(1))
            .map(|index| format!("pg-{index}"))
            .chain([PROXY_NODE, ENGINE_NODE, CLIENT_NODE].map(String::from))
            .collect()
    }

    /// A `NetLab` with the nodes of `lab_nodes(instances)`.
    pub fn create_lab(instances: usize) -> Result<NetLab, TestkitError> {
        let nodes = LocalTopology::lab_nodes(instances);
        let names: Vec<&str> = nodes.iter().map(String::as_str).collect();
        NetLab::create(&names)
    }

    /// Starts a `Network::Loopback` topology: the managers and HAProxy on 127.0.0.1. Waits
    /// until instance 0 is the routed primary and every replica streams from it.
    pub async fn start(
        shanraq_binary: &Path,
        options: TopologyOptions,
    ) -> Result<LocalTopology, TestkitError> {
        if options.network != Network::Loopback {
            return Err(TestkitError::Lab {
                lab: "(none)".to_string(),
                problem: "Network::Namespaces needs a lab: create it with \
                          LocalTopology::create_lab and call LocalTopology::start_in from a \
                          task on lab.runtime(\"client\")"
                    .to_string(),
            });
        }
        LocalTopology::launch(None, shanraq_binary, options).await
    }

    /// Starts a `Network::Namespaces` topology in `lab` (made by `create_lab`); must be
    /// awaited from a task on `lab.runtime("client")`. Waits as `start` does.
    pub async fn start_in(
        lab: Arc<NetLab>,
        shanraq_binary: &Path,
        options: TopologyOptions,
    ) -> Result<LocalTopology, TestkitError> {
        let problem = |problem: String| TestkitError::Lab {
            lab: lab
                .namespaces()
                .first()
                .copied()
                .unwrap_or_default()
                .to_string(),
            problem,
        };
        if options.network != Network::Namespaces {
            return Err(problem(
                "start_in runs a Network::Namespaces topology; set options.network".to_string(),
            ));
        }
        for node in LocalTopology::lab_nodes(options.instances) {
            lab.addr(&node)?;
        }
        if !lab.is_current(CLIENT_NODE)? {
            return Err(problem(
                "start_in must be awaited from a task on lab.runtime(\"client\")".to_string(),
            ));
        }
        LocalTopology::launch(Some(lab), shanraq_binary, options).await
    }

    async fn launch(
        lab: Option<Arc<NetLab>>,
        shanraq_binary: &Path,
        options: TopologyOptions,
    ) -> Result<LocalTopology, TestkitError> {
        binaries::pg_bin_dir()?;
        binaries::haproxy()?;
        if !shanraq_binary.is_file() {
            return Err(TestkitError::io(
                format!("shanraq binary {}", shanraq_binary.display()),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let instances = options.instances.max(1);
        let user = PostgresUser::lookup()?;
        let root = tempfile::Builder::new()
            .prefix("shanraq-topology-")
            .tempdir()
            .map_err(|source| TestkitError::io("creating topology dir", source))?;
        user.own(root.path())?;
        let config_file = match &options.extra_config {
            Some(fragment) => {
                let path = root.path().join("extra.conf");
                std::fs::write(&path, fragment)
                    .map_err(|source| TestkitError::io("writing extra.conf", source))?;
                user.own(&path)?;
                Some(path)
            }
            None => None,
        };
        let hba_file = match &lab {
            Some(_) => {
                let path = root.path().join("pg_hba.conf");
                std::fs::write(&path, lab_hba())
                    .map_err(|source| TestkitError::io("writing pg_hba.conf", source))?;
                user.own(&path)?;
                Some(path)
            }
            None => None,
        };
        let mut infos = Vec::with_capacity(instances);
        // pgBackRest's TLS server of each member (used when the cluster has backups): on its
        // own address, at the default port in the lab, at a free one on the shared loopback.
        let mut tls_ports = Vec::with_capacity(instances);
        for index in 0..instances {
            tls_ports.push(match &lab {
                Some(_) => None,
                None => Some(free_port()?),
            });
            let name = format!("pg-{index}");
            let dir = root.path().join(&name);
            std::fs::create_dir(&dir).map_err(|source| {
                TestkitError::io(format!("creating {}", dir.display()), source)
            })?;
            user.own(&dir)?;
            let (host, http_port, pg_port) = match &lab {
                Some(lab) => (lab.addr(&name)?.to_string(), NS_HTTP_PORT, NS_PG_PORT),
                None => (Ipv4Addr::LOCALHOST.to_string(), free_port()?, free_port()?),
            };
            infos.push(MemberInfo {
                http_url: format!("http://{host}:{http_port}"),
                host,
                http_port,
                pg_port,
                data_dir: dir.join("data"),
                log_path: dir.join("manager.log"),
                name,
            });
        }
        let (primary_host, primary_port) = (infos[0].host.clone(), infos[0].pg_port);
        let members: Vec<Member> = infos
            .into_iter()
            .enumerate()
            .map(|(index, info)| {
                let mut args = vec![
                    "instance".to_string(),
                    "postgres".to_string(),
                    format!("--name={}", info.name),
                    format!("--data-dir={}", info.data_dir.display()),
                    format!("--pg-port={}", info.pg_port),
                    format!("--http-addr={}:{}", info.host, info.http_port),
                    format!("--upstream-host={primary_host}"),
                    format!("--upstream-port={primary_port}"),
                    "--initial-epoch=1".to_string(),
                    format!(
                        "--lease-ms={}",
                        options.lease.map_or(0, |lease| lease.as_millis())
                    ),
                    format!(
                        "--bootstrap={}",
                        match (index, &options.first_bootstrap) {
                            (0, Some(mode)) => mode.as_str(),
                            (0, None) => "primary",
                            _ => "replica",
                        }
                    ),
                    format!(
                        "--synchronous={}",
                        options.synchronous.as_deref().unwrap_or("")
                    ),
                ];
                if let Some(path) = &config_file {
                    args.push(format!("--config-file={}", path.display()));
                }
                if let Some(path) = &hba_file {
                    args.push("--pg-listen=0.0.0.0".to_string());
                    args.push(format!("--hba-file={}", path.display()));
                }
                args.push(format!("--backup-tls-address={}", info.host));
                if let Some(port) = tls_ports[index] {
                    args.push(format!("--backup-tls-port={port}"));
                }
                args.extend(options.extra_args.iter().cloned());
                Member {
                    info,
                    args,
                    env: RedactedEnv(options.env.clone()),
                    child: None,
                }
            })
            .collect();
        let (rw_bind, ro_bind) = match &lab {
            Some(lab) => {
                let proxy = IpAddr::V4(lab.addr(PROXY_NODE)?);
                (
                    SocketAddr::new(proxy, NS_RW_PORT),
                    SocketAddr::new(proxy, NS_RO_PORT),
                )
            }
            None => (
                SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)),
                SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)),
            ),
        };
        let haproxy_socket = root.path().join("haproxy.sock");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|error| {
                TestkitError::io("building HTTP client", std::io::Error::other(error))
            })?;
        let mut members: Vec<Member> = members;
        let token = random_secret(32);
        let superuser_password = random_secret(24);
        let replication_password = random_secret(24);
        let app_password = random_secret(24);
        let layout = HaproxyLayout {
            members: members.iter().map(|member| member.info.clone()).collect(),
            rw_bind,
            ro_bind,
            stats_socket: haproxy_socket.clone(),
        };
        let config = match &options.haproxy_config {
            Some(make) => make(&layout),
            None => haproxy_config(&layout),
        };
        let launch_haproxy = |haproxy: &Path| match &lab {
            Some(lab) => lab.command(PROXY_NODE, haproxy),
            None => Ok(Command::new(haproxy)),
        };
        let haproxy =
            HaproxyProcess::start_with(&config, launch_haproxy, &[rw_bind, ro_bind]).await?;
        let mut topology = LocalTopology {
            binary: shanraq_binary.to_path_buf(),
            members: Vec::new(),
            haproxy,
            rw_bind,
            ro_bind,
            haproxy_socket,
            token,
            superuser_password,
            replication_password,
            app_password,
            http,
            lab,
            root,
        };
        topology.members = std::mem::take(&mut members);
        for index in 0..topology.members.len() {
            topology.spawn(index)?;
        }
        topology
            .wait_until_formed(options.synchronous.is_some())
            .await?;
        Ok(topology)
    }

    pub(super) fn spawn(&mut self, index: usize) -> Result<(), TestkitError> {
        let len = self.members.len();
        let member = self
            .members
            .get_mut(index)
            .ok_or(TestkitError::NoSuchMember { index, len })?;
        let mut command = match &self.lab {
            Some(lab) => lab.command(&member.info.name, &self.binary)?,
            None => Command::new(&self.binary),
        };
        command
            .args(&member.args)
            .envs(member.env.0.iter().map(|(name, value)| (name, value)))
            .env("SHANRAQ_INSTANCE_TOKEN", &self.token)
            .env("SHANRAQ_SUPERUSER_PASSWORD", &self.superuser_password)
            .env("SHANRAQ_REPLICATION_PASSWORD", &self.replication_password)
            .env("SHANRAQ_APP_DATABASE", APP_DATABASE)
            .env("SHANRAQ_APP_OWNER", APP_OWNER)
            .env("SHANRAQ_APP_PASSWORD", &self.app_password)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string()),
            );
        let child = spawn_logged(&mut command, &member.info.log_path, &member.info.name)?;
        member.child = Some(child);
        Ok(())
    }
}
