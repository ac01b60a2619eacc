//! The CNaaS-NMS REST API (v1.0) client both binaries use: the collector reads its inventory
//! (devices, interfaces, linknets, mgmtdomains), the agent its device list. Answers are checked
//! for the documented shape (`{"status": "success", "data": {KEY: [...]}}`); the JWT goes as a
//! bearer token and never into an error text or a log.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::config::SecretSource;

/// Devices asked for per page.
const PER_PAGE: usize = 500;
/// Pages read at most (a runaway paging never ends a refresh).
const MAX_PAGES: usize = 200;

/// Why a read of CNaaS-NMS failed.
#[derive(Debug, thiserror::Error)]
pub enum NmsError {
    /// The JWT could not be read.
    #[error("cannot read the CNaaS-NMS token: {0}")]
    Token(String),
    /// No answer, a refused connection, a timeout.
    #[error("{path}: {reason}")]
    Unreachable {
        /// The API path.
        path: String,
        /// What went wrong (the URL's secrets redacted).
        reason: String,
    },
    /// An HTTP error status.
    #[error("{path}: HTTP {status}")]
    Status {
        /// The API path.
        path: String,
        /// The status.
        status: u16,
    },
    /// A body that is not what the API documents.
    #[error("{path}: unexpected answer: {reason}")]
    Shape {
        /// The API path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An answer that would empty the inventory.
    #[error("CNaaS-NMS lists no managed device (the last read had {0}); keeping that")]
    Emptied(usize),
}

/// A device as CNaaS-NMS lists it (`GET /api/v1.0/devices`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct NmsDevice {
    /// `id`.
    pub id: i64,
    /// `hostname`.
    pub hostname: String,
    /// `management_ip`.
    #[serde(default)]
    pub management_ip: Option<String>,
    /// `device_type`: ACCESS, DIST, CORE, UNKNOWN.
    #[serde(default)]
    pub device_type: Option<String>,
    /// `state`: MANAGED, DISCOVERED, ...
    #[serde(default)]
    pub state: Option<String>,
}

impl NmsDevice {
    /// Whether CNaaS-NMS manages it (state `MANAGED`): only those are monitored.
    pub fn is_managed(&self) -> bool {
        self.state.as_deref() == Some("MANAGED")
    }
}

/// Where CNaaS-NMS is and how to ask it.
#[derive(Debug, Clone)]
pub struct NmsTarget {
    /// Base URL without a trailing slash.
    pub url: String,
    /// Where the JWT is (neither file nor variable: asked without one).
    pub token: SecretSource,
    /// Time limit of each request.
    pub timeout: Duration,
    /// The folder secrets are relative to.
    pub base_dir: PathBuf,
}

/// The `data.<key>` list of a CNaaS-NMS answer.
pub fn data_list<T: serde::de::DeserializeOwned>(
    path: &str,
    body: &Value,
    key: &str,
) -> Result<Vec<T>, NmsError> {
    let shape = |reason: String| NmsError::Shape {
        path: path.to_owned(),
        reason,
    };
    match body.get("status").and_then(Value::as_str) {
        Some("success") => {}
        Some(other) => return Err(shape(format!("status `{other}`"))),
        None => return Err(shape("no `status`".into())),
    }
    let list = body
        .get("data")
        .and_then(|d| d.get(key))
        .ok_or_else(|| shape(format!("no `data.{key}`")))?;
    serde_json::from_value(list.clone()).map_err(|e| shape(format!("`data.{key}`: {e}")))
}

/// A client of one CNaaS-NMS.
pub struct NmsClient {
    http: reqwest::Client,
    target: NmsTarget,
}

impl NmsClient {
    /// A client for `target`.
    pub fn new(target: NmsTarget) -> Result<NmsClient, NmsError> {
        let http = reqwest::Client::builder()
            .timeout(target.timeout)
            .connect_timeout(target.timeout)
            .build()
            .map_err(|e| NmsError::Unreachable {
                path: String::new(),
                reason: e.to_string(),
            })?;
        Ok(NmsClient { http, target })
    }

    /// The JWT, read now (it may have been renewed since the last read).
    pub fn token(&self) -> Result<Option<crate::config::Secret>, NmsError> {
        if self.target.token.file.is_none() && self.target.token.env.is_none() {
            return Ok(None);
        }
        self.target
            .token
            .read(&self.target.base_dir)
            .map(Some)
            .map_err(|e| NmsError::Token(e.to_string()))
    }

    /// One GET: the JSON body and the `X-Total-Count` header.
    pub async fn get(
        &self,
        path: &str,
        token: Option<&crate::config::Secret>,
    ) -> Result<(Value, Option<usize>), NmsError> {
        let url = format!("{}{path}", self.target.url);
        let mut req = self.http.get(&url);
        if let Some(t) = token {
            req = req.bearer_auth(t.expose());
        }
        let unreachable = |e: reqwest::Error| NmsError::Unreachable {
            path: path.to_owned(),
            reason: crate::config::redact_url(&e.without_url().to_string()),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(NmsError::Status {
                path: path.to_owned(),
                status: status.as_u16(),
            });
        }
        let total = resp
            .headers()
            .get("X-Total-Count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let bytes = resp.bytes().await.map_err(unreachable)?;
        let body = serde_json::from_slice(&bytes).map_err(|e| NmsError::Shape {
            path: path.to_owned(),
            reason: format!("not JSON: {e}"),
        })?;
        Ok((body, total))
    }

    /// Every device, page by page (`page`, `per_page`, `X-Total-Count`).
    pub async fn devices(
        &self,
        token: Option<&crate::config::Secret>,
    ) -> Result<Vec<NmsDevice>, NmsError> {
        let mut all: Vec<NmsDevice> = Vec::new();
        for page in 1..=MAX_PAGES {
            let path = format!("/api/v1.0/devices?page={page}&per_page={PER_PAGE}");
            let (body, total) = self.get(&path, token).await?;
            let list: Vec<NmsDevice> = data_list(&path, &body, "devices")?;
            let n = list.len();
            all.extend(list);
            let done = total.map_or(n < PER_PAGE, |t| all.len() >= t);
            if done || n == 0 {
                break;
            }
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_checked_for_their_shape() {
        let ok = json!({"status": "success", "data": {"devices": [
            {"id": 9, "hostname": "eosdist", "management_ip": "10.100.3.101", "state": "MANAGED", "device_type": "DIST"}
        ]}});
        let d: Vec<NmsDevice> = data_list("/d", &ok, "devices").unwrap();
        assert!(d[0].is_managed());
        assert_eq!(d[0].management_ip.as_deref(), Some("10.100.3.101"));
        let err = json!({"status": "error", "message": "no"});
        assert!(matches!(
            data_list::<NmsDevice>("/d", &err, "devices"),
            Err(NmsError::Shape { .. })
        ));
        let wrong = json!({"status": "success", "data": {"devices": "x"}});
        assert!(data_list::<NmsDevice>("/d", &wrong, "devices").is_err());
        let missing = json!({"status": "success", "data": {}});
        assert!(data_list::<NmsDevice>("/d", &missing, "devices").is_err());
    }
}
