//! The Redis engine wired to Kubernetes: its settings from the spec (`config`), one HA task per
//! cluster with Redis in replication mode (`task`, started by the reconcile), its state in
//! `status.redis` (`status_map`, through the shared `engines::state_store`), routing by the pods' role label (`router`), and the
//! RPO it measures (`objectives`), and the switchover annotation (`switchover`).

pub mod cluster_observer;
pub mod config;
pub mod objectives;
pub mod restart;
pub mod router;
pub mod status_map;
pub mod switchover;
pub mod task;

pub use task::RedisHaRegistry;
