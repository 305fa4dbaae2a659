//! The Redis engine wired to Kubernetes: its settings from the spec (`config`), and what the
//! status says about Redis.

pub mod config;
