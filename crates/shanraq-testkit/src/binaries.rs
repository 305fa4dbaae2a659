//! Where the real servers live on Debian, and which package to install when one is missing.
//! A missing binary is an error that names the package: tests fail loudly, never skip.

use std::path::{Path, PathBuf};

use crate::TestkitError;

/// Debian's PostgreSQL 15 binaries (`postgresql-15`).
pub const PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

fn existing(
    binary: &'static str,
    path: PathBuf,
    package: &'static str,
) -> Result<PathBuf, TestkitError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(TestkitError::MissingBinary {
            binary,
            path,
            package,
        })
    }
}

fn on_path(
    binary: &'static str,
    dirs: &[&str],
    package: &'static str,
) -> Result<PathBuf, TestkitError> {
    for dir in dirs {
        let path = Path::new(dir).join(binary);
        if path.is_file() {
            return Ok(path);
        }
    }
    Err(TestkitError::MissingBinary {
        binary,
        path: PathBuf::from(dirs.join(":")),
        package,
    })
}

const SYSTEM_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// A PostgreSQL 15 program (`postgres`, `initdb`, `pg_ctl`, `pg_basebackup`, `pg_rewind`...).
pub fn postgres_tool(binary: &'static str) -> Result<PathBuf, TestkitError> {
    existing(binary, Path::new(PG_BIN_DIR).join(binary), "postgresql-15")
}

/// The directory of PostgreSQL 15's programs, checked to hold `postgres` and `initdb`.
pub fn pg_bin_dir() -> Result<PathBuf, TestkitError> {
    postgres_tool("postgres")?;
    postgres_tool("initdb")?;
    Ok(PathBuf::from(PG_BIN_DIR))
}

pub fn redis_server() -> Result<PathBuf, TestkitError> {
    on_path("redis-server", SYSTEM_DIRS, "redis-server")
}

pub fn haproxy() -> Result<PathBuf, TestkitError> {
    on_path("haproxy", SYSTEM_DIRS, "haproxy")
}

pub fn promtool() -> Result<PathBuf, TestkitError> {
    on_path("promtool", SYSTEM_DIRS, "prometheus")
}

/// `ip`, which creates the network namespaces, veths and bridge of a `NetLab`.
pub fn ip() -> Result<PathBuf, TestkitError> {
    on_path("ip", SYSTEM_DIRS, "iproute2")
}

/// `nft`, which loads a `NetLab`'s drop and loss rules.
pub fn nft() -> Result<PathBuf, TestkitError> {
    on_path("nft", SYSTEM_DIRS, "nftables")
}

/// `iptables-restore`, which loads the NFQUEUE rules of a `NetLab`'s packet delay (the kernel
/// has the xtables NFQUEUE target but no nft `queue` expression).
pub fn iptables_restore() -> Result<PathBuf, TestkitError> {
    on_path("iptables-restore", SYSTEM_DIRS, "iptables")
}

/// `lua5.4`, which runs the Argo CD health script as Argo CD would.
pub fn lua() -> Result<PathBuf, TestkitError> {
    on_path("lua5.4", SYSTEM_DIRS, "lua5.4")
}

/// `openssl`, which makes the test CA and server certificates.
pub fn openssl() -> Result<PathBuf, TestkitError> {
    on_path("openssl", SYSTEM_DIRS, "openssl")
}

/// `pgbackrest` (Debian's 2.45), which archives WAL and takes and restores backups.
pub fn pgbackrest() -> Result<PathBuf, TestkitError> {
    on_path("pgbackrest", SYSTEM_DIRS, "pgbackrest")
}

/// The SeaweedFS release `scripts/install-s3-server` builds (kept equal by a test).
pub const SEAWEEDFS_VERSION: &str = "v0.0.0-20261109003541-7506e5f91cd6";

/// SeaweedFS's `weed`, the S3-compatible store of the backup tests: `$SHANRAQ_WEED`, else
/// where `scripts/install-s3-server` caches it.
pub fn weed() -> Result<PathBuf, TestkitError> {
    let path = match std::env::var_os("SHANRAQ_WEED") {
        Some(path) => PathBuf::from(path),
        None => {
            let cache = std::env::var_os("SHANRAQ_TOOLS_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("XDG_CACHE_HOME").map(|dir| PathBuf::from(dir).join("shanraq"))
                })
                .or_else(|| {
                    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/shanraq"))
                })
                .unwrap_or_else(|| PathBuf::from("/root/.cache/shanraq"));
            cache.join(format!("seaweedfs-{SEAWEEDFS_VERSION}/bin/weed"))
        }
    };
    existing("weed", path, "SeaweedFS with scripts/install-s3-server")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_server_this_machine_needs_is_installed() {
        for tool in ["postgres", "initdb", "pg_ctl", "pg_basebackup", "pg_rewind"] {
            postgres_tool(tool).expect("postgresql-15 tool");
        }
        redis_server().expect("redis-server");
        haproxy().expect("haproxy");
        promtool().expect("promtool");
        ip().expect("ip");
        nft().expect("nft");
        iptables_restore().expect("iptables-restore");
    }

    #[test]
    fn a_missing_binary_names_its_package() {
        let error = on_path("no-such-server", &["/nonexistent"], "no-such-package")
            .expect_err("missing binary");
        let message = error.to_string();
        assert!(message.contains("no-such-package"), "{message}");
        assert!(message.contains("no-such-server"), "{message}");
    }
}
