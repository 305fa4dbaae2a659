//! The Kubernetes wiring of each HA engine beyond PostgreSQL's (which predates this layout and
//! lives in `crate::ha`): its settings from the cluster's spec, its state store, its router,
//! its status and conditions.

pub mod kafka;
pub mod redis;
