//! The operator: kube-rs controllers, the `shanraq` command-line tools, and the local drill.

pub mod render_cmd;
pub mod run;
