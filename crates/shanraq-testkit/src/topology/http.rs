//! The managers' HTTP API as a test calls it: role checks, `/status`, and the bearer-token
//! commands (with the topology's token, another, or none).

use serde_json::Value;

use super::LocalTopology;
use crate::TestkitError;

impl LocalTopology {
    /// GET `path` on member `index`; the HTTP status code.
    pub async fn get(&self, index: usize, path: &str) -> Result<u16, TestkitError> {
        let url = format!("{}{path}", self.member(index)?.http_url);
        let response = self.http.get(&url).send().await.map_err(|error| {
            TestkitError::io(format!("GET {url}"), std::io::Error::other(error))
        })?;
        Ok(response.status().as_u16())
    }

    /// GET `/status` of member `index` as JSON.
    pub async fn status(&self, index: usize) -> Result<Value, TestkitError> {
        let url = format!("{}/status", self.member(index)?.http_url);
        let response = self.http.get(&url).send().await.map_err(|error| {
            TestkitError::io(format!("GET {url}"), std::io::Error::other(error))
        })?;
        response
            .json()
            .await
            .map_err(|error| TestkitError::io(format!("GET {url}"), std::io::Error::other(error)))
    }

    /// POST a command (`/promote`, `/fence`, `/demote`, `/repoint`) with the topology's token.
    pub async fn command(
        &self,
        index: usize,
        path: &str,
        body: &Value,
    ) -> Result<(u16, Value), TestkitError> {
        self.command_with_token(index, path, body, Some(&self.token))
            .await
    }

    /// POST a command with a chosen token (or none), to test authentication.
    pub async fn command_with_token(
        &self,
        index: usize,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<(u16, Value), TestkitError> {
        let url = format!("{}{path}", self.member(index)?.http_url);
        let mut request = self.http.post(&url).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|error| {
            TestkitError::io(format!("POST {url}"), std::io::Error::other(error))
        })?;
        let code = response.status().as_u16();
        let value = response.json().await.unwrap_or(Value::Null);
        Ok((code, value))
    }
}
