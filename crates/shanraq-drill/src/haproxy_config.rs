//! The drill's haproxy.cfg is the one the operator renders for the cluster the drill stands for
//! (`shanraq_render::haproxy::haproxy_cfg`), with only the places changed: each PostgreSQL
//! server's address and check port become the local member's, the `bind` of the rw, ro and
//! stats frontends become local addresses, and the admin socket moves into the topology's
//! directory. Every timing, check and option stays as rendered, so the drill measures what a
//! user gets. Anything else that names a place (a Redis or application backend) is refused
//! rather than guessed at.

use std::net::SocketAddr;

use shanraq_api::ValidCluster;
use shanraq_api::names::Component;
use shanraq_render::haproxy::{PG_RO_PORT, PG_RW_PORT, STATS_PORT, haproxy_cfg};
use shanraq_testkit::HaproxyLayout;

use super::error::DrillError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frontend {
    ReadWrite,
    ReadOnly,
    Stats,
}

#[derive(Clone, Debug)]
enum Line {
    Verbatim(String),
    /// `stats socket PATH ...`: token 2 is the path.
    StatsSocket(String),
    /// `bind ADDRESS ...`: token 1 is the address.
    Bind(String, Frontend),
    /// `server NAME ADDRESS ... port PORT ...`: token 2 and the token after `port`.
    Server(String, usize),
}

/// The rendered haproxy.cfg, parsed into what stays and what becomes local.
#[derive(Clone, Debug)]
pub struct LocalHaproxy {
    rendered: String,
    lines: Vec<Line>,
    primary_backend: String,
    /// The rendered server name of each PostgreSQL ordinal.
    servers: Vec<String>,
}

fn refuse(line: &str, reason: impl Into<String>) -> DrillError {
    DrillError::HaproxyConfig {
        line: line.to_owned(),
        reason: reason.into(),
    }
}

