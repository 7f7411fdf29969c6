//! The HTTP surface (thin): authenticate, call the hub, map errors. See the protocol in
//! `jianka_shared::protocol`.

use crate::auth::Sender;
use crate::error::HubError;
use crate::state::Hub;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use jianka_shared::protocol::*;
use serde::Deserialize;
use std::sync::Arc;

pub fn router(hub: Arc<Hub>) -> Router {
    let limit = hub.cfg.max_body_bytes;
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/sync/state", get(sync_state))
        .route("/v1/changesets", post(push_changeset))
        .route("/v1/uploads/{seq}", put(put_chunk).get(get_upload))
        .route("/v1/feedback", get(feedback))
        .route("/v1/digest", get(digest))
        .route("/v1/signoffs", post(post_signoff))
        .route("/v1/allocations", post(post_allocation))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(hub)
}

/// 200 with the database's answer to a real query; 503 when it does not answer.
async fn health(State(hub): State<Arc<Hub>>) -> Result<Json<serde_json::Value>, HubError> {
    hub.check_database().await?;
    Ok(Json(serde_json::json!({"status": "ok", "region": hub.region().to_string(), "database": "reachable"})))
}

async fn not_found(uri: Uri) -> HubError {
    HubError::new(ErrorCode::NotFound, format!("no such endpoint: {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> HubError {
    HubError::new(ErrorCode::BadRequest, format!("{method} is not allowed on {}", uri.path()))
}

/// The upload's sequence number from the path, or the one JSON error shape.
fn seq_of(path: Result<Path<u64>, PathRejection>) -> Result<u64, HubError> {
    path.map(|Path(seq)| seq).map_err(|e| HubError::new(ErrorCode::BadRequest, format!("bad path: {}", e.body_text())))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn auth(hub: &Hub, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Sender, HubError> {
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path());
    hub.authenticate(
        method.as_str(),
        pq,
        header(headers, HEADER_KEY),
        header(headers, HEADER_TIME),
        header(headers, HEADER_SIGNATURE),
        body,
    )
    .await
}

fn body_or_error(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, HubError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            HubError::new(
                ErrorCode::TooLarge,
                format!("request body is over the {limit}-byte limit; send large change sets through /v1/uploads"),
            )
        } else {
            HubError::new(ErrorCode::Malformed, format!("could not read the request body: {e}"))
        }
    })
}

async fn sync_state(
    State(hub): State<Arc<Hub>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<SyncState>, HubError> {
    let sender = auth(&hub, &method, &uri, &headers, b"").await?;
    Ok(Json(hub.sync_state(&sender).await?))
}

async fn push_changeset(
    State(hub): State<Arc<Hub>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PushOutcome>, HubError> {
    let body = body_or_error(body, hub.cfg.max_body_bytes)?;
    let sender = auth(&hub, &method, &uri, &headers, &body).await?;
    Ok(Json(hub.ingest(&sender, &body).await?))
}

#[derive(Deserialize)]
struct ChunkQuery {
    offset: u64,
    total: u64,
    /// With [`UPLOAD_HASH_PARAM`]: the piece's bytes are kept as far as they arrive.
    hash: Option<String>,
}

async fn put_chunk(
    State(hub): State<Arc<Hub>>,
    seq: Result<Path<u64>, PathRejection>,
    request: axum::extract::Request,
) -> Result<Json<ChunkAck>, HubError> {
    use axum::extract::FromRequest;
    let seq = seq_of(seq)?;
    let (method, uri, headers) = (request.method().clone(), request.uri().clone(), request.headers().clone());
    let q: ChunkQuery = serde_urlencoded_query(&uri)?;
    let limit = hub.cfg.max_body_bytes;
    let Some(hash) = q.hash else {
        let body = body_or_error(Bytes::from_request(request, &()).await, limit)?;
        let sender = auth(&hub, &method, &uri, &headers, &body).await?;
        return Ok(Json(hub.upload_chunk(&sender, seq, q.offset, q.total, &body).await?));
    };
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(HubError::new(ErrorCode::BadRequest, format!("{UPLOAD_HASH_PARAM} must be 64 hex digits")));
    }
    // Signed over the path alone: what arrives is bound by the hash (see UPLOAD_HASH_PARAM).
    let sender = auth(&hub, &method, &uri, &headers, b"").await?;
    let room = q.total.saturating_sub(q.offset).min(limit as u64) as usize;
    // Read and keep the piece on a task of its own: when the line drops mid-piece the
    // connection (and this handler with it) goes, but what arrived is still stored.
    let keep = tokio::spawn(async move {
        let piece = read_piece(request.into_body(), room).await?;
        hub.upload_piece(&sender, seq, q.offset, q.total, Some(&hash), &piece).await
    });
    let ack = keep.await.map_err(|e| HubError::new(ErrorCode::Internal, format!("the upload stopped: {e}")))??;
    Ok(Json(ack))
}

/// The bytes of a piece as far as they arrive (a body cut by the line ends early, not in an
/// error); more than `room` is refused.
async fn read_piece(body: axum::body::Body, room: usize) -> Result<Vec<u8>, HubError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut piece = Vec::new();
    while let Some(frame) = stream.next().await {
        let Ok(bytes) = frame else { break };
        if piece.len() + bytes.len() > room {
            return Err(HubError::new(
                ErrorCode::TooLarge,
                format!("the piece runs past the upload's declared total or the {room}-byte limit of one request"),
            ));
        }
        piece.extend_from_slice(&bytes);
    }
    Ok(piece)
}

