//! A fault-injecting HTTP/1.1 proxy for tests: the unreliable township link.
//!
//! It reads each request whole, then, by a seeded die, drops it (closes without forwarding),
//! forwards it and cuts the response mid-body, forwards it twice (a duplicated delivery), delays
//! it, or passes it through. Faults are per request, not per connection, so "30% of requests
//! lost" means what it says even over keep-alive. It can also be partitioned (refuse everything).
//!
//! With `bytes_per_sec` it is a slow line instead: bytes cross in both directions at the line's
//! rate as they are sent, so the hub sees a request arrive a little at a time, and a lost request
//! is cut part-way through its body (the line went dead), a cut answer part-way through its own.

use rand::{Rng, SeedableRng, rngs::StdRng};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Close the connection without forwarding the request.
    pub drop_request: f64,
    /// Forward, then deliver only part of the response and close.
    pub cut_response: f64,
    /// Forward the request twice; the client sees the first answer.
    pub duplicate: f64,
    /// Hold the response back this long (with probability `delay_prob`).
    pub delay: Duration,
    pub delay_prob: f64,
    /// A slow line: every request and every response takes its length ÷ this to cross.
    pub bytes_per_sec: Option<u64>,
    /// A man in the middle: every occurrence of the first bytes in a response is replaced by the
    /// second (of the same length, so the framing still holds).
    pub rewrite: Option<(Vec<u8>, Vec<u8>)>,
}

impl Faults {
    pub fn clean() -> Faults {
        Faults::default()
    }

    /// Loses `p` of all requests, half before the hub sees them and half after (response cut).
    pub fn lossy(p: f64) -> Faults {
        Faults { drop_request: p / 2.0, cut_response: p / 2.0, ..Faults::default() }
    }

