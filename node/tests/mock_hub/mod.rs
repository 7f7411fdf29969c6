//! A small in-process county hub speaking the node protocol, with fault knobs, so the node's
//! sync can be tested on its own (the real hub is tested against the node in tests/).
#![allow(dead_code, clippy::result_large_err)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use ed25519_dalek::VerifyingKey;
use jianka_shared::changeset::{Limits, Op, envelope_hash, open};
use jianka_shared::digest::{SetDigest, record_digest};
use jianka_shared::protocol::*;
use jianka_shared::record::{Record, RecordKey};
use jianka_shared::trust::verify_request;
use jianka_shared::{RegionCode, Year};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The county key this stand-in signs feedback with (and the province root that certifies it).
pub fn county_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[2; 32])
}

pub fn province_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[1; 32])
}

/// The chain a township enrolled at this county holds: province root → county → township.
pub fn chain_for(township: &RegionCode, key: &VerifyingKey) -> Vec<jianka_shared::trust::Certificate> {
    use jianka_shared::trust::Certificate;
    let (root, county) = (province_key(), county_key());
    let p = RegionCode::parse(&township.as_str()[..2]).unwrap();
    let c = RegionCode::parse(&township.as_str()[..6]).unwrap();
    let from = chrono::NaiveDate::from_ymd_opt(2014, 1, 1).unwrap();
    let until = chrono::NaiveDate::from_ymd_opt(2030, 1, 1).unwrap();
    vec![
        Certificate::issue(&p, &root, &p, &root.verifying_key(), from, until),
        Certificate::issue(&p, &root, &c, &county.verifying_key(), from, until),
        Certificate::issue(&c, &county, township, key, from, until),
    ]
}

#[derive(Default)]
pub struct HubState {
    pub envelopes: BTreeMap<u64, Vec<u8>>,
    pub records: BTreeMap<RecordKey, BTreeMap<String, String>>,
    pub uploads: HashMap<u64, (u64, Vec<u8>)>,
    pub feedback: Vec<Feedback>,
    pub cycle: Vec<CycleInfo>,
    /// Fail this many next requests with 503 (any route but health).
    pub fail_next: u32,
    /// Store each chunk but answer 500 for every n-th PUT (a cut answer).
    pub cut_every_nth_put: u32,
    pub puts: u32,
    pub posts: u32,
    /// Sign feedback pages with this key instead of the county's (a man in the middle).
    pub forged_by: Option<ed25519_dalek::SigningKey>,
}

#[derive(Clone)]
pub struct Hub {
    pub state: Arc<Mutex<HubState>>,
    pub node_key: VerifyingKey,
    pub origin: RegionCode,
}

fn err(status: StatusCode, code: ErrorCode, m: &str) -> Response {
    (status, axum::Json(ApiError { code, message: m.into() })).into_response()
}

impl Hub {
    fn check(&self, method: &str, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<(), Response> {
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let time: i64 = h(HEADER_TIME).parse().unwrap_or(0);
        let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
        if !verify_request(&self.node_key, method, pq, body, time, &h(HEADER_SIGNATURE)) {
            return Err(err(StatusCode::UNAUTHORIZED, ErrorCode::BadSignature, "bad signature"));
        }
        let mut s = self.state.lock().unwrap();
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return Err(err(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Internal, "injected failure"));
        }
        Ok(())
    }

    fn expected(s: &HubState) -> u64 {
        s.envelopes.keys().next_back().map(|k| k + 1).unwrap_or(1)
    }

    pub fn ingest(&self, bytes: &[u8]) -> Result<PushOutcome, Response> {
        let cs = open(bytes, &self.node_key, Limits::default())
            .map_err(|e| err(StatusCode::BAD_REQUEST, ErrorCode::Malformed, &e.to_string()))?;
        let mut s = self.state.lock().unwrap();
        let seq = cs.header.seq;
        if let Some(held) = s.envelopes.get(&seq) {
            return if held == bytes {
                Ok(PushOutcome::Duplicate { seq })
            } else {
                Err(err(StatusCode::CONFLICT, ErrorCode::Equivocation, "different bytes for a held seq"))
            };
        }
        let expected = Self::expected(&s);
        if seq != expected {
            return Ok(PushOutcome::Gap { expected });
        }
        let prev = s.envelopes.get(&(seq - 1)).map(|b| envelope_hash(b)).unwrap_or([0; 32]);
        if cs.header.prev_hash != prev {
            return Err(err(StatusCode::CONFLICT, ErrorCode::BrokenChain, "prev_hash"));
        }
        for op in &cs.ops {
            match op {
                Op::Upsert { key, fields } => {
                    let r = s.records.entry(key.clone()).or_default();
                    for f in fields {
                        r.insert(f.name.to_string(), f.value.to_string());
                    }
                }
                Op::Delete { key, .. } => {
                    s.records.remove(key);
                }
            }
        }
        s.envelopes.insert(seq, bytes.to_vec());
        s.feedback.push(Feedback::Ack { seq });
        Ok(PushOutcome::Accepted { seq, applied: cs.ops.len() as u64, rejected: vec![] })
    }

