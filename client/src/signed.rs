//! Signed requests to the parent hub: every request carries the sender's key id, the time and a
//! signature over method, path, body and time; retries with exponential backoff and jitter on
//! what may succeed later (connection failures, cut bodies, 5xx).
//!
//! A request's timeout means "no bytes moved for that long", not "the whole request took that
//! long": the body goes out in small pieces and the answer comes in as it arrives, each marking
//! progress, and a watchdog cuts the request only when nothing moved for the timeout.

use crate::error::HubError;
use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use ed25519_dalek::SigningKey;
use jianka_shared::protocol::{ApiError, HEADER_KEY, HEADER_SIGNATURE, HEADER_TIME};
use jianka_shared::trust::{KeyId, sign_request};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    let with_body = !body.is_empty() || method != reqwest::Method::GET;
    let req = signed_head(http, key, method, base, path_and_query, &body, now);
    match with_body {
        true => req.header("content-type", "application/octet-stream").body(body),
        false => req,
    }
}

/// A request's line and signed headers, the signature over `signed_over` as its body; the
/// caller attaches the body.
fn signed_head(
    http: &reqwest::Client,
    key: &SigningKey,
    method: reqwest::Method,
    base: &str,
    path_and_query: &str,
    signed_over: &[u8],
    now: i64,
) -> reqwest::RequestBuilder {
    let sig = sign_request(key, method.as_str(), path_and_query, signed_over, now);
    http.request(method, format!("{}{path_and_query}", base.trim_end_matches('/')))
        .header(HEADER_KEY, KeyId::of(&key.verifying_key()).to_string())
        .header(HEADER_TIME, now.to_string())
        .header(HEADER_SIGNATURE, sig)
}

pub struct HubClient {
    http: reqwest::Client,
    base: String,
    key: SigningKey,
    now: Now,
    timeout: Duration,
    retries: usize,
    /// The parent hub's key and this sender's region: feedback pages must be signed by it.
    pub(crate) parent: Option<(ed25519_dalek::VerifyingKey, jianka_shared::RegionCode)>,
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
        // No whole-request timeout: the watchdog in `send` cuts a request when nothing moves.
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(1)
            .build()?;
        Ok(HubClient { http, base: base.trim_end_matches('/').to_string(), key, now, timeout, retries, parent: None })
    }

    /// Feedback pages from now on must be signed by `parent_key` (the parent hub's key, from this
    /// sender's certificate chain) for `region` (this sender's): any other page is refused.
    pub fn verifying_feedback(
        mut self,
        parent_key: ed25519_dalek::VerifyingKey,
        region: jianka_shared::RegionCode,
    ) -> Self {
        self.parent = Some((parent_key, region));
        self
    }

    /// How long a request may go without a byte moving; requests are also sized to what the
    /// line carries well inside it, since bytes sitting in the system's socket buffers do not
    /// show as progress.
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
        self.send(method, path, body, true).await
    }

    /// One request signed over its path alone (an empty body in the signature), for a piece the
    /// hub keeps as far as it arrives (see `protocol::UPLOAD_HASH_PARAM`).
    pub async fn once_path_signed(&self, method: &'static str, path: &str, body: &[u8]) -> Result<Vec<u8>, HubError> {
        self.send(method, path, body, false).await
    }

    async fn send(&self, method: &'static str, path: &str, body: &[u8], sign_body: bool) -> Result<Vec<u8>, HubError> {
        use futures_util::StreamExt;
        let transport = |message: String| HubError::Transport { method, path: path.to_string(), message };
        let m = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| transport(e.to_string()))?;
        let signed_over: &[u8] = if sign_body { body } else { b"" };
        let mut req = signed_head(&self.http, &self.key, m, &self.base, path, signed_over, (self.now)());
        let moved = Arc::new(Moved::new());
        if !body.is_empty() || method != "GET" {
            req = req
                .header("content-type", "application/octet-stream")
                .header("content-length", body.len().to_string())
                .body(reqwest::Body::wrap_stream(pieces_of(body, moved.clone())));
        }
        let exchange = async {
            let resp = req.send().await.map_err(|e| transport(e.to_string()))?;
            moved.mark();
            let status = resp.status();
            let mut answer = Vec::new();
            let mut stream = resp.bytes_stream();
            while let Some(bytes) = stream.next().await {
                answer.extend_from_slice(&bytes.map_err(|e| transport(e.to_string()))?);
                moved.mark();
            }
            Ok::<_, HubError>((status, answer))
        };
        let (status, bytes) = tokio::select! {
            r = exchange => r?,
            _ = moved.stalled(self.timeout) => {
                return Err(transport(format!("no bytes moved for {} s", self.timeout.as_secs_f64())));
            }
        };
        if status.is_success() {
            return Ok(bytes);
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

/// When bytes last moved on one request.
struct Moved {
    started: Instant,
    /// Milliseconds after `started`.
    last: AtomicU64,
}

impl Moved {
    fn new() -> Moved {
        Moved { started: Instant::now(), last: AtomicU64::new(0) }
    }

    fn mark(&self) {
        self.last.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `limit`.
    async fn stalled(&self, limit: Duration) {
        loop {
            let idle = self.started.elapsed().saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)));
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }
}

/// How much of a body goes to the connection at a time: each piece taken marks progress.
const BODY_PIECE: usize = 1024;

/// `body` as a stream of small pieces, each marking progress as the connection takes it.
fn pieces_of(
    body: &[u8],
    moved: Arc<Moved>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    let body = bytes::Bytes::copy_from_slice(body);
    let n = body.len().div_ceil(BODY_PIECE);
    futures_util::stream::iter((0..n).map(move |i| {
        moved.mark();
        Ok(body.slice(i * BODY_PIECE..((i + 1) * BODY_PIECE).min(body.len())))
    }))
}