    pub fn chaos() -> Faults {
        Faults {
            drop_request: 0.15,
            cut_response: 0.15,
            duplicate: 0.15,
            delay: Duration::from_millis(20),
            delay_prob: 0.2,
            bytes_per_sec: None,
            rewrite: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub dropped: AtomicU64,
    pub cut: AtomicU64,
    pub duplicated: AtomicU64,
    /// Bytes that crossed the link in both directions, as the client sent and received them.
    pub bytes: AtomicU64,
    /// One line per request (`fate method path request-bytes response-bytes`), for diagnosing a run.
    pub log: Mutex<Vec<String>>,
}

struct Shared {
    upstream: SocketAddr,
    faults: Mutex<Faults>,
    rng: Mutex<StdRng>,
    partitioned: AtomicBool,
    stats: Stats,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr, faults: Faults, seed: u64) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::new(faults),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            partitioned: AtomicBool::new(false),
            stats: Stats::default(),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let slow = s.faults.lock().expect("lock").bytes_per_sec.is_some();
                    let _ = if slow { serve_line(conn, s).await } else { serve(conn, s).await };
                });
            }
        });
        Ok(FaultProxy { addr, shared, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_faults(&self, f: Faults) {
        *self.shared.faults.lock().expect("lock") = f;
    }

    /// While partitioned every connection is closed at once.
    pub fn set_partitioned(&self, on: bool) {
        self.shared.partitioned.store(on, Ordering::SeqCst);
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }
}

enum Fate {
    Drop,
    Cut(f64),
    Duplicate,
    Pass,
}

async fn serve(mut client: TcpStream, s: Arc<Shared>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        if s.partitioned.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Some(request) = read_message(&mut client, &mut buf, true).await? else { return Ok(()) };
        s.stats.requests.fetch_add(1, Ordering::Relaxed);
        let (fate, delay) = roll(&s);
        s.stats.bytes.fetch_add(request.len() as u64, Ordering::Relaxed);
        let line = String::from_utf8_lossy(&request[..request.len().min(120)]).lines().next().unwrap_or("").to_string();
        let note = |fate: &str, resp: usize| {
            if let Ok(mut log) = s.stats.log.lock() {
                log.push(format!("{fate} {line} {} {resp}", request.len()));
            }
        };
        let line_rate = s.faults.lock().expect("lock").bytes_per_sec;
        let cross = |n: usize| line_rate.map(|r| Duration::from_secs_f64(n as f64 / r.max(1) as f64));
        if let Some(d) = cross(request.len()) {
            tokio::time::sleep(d).await;
        }
        if let Fate::Drop = fate {
            note("drop", 0);
            s.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let mut response = forward(s.upstream, &request).await?;
        let rewrite = s.faults.lock().expect("lock").rewrite.clone();
        if let Some((from, to)) = rewrite.filter(|(f, t)| f.len() == t.len() && !f.is_empty()) {
            let mut at = 0;
            while let Some(i) = find(&response[at..], &from) {
                response[at + i..at + i + to.len()].copy_from_slice(&to);
                at += i + to.len();
            }
        }
        if let Fate::Duplicate = fate {
            s.stats.duplicated.fetch_add(1, Ordering::Relaxed);
            let _ = forward(s.upstream, &request).await;
        }
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if let Some(d) = cross(response.len()) {
            tokio::time::sleep(d).await;
        }
        if let Fate::Cut(frac) = fate {
            s.stats.cut.fetch_add(1, Ordering::Relaxed);
            let n = (response.len() as f64 * frac) as usize;
            note("cut", n);
            s.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
            client.write_all(&response[..n]).await?;
            return Ok(());
        }
        s.stats.bytes.fetch_add(response.len() as u64, Ordering::Relaxed);
        note("pass", response.len());
        client.write_all(&response).await?;
    }
}

/// The fate of the next request (and its delay), by the seeded die.
fn roll(s: &Shared) -> (Fate, Option<Duration>) {
    let f = s.faults.lock().expect("lock").clone();
    let mut rng = s.rng.lock().expect("lock");
    let roll: f64 = rng.random();
    let fate = if roll < f.drop_request {
        Fate::Drop
    } else if roll < f.drop_request + f.cut_response {
        Fate::Cut(rng.random_range(0.0..0.9))
    } else if roll < f.drop_request + f.cut_response + f.duplicate {
        Fate::Duplicate
    } else {
        Fate::Pass
    };
    let delay = (rng.random::<f64>() < f.delay_prob).then_some(f.delay);
    (fate, delay)
}

/// Bytes onto a line of `rate` bytes/s, a small slice at a time, as they would cross it.
struct Pacer {
    rate: f64,
    started: std::time::Instant,
    sent: u64,
}

impl Pacer {
    const SLICE: usize = 256;

    fn new(rate: u64) -> Pacer {
        Pacer { rate: rate.max(1) as f64, started: std::time::Instant::now(), sent: 0 }
    }

    async fn send(&mut self, to: &mut TcpStream, bytes: &[u8], stats: &Stats) -> std::io::Result<()> {
        for slice in bytes.chunks(Self::SLICE) {
            to.write_all(slice).await?;
            self.sent += slice.len() as u64;
            stats.bytes.fetch_add(slice.len() as u64, Ordering::Relaxed);
            let due = self.started + Duration::from_secs_f64(self.sent as f64 / self.rate);
            tokio::time::sleep_until(due.into()).await;
        }
        Ok(())
    }
}

/// The slow line: each request's head and body stream to the hub at the line's rate as the
/// client sends them, then the answer streams back at the same rate. A lost request is cut
/// part-way through its body; a cut answer part-way through its own.
async fn serve_line(mut client: TcpStream, s: Arc<Shared>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        if s.partitioned.load(Ordering::SeqCst) {
            return Ok(());
        }
        let head_end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p + 4;
            }
            if !fill(&mut client, &mut buf).await? {
                return Ok(());
            }
        };
        let head: Vec<u8> = buf.drain(..head_end).collect();
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let body_len = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        s.stats.requests.fetch_add(1, Ordering::Relaxed);
        let (fate, delay) = roll(&s);
        let rate = s.faults.lock().expect("lock").bytes_per_sec.unwrap_or(u64::MAX);
        let line_of = String::from_utf8_lossy(&head[..head.len().min(120)]).lines().next().unwrap_or("").to_string();
        let note = |fate: &str, req: usize, resp: usize| {
            if let Ok(mut log) = s.stats.log.lock() {
                log.push(format!("{fate} {line_of} {req} {resp}"));
            }
        };
        // Where a lost request's line goes dead: part-way through its body (or its head, if it has none).
        let dies_at = match fate {
            Fate::Drop => Some((body_len as f64 * s.rng.lock().expect("lock").random_range(0.0..0.9)) as usize),
            _ => None,
        };
        if dies_at.is_some() && body_len == 0 {
            // A request without a body is lost before the hub sees it.
            s.stats.dropped.fetch_add(1, Ordering::Relaxed);
            note("drop", 0, 0);
            return Ok(());
        }
        let mut line = Pacer::new(rate);
        let mut up = TcpStream::connect(s.upstream).await?;
        line.send(&mut up, &head, &s.stats).await?;
        let mut sent = 0usize;
        while sent < body_len {
            if dies_at.is_some_and(|d| sent >= d) {
                break;
            }
            if buf.is_empty() && !fill(&mut client, &mut buf).await? {
                return Ok(());
            }
            let mut n = buf.len().min(body_len - sent);
            if let Some(d) = dies_at {
                n = n.min(d - sent);
            }
            line.send(&mut up, &buf[..n], &s.stats).await?;
            buf.drain(..n);
            sent += n;
        }
        if dies_at.is_some() {
            s.stats.dropped.fetch_add(1, Ordering::Relaxed);
            note("drop", head.len() + sent, 0);
            return Ok(());
        }
        let Some(response) = read_message(&mut up, &mut Vec::new(), false).await? else { return Err(eof()) };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let deliver = match fate {
            Fate::Cut(frac) => (response.len() as f64 * frac) as usize,
            _ => response.len(),
        };
        line.send(&mut client, &response[..deliver], &s.stats).await?;
        if deliver < response.len() {
            s.stats.cut.fetch_add(1, Ordering::Relaxed);
            note("cut", head.len() + sent, deliver);
            return Ok(());
        }
        note("pass", head.len() + sent, deliver);
    }
}

