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

/// Where the install scripts cache what they build or fetch: `$SHANRAQ_TOOLS_CACHE`, else
/// `$XDG_CACHE_HOME/shanraq`, else `~/.cache/shanraq`.
fn tools_cache() -> PathBuf {
    std::env::var_os("SHANRAQ_TOOLS_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|dir| PathBuf::from(dir).join("shanraq"))
        })
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/shanraq")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache/shanraq"))
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
        None => tools_cache().join(format!("seaweedfs-{SEAWEEDFS_VERSION}/bin/weed")),
    };
    existing("weed", path, "SeaweedFS with scripts/install-s3-server")
}

/// The Apache Kafka release the tests run; `scripts/kafka/pom.xml` pins the same (a test checks).
pub const KAFKA_VERSION: &str = "4.4.0";
/// The Prometheus JMX exporter agent release in the same pom.
pub const JMX_EXPORTER_VERSION: &str = "1.0.1";

/// `java` (Debian's `openjdk-17-jre-headless`; Kafka 4 brokers need Java 17).
pub fn java() -> Result<PathBuf, TestkitError> {
    on_path("java", SYSTEM_DIRS, "openjdk-17-jre-headless")
}

/// The directory `scripts/install-kafka` fills from Maven Central: `lib/` (the broker's
/// classpath) and `agent/`. `SHANRAQ_KAFKA_HOME` overrides the cache path.
pub fn kafka_home() -> Result<PathBuf, TestkitError> {
    let home = match std::env::var_os("SHANRAQ_KAFKA_HOME") {
        Some(home) => PathBuf::from(home),
        None => tools_cache().join(format!("kafka-{KAFKA_VERSION}")),
    };
    let broker_jar = home
        .join("lib")
        .join(format!("kafka_2.13-{KAFKA_VERSION}.jar"));
    if broker_jar.is_file() {
        Ok(home)
    } else {
        Err(TestkitError::MissingKafka { path: broker_jar })
    }
}

/// The JMX exporter's `-javaagent` jar in a `kafka_home()`.
pub fn jmx_exporter_agent(home: &Path) -> Result<PathBuf, TestkitError> {
    let jar = home.join("agent").join(format!(
        "jmx_prometheus_javaagent-{JMX_EXPORTER_VERSION}.jar"
    ));
    if jar.is_file() {
        Ok(jar)
    } else {
        Err(TestkitError::MissingKafka { path: jar })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_versions_match_the_pom_install_kafka_resolves() {
        let pom = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka/pom.xml"),
        )
        .expect("scripts/kafka/pom.xml");
        assert!(
            pom.contains(&format!("<kafka.version>{KAFKA_VERSION}</kafka.version>")),
            "KAFKA_VERSION differs from the pom"
        );
        assert!(
            pom.contains(&format!(
                "<jmx.exporter.version>{JMX_EXPORTER_VERSION}</jmx.exporter.version>"
            )),
            "JMX_EXPORTER_VERSION differs from the pom"
        );
    }

    #[test]
    fn kafka_is_installed() {
        let home = kafka_home().expect("Kafka jars (scripts/install-kafka)");
        jmx_exporter_agent(&home).expect("JMX exporter agent (scripts/install-kafka)");
        java().expect("java");
    }

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
