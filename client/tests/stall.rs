//! A request's timeout is "no bytes moved for that long": an answer trickling in slower than the
//! timeout as a whole still arrives, and a line that goes silent is cut after the timeout.

use ed25519_dalek::SigningKey;
use jianka_client::{HubClient, HubError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A one-request server: reads the request head, then answers `body` a byte every `gap`, after
/// staying silent for `silence` first.
async fn trickling_server(body: &'static [u8], gap: Duration, silence: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut b).await.unwrap();
            if n == 0 {
                return;
            }
            head.extend_from_slice(&b[..n]);
        }
        tokio::time::sleep(silence).await;
        let start =
            format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len());
        if conn.write_all(start.as_bytes()).await.is_err() {
            return;
        }
        for byte in body {
            tokio::time::sleep(gap).await;
            if conn.write_all(&[*byte]).await.is_err() {
                return;
            }
        }
    });
    url
}

fn client(url: &str, timeout: Duration) -> HubClient {
    HubClient::new(url, SigningKey::from_bytes(&[7; 32]), Arc::new(|| 0), timeout, 0).unwrap()
}

#[tokio::test]
async fn an_answer_that_keeps_moving_arrives_though_it_takes_longer_than_the_timeout() {
    // 25 bytes, one every 80 ms: 2 s in all against a 500 ms timeout.
    let url = trickling_server(b"{\"received\":1,\"total\":2}", Duration::from_millis(80), Duration::ZERO).await;
    let started = Instant::now();
    let body = client(&url, Duration::from_millis(500)).once("GET", "/v1/uploads/1", b"").await.unwrap();
    assert_eq!(body, b"{\"received\":1,\"total\":2}");
    assert!(started.elapsed() > Duration::from_millis(1500), "it took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_line_that_goes_silent_is_cut_after_the_timeout() {
    let url = trickling_server(b"{}", Duration::ZERO, Duration::from_secs(30)).await;
    let started = Instant::now();
    let err = client(&url, Duration::from_millis(500)).once("GET", "/v1/uploads/1", b"").await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(&err, HubError::Transport { message, .. } if message.contains("no bytes moved")), "{err}");
    assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(3), "cut after {took:?}");
}
