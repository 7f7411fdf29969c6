//! Signed requests to the parent hub: every request carries the sender's key id, the time and a
//! signature over method, path, body and time; retries with exponential backoff and jitter on
//! what may succeed later (connection failures, cut bodies, 5xx).

use crate::error::HubError;
use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use ed25519_dalek::SigningKey;
use jianka_shared::protocol::{ApiError, HEADER_KEY, HEADER_SIGNATURE, HEADER_TIME};
use jianka_shared::trust::{KeyId, sign_request};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

/// The sender's clock, in unix seconds: what a request's signature is dated with (the hub refuses
/// a request outside its clock window).
pub type Now = Arc<dyn Fn() -> i64 + Send + Sync>;

/// One request to `base` + `path_and_query`, signed with `key` at `now`; a body goes as
/// `application/octet-stream` (a GET without one carries none).
pub fn signed(
    http: &reqwest::Client,
    key: &SigningKey,
    method: reqwest::Method,
    base: &str,
    path_and_query: &str,
    body: Vec<u8>,
    now: i64,
) -> reqwest::RequestBuilder {
    let sig = sign_request(key, method.as_str(), path_and_query, &body, now);
    let with_body = !body.is_empty() || method != reqwest::Method::GET;
    let req = http
        .request(method, format!("{}{path_and_query}", base.trim_end_matches('/')))
        .header(HEADER_KEY, KeyId::of(&key.verifying_key()).to_string())
        .header(HEADER_TIME, now.to_string())
        .header(HEADER_SIGNATURE, sig);
    match with_body {
        true => req.header("content-type", "application/octet-stream").body(body),
        false => req,
    }
}

pub struct HubClient {
    http: reqwest::Client,
    base: String,
    key: SigningKey,
    now: Now,
    timeout: Duration,
    retries: usize,
}

impl HubClient {
    /// A client of the hub at `base`; every request ends after `timeout`, and one that may
    /// succeed later is tried `retries` more times.
    pub fn new(
        base: &str,
        key: SigningKey,
        now: Now,
        timeout: Duration,
        retries: usize,
    ) -> Result<HubClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(1)
            .build()?;
        Ok(HubClient { http, base: base.trim_end_matches('/').to_string(), key, now, timeout, retries })
    }

    /// How long one request may take: requests are sized to what the line carries inside it.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn backoff(&self) -> ExponentialBuilder {
        // A lost request is usually a dropped connection, noticed at once: retry soon, then back
        // off exponentially (with jitter, so senders do not retry in step).
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(25))
            .with_max_delay(Duration::from_secs(15))
            .with_max_times(self.retries)
    }

    /// The delays between attempts, for callers that re-check state before resending.
    pub fn retry_delays(&self) -> impl Iterator<Item = Duration> + use<> {
        self.backoff().build()
    }

    /// One signed request, no retry. Returns the body of a 2xx answer.
    pub async fn once(&self, method: &'static str, path: &str, body: &[u8]) -> Result<Vec<u8>, HubError> {
        let transport = |message: String| HubError::Transport { method, path: path.to_string(), message };
        let m = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| transport(e.to_string()))?;
        let req = signed(&self.http, &self.key, m, &self.base, path, body.to_vec(), (self.now)());
        let resp = req.send().await.map_err(|e| transport(e.to_string()))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| transport(e.to_string()))?;
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
            decode(method, path, &bytes)
        })
        .retry(self.backoff())
        .sleep(tokio::time::sleep)
        .when(HubError::retryable)
        .notify(|e, d| tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "hub request failed; retrying"))
        .await
    }
}

/// A 2xx answer's JSON body, or what was wrong with it.
pub(crate) fn decode<T: DeserializeOwned>(method: &'static str, path: &str, bytes: &[u8]) -> Result<T, HubError> {
    serde_json::from_slice(bytes).map_err(|e| HubError::BadAnswer {
        method,
        path: path.to_string(),
        message: e.to_string(),
    })
}