/// Sends one request on a fresh upstream connection and reads the whole response.
async fn forward(upstream: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(request).await?;
    let mut buf = Vec::new();
    match read_message(&mut up, &mut buf, false).await? {
        Some(r) => Ok(r),
        None => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "upstream closed")),
    }
}

/// Reads one HTTP/1.1 message (head + Content-Length or chunked body) from `conn`, keeping any
/// bytes past it in `buf` for the next message. `None` on a clean close before a message starts.
async fn read_message(conn: &mut TcpStream, buf: &mut Vec<u8>, is_request: bool) -> std::io::Result<Option<Vec<u8>>> {
    let head_end = loop {
        if let Some(p) = find(buf, b"\r\n\r\n") {
            break p + 4;
        }
        if !fill(conn, buf).await? {
            return if buf.is_empty() { Ok(None) } else { Err(eof()) };
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let content_length =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.lines().any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    let total = if let Some(n) = content_length {
        head_end + n
    } else if chunked {
        loop {
            if let Some(end) = chunked_end(&buf[head_end..]) {
                break head_end + end;
            }
            if !fill(conn, buf).await? {
                return Err(eof());
            }
        }
    } else if is_request || head.starts_with("http/1.1 204") || head.starts_with("http/1.1 304") {
        head_end
    } else {
        // No length: the body runs to the end of the connection.
        while fill(conn, buf).await? {}
        buf.len()
    };
    while buf.len() < total {
        if !fill(conn, buf).await? {
            return Err(eof());
        }
    }
    let msg = buf[..total].to_vec();
    buf.drain(..total);
    Ok(Some(msg))
}

fn eof() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed mid-message")
}

async fn fill(conn: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    let n = conn.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Length of a complete chunked body at the start of `b`, if all of it is there.
fn chunked_end(b: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let line_end = pos + find(&b[pos..], b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[pos..line_end]).ok()?.split(';').next()?.trim(), 16).ok()?;
        pos = line_end + 2;
        if size == 0 {
            // Trailers end with an empty line.
            let end = pos + find(&b[pos..], b"\r\n")?;
            return Some(end + 2);
        }
        pos += size + 2;
        if pos > b.len() {
            return None;
        }
    }
}
