//! Pieces the hub keeps as far as they arrive (`PUT /v1/uploads/{seq}?…&hash=H`, signed over the
//! path): a piece cut by the line mid-body is resumed where it was cut, and bytes that do not
//! belong to the announced envelope are never ingested. Sent over raw TCP where the line must cut.

#[macro_use]
mod common;
use common::*;
use jianka_shared::domain::Status;
use jianka_shared::protocol::*;
use tokio::io::AsyncWriteExt;

fn piece_path(seq: u64, offset: usize, total: usize, hash: &str) -> String {
    format!("/v1/uploads/{seq}?offset={offset}&total={total}&{UPLOAD_HASH_PARAM}={hash}")
}

/// Sends a path-signed PUT of `piece` but lets only its first `delivered` bytes cross, then
/// drops the connection, as a line that goes dead mid-piece.
async fn cut_put(hub: &TestHub, node: &Node, path: &str, piece: &[u8], delivered: usize) {
    let sig = sign_headers(&node.key, "PUT", path, b"", node.now);
    let key = jianka_shared::trust::KeyId::of(&node.key.verifying_key());
    let addr = hub.url.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nhost: {addr}\r\n{HEADER_KEY}: {key}\r\n{HEADER_TIME}: {}\r\n{HEADER_SIGNATURE}: {sig}\r\n\
         content-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
        node.now,
        piece.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&piece[..delivered]).await.unwrap();
    tcp.flush().await.unwrap();
    // Let the hub read what crossed before the line drops.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(tcp);
}

/// `body` sent with a signature over the path alone (an empty body in the signature).
async fn path_signed_as(node: &Node, method: reqwest::Method, path: &str, body: &[u8]) -> Answer {
    let sig = sign_headers(&node.key, method.as_str(), path, b"", node.now);
    let resp = node
        .client
        .request(method, format!("{}{path}", node.url))
        .header(HEADER_KEY, jianka_shared::trust::KeyId::of(&node.key.verifying_key()).to_string())
        .header(HEADER_TIME, node.now.to_string())
        .header(HEADER_SIGNATURE, sig)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    Answer { status: resp.status().as_u16(), body: resp.bytes().await.unwrap().to_vec() }
}

async fn path_signed(node: &Node, path: &str, body: &[u8]) -> Answer {
    path_signed_as(node, reqwest::Method::PUT, path, body).await
}

async fn received(node: &Node, seq: u64) -> u64 {
    let st: UploadState = node.request("GET", &format!("/v1/uploads/{seq}"), vec![]).await.json();
    st.received
}

async fn a_piece_cut_mid_body_is_kept_and_resumed_where_it_was_cut(pg: bool) {
    let s = setup(pg, 1_000, &[]).await;
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let mut ops = Vec::new();
    for no in 1..=40 {
        ops.extend(ops_of(&household("420322105200", no, 3, no, Status::Applied), 5));
    }
    let bytes = node.seal(ops);
    let hash = hex::encode(jianka_shared::changeset::envelope_hash(&bytes));
    let total = bytes.len();
    // The whole envelope as one piece, of which the line carries 60 % before it drops.
    let crossed = total * 6 / 10;
    cut_put(&s.county, &node, &piece_path(1, 0, total, &hash), &bytes, crossed).await;
    // The hub stores the cut piece once it sees the connection gone: shortly after, not at once.
    let mut held = 0;
    for _ in 0..50 {
        held = received(&node, 1).await;
        if held > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(held, crossed as u64, "what crossed before the cut is kept");
    // The sender sends only the rest.
    let ack: ChunkAck = path_signed(&node, &piece_path(1, crossed, total, &hash), &bytes[crossed..]).await.json();
    assert!(matches!(ack.outcome, Some(PushOutcome::Accepted { seq: 1, .. })), "{:?}", ack.outcome);
    let held = s.county.hub.records_in(&r("420322"), 2014).await.unwrap();
    assert_eq!(held.len(), 40 * 4, "every household and member of the envelope, once");
}
both_backends!(a_piece_cut_mid_body_is_kept_and_resumed_where_it_was_cut, cut_piece_sqlite, cut_piece_postgres);

async fn bytes_that_are_not_the_announced_envelope_are_never_ingested(pg: bool) {
    let s = setup(pg, 1_000, &[]).await;
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let bytes = node.seal(ops_of(&household("420322105200", 1, 3, 1, Status::Applied), 5));
    let hash = hex::encode(jianka_shared::changeset::envelope_hash(&bytes));
    let total = bytes.len();
    let half = total / 2;
    // A man in the middle swaps the second half of the body; the signed path is untouched.
    let mut forged = bytes[half..].to_vec();
    forged.iter_mut().for_each(|b| *b ^= 0x5a);
    let first: ChunkAck = path_signed(&node, &piece_path(1, 0, total, &hash), &bytes[..half]).await.json();
    assert_eq!(first.received, half as u64);
    let refused = path_signed(&node, &piece_path(1, half, total, &hash), &forged).await;
    assert_eq!(refused.status, 400, "{}", String::from_utf8_lossy(&refused.body));
    assert_eq!(refused.code(), ErrorCode::BadRequest);
    let message = refused.json::<ApiError>().message;
    assert!(message.contains("do not hash to") && message.contains("send it again"), "{message}");
    assert_eq!(received(&node, 1).await, 0, "the mixed upload is dropped");
    assert!(s.county.hub.records_in(&r("420322"), 2014).await.unwrap().is_empty(), "nothing ingested");
    // Sent again honestly, it goes in.
    let ack: ChunkAck = path_signed(&node, &piece_path(1, 0, total, &hash), &bytes).await.json();
    assert!(matches!(ack.outcome, Some(PushOutcome::Accepted { seq: 1, .. })), "{:?}", ack.outcome);
}
both_backends!(
    bytes_that_are_not_the_announced_envelope_are_never_ingested,
    forged_piece_sqlite,
    forged_piece_postgres
);

#[tokio::test]
async fn a_signature_over_the_path_alone_opens_nothing_but_hashed_pieces() {
    let s = setup(false, 1_000, &[]).await;
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let bytes = node.seal(ops_of(&household("420322105200", 1, 3, 1, Status::Applied), 5));
    let total = bytes.len();
    // A whole change set posted with a signature over an empty body.
    let posted = path_signed_as(&node, reqwest::Method::POST, "/v1/changesets", &bytes).await;
    assert_eq!(posted.status, 401, "the body must be signed outside hashed pieces");
    // A piece without the hash: its body must be signed too.
    let plain = path_signed(&node, &format!("/v1/uploads/1?offset=0&total={total}"), &bytes).await;
    assert_eq!(plain.status, 401);
    // A hash that is not 64 hex digits.
    let bad = path_signed(&node, &piece_path(1, 0, total, "zz"), &bytes).await;
    assert_eq!((bad.status, bad.code()), (400, ErrorCode::BadRequest));
    // A piece over the declared total.
    let hash = hex::encode(jianka_shared::changeset::envelope_hash(&bytes));
    let over = path_signed(&node, &piece_path(1, 0, total - 1, &hash), &bytes).await;
    assert_eq!(over.status, 413, "{}", String::from_utf8_lossy(&over.body));
    assert!(s.county.hub.records_in(&r("420322"), 2014).await.unwrap().is_empty());
    // An unenrolled key gets nothing kept.
    let stranger = Node { key: ed25519_dalek::SigningKey::from_bytes(&[99; 32]), ..node };
    let refused = path_signed(&stranger, &piece_path(1, 0, total, &hash), &bytes).await;
    assert_eq!(refused.status, 401);
}
