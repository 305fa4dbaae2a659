//! Validation the operator runs before it acts: the admission checks (see `admission`), then
//! what no admission rule can know because it depends on live state (see `transition`). An
//! error here becomes `Stalled=True` with reason `InvalidSpec`, and nothing already running is
//! touched.

use std::fmt;

use kube::ResourceExt;

use crate::admission::{self, FieldError};
use crate::cluster::{ShanraqCluster, ShanraqClusterSpec};
use crate::names::Names;
pub use crate::transition::LiveState;

/// A cluster that passed validation: the spec with every default applied, plus the identity
/// every child needs (name, namespace, uid for owner references).
#[derive(Clone, Debug, PartialEq)]
pub struct ValidCluster {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub generation: Option<i64>,
    pub spec: ShanraqClusterSpec,
    pub names: Names,
}

impl ValidCluster {
    /// `namespace/name`: how the operator keys everything it keeps per cluster (its engines'
    /// tasks, its last apply).
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Every reason the spec was refused, each naming its field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct InvalidSpec {
    pub errors: Vec<FieldError>,
}

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

fn invalid(field: &str, message: String) -> InvalidSpec {
    InvalidSpec {
        errors: vec![FieldError {
            field: field.to_owned(),
            message,
        }],
    }
}

/// Validates a cluster read from the API (or a file). `uid` may be absent for offline rendering,
/// in which case a placeholder is used.
pub fn validate(cluster: &ShanraqCluster, live: &LiveState) -> Result<ValidCluster, InvalidSpec> {
    let name = cluster
        .metadata
        .name
        .clone()
        .ok_or_else(|| invalid("metadata.name", "is required".to_owned()))?;
    let namespace = cluster.namespace().unwrap_or_else(|| "default".to_owned());
    let mut errors = admission::check(cluster, None);
    errors.extend(
        crate::transition::check(&name, &cluster.spec, cluster.annotations(), live)
            .into_iter()
            .map(FieldError::from),
    );
    errors.extend(crate::backup_validate::check(&name, &cluster.spec));
    if !errors.is_empty() {
        return Err(InvalidSpec { errors });
    }
    Ok(ValidCluster {
        uid: cluster.metadata.uid.clone().unwrap_or_default(),
        generation: cluster.metadata.generation,
        spec: cluster.spec.clone(),
        names: Names::new(&name),
        name,
        namespace,
    })
}
