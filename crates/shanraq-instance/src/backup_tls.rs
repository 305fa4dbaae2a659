//! The certificates of pgBackRest's TLS server, which lets a replica back up with
//! `backup-standby`: pgBackRest on the replica reaches the primary's pgBackRest (to start and
//! stop the backup and copy the few files a standby does not replicate) over mutual TLS.
//!
//! Each cluster has its own certificate authority, a Secret the operator generates once
//! (`ca.crt`, `ca.key`) and mounts into the PostgreSQL pods. Pod addresses are only known once
//! a pod runs, so each instance manager issues its own certificate at start, for the address
//! its peers reach it by (pgBackRest checks the server's name against the certificate's DNS
//! names, so the address is written as one, besides the IP entry). The same certificate is
//! the client certificate it presents; servers accept only [`CLIENT_NAME`] issued by the
//! cluster's CA. The CA key in the pods gives nothing a pod does not hold already: each one
//! has the superuser's password and the data.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::InstanceError;
use crate::osuser::PgUser;

/// The files of the CA Secret.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
/// The common name of every instance's certificate, the only client the servers accept.
pub const CLIENT_NAME: &str = "shanraq-pgbackrest";

/// A certificate and its private key, in PEM. `Debug` never shows the key.
#[derive(Clone)]
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

fn tls_error(what: &str, error: rcgen::Error) -> InstanceError {
    InstanceError::Refused(format!("{what}: {error}"))
}

/// `(year, month, day)` of now plus `days`, in UTC.
fn day(days: i64) -> (i32, u8, u8) {
    let date = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * days))
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    (
        i32::from(date.year()),
        u8::try_from(date.month()).unwrap_or(1),
        u8::try_from(date.day()).unwrap_or(1),
    )
}

fn validity(params: &mut CertificateParams, years: i64) {
    // From yesterday: a peer whose clock is a little behind still accepts it.
    let (y, m, d) = day(-1);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = day(365 * years);
    params.not_after = rcgen::date_time_ymd(y, m, d);
}

/// A new certificate authority for the cluster `cluster` (ECDSA P-256, 20 years).
pub fn new_authority(cluster: &str) -> Result<Pair, InstanceError> {
    let key = KeyPair::generate().map_err(|e| tls_error("generating the CA key", e))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        format!("shanraq {cluster} pgBackRest CA"),
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, 20);
    let cert = params
        .self_signed(&key)
        .map_err(|e| tls_error("signing the CA certificate", e))?;
    Ok(Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A certificate for an instance reached at `address` (an IP or a DNS name), issued by the
/// cluster's CA: server and client, valid for 10 years (a pod's certificate lives as long as
/// its manager, which issues a new one at each start).
pub fn issue(authority: &Pair, address: &str) -> Result<Pair, InstanceError> {
    let ca_key =
        KeyPair::from_pem(&authority.key_pem).map_err(|e| tls_error("reading the CA key", e))?;
    let issuer = Issuer::from_ca_cert_pem(&authority.cert_pem, ca_key)
        .map_err(|e| tls_error("reading the CA certificate", e))?;
    let key = KeyPair::generate().map_err(|e| tls_error("generating the instance key", e))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CLIENT_NAME);
    params.distinguished_name = name;
    let dns = address
        .try_into()
        .map_err(|e| tls_error(&format!("the address {address:?}"), e))?;
    params.subject_alt_names = vec![SanType::DnsName(dns)];
    if let Ok(ip) = address.parse() {
        params.subject_alt_names.push(SanType::IpAddress(ip));
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, 10);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| tls_error("signing the instance certificate", e))?;
    Ok(Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Where an instance's TLS files are, once written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Files {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Files {
    /// The files [`prepare`] writes into `dir`.
    pub fn in_dir(dir: &Path) -> Files {
        Files {
            ca: dir.join("ca.crt"),
            cert: dir.join("instance.crt"),
            key: dir.join("instance.key"),
        }
    }
}

/// Reads the CA from `ca_dir`, issues this instance's certificate for `address` and writes
/// the three files into `dir` (private to the postgres user, which runs pgBackRest).
pub fn prepare(
    ca_dir: &Path,
    address: &str,
    dir: &Path,
    user: &PgUser,
) -> Result<Files, InstanceError> {
    let read = |file: &str| {
        let path = ca_dir.join(file);
        std::fs::read_to_string(&path)
            .map_err(|source| InstanceError::io(format!("reading {}", path.display()), source))
    };
    let authority = Pair {
        cert_pem: read(CA_CERT)?,
        key_pem: read(CA_KEY)?,
    };
    let pair = issue(&authority, address)?;
    crate::config::private_dir(dir, user)?;
    let files = Files::in_dir(dir);
    user.write(&files.ca, &authority.cert_pem, 0o600)?;
    user.write(&files.cert, &pair.cert_pem, 0o600)?;
    user.write(&files.key, &pair.key_pem, 0o600)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain and names, checked by OpenSSL (the library pgBackRest verifies them with).
    #[test]
    fn an_issued_certificate_chains_to_the_cluster_ca_and_names_the_address() {
        let dir = tempfile::tempdir().expect("dir");
        let authority = new_authority("payments").expect("CA");
        let pair = issue(&authority, "10.78.0.5").expect("issued");
        let other = new_authority("other").expect("another CA");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let ca = write("ca.crt", &authority.cert_pem);
        let other_ca = write("other.crt", &other.cert_pem);
        let cert = write("instance.crt", &pair.cert_pem);
        let verify = |ca: &Path, host: &str| {
            std::process::Command::new("openssl")
                .args(["verify", "-purpose", "sslserver", "-verify_hostname", host])
                .arg("-CAfile")
                .arg(ca)
                .arg(&cert)
                .output()
                .expect("openssl runs (scripts/install-deps installs it)")
                .status
                .success()
        };
        assert!(verify(&ca, "10.78.0.5"), "chains to its CA for its address");
        assert!(!verify(&ca, "10.78.0.6"), "another address is refused");
        assert!(
            !verify(&other_ca, "10.78.0.5"),
            "another cluster's CA is refused"
        );
        let text = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-ext", "extendedKeyUsage"])
            .arg("-in")
            .arg(&cert)
            .output()
            .expect("openssl runs");
        let text = String::from_utf8_lossy(&text.stdout).to_string();
        assert!(text.contains(CLIENT_NAME), "{text}");
        assert!(text.contains("TLS Web Client Authentication"), "{text}");
        assert!(!format!("{pair:?}").contains("PRIVATE KEY"));
    }
}