fn serde_urlencoded_query<T: serde::de::DeserializeOwned>(uri: &Uri) -> Result<T, HubError> {
    Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| HubError::new(ErrorCode::BadRequest, format!("bad query string: {e}")))
}

async fn get_upload(
    State(hub): State<Arc<Hub>>,
    seq: Result<Path<u64>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<UploadState>, HubError> {
    let seq = seq_of(seq)?;
    let sender = auth(&hub, &method, &uri, &headers, b"").await?;
    Ok(Json(hub.upload_state(&sender, seq).await?))
}

#[derive(Deserialize)]
struct SinceQuery {
    #[serde(default)]
    since: u64,
    /// The most bytes of items the asker's line carries in one answer (optional).
    #[serde(default)]
    max_bytes: Option<usize>,
}

async fn feedback(
    State(hub): State<Arc<Hub>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<FeedbackPage>, HubError> {
    let sender = auth(&hub, &method, &uri, &headers, b"").await?;
    let q: SinceQuery = serde_urlencoded_query(&uri)?;
    Ok(Json(hub.feedback_page(&sender.region, q.since, q.max_bytes).await?))
}

#[derive(Deserialize)]
struct DigestQuery {
    year: u16,
}

async fn digest(
    State(hub): State<Arc<Hub>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<DigestReport>, HubError> {
    let sender = auth(&hub, &method, &uri, &headers, b"").await?;
    let q: DigestQuery = serde_urlencoded_query(&uri)?;
    Ok(Json(hub.digest(&sender.region, q.year).await?))
}

/// A prefecture filing an allocation it issued (备案): the chain from the province down.
async fn post_allocation(
    State(hub): State<Arc<Hub>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, HubError> {
    let body = body_or_error(body, hub.cfg.max_body_bytes)?;
    let sender = auth(&hub, &method, &uri, &headers, &body).await?;
    let chain: Vec<jianka_shared::allocation::SignedAllocation> = serde_json::from_slice(&body)
        .map_err(|e| HubError::new(ErrorCode::Malformed, format!("not an allocation chain: {e}")))?;
    let a = hub.receive_filing(&sender, &chain).await?;
    Ok(Json(serde_json::json!({"filed": a.region.to_string(), "serial": a.serial})))
}

async fn post_signoff(
    State(hub): State<Arc<Hub>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, HubError> {
    let body = body_or_error(body, hub.cfg.max_body_bytes)?;
    let sender = auth(&hub, &method, &uri, &headers, &body).await?;
    let signoff: SignOff = serde_json::from_slice(&body)
        .map_err(|e| HubError::new(ErrorCode::Malformed, format!("sign-off is not valid JSON: {e}")))?;
    hub.receive_signoff(&sender, signoff).await?;
    Ok(Json(serde_json::json!({"accepted": true})))
}
