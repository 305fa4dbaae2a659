//! The operator: kube-rs controllers, the engines' Kubernetes wiring and the `shanraq`
//! command line. The local drill is the `shanraq-drill` crate, never linked here.

pub mod cli;
pub mod controller;
pub mod engines;
pub mod http;
pub mod metrics;
pub mod render_cmd;
pub mod run;

#[cfg(test)]
mod fixtures;