    /// A county decision: applied here and reported to the node.
    pub fn correct(&self, key: RecordKey, field: &str, value: &str) {
        let mut s = self.state.lock().unwrap();
        s.records.entry(key.clone()).or_default().insert(field.into(), value.into());
        let version = jianka_shared::Hlc::new(1_900_000_000_000, 0);
        let values = vec![(field.to_string(), value.to_string())];
        s.feedback
            .push(Feedback::Corrections { items: vec![jianka_shared::protocol::Correction { key, values, version }] });
    }

    pub fn digest(&self, year: Year) -> DigestReport {
        let s = self.state.lock().unwrap();
        let mut set = SetDigest::default();
        let mut records = Vec::new();
        for (k, f) in s.records.iter().filter(|(k, _)| k.year == year) {
            let d = record_digest(&Record { key: k.clone(), fields: f.clone() });
            set.add(&d);
            records.push((k.clone(), hex::encode(d)));
        }
        DigestReport { scope: self.origin.clone(), year, count: set.count, digest: set.hex(), records }
    }

    pub fn sync_state(&self) -> SyncState {
        let s = self.state.lock().unwrap();
        let expected = Self::expected(&s);
        let last_hash =
            s.envelopes.get(&(expected - 1)).map(|b| hex::encode(envelope_hash(b))).unwrap_or("0".repeat(64));
        SyncState {
            origin: self.origin.clone(),
            expected_seq: expected,
            last_hash,
            cycle: s.cycle.clone(),
            hub_time: 0,
        }
    }

    pub fn feedback_page(&self, since: u64) -> FeedbackPage {
        let s = self.state.lock().unwrap();
        let items: Vec<FeedbackEntry> = s
            .feedback
            .iter()
            .enumerate()
            .map(|(i, f)| FeedbackEntry { id: i as u64 + 1, item: f.clone() })
            .filter(|e| e.id > since)
            .collect();
        let next = items.last().map(|e| e.id).unwrap_or(since);
        let mut page = FeedbackPage { items, next, signed_by: String::new(), signature: String::new() };
        page.sign(s.forged_by.as_ref().unwrap_or(&county_key()), &self.origin, since);
        page
    }
}

async fn state(State(hub): State<Hub>, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(r) = hub.check("GET", &uri, &headers, b"") {
        return r;
    }
    axum::Json(hub.sync_state()).into_response()
}

async fn changesets(State(hub): State<Hub>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = hub.check("POST", &uri, &headers, &body) {
        return r;
    }
    hub.state.lock().unwrap().posts += 1;
    match hub.ingest(&body) {
        Ok(o) => axum::Json(o).into_response(),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
struct ChunkQ {
    offset: u64,
    total: u64,
    hash: Option<String>,
}

async fn put_chunk(
    State(hub): State<Hub>,
    Path(seq): Path<u64>,
    Query(q): Query<ChunkQ>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // A piece with the envelope's hash is signed over its path alone (as the real hub takes it).
    let signed_over: &[u8] = if q.hash.is_some() { b"" } else { &body };
    if let Err(r) = hub.check("PUT", &uri, &headers, signed_over) {
        return r;
    }
    let (received, done, cut) = {
        let mut s = hub.state.lock().unwrap();
        s.puts += 1;
        let cut = s.cut_every_nth_put > 0 && s.puts % s.cut_every_nth_put == 0;
        let up = s.uploads.entry(seq).or_insert((q.total, Vec::new()));
        if q.offset == up.1.len() as u64 {
            up.1.extend_from_slice(&body);
        }
        let received = up.1.len() as u64;
        let done = (received == up.0).then(|| up.1.clone());
        (received, done, cut)
    };
    let outcome = match done {
        Some(bytes) => match hub.ingest(&bytes) {
            Ok(o) => Some(o),
            Err(r) => return r,
        },
        None => None,
    };
    if cut {
        return err(StatusCode::BAD_GATEWAY, ErrorCode::Internal, "answer lost");
    }
    axum::Json(ChunkAck { received, total: q.total, outcome }).into_response()
}

async fn get_upload(State(hub): State<Hub>, Path(seq): Path<u64>, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(r) = hub.check("GET", &uri, &headers, b"") {
        return r;
    }
    let s = hub.state.lock().unwrap();
    let (total, received) = s.uploads.get(&seq).map(|(t, b)| (*t, b.len() as u64)).unwrap_or((0, 0));
    axum::Json(UploadState { received, total }).into_response()
}

#[derive(serde::Deserialize)]
struct SinceQ {
    since: u64,
}

async fn feedback(State(hub): State<Hub>, Query(q): Query<SinceQ>, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(r) = hub.check("GET", &uri, &headers, b"") {
        return r;
    }
    axum::Json(hub.feedback_page(q.since)).into_response()
}

#[derive(serde::Deserialize)]
struct YearQ {
    year: Year,
}

async fn digest(State(hub): State<Hub>, Query(q): Query<YearQ>, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(r) = hub.check("GET", &uri, &headers, b"") {
        return r;
    }
    axum::Json(hub.digest(q.year)).into_response()
}

/// Serves the mock hub on a loopback port; returns its base URL.
pub async fn serve(hub: Hub) -> String {
    let app = Router::new()
        .route("/v1/health", get(|| async { "ok" }))
        .route("/v1/sync/state", get(state))
        .route("/v1/changesets", post(changesets))
        .route("/v1/uploads/{seq}", put(put_chunk).get(get_upload))
        .route("/v1/feedback", get(feedback))
        .route("/v1/digest", get(digest))
        .with_state(hub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}
