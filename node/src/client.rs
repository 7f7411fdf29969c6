//! The HTTP client to the county hub: signed requests, typed errors, retries with exponential
//! backoff and jitter on what may succeed later (connection failures, cut bodies, 5xx).

use crate::clock::Clock;
use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use ed25519_dalek::SigningKey;
use jianka_shared::protocol::{ApiError, ErrorCode, HEADER_KEY, HEADER_SIGNATURE, HEADER_TIME};
use jianka_shared::trust::{KeyId, sign_request};
use serde::de::DeserializeOwned;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("cannot reach the hub ({method} {path}): {message}")]
    Transport { method: &'static str, path: String, message: String },
    #[error("hub refused {method} {path} ({status}, {code:?}): {message}")]
    Refused { method: &'static str, path: String, status: u16, code: Option<ErrorCode>, message: String },
    #[error("hub answered {method} {path} with an unreadable body: {message}")]
    BadAnswer { method: &'static str, path: String, message: String },
}

impl HubError {
    /// Worth trying again: the link or the hub may recover.
    pub fn retryable(&self) -> bool {
        match self {
            HubError::Transport { .. } | HubError::BadAnswer { .. } => true,
            HubError::Refused { status, code, .. } => {
                *status >= 500 || *status == 429 || *status == 408 || *code == Some(ErrorCode::ClockSkew)
            }
        }
    }

    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            HubError::Refused { code, .. } => *code,
            _ => None,
        }
    }
}

pub struct HubClient {
    http: reqwest::Client,
    base: String,
    key: SigningKey,
    key_id: KeyId,
    clock: Clock,
    retries: usize,
}

impl HubClient {
    pub fn new(base: &str, key: SigningKey, clock: Clock, timeout: Duration, retries: usize) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(1)
            .build()?;
        let key_id = KeyId::of(&key.verifying_key());
        Ok(HubClient { http, base: base.trim_end_matches('/').to_string(), key, key_id, clock, retries })
    }

    fn backoff(&self) -> ExponentialBuilder {
        // A lost request on a township link is usually a dropped connection, noticed at once:
        // retry soon, then back off exponentially (with jitter, so townships do not retry in step).
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(25))
            .with_max_delay(Duration::from_secs(15))
            .with_max_times(self.retries)
    }

    /// The delays between attempts, for callers that re-check state before resending.
    pub fn retry_delays(&self) -> impl Iterator<Item = Duration> {
        self.backoff().build()
    }

    /// One signed request, no retry. Returns the body of a 2xx answer.
    pub async fn once(&self, method: &'static str, path: &str, body: &[u8]) -> Result<Vec<u8>, HubError> {
        let time = self.clock.unix_secs();
        let sig = sign_request(&self.key, method, path, body, time);
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("static method");
        let mut req = self
            .http
            .request(m, format!("{}{}", self.base, path))
            .header(HEADER_KEY, self.key_id.to_string())
            .header(HEADER_TIME, time.to_string())
            .header(HEADER_SIGNATURE, sig);
        if !body.is_empty() || method != "GET" {
            req = req.header("content-type", "application/octet-stream").body(body.to_vec());
        }
        let transport =
            |e: reqwest::Error| HubError::Transport { method, path: path.to_string(), message: e.to_string() };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(transport)?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let (code, message) = match serde_json::from_slice::<ApiError>(&bytes) {
            Ok(e) => (Some(e.code), e.message),
            Err(_) => (None, String::from_utf8_lossy(&bytes).chars().take(300).collect()),
        };
        Err(HubError::Refused { method, path: path.to_string(), status: status.as_u16(), code, message })
    }

    /// A signed request with retries, its JSON answer decoded.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: &[u8],
    ) -> Result<T, HubError> {
        (|| async {
            let bytes = self.once(method, path, body).await?;
            serde_json::from_slice::<T>(&bytes).map_err(|e| HubError::BadAnswer {
                method,
                path: path.to_string(),
                message: e.to_string(),
            })
        })
        .retry(self.backoff())
        .sleep(tokio::time::sleep)
        .when(HubError::retryable)
        .notify(|e, d| tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "hub request failed; retrying"))
        .await
    }

    pub async fn health(&self) -> Result<(), HubError> {
        let path = "/v1/health";
        let r = self.http.get(format!("{}{}", self.base, path)).send().await.map_err(|e| HubError::Transport {
            method: "GET",
            path: path.into(),
            message: e.to_string(),
        })?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(HubError::Refused {
                method: "GET",
                path: path.into(),
                status: r.status().as_u16(),
                code: None,
                message: "unhealthy".into(),
            })
        }
    }
}
