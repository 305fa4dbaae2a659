//! The operator: kube-rs controllers, the `shanraq` command-line tools, and the local drill.

pub mod controller;
pub mod drill;
pub mod engines;
pub mod ha;
pub mod http;
pub mod metrics;
pub mod render_cmd;
pub mod run;

#[cfg(test)]
mod fixtures;
