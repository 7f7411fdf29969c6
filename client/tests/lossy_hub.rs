//! The retry and resume logic against a hub stand-in on loopback that loses requests, some
//! before doing anything and some after doing the work (the answer lost on the way back).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ed25519_dalek::SigningKey;
use jianka_client::{HubClient, HubError, Pace, Sizes};
use jianka_shared::RegionCode;
use jianka_shared::protocol::{ApiError, ChunkAck, ErrorCode, PushOutcome, SyncState, UploadState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What happens to the n-th request.
#[derive(Clone, Copy, PartialEq)]
enum Fate {
    Pass,
    /// Refused before the hub did anything.
    LostBefore,
    /// Done, then the answer lost.
    LostAfter,
}

#[derive(Default)]
struct Fake {
    requests: u64,
    /// Which requests (by number, from 1) are lost, and how.
    losses: HashMap<u64, Fate>,
    /// Every request refused with this, after the losses.
    refuse: Option<ApiError>,
    expected_seq: u64,
    applied: Vec<Vec<u8>>,
    upload: Vec<u8>,
    upload_total: u64,
    posts: u64,
    /// Bodies that reached the hub, lost or not: what crossed the line.
    body_bytes: u64,
}

type Shared = Arc<Mutex<Fake>>;

fn fate(st: &Shared) -> Fate {
    let mut f = st.lock().unwrap();
    f.requests += 1;
    f.losses.get(&f.requests).copied().unwrap_or(Fate::Pass)
}

fn lost() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "lost").into_response()
}

fn answer<T: serde::Serialize>(fate: Fate, value: &T) -> Response {
    match fate {
        Fate::LostAfter => lost(),
        _ => axum::Json(value).into_response(),
    }
}

async fn sync_state(State(st): State<Shared>) -> Response {
    let fate = fate(&st);
    if fate == Fate::LostBefore {
        return lost();
    }
    let f = st.lock().unwrap();
    let state = SyncState {
        origin: RegionCode::parse("420322105").unwrap(),
        expected_seq: f.expected_seq,
        last_hash: String::new(),
        cycle: Vec::new(),
        hub_time: 0,
    };
    answer(fate, &state)
}

fn apply(f: &mut Fake, bytes: Vec<u8>) -> PushOutcome {
    let seq = f.expected_seq;
    f.applied.push(bytes);
    f.expected_seq += 1;
    PushOutcome::Accepted { seq, applied: 1, rejected: Vec::new() }
}

async fn post_changeset(State(st): State<Shared>, body: axum::body::Bytes) -> Response {
    st.lock().unwrap().body_bytes += body.len() as u64;
    let fate = fate(&st);
    if fate == Fate::LostBefore {
        return lost();
    }
    let mut f = st.lock().unwrap();
    if let Some(e) = &f.refuse {
        let e = ApiError { code: e.code, message: e.message.clone() };
        return (StatusCode::FORBIDDEN, axum::Json(e)).into_response();
    }
    f.posts += 1;
    let outcome = apply(&mut f, body.to_vec());
    answer(fate, &outcome)
}

async fn upload_state(State(st): State<Shared>, Path(_seq): Path<u64>) -> Response {
    let fate = fate(&st);
    if fate == Fate::LostBefore {
        return lost();
    }
    let f = st.lock().unwrap();
    answer(fate, &UploadState { received: f.upload.len() as u64, total: f.upload_total })
}

async fn put_piece(
    State(st): State<Shared>,
    Path(_seq): Path<u64>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    st.lock().unwrap().body_bytes += body.len() as u64;
    let fate = fate(&st);
    if fate == Fate::LostBefore {
        return lost();
    }
    let mut f = st.lock().unwrap();
    let number = |name: &str| q[name].parse::<u64>().unwrap();
    let (offset, total) = (number("offset"), number("total"));
    if f.upload_total != total {
        f.upload = Vec::new();
        f.upload_total = total;
    }
    // As the hub does: a piece at the wrong offset is ignored; bytes already held are skipped.
    let held = f.upload.len() as u64;
    if offset <= held && offset + body.len() as u64 > held {
        let skip = (held - offset) as usize;
        f.upload.extend_from_slice(&body[skip..]);
    }
    let received = f.upload.len() as u64;
    let outcome = (received == total).then(|| {
        let whole = std::mem::take(&mut f.upload);
        f.upload_total = 0;
        apply(&mut f, whole)
    });
    answer(fate, &ChunkAck { received, total, outcome })
}

