//! Who may talk to the daemon: the Host/Origin handshake matrix, origins
//! managed at run time, and a revoked origin losing its open connection.

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/ws_client.rs"]
mod ws_client;

use cardgate::OriginsFile;
use cardgate::Server;
use cardgate::vcard::config::CardConfig;
use daemon::SimDaemon;
use futures_util::StreamExt;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

async fn daemon(origins_file: &Path, extra: OriginsFile) -> Server {
    SimDaemon::new()
        .card("Sim PIV", CardConfig::piv())
        .origins_file(Some(origins_file))
        .config(|c| {
            c.op_timeout = Duration::from_secs(10);
            c.origins = extra;
        })
        .start()
        .await
        .0
}

/// Sends a raw handshake; returns the status code and the whole response head+body.
async fn handshake(
    port: u16,
    path: &str,
    host: Option<&str>,
    origin: Option<&str>,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    if let Some(h) = host {
        req += &format!("Host: {h}\r\n");
    }
    if let Some(o) = origin {
        req += &format!("Origin: {o}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).await.unwrap();
    read_response(&mut s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("origins.toml");
    OriginsFile {
        allowed: vec![
            "https://bank.example".into(),
            "http://localhost:8080".into(),
        ],
        ..OriginsFile::default()
    }
    .save(&file)
    .unwrap();
    let server = daemon(&file, OriginsFile::default()).await;
    let port = server.port();
    let us = format!("127.0.0.1:{port}");
    let localhost = format!("localhost:{port}");
    let v6 = format!("[::1]:{port}");
    let upper = format!("LOCALHOST:{port}");
    let evil = format!("evil.test:{port}");
    let dotted = format!("localhost.:{port}");
    let own = format!("http://127.0.0.1:{port}");
    let own6 = format!("http://[::1]:{port}");
    let next_port = format!("127.0.0.1:{}", port.wrapping_add(1));
    let bank = Some("https://bank.example");
    // (host, origin, expected status, expected code in a refusal)
    let cases: Vec<(Option<&str>, Option<&str>, u16, &str)> = vec![
        (Some(&us), bank, 101, ""),
        (Some(&localhost), bank, 101, ""),
        (Some(&v6), bank, 101, ""),
        (Some(&upper), Some("HTTPS://BANK.EXAMPLE"), 101, ""),
        (Some(&us), Some("https://bank.example:443"), 101, ""),
        (Some(&us), Some("http://localhost:8080"), 101, ""),
        (Some(&us), Some(&own), 101, ""),
        (Some(&us), Some(&own6), 101, ""),
        (Some(&us), None, 403, "ORIGIN_NOT_ALLOWED"),
        (Some(&us), Some("null"), 403, "ORIGIN_NOT_ALLOWED"),
        (Some(&us), Some("file://"), 403, "ORIGIN_NOT_ALLOWED"),
        (
            Some(&us),
            Some("http://bank.example"),
            403,
            "ORIGIN_NOT_ALLOWED",
        ),
        (
            Some(&us),
            Some("https://bank.example:8443"),
            403,
            "ORIGIN_NOT_ALLOWED",
        ),
        (
            Some(&us),
            Some("https://bank.example.evil.test"),
            403,
            "ORIGIN_NOT_ALLOWED",
        ),
        (
            Some(&us),
            Some("https://evilbank.example"),
            403,
            "ORIGIN_NOT_ALLOWED",
        ),
        (
            Some(&us),
            Some("https://bank.example."),
            403,
            "ORIGIN_NOT_ALLOWED",
        ),
        (
            Some(&us),
            Some("https://bank.example@evil.test"),
            403,
            "ORIGIN_NOT_ALLOWED",
        ),
        (
            Some(&us),
            Some("https://bank.example/login"),
            403,
            "ORIGIN_NOT_ALLOWED",
        ),
        (
            Some(&us),
            Some("https://evil.test"),
            403,
            "ORIGIN_NOT_ALLOWED",
        ),
        (
            Some(&us),
            Some("http://localhost:8081"),
            403,
            "ORIGIN_NOT_ALLOWED",
        ),
        (
            Some(&us),
            Some("http://localhost"),
            403,
            "ORIGIN_NOT_ALLOWED",
        ),
        (Some(&evil), bank, 403, "HOST_NOT_ALLOWED"),
        (Some(&dotted), bank, 403, "HOST_NOT_ALLOWED"),
        (Some("127.0.0.1"), bank, 403, "HOST_NOT_ALLOWED"),
        (Some(&next_port), bank, 403, "HOST_NOT_ALLOWED"),
        (None, bank, 403, "HOST_NOT_ALLOWED"),
    ];
    assert!(cases.len() >= 20);
    for (host, origin, status, code) in &cases {
        let (got, text) = handshake(port, "/ws", *host, *origin).await;
        assert_eq!(got, *status, "Host {host:?} Origin {origin:?}: {text}");
        if *status == 403 {
            assert!(
                text.contains(code),
                "Host {host:?} Origin {origin:?}: {text}"
            );
        }
        assert!(
            !text.to_lowercase().contains("access-control-allow-origin"),
            "{text}"
        );
    }
    // DNS rebinding gets no page either.
    let (got, _) = handshake(port, "/health", Some(&format!("evil.test:{port}")), None).await;
    assert_eq!(got, 403);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_and_missing_origins_only_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("origins.toml");
    std::fs::write(&file, "allow_null_origin = true\n").unwrap();
    let server = daemon(&file, OriginsFile::default()).await;
    let host = format!("127.0.0.1:{}", server.port());
    assert_eq!(
        handshake(server.port(), "/ws", Some(&host), Some("null"))
            .await
            .0,
        101
    );
    assert_eq!(
        handshake(server.port(), "/ws", Some(&host), None).await.0,
        403
    );
    server.shutdown().await;
}

/// Opens a WebSocket with an Origin header.
async fn connect_as(port: u16, origin: &str) -> Result<ws_client::Client, String> {
    ws_client::Client::connect_page(port, origin).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_are_managed_without_restart_and_revocation_closes_connections() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("origins.toml");
    let server = daemon(&file, OriginsFile::default()).await;
    let port = server.port();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cardgate"))
            .args(["origins", "--file", file.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert!(connect_as(port, "https://shop.example").await.is_err());
    assert_eq!(cli(&["allow", "HTTPS://Shop.Example:443"]).0, Some(0));
    assert!(cli(&["list"]).1.contains("https://shop.example"));
    assert_eq!(cli(&["allow", "not an origin"]).0, Some(2));

    let mut c = connect_as(port, "https://shop.example")
        .await
        .expect("allowed now, without restart");
    c.ok("hello", serde_json::json!({})).await;
    assert_eq!(cli(&["revoke", "https://shop.example"]).0, Some(0));
    c.send_text(r#"{"jsonrpc":"2.0","id":9,"method":"hello"}"#)
        .await;
    let r = c.recv().await.expect("an error before the close");
    assert_eq!(r["error"]["data"]["code"], "ORIGIN_NOT_ALLOWED");
    let mut closed_with = None;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(5), c.ws.next()).await {
        if let Ok(Message::Close(frame)) = msg {
            closed_with = frame.map(|f| u16::from(f.code));
            break;
        }
    }
    assert_eq!(closed_with, Some(1008));
    assert!(connect_as(port, "https://shop.example").await.is_err());
    assert_eq!(cli(&["revoke", "https://shop.example"]).0, Some(1));
    server.shutdown().await;
}

/// Reads one HTTP response head (and whatever body came with it).
async fn read_response(s: &mut tokio::net::TcpStream) -> (u16, String) {
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

/// A WebSocket over a socket whose handshake the test made by hand:
/// answers `hello`.
async fn speaks_websocket(s: tokio::net::TcpStream) -> bool {
    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        tokio_tungstenite::MaybeTlsStream::Plain(s),
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    let mut c = ws_client::Client::from_stream(ws);
    c.ok("hello", serde_json::json!({})).await["protocol"] == 1
}

/// The common handshake is answered without the HTTP server, the rest by
/// it: every form a client may send gets the same answer either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_form_of_handshake_gets_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("origins.toml");
    std::fs::write(&file, "allowed = [\"https://bank.example\"]\n").unwrap();
    let server = daemon(&file, OriginsFile::default()).await;
    let port = server.port();
    let head = |path: &str, extra: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: https://bank.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        )
    };
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", port));

    // The head in small pieces, with pauses: 101 with the RFC 6455 example
    // key's answer, then a working WebSocket.
    let mut s = connect().await.unwrap();
    for piece in head("/ws", "").as_bytes().chunks(7) {
        s.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (code, text) = read_response(&mut s).await;
    assert_eq!(code, 101, "{text}");
    assert!(
        text.to_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{text}"
    );
    assert!(speaks_websocket(s).await);

    // A query string, many headers (more than the direct way reads), and
    // bare LF line ends.
    let many: String = (0..40).map(|i| format!("X-Extra-{i}: {i}\r\n")).collect();
    for h in [
        head("/ws?page=1", ""),
        head("/ws", &many),
        head("/ws", "").replace("\r\n", "\n"),
    ] {
        let mut s = connect().await.unwrap();
        s.write_all(h.as_bytes()).await.unwrap();
        let (code, text) = read_response(&mut s).await;
        assert_eq!(code, 101, "{text}");
        assert!(speaks_websocket(s).await);
    }

    // A keep-alive connection that loaded a page first, then upgrades.
    let mut s = connect().await.unwrap();
    let get = format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    s.write_all(get.as_bytes()).await.unwrap();
    let (code, text) = read_response(&mut s).await;
    assert_eq!(code, 200, "{text}");
    s.write_all(head("/ws", "").as_bytes()).await.unwrap();
    let (code, text) = read_response(&mut s).await;
    assert_eq!(code, 101, "{text}");
    assert!(speaks_websocket(s).await);

    // Refusals and odd requests: the HTTP server's answers.
    let refused = [
        (head("/ws", "").replace("Version: 13", "Version: 8"), 426),
        (head("/ws", "").replace("Upgrade: websocket\r\n", ""), 400),
        (head("/ws", "").replace("GET", "POST"), 405),
        (head("/ws", "").replace("bank.example", "evil.test"), 403),
        (head("/ws", "").replace("127.0.0.1:", "evil.test:"), 403),
        (head("/wsx", ""), 404),
        (
            format!("{}\r\n", head("/ws", &"X-Big: aaaa\r\n".repeat(3000))),
            431,
        ),
    ];
    for (h, want) in refused {
        let mut s = connect().await.unwrap();
        let _ = s.write_all(h.as_bytes()).await;
        let (code, text) = read_response(&mut s).await;
        assert_eq!(code, want, "{}: {text}", &h[..h.len().min(120)]);
    }
    // Nothing was left open by any of it.
    assert!(eventually_idle(&server).await);
    server.shutdown().await;
}

async fn eventually_idle(server: &Server) -> bool {
    for _ in 0..200 {
        if server.is_idle() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// A daemon whose connections have `handshake` from connect to the end of
/// their first request head.
async fn quick_daemon(handshake: Duration) -> Server {
    SimDaemon::local_tool()
        .config(|c| c.handshake_timeout = handshake)
        .start()
        .await
        .0
}

/// How long after `start` the daemon closed `s` (reads until the end).
async fn closed_after(s: &mut tokio::net::TcpStream, start: std::time::Instant) -> Duration {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("still open after {:?}", start.elapsed()),
        }
    }
}

/// 8 KiB of head sent within the timeout (the handshake reader hands it to
/// the HTTP server), then a byte at a time: the connection is closed when
/// the handshake timeout, counted from connect, is over — not when a fresh
/// timeout of the HTTP server ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_head_gets_one_timeout_from_connect() {
    let timeout = Duration::from_secs(1);
    let server = quick_daemon(timeout).await;
    let port = server.port();
    let start = std::time::Instant::now();
    let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let mut head = format!("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n").into_bytes();
        // Few headers (hyper takes at most 100), long ones.
        for i in 0..20 {
            head.extend_from_slice(format!("X-Pad-{i:03}: {}\r\n", "a".repeat(450)).as_bytes());
        }
        assert!(head.len() > 8 * 1024);
        // 9 KiB over 0.8 s, then one byte every 20 ms, never a blank line.
        for chunk in head.chunks(head.len() / 16 + 1) {
            if wr.write_all(chunk).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = wr.write_all(b"X-Slow: ").await;
        loop {
            if wr.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut s = rd;
    let mut buf = [0u8; 1024];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break start.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("still open after {:?}", start.elapsed()),
        }
    };
    writer.abort();
    assert!(
        closed >= timeout - Duration::from_millis(50),
        "closed too early: {closed:?}"
    );
    assert!(
        closed < timeout + Duration::from_millis(400),
        "closed {closed:?} after connect; the handshake timeout is {timeout:?}"
    );

    // A head dribbled byte by byte from the start (the handshake reader
    // never sees its end): the same.
    let start = std::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let dribble = async {
        for b in b"GET /ws HTTP/1.1\r\nX-Odd: "
            .iter()
            .chain(std::iter::repeat(&b'a'))
        {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let _ = tokio::time::timeout(timeout + Duration::from_millis(600), dribble).await;
    let closed = closed_after(&mut s, start).await;
    assert!(
        closed < timeout + Duration::from_millis(700),
        "closed {closed:?} after connect"
    );
    server.shutdown().await;
}

/// The first head's deadline does not apply to later requests of a
/// keep-alive connection: each has its own time for its head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_requests_after_the_first_deadline_are_served() {
    let timeout = Duration::from_secs(1);
    let server = quick_daemon(timeout).await;
    let port = server.port();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let get = format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..2 {
        s.write_all(get.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // The whole answer: head and its JSON body.
        while !String::from_utf8_lossy(&got).contains("}") {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            got.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        // The second request comes after the first head's deadline.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    server.shutdown().await;
}
