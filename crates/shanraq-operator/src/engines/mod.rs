//! The Kubernetes wiring of each HA engine, one folder each (`postgres`, `redis`, `kafka`): its
//! settings from the cluster's spec, its task, its router, its status and conditions. Shared
//! by every engine: the state store in the cluster's status (`state_store`) and the leadership
//! every engine checks before it acts (`leadership`). Beside the engines, the client-side
//! probes of every critical path (`probes`), which the objectives are measured from.

pub mod components;
pub mod kafka;
pub mod leadership;
pub mod observed;
pub mod pod_status;
pub mod postgres;
pub mod probes;
pub mod redis;
pub mod registry;
pub mod request;
pub mod role_label;
pub mod start_error;
pub mod state_store;
pub mod status_record;
pub mod tasks;