async fn start(fake: Fake) -> (HubClient, Shared) {
    let st: Shared = Arc::new(Mutex::new(Fake { expected_seq: 1, ..fake }));
    let app = Router::new()
        .route("/v1/sync/state", get(sync_state))
        .route("/v1/changesets", post(post_changeset))
        .route("/v1/uploads/{seq}", get(upload_state).put(put_piece))
        .with_state(st.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let key = SigningKey::from_bytes(&[7; 32]);
    let client = HubClient::new(&format!("http://{addr}"), key, Arc::new(|| 0), Duration::from_secs(10), 6).unwrap();
    (client, st)
}

/// Bytes that do not compress into a pattern the test could pass by accident.
fn envelope(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

#[tokio::test]
async fn an_upload_losing_three_requests_in_ten_resumes_and_resends_little() {
    // Requests 2, 5, 12, 15, … lost before, 9, 19, … lost after: 30 % of them.
    let losses = (1..400u64)
        .filter_map(|n| match n % 10 {
            2 | 5 => Some((n, Fate::LostBefore)),
            9 => Some((n, Fate::LostAfter)),
            _ => None,
        })
        .collect();
    let (client, st) = start(Fake { losses, ..Fake::default() }).await;
    let bytes = envelope(300_000);
    let mut pace = Pace::from_rate(None);
    let sizes = Sizes { threshold: 64 * 1024, max_piece: 32 * 1024 };
    let heard = Mutex::new(Vec::new());
    let outcome = client.push(1, &bytes, &mut pace, sizes, |n| heard.lock().unwrap().push(n)).await.unwrap();
    assert!(matches!(outcome, PushOutcome::Accepted { seq: 1, .. } | PushOutcome::Duplicate { seq: 1 }), "{outcome:?}");
    let f = st.lock().unwrap();
    assert_eq!(f.applied, vec![bytes.clone()], "the hub holds the envelope exactly once, byte for byte");
    assert!(f.requests > 10, "the line was measured and the envelope cut: {} requests", f.requests);
    // A lost piece is sent again; a piece whose answer was lost is not (the hub is asked first).
    let ratio = f.body_bytes as f64 / bytes.len() as f64;
    assert!(ratio < 1.5, "sent {} bytes for {} ({ratio:.2})", f.body_bytes, bytes.len());
    let heard = heard.lock().unwrap();
    assert!(heard.windows(2).all(|w| w[0] <= w[1]) && heard.last().is_some(), "progress only moves on");
    assert!(pace.rate().is_some(), "the pace was measured");
}

#[tokio::test]
async fn a_whole_change_set_whose_answer_was_lost_is_not_sent_again() {
    let losses = HashMap::from([(1, Fate::LostAfter)]);
    let (client, st) = start(Fake { losses, ..Fake::default() }).await;
    let bytes = envelope(5_000);
    // A fast line already measured: the envelope goes whole.
    let mut pace = Pace::from_rate(Some(10_000_000.0));
    let sizes = Sizes { threshold: 64 * 1024, max_piece: 32 * 1024 };
    let outcome = client.push(1, &bytes, &mut pace, sizes, |_| {}).await.unwrap();
    assert_eq!(outcome, PushOutcome::Duplicate { seq: 1 }, "the sync state told the hub had applied it");
    let f = st.lock().unwrap();
    assert_eq!((f.posts, f.applied.len()), (1, 1), "one POST, applied once");
}

#[tokio::test]
async fn a_refusal_is_not_retried() {
    let refuse = ApiError { code: ErrorCode::RevokedKey, message: "key revoked".into() };
    let (client, st) = start(Fake { refuse: Some(refuse), ..Fake::default() }).await;
    let mut pace = Pace::from_rate(Some(10_000_000.0));
    let sizes = Sizes { threshold: 64 * 1024, max_piece: 32 * 1024 };
    let err = client.push(1, &envelope(3_000), &mut pace, sizes, |_| {}).await.unwrap_err();
    assert!(matches!(err, HubError::Refused { status: 403, .. }) && !err.retryable(), "{err}");
    assert_eq!(err.code(), Some(ErrorCode::RevokedKey));
    assert_eq!(st.lock().unwrap().requests, 1, "refused once, not asked again");
}
