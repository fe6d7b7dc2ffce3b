//! The WebSocket handshake without the HTTP stack: the common case of a
//! new connection (a page's `new WebSocket(…/ws)` that passes every check)
//! is read, checked and answered here, and the socket goes straight to the
//! WebSocket connection. Everything else — other paths, refusals, the
//! consent prompt, odd or oversized requests — is handed on untouched to
//! the HTTP server, which gives the full answer. Only a request that the
//! HTTP route would accept as it is may take this way.
//!
//! Why: the HTTP/1 connection and its upgrade (a task of its own, a boxed
//! stream read through two wrappers) were a large share of the work of a
//! WebSocket connection (docs/performance.md, change 12).

use super::dispatch::Caller;
use super::hub::Hub;
use crate::security::origin::Peer;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// The most of a request head read before deciding; a browser's handshake
/// is about 500 bytes. A longer head goes to the HTTP server, which has its
/// own limit and answers it.
const MAX_HEAD: usize = 8 * 1024;

/// More headers than this: the HTTP server decides.
const MAX_HEADERS: usize = 32;

/// How a connection's first request is served.
pub(super) enum Start {
    /// A WebSocket, admitted: answered with 101 and handed on.
    WebSocket(Caller),
    /// Anything else: the HTTP server reads these bytes first.
    Http(Vec<u8>),
    /// The client left, or sent no request head in time.
    Gone,
}

/// Reads the first request head (by `deadline`, counted from the
/// connection's accept; the HTTP server gets only what is left of it) and
/// answers it here if it is an admitted WebSocket handshake.
pub(super) async fn start<IO>(io: &mut IO, hub: &Arc<Hub>, deadline: tokio::time::Instant) -> Start
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = Vec::with_capacity(1024);
    let read = async {
        loop {
            // A blank line may straddle two reads.
            let from = head.len().saturating_sub(2);
            match io.read_buf(&mut head).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
            // The blank line that ends a head (httparse also takes bare LFs;
            // a false alarm is parsed as partial and left to the HTTP server).
            let new = &head[from..];
            let blank =
                new.windows(3).any(|w| w == b"\n\r\n") || new.windows(2).any(|w| w == b"\n\n");
            if blank || head.len() >= MAX_HEAD {
                return true;
            }
        }
    };
    // A client that sends no complete head in time is dropped (as the
    // HTTP server drops one whose head times out).
    if !matches!(tokio::time::timeout_at(deadline, read).await, Ok(true)) {
        return Start::Gone;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = req.parse(&head) else {
        return Start::Http(head);
    };
    // The client waits for the 101 before it sends a frame; bytes after the
    // head would be a pipelined request: the HTTP server's business.
    if len != head.len() {
        return Start::Http(head);
    }
    let Some((peer, key)) = admitted(&req, hub) else {
        return Start::Http(head);
    };
    let Some(conn) = hub.open_connection() else {
        return Start::Http(head);
    };
    let accept = derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: {accept}\r\n\r\n"
    );
    if io.write_all(response.as_bytes()).await.is_err() || io.flush().await.is_err() {
        hub.close_connection(conn);
        return Start::Gone;
    }
    Start::WebSocket(Caller::new(conn, peer, false))
}

/// The peer and the `Sec-WebSocket-Key` of a handshake the HTTP route would
/// accept without asking anyone; `None` for anything else.
fn admitted<'h>(req: &httparse::Request<'h, '_>, hub: &Hub) -> Option<(Peer, &'h str)> {
    if req.method != Some("GET") || req.version != Some(1) {
        return None;
    }
    let path = req.path?;
    if path != "/ws" && !path.starts_with("/ws?") {
        return None;
    }
    // The first of each header, as the HTTP route reads it; a value that is
    // not visible ASCII is left to it too.
    let mut seen = Seen::default();
    for h in req.headers.iter() {
        let slot = match h.name.len() {
            4 if h.name.eq_ignore_ascii_case("host") => &mut seen.host,
            6 if h.name.eq_ignore_ascii_case("origin") => &mut seen.origin,
            7 if h.name.eq_ignore_ascii_case("upgrade") => &mut seen.upgrade,
            17 if h.name.eq_ignore_ascii_case("sec-websocket-key") => &mut seen.key,
            21 if h.name.eq_ignore_ascii_case("sec-websocket-version") => &mut seen.version,
            // A body would be read as WebSocket frames.
            14 if h.name.eq_ignore_ascii_case("content-length") && h.value != b"0" => return None,
            17 if h.name.eq_ignore_ascii_case("transfer-encoding") => return None,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(visible_ascii(h.value)?);
        }
    }
    let (upgrade, version, key) = (seen.upgrade?, seen.version?, seen.key?);
    if !upgrade.eq_ignore_ascii_case("websocket") || version != "13" {
        return None;
    }
    let (host, origin) = (seen.host, seen.origin);
    let peer = hub.gate.check(host, origin, hub.port).ok()?;
    Some((peer, key))
}

/// The headers a handshake is judged by.
#[derive(Default)]
struct Seen<'h> {
    host: Option<&'h str>,
    origin: Option<&'h str>,
    upgrade: Option<&'h str>,
    version: Option<&'h str>,
    key: Option<&'h str>,
}

/// A header value as text, if it is all visible ASCII (and tabs): what the
/// HTTP route accepts as a string.
fn visible_ascii(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}
