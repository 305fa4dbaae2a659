//! Secrets the cluster needs. Rendering stays pure: it says which secrets exist, their fixed keys
//! and which keys hold generated values; the operator generates those values once, creates the
//! Secret if it is absent, and never regenerates or rewrites it.

use std::collections::BTreeMap;

use shanraq_api::ValidCluster;
use shanraq_api::names::Component;

/// One Secret to create if absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretTemplate {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Keys with a fixed value (for example `username`).
    pub fixed: BTreeMap<String, String>,
    /// Keys whose value the operator generates: key -> length in characters.
    pub generated: BTreeMap<String, usize>,
    /// A certificate authority the operator generates, named after this subject: the keys
    /// [`CA_CERT_KEY`] and [`CA_KEY_KEY`].
    pub authority: Option<String>,
}

/// The keys of a generated certificate authority.
pub const CA_CERT_KEY: &str = "ca.crt";
pub const CA_KEY_KEY: &str = "ca.key";

/// Length of every generated password.
pub const PASSWORD_LENGTH: usize = 32;
/// Length of the instance managers' command token.
pub const TOKEN_LENGTH: usize = 48;

fn template(
    name: String,
    labels: BTreeMap<String, String>,
    fixed: &[(&str, &str)],
    generated: &[(&str, usize)],
) -> SecretTemplate {
    SecretTemplate {
        name,
        labels,
        fixed: fixed
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
        generated: generated
            .iter()
            .map(|(key, length)| ((*key).to_owned(), *length))
            .collect(),
        authority: None,
    }
}

/// The Secrets of every enabled component. Generated values must be alphanumeric: the Redis
/// password is written into a quoted redis.conf line and HAProxy's tcp-check string.
pub fn templates(cluster: &ValidCluster) -> Vec<SecretTemplate> {
    let names = &cluster.names;
    let mut secrets = Vec::new();
    let postgres = &cluster.spec.postgres;
    if postgres.enabled {
        let labels = names.labels(Component::Postgres);
        secrets.push(template(
            names.pg_superuser_secret(),
            labels.clone(),
            &[("username", crate::postgres::SUPERUSER)],
            &[("password", PASSWORD_LENGTH)],
        ));
        secrets.push(template(
            names.pg_replication_secret(),
            labels.clone(),
            &[("username", crate::postgres::REPLICATION_USER)],
            &[("password", PASSWORD_LENGTH)],
        ));
        let port = crate::postgres::PORT.to_string();
        let host = format!("{}.{}.svc", names.pg_rw(), cluster.namespace);
        secrets.push(template(
            names.pg_app_secret(),
            labels.clone(),
            &[
                ("username", &postgres.bootstrap.owner),
                ("dbname", &postgres.bootstrap.database),
                ("host", &host),
                ("port", &port),
            ],
            &[("password", PASSWORD_LENGTH)],
        ));
        secrets.push(template(
            names.instance_token_secret(),
            labels.clone(),
            &[],
            &[("token", TOKEN_LENGTH)],
        ));
        if cluster.spec.backup.is_some() {
            // pgBackRest's TLS server, for backups taken from a replica.
            let mut authority = template(names.pg_backup_tls_secret(), labels, &[], &[]);
            authority.authority = Some(cluster.name.clone());
            secrets.push(authority);
        }
    }
    if cluster.spec.redis.enabled {
        secrets.push(template(
            names.redis_secret(),
            names.labels(Component::Redis),
            &[],
            &[("password", PASSWORD_LENGTH)],
        ));
    }
    secrets
}
