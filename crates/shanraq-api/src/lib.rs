//! The `ShanraqCluster` API (`shanraq.org/v1alpha1`): spec and status types with production
//! defaults, CEL validation rules, offline admission, and well-known names and labels. No IO.

pub mod admission;
pub mod backup;
pub mod backup_request;
pub mod backup_validate;
pub mod cluster;
pub mod conditions;
pub mod crd;
pub mod duration;
pub mod failover;
pub mod haproxy;
pub mod images;
pub mod kafka;
pub mod monitoring;
pub mod names;
pub mod objectives;
pub mod postgres;
pub mod redis;
pub mod status;
pub mod storage;
pub mod transition;
pub mod validate;

pub use cluster::{ShanraqCluster, ShanraqClusterSpec};
pub use duration::Duration;
pub use status::ShanraqClusterStatus;
pub use validate::{InvalidSpec, LiveState, ValidCluster, validate};

pub(crate) fn default_true() -> bool {
    true
}
