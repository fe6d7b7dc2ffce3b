//! The daemon's memory under hostile load, measured on the real binary
//! (`cardgate demo`, simulated cards): 300 connections each send full-size
//! (64 KiB) frames — full batches whose answers echo long ids, and a
//! `[1,1,1,…]` frame — and never read. The daemon's RSS (VmRSS sampled,
//! VmHWM its peak, from /proc) stays under a bound, during the load and
//! after the clients left, and a fresh client is answered normally. (That
//! a client that does not read is closed after the send timeout is
//! `server_sim::a_client_that_does_not_read_is_closed`: filling the
//! kernel's socket buffers of 300 clients would take gigabytes.) Measured
//! numbers and the bound: docs/performance.md.

#[path = "common/home.rs"]
mod home;
#[path = "common/ws_client.rs"]
mod ws_client;

use futures_util::{SinkExt, StreamExt};
use home::Home;
use serde_json::{Value, json};
use std::io::BufRead;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const ORIGIN: &str = "https://bank.example";
const CLIENTS: usize = 300;
/// The bound on the daemon's peak RSS (VmHWM), in KiB: about 2.5× the peak
/// measured with the debug binary (docs/performance.md).
const PEAK_BOUND_KIB: u64 = 250 * 1024;
/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Daemon {
    child: Child,
    port: u16,
    _home: Home,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Daemon {
    let home = Home::new();
    home.allow_origin(ORIGIN);
    let mut child = home
        .cardgate()
        .args(["demo", "--port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut port = None;
    let mut line = String::new();
    while port.is_none() {
        line.clear();
        if err.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(rest) = line.split("open http://127.0.0.1:").nth(1) {
            port = rest
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .ok();
        }
    }
    // Keep draining stderr so the daemon never blocks on it.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    Daemon {
        child,
        port: port.expect("the daemon's port"),
        _home: home,
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A WebSocket client with a small receive window (its socket fills soon).
async fn connect(port: u16) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    tokio_tungstenite::client_async(ws_client::page_request(port, ORIGIN), stream)
        .await
        .unwrap()
        .0
}

/// A full batch (64 status reads) of nearly 64 KiB: each id is long, and
/// every answer echoes it.
fn full_batch() -> String {
    let reqs: Vec<Value> = (0..64)
        .map(|i| {
            json!({ "jsonrpc": "2.0", "id": format!("{i:02}{}", "x".repeat(880)), "method": "getPinStatus",
                    "params": { "reader": "cardgate demo reader 0", "pin": "pin" } })
        })
        .collect();
    let text = Value::Array(reqs).to_string();
    assert!(
        text.len() > 60 * 1024 && text.len() <= 64 * 1024,
        "{}",
        text.len()
    );
    text
}

/// `[1,1,1,…]`: 64 KiB, some 32,000 invalid requests.
fn ones() -> String {
    let text = format!("[{}1]", "1,".repeat(32 * 1024 - 2));
    assert!(text.len() > 63 * 1024 && text.len() <= 64 * 1024);
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_under_non_reading_clients() {
    let daemon = start();
    let (port, pid) = (daemon.port, daemon.child.id());
    let started = Instant::now();
    let (rss0, _) = memory(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let (rss, hwm) = memory(pid);
                peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                assert!(
                    hwm < PEAK_BOUND_KIB,
                    "daemon peak RSS {hwm} KiB over the bound of {PEAK_BOUND_KIB} KiB"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let (batch, ones) = (full_batch(), ones());
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(connect(port).await);
    }
    // Every client sends its frames and never reads.
    let sends: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            let (batch, ones) = (batch.clone(), ones.clone());
            tokio::spawn(async move {
                for text in [&ones, &batch, &batch, &ones, &batch, &batch] {
                    let send = ws.send(Message::text(text.clone()));
                    if !matches!(
                        tokio::time::timeout(Duration::from_secs(5), send).await,
                        Ok(Ok(()))
                    ) {
                        break;
                    }
                }
                ws
            })
        })
        .collect();
    let mut clients = Vec::new();
    for s in sends {
        clients.push(s.await.unwrap());
    }
    let (_, hwm) = memory(pid);
    assert!(
        hwm < PEAK_BOUND_KIB,
        "daemon peak RSS {hwm} KiB over the bound of {PEAK_BOUND_KIB} KiB"
    );
    // A fresh client is answered normally meanwhile.
    let mut fresh = connect(port).await;
    let hello = json!({ "jsonrpc": "2.0", "id": 1, "method": "hello", "params": {} });
    fresh.send(Message::text(hello.to_string())).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), fresh.next())
        .await
        .expect("a fresh client is answered")
        .unwrap()
        .unwrap();
    assert!(answer.to_text().unwrap().contains("cardgate"), "{answer}");
    let (rss_loaded, _) = memory(pid);
    drop(fresh);
    drop(clients);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_after, hwm) = memory(pid);
    sampler.abort();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "RSS: start {rss0} KiB, peak sampled {peak} KiB, VmHWM {hwm} KiB, loaded {rss_loaded} KiB, after close {rss_after} KiB; {:?}",
        started.elapsed()
    );
    assert!(hwm < PEAK_BOUND_KIB, "peak RSS {hwm} KiB");
    assert!(
        rss_after < PEAK_BOUND_KIB,
        "RSS after close {rss_after} KiB"
    );
    // Still serving normally.
    let mut again = ws_client::Client::page(port, ORIGIN).await;
    let status = again
        .ok(
            "getPinStatus",
            json!({ "reader": "cardgate demo reader 0", "pin": "pin" }),
        )
        .await;
    assert_eq!(status["remainingTries"], 3);
    drop(daemon);
}