/// Byte ranges of the whitespace-separated tokens of `line`.
fn token_spans(line: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (at, character) in line.char_indices() {
        match (character.is_whitespace(), start) {
            (false, None) => start = Some(at),
            (true, Some(from)) => {
                spans.push((from, at));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(from) = start {
        spans.push((from, line.len()));
    }
    spans
}

/// `line` with the tokens at `replacements` (index, new text) replaced, everything else kept
/// byte for byte.
fn replace_tokens(line: &str, replacements: &[(usize, String)]) -> String {
    let spans = token_spans(line);
    let mut out = String::with_capacity(line.len());
    let mut copied = 0;
    for (index, (from, to)) in spans.iter().enumerate() {
        if let Some((_, new)) = replacements.iter().find(|(at, _)| *at == index) {
            out.push_str(&line[copied..*from]);
            out.push_str(new);
            copied = *to;
        }
    }
    out.push_str(&line[copied..]);
    out
}

fn tokens(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

impl LocalHaproxy {
    /// Renders haproxy.cfg for `cluster` and finds every place to localise.
    pub fn new(cluster: &ValidCluster) -> Result<LocalHaproxy, DrillError> {
        let rendered = haproxy_cfg(cluster);
        let instances = usize::try_from(cluster.spec.postgres.instances).unwrap_or(0);
        let servers: Vec<String> = (0..cluster.spec.postgres.instances)
            .map(|ordinal| cluster.names.pod(Component::Postgres, ordinal))
            .collect();
        let mut lines = Vec::new();
        let mut section: Option<String> = None;
        let mut primary_backend = None;
        for line in rendered.lines() {
            let words = tokens(line);
            if !line.starts_with(char::is_whitespace) && !line.starts_with('#') && !words.is_empty()
            {
                section = words.get(1).map(|name| (*name).to_owned());
            }
            let parsed = match words.as_slice() {
                ["stats", "socket", _path, ..] => Line::StatsSocket(line.to_owned()),
                ["bind", address, ..] => {
                    let port = address
                        .rsplit_once(':')
                        .and_then(|(_, port)| port.parse::<i32>().ok())
                        .ok_or_else(|| refuse(line, "a bind without a port"))?;
                    let frontend = match port {
                        PG_RW_PORT => Frontend::ReadWrite,
                        PG_RO_PORT => Frontend::ReadOnly,
                        STATS_PORT => Frontend::Stats,
                        other => {
                            return Err(refuse(
                                line,
                                format!("port {other} is not a PostgreSQL or stats frontend"),
                            ));
                        }
                    };
                    Line::Bind(line.to_owned(), frontend)
                }
                ["server", name, _address, rest @ ..] => {
                    let ordinal = servers
                        .iter()
                        .position(|server| server == name)
                        .ok_or_else(|| refuse(line, "not a PostgreSQL instance of the cluster"))?;
                    let port_at = rest.iter().position(|word| *word == "port");
                    if port_at.is_none_or(|at| rest.get(at + 1).is_none()) {
                        return Err(refuse(
                            line,
                            "no `check port`: the check must ask the instance manager",
                        ));
                    }
                    Line::Server(line.to_owned(), ordinal)
                }
                ["option", "httpchk", "GET", "/primary"] => {
                    primary_backend.clone_from(&section);
                    Line::Verbatim(line.to_owned())
                }
                _ => Line::Verbatim(line.to_owned()),
            };
            lines.push(parsed);
        }
        let primary_backend = primary_backend.ok_or_else(|| {
            refuse(
                "",
                "no backend checks `GET /primary` (is PostgreSQL enabled?)",
            )
        })?;
        if servers.len() != instances {
            return Err(refuse("", "the instance count does not fit"));
        }
        Ok(LocalHaproxy {
            rendered,
            lines,
            primary_backend,
            servers,
        })
    }

    /// haproxy.cfg as the operator renders it.
    pub fn rendered(&self) -> &str {
        &self.rendered
    }

    /// The backend (a `listen` section) that routes writes by `/primary`.
    pub fn primary_backend(&self) -> &str {
        &self.primary_backend
    }

    /// The HAProxy server name of PostgreSQL instance `ordinal`.
    pub fn server_name(&self, ordinal: usize) -> Option<&str> {
        self.servers.get(ordinal).map(String::as_str)
    }

    /// The local haproxy.cfg: member `ordinal` of `layout` serves the rendered server of that
    /// ordinal, and the stats frontend listens on `stats_bind`. A server without a local member
    /// becomes a line `haproxy -c` rejects, naming it (the hook cannot return an error).
    pub fn localise(&self, layout: &HaproxyLayout, stats_bind: SocketAddr) -> String {
        let mut out = String::with_capacity(self.rendered.len());
        for line in &self.lines {
            let text = match line {
                Line::Verbatim(text) => text.clone(),
                Line::StatsSocket(text) => {
                    replace_tokens(text, &[(2, layout.stats_socket.display().to_string())])
                }
                Line::Bind(text, frontend) => {
                    let address = match frontend {
                        Frontend::ReadWrite => layout.rw_bind,
                        Frontend::ReadOnly => layout.ro_bind,
                        Frontend::Stats => stats_bind,
                    };
                    replace_tokens(text, &[(1, address.to_string())])
                }
                Line::Server(text, ordinal) => match layout.members.get(*ordinal) {
                    Some(member) => {
                        let words = tokens(text);
                        let port_at = words.iter().position(|word| *word == "port");
                        let mut replacements =
                            vec![(2, format!("{}:{}", member.host, member.pg_port))];
                        if let Some(at) = port_at {
                            replacements.push((at + 1, member.http_port.to_string()));
                        }
                        replace_tokens(text, &replacements)
                    }
                    None => format!("  no-local-member-for-server {}", self.servers[*ordinal]),
                },
            };
            out.push_str(&text);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use pretty_assertions::assert_eq;
    use shanraq_testkit::MemberInfo;

    use super::*;
    use crate::local::ClusterOptions;
    use crate::product;

    fn layout(instances: u16) -> HaproxyLayout {
        HaproxyLayout {
            members: (0..instances)
                .map(|index| MemberInfo {
                    name: format!("pg-{index}"),
                    host: "127.0.0.1".to_owned(),
                    http_url: format!("http://127.0.0.1:{}", 21000 + index),
                    http_port: 21000 + index,
                    pg_port: 22000 + index,
                    data_dir: PathBuf::new(),
                    log_path: PathBuf::new(),
                })
                .collect(),
            rw_bind: SocketAddr::from(([127, 0, 0, 1], 23000)),
            ro_bind: SocketAddr::from(([127, 0, 0, 1], 23001)),
            stats_socket: PathBuf::from("/tmp/shanraq-drill-test/haproxy.sock"),
        }
    }

    /// Each place written independently of the localiser: bind addresses, server addresses
    /// and check ports, the admin socket path.
    fn normalised(config: &str) -> Vec<String> {
        config
            .lines()
            .map(|line| {
                let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
                let mut words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
                match words.first().map(String::as_str) {
                    Some("bind") => words[1] = "<address>".to_owned(),
                    Some("server") => {
                        words[2] = "<address>".to_owned();
                        if let Some(at) = words.iter().position(|word| word == "port") {
                            words[at + 1] = "<port>".to_owned();
                        }
                    }
                    Some("stats") if words.get(1).map(String::as_str) == Some("socket") => {
                        words[2] = "<path>".to_owned();
                    }
                    _ => {}
                }
                format!("{indent}{}", words.join(" "))
            })
            .collect()
    }

    fn localised(options: &ClusterOptions) -> (LocalHaproxy, String) {
        let cluster = product::cluster(options).expect("valid");
        let haproxy = LocalHaproxy::new(&cluster).expect("localisable");
        let instances = u16::try_from(options.instances).expect("small");
        let local = haproxy.localise(
            &layout(instances),
            SocketAddr::from(([127, 0, 0, 1], 23002)),
        );
        (haproxy, local)
    }

    #[test]
    fn the_local_config_is_the_rendered_one_but_for_addresses() {
        for options in [
            ClusterOptions::synchronous(3),
            ClusterOptions::asynchronous(2, 1024),
        ] {
            let (haproxy, local) = localised(&options);
            assert_eq!(normalised(haproxy.rendered()), normalised(&local));
            assert!(
                local.contains("inter 250ms fastinter 250ms downinter 250ms fall 1 rise 1"),
                "{local}"
            );
            assert!(
                local.contains("  server drill-pg-1 127.0.0.1:22001 check port 21001 inter 100ms"),
                "{local}"
            );
            assert!(local.contains("  bind 127.0.0.1:23000\n"), "{local}");
            assert!(local.contains("  bind 127.0.0.1:23001\n"), "{local}");
            assert!(local.contains("  bind 127.0.0.1:23002\n"), "{local}");
            assert!(
                local.contains(
                    "stats socket /tmp/shanraq-drill-test/haproxy.sock mode 600 level admin"
                ),
                "{local}"
            );
            for pod_place in [".svc.", ":5432", ":5433", ":8404", "port 8000", "/var/run"] {
                assert!(!local.contains(pod_place), "{pod_place} left in:\n{local}");
            }
            assert_eq!(haproxy.primary_backend(), "pg-rw");
            assert_eq!(haproxy.server_name(0), Some("drill-pg-0"));
        }
    }

    #[test]
    fn haproxy_accepts_the_local_config() {
        let (_, local) = localised(&ClusterOptions::synchronous(3));
        shanraq_testkit::check_config(&local).expect("haproxy -c accepts the local config");
    }

    #[test]
    fn a_missing_member_makes_the_config_invalid_and_named() {
        let cluster = product::cluster(&ClusterOptions::synchronous(3)).expect("valid");
        let haproxy = LocalHaproxy::new(&cluster).expect("localisable");
        let local = haproxy.localise(&layout(2), SocketAddr::from(([127, 0, 0, 1], 23002)));
        let error = shanraq_testkit::check_config(&local).expect_err("rejected");
        assert!(
            error.to_string().contains("no-local-member-for-server"),
            "{error}"
        );
    }

    #[test]
    fn tokens_are_replaced_in_place() {
        assert_eq!(
            replace_tokens("  server a  b:1 check port 2", &[(2, "c:3".into())]),
            "  server a  c:3 check port 2"
        );
    }
}
