//! What the PostgreSQL task's last sample of the instances says for the status: the RPO that
//! bounds data loss now, `status.postgres.instances[]`, and WAL archiving on the designated
//! primary. All three from one read of the sample; `None` while the task has sampled nothing.

use shanraq_api::names::Component;
use shanraq_api::status::PostgresInstanceStatus;
use shanraq_api::{ShanraqClusterStatus, ValidCluster};
use shanraq_ha::objectives::RpoMeasurement;

use super::{HaRegistry, objectives};
use crate::controller::backup_status::ArchiveObservation;

/// PostgreSQL's part of what a reconcile observed.
#[derive(Debug, Default)]
pub struct Sampled {
    pub rpo: Option<RpoMeasurement>,
    pub instances: Option<Vec<PostgresInstanceStatus>>,
    /// With `spec.backup`: what the designated primary said about archiving and backups.
    pub archive: Option<ArchiveObservation>,
}

pub fn sampled(
    ha: &HaRegistry,
    cluster: &ValidCluster,
    previous: &ShanraqClusterStatus,
) -> Sampled {
    if !cluster.spec.postgres.enabled {
        return Sampled::default();
    }
    let key = cluster.key();
    let Some(sample) = ha.sample(&key).filter(|sample| !sample.is_empty()) else {
        return Sampled::default();
    };
    let primary = designated_primary(ha, &key, previous);
    let mode = super::spec::engine_config(cluster).replication;
    let members: Vec<String> = (0..cluster.spec.postgres.instances)
        .map(|n| cluster.names.pod(Component::Postgres, n))
        .collect();
    let fresh = objectives::rpo_measurement(mode, primary.as_deref(), &members, &sample);
    let archive = cluster
        .spec
        .backup
        .as_ref()
        .and(primary.as_ref())
        .and_then(|primary| sample.iter().find(|status| &status.name == primary))
        .map(ArchiveObservation::of);
    Sampled {
        rpo: Some(ha.publishable_rpo(&key, cluster, fresh)),
        instances: Some(objectives::instances(&members, primary.as_deref(), &sample)),
        archive,
    }
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
