//! How a test reaches a running topology: the lab, the members, HAProxy's frontends and
//! admin socket, the credentials, and the connection options built from them.

use std::net::SocketAddr;
use std::path::Path;

use super::{APP_DATABASE, APP_OWNER, LocalTopology, MemberInfo};
use crate::TestkitError;
use crate::netns::NetLab;

impl LocalTopology {
    /// The lab the topology runs in (`Network::Namespaces`).
    pub fn lab(&self) -> Option<&NetLab> {
        self.lab.as_deref()
    }

    /// The `port` setting of whichever server a fresh `rw` connection reaches.
    pub async fn rw_backend_port(&self) -> Result<u16, sqlx::Error> {
        Ok(self.rw_backend_addr().await?.1)
    }

    /// The member a fresh `rw` connection reaches (by the address and port the server saw the
    /// connection arrive on); `None` when that is no member.
    pub async fn rw_backend(&self) -> Result<Option<usize>, sqlx::Error> {
        let (host, port) = self.rw_backend_addr().await?;
        Ok(self
            .members
            .iter()
            .position(|member| member.info.host == host && member.info.pg_port == port))
    }

    async fn rw_backend_addr(&self) -> Result<(String, u16), sqlx::Error> {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect_with(&self.rw_options()).await?;
        let (host, port): (String, String) =
            sqlx::query_as("SELECT host(inet_server_addr()), current_setting('port')")
                .fetch_one(&mut connection)
                .await?;
        let _ = connection.close().await;
        let port = port
            .parse::<u16>()
            .map_err(|error| sqlx::Error::Protocol(format!("port {port}: {error}")))?;
        Ok((host, port))
    }

    fn options(&self, host: &str, port: u16) -> sqlx::postgres::PgConnectOptions {
        sqlx::postgres::PgConnectOptions::new_without_pgpass()
            .host(host)
            .port(port)
            .username("postgres")
            .password(&self.superuser_password)
            .database("postgres")
            .ssl_mode(sqlx::postgres::PgSslMode::Disable)
    }

    /// Superuser connection options through HAProxy's `rw` frontend.
    pub fn rw_options(&self) -> sqlx::postgres::PgConnectOptions {
        self.options(&self.rw_bind.ip().to_string(), self.rw_bind.port())
    }

    /// Superuser connection options through HAProxy's `ro` frontend.
    pub fn ro_options(&self) -> sqlx::postgres::PgConnectOptions {
        self.options(&self.ro_bind.ip().to_string(), self.ro_bind.port())
    }

    /// Superuser connection options straight to member `index`.
    pub fn member_options(
        &self,
        index: usize,
    ) -> Result<sqlx::postgres::PgConnectOptions, TestkitError> {
        let member = self.member(index)?;
        Ok(self.options(&member.host, member.pg_port))
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn member(&self, index: usize) -> Result<&MemberInfo, TestkitError> {
        let len = self.members.len();
        self.members
            .get(index)
            .map(|member| &member.info)
            .ok_or(TestkitError::NoSuchMember { index, len })
    }

    pub fn members(&self) -> Vec<MemberInfo> {
        self.members
            .iter()
            .map(|member| member.info.clone())
            .collect()
    }

    pub fn rw_port(&self) -> u16 {
        self.rw_bind.port()
    }

    pub fn ro_port(&self) -> u16 {
        self.ro_bind.port()
    }

    /// HAProxy's `rw` frontend.
    pub fn rw_addr(&self) -> SocketAddr {
        self.rw_bind
    }

    /// HAProxy's `ro` frontend.
    pub fn ro_addr(&self) -> SocketAddr {
        self.ro_bind
    }

    /// HAProxy's admin socket (runtime API).
    pub fn haproxy_socket(&self) -> &Path {
        &self.haproxy_socket
    }

    pub fn haproxy_log(&self) -> String {
        self.haproxy.log()
    }

    /// Bearer token the managers accept for commands.
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn superuser_password(&self) -> &str {
        &self.superuser_password
    }

    pub fn replication_password(&self) -> &str {
        &self.replication_password
    }

    /// Connection options of the application owner to the application database, through
    /// HAProxy's `rw` frontend: what an application uses.
    pub fn app_rw_options(&self) -> sqlx::postgres::PgConnectOptions {
        self.rw_options()
            .username(APP_OWNER)
            .password(&self.app_password)
            .database(APP_DATABASE)
    }

    /// The topology's own directory (holds each member's dir).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The manager log of member `index`.
    pub fn log(&self, index: usize) -> String {
        self.members
            .get(index)
            .and_then(|member| std::fs::read_to_string(&member.info.log_path).ok())
            .unwrap_or_default()
    }
}
