//! What the PostgreSQL task's last sample of the instances says for the status: the RPO that
//! bounds data loss now, `status.postgres.instances[]`, and WAL archiving on the designated
//! primary. `None` while the task has sampled nothing.

use shanraq_api::names::Component;
use shanraq_api::status::PostgresInstanceStatus;
use shanraq_api::{ShanraqClusterStatus, ValidCluster};
use shanraq_ha::objectives::RpoMeasurement;

use super::{HaRegistry, objectives};
use crate::controller::backup_status::ArchiveObservation;

fn key(cluster: &ValidCluster) -> String {
    format!("{}/{}", cluster.namespace, cluster.name)
}

/// What bounds data loss now.
pub fn rpo(
    ha: &HaRegistry,
    cluster: &ValidCluster,
    previous: &ShanraqClusterStatus,
) -> Option<RpoMeasurement> {
    if !cluster.spec.postgres.enabled {
        return None;
    }
    let key = key(cluster);
    let sample = ha.sample(&key)?;
    if sample.is_empty() {
        return None;
    }
    let primary = designated_primary(ha, &key, previous);
    let mode = super::spec::engine_config(cluster).replication;
    let fresh = objectives::rpo_measurement(mode, primary.as_deref(), &sample);
    Some(ha.publishable_rpo(&key, cluster, fresh))
}

/// `status.postgres.instances[]`.
pub fn instances(
    ha: &HaRegistry,
    cluster: &ValidCluster,
    previous: &ShanraqClusterStatus,
) -> Option<Vec<PostgresInstanceStatus>> {
    if !cluster.spec.postgres.enabled {
        return None;
    }
    let key = key(cluster);
    let sample = ha.sample(&key)?;
    if sample.is_empty() {
        return None;
    }
    let members: Vec<String> = (0..cluster.spec.postgres.instances)
        .map(|n| cluster.names.pod(Component::Postgres, n))
        .collect();
    let primary = designated_primary(ha, &key, previous);
    Some(objectives::instances(&members, primary.as_deref(), &sample))
}

/// What the designated primary last said about WAL archiving and its backups (`spec.backup`).
pub fn archive(
    ha: &HaRegistry,
    cluster: &ValidCluster,
    previous: &ShanraqClusterStatus,
) -> Option<ArchiveObservation> {
    if cluster.spec.backup.is_none() || !cluster.spec.postgres.enabled {
        return None;
    }
    let key = key(cluster);
    let primary = designated_primary(ha, &key, previous)?;
    ha.sample(&key)?
        .iter()
        .find(|status| status.name == primary)
        .map(ArchiveObservation::of)
}

/// The designated primary: the running engine's, else the recorded one.
fn designated_primary(
    ha: &HaRegistry,
    key: &str,
    previous: &ShanraqClusterStatus,
) -> Option<String> {
    ha.handle(key)
        .and_then(|h| h.state().current_primary.map(|p| p.0))
        .or_else(|| {
            previous
                .postgres
                .as_ref()
                .and_then(|p| p.current_primary.clone())
        })
}
