//! Forming the cluster with the script of the rendered cluster Job, so that a test runs what
//! the operator ships with only the pods' names and the secret's directory replaced.

use std::process::Command;

use super::LocalRedisCluster;
use super::start::cluster_mode_spec;
use crate::redis::error::RedisDrillError;

impl LocalRedisCluster {
    /// Runs the script of the rendered cluster Job for as many instances as there are nodes,
    /// with only the pod names replaced by the nodes' addresses and the password's directory
    /// by a temporary one. Returns what it printed.
    pub fn run_cluster_job(&self) -> Result<String, RedisDrillError> {
        let cluster = cluster_mode_spec(self.members.len())?;
        let script = shanraq_render::redis::cluster_init_script(&cluster);
        let secrets = tempfile::tempdir().map_err(|error| RedisDrillError::Tool {
            command: "mktemp".to_owned(),
            output: error.to_string(),
        })?;
        std::fs::write(secrets.path().join("password"), &self.password).map_err(|error| {
            RedisDrillError::Tool {
                command: "writing the password file".to_owned(),
                output: error.to_string(),
            }
        })?;
        let hosts: Vec<&str> = self.members.iter().map(|m| m.host.as_str()).collect();
        let script: String = script
            .lines()
            .map(|line| {
                if line.starts_with("hosts=") {
                    format!("hosts='{}'", hosts.join(" "))
                } else {
                    line.replace(
                        shanraq_render::redis::SECRET_DIR,
                        &secrets.path().display().to_string(),
                    )
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let output = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env_remove("REDISCLI_AUTH")
            .output()
            .map_err(|error| RedisDrillError::Tool {
                command: "sh".to_owned(),
                output: error.to_string(),
            })?;
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() {
            return Err(RedisDrillError::Tool {
                command: "the rendered Redis cluster Job script".to_owned(),
                output: printed,
            });
        }
        Ok(printed)
    }
}
