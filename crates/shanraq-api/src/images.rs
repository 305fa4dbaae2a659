//! The images a ShanraqCluster runs by default: Shanraq's own, built from `images/<name>/Dockerfile`
//! on one Debian bookworm base and tagged with the operator's version, so that an operator
//! release and the images it renders move together. The exporters live in the images of what
//! they watch (postgres_exporter in `shanraq-postgres`, redis_exporter in `shanraq-redis`, the
//! JMX exporter agent in `shanraq-kafka`): a spec's image fields name every image its pods use.

/// Where the released images are published. A private registry is chosen per cluster through
/// the spec's image fields (docs/install.md).
pub const REGISTRY: &str = "ghcr.io/shanraq-org";

/// The images a cluster's pods run, by the name of their directory under `images/`.
pub const COMPONENT_IMAGES: [&str; 4] = ["postgres", "redis", "haproxy", "kafka"];

/// `ghcr.io/shanraq-org/shanraq-<name>:<operator version>`.
pub fn default_image(name: &str) -> String {
    format!("{REGISTRY}/shanraq-{name}:{}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_component_defaults_to_its_own_image_at_the_operator_version() {
        let version = env!("CARGO_PKG_VERSION");
        let defaults = [
            ("postgres", crate::postgres::PostgresSpec::default().image),
            ("redis", crate::redis::RedisSpec::default().image),
            ("haproxy", crate::haproxy::HAProxySpec::default().image),
            ("kafka", crate::kafka::KafkaSpec::default().image),
        ];
        for (name, image) in defaults {
            assert!(COMPONENT_IMAGES.contains(&name));
            assert_eq!(
                image,
                format!("ghcr.io/shanraq-org/shanraq-{name}:{version}")
            );
        }
    }
}
