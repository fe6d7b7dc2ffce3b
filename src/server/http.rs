//! HTTP/1.1 routes and the WebSocket upgrade.

use super::dispatch::Caller;
use super::handshake::{self, Start};
use super::hub::ConsentMode;
use super::hub::Hub;
use super::ws;
use crate::pinentry::Consent;
use crate::security::origin::{Origin, Peer, Refusal, host_is_us};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

const SCWS_JS: &str = include_str!("assets/scws.js");
const SCWS_DTS: &str = include_str!("assets/scws.d.ts");
const DEMO_HTML: &str = include_str!("assets/demo.html");

type Body = Full<Bytes>;

/// A WebSocket upgrade the HTTP route accepted: served by the connection's
/// own task once hyper hands the socket over.
type Upgrade = Arc<std::sync::Mutex<Option<(hyper::upgrade::OnUpgrade, Caller)>>>;

/// How long a new connection may take, from its accept, to send its first
/// request head (the handshake), TLS handshake included; later requests on
/// a keep-alive connection each get as long for their head (hyper's
/// `header_read_timeout`, which starts when it begins reading a head).
pub(super) const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection's time limits ([`super::ServerConfig`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// From accept to the end of the first request head.
    pub handshake: std::time::Duration,
    /// A WebSocket write that makes no progress this long closes it.
    pub send: std::time::Duration,
}

/// How long shutdown waits for open connections to finish.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Counts a connection as active while it lives.
struct ActiveGuard(Arc<AtomicUsize>);

impl ActiveGuard {
    fn new(active: &Arc<AtomicUsize>) -> Self {
        active.fetch_add(1, Ordering::SeqCst);
        ActiveGuard(active.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

pub(super) async fn accept_loop(
    listener: TcpListener,
    hub: Arc<Hub>,
    mut shutdown: watch::Receiver<bool>,
    tls: Option<TlsAcceptor>,
    active: Arc<AtomicUsize>,
    timeouts: Timeouts,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
            // Reap finished connections as they end: a JoinSet keeps every
            // finished task (its whole allocation) until it is joined.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // One deadline for everything before the first request head.
        let deadline = tokio::time::Instant::now() + timeouts.handshake;
        let guard = ActiveGuard::new(&active);
        let (hub, shutdown, tls) = (hub.clone(), shutdown.clone(), tls.clone());
        connections.spawn(async move {
            let conn = Conn {
                peer,
                hub,
                shutdown,
                guard,
                deadline,
                timeouts,
            };
            match tls {
                None => serve(stream, conn).await,
                // Boxed: the connection's future is moved three times when it
                // is spawned, and the TLS state would make every plain
                // connection's several kilobytes bigger.
                Some(tls) => Box::pin(serve_tls(stream, tls, conn)).await,
            }
        });
    }
    // Open connections see the shutdown themselves: requests in progress
    // are answered, WebSockets closed. One still open after the grace (a
    // client that stopped reading, an operation waiting for the user) is
    // dropped; card work it queued still runs to its end on the reader's
    // worker, before the logout that follows.
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::debug!(
            open = connections.len(),
            "dropping connections still open at shutdown"
        );
    }
}

/// An accepted connection and what serving it needs.
struct Conn {
    peer: std::net::SocketAddr,
    hub: Arc<Hub>,
    shutdown: watch::Receiver<bool>,
    guard: ActiveGuard,
    /// When the first request head must be complete (accept + handshake
    /// timeout).
    deadline: tokio::time::Instant,
    timeouts: Timeouts,
}

/// TLS or plain HTTP on the same port: a TLS client speaks first with a
/// handshake record, an HTTP client with a method name.
async fn serve_tls(stream: tokio::net::TcpStream, tls: TlsAcceptor, conn: Conn) {
    let mut first = [0u8; 1];
    let peer = conn.peer;
    match tokio::time::timeout_at(conn.deadline, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => {
            match tokio::time::timeout_at(conn.deadline, tls.accept(stream)).await {
                Ok(Ok(s)) => serve(s, conn).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
        Ok(Ok(_)) => serve(stream, conn).await,
        _ => {}
    }
}

/// Serves a connection: a WebSocket handshake straight away when it can
/// ([`handshake`]), anything else through the HTTP server.
async fn serve<IO>(mut io: IO, conn: Conn)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // A connection that has sent nothing yet (a browser's preconnect) is
    // closed at shutdown, not waited for.
    let mut stop = conn.shutdown.clone();
    let start = tokio::select! {
        start = handshake::start(&mut io, &conn.hub, conn.deadline) => start,
        _ = stop.wait_for(|stopping| *stopping) => Start::Gone,
    };
    match start {
        Start::WebSocket(caller) => {
            // From here on the connection counts as an open WebSocket.
            let Conn {
                hub,
                shutdown,
                guard,
                timeouts,
                ..
            } = conn;
            drop(guard);
            ws::serve_socket(hub, io, caller, shutdown, timeouts.send).await;
        }
        Start::Http(head) => {
            let (read, write) = tokio::io::split(io);
            let io = tokio::io::join(std::io::Cursor::new(head).chain(read), write);
            // Boxed: hyper's connection is big, and most connections here
            // are WebSockets that never need it.
            Box::pin(serve_http(io, conn)).await;
        }
        Start::Gone => {}
    }
}

async fn serve_http<IO>(io: IO, conn: Conn)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Conn {
        peer,
        hub,
        shutdown,
        guard,
        deadline,
        timeouts,
    } = conn;
    let upgrade = Upgrade::default();
    // The first request head must be complete by the connection's deadline
    // (the handshake reader may have used most of it already): hyper's own
    // timeout starts afresh when it starts reading, so it alone would give
    // a slow client twice the time. hyper calls the service once a head is
    // read; the first call reports it.
    let (first_head, got_first_head) = tokio::sync::oneshot::channel::<()>();
    let first_head = std::sync::Mutex::new(Some(first_head));
    let service = {
        let (hub, upgrade) = (hub.clone(), upgrade.clone());
        hyper::service::service_fn(move |req| {
            if let Some(tx) = first_head.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = tx.send(());
            }
            let (hub, upgrade) = (hub.clone(), upgrade.clone());
            async move { Ok::<_, Infallible>(route(req, hub, upgrade).await) }
        })
    };
    let late = async {
        if tokio::time::timeout_at(deadline, got_first_head)
            .await
            .is_ok()
        {
            // In time (or the connection is over): no deadline any more.
            std::future::pending::<()>().await;
        }
    };
    let mut stop = shutdown.clone();
    let conn = hyper::server::conn::http1::Builder::new()
        // A client that never finishes a later request's head is dropped.
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeouts.handshake)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    // At shutdown, a request in progress is answered, then the connection
    // closes; an idle keep-alive connection (a browser that loaded the demo
    // page) closes at once instead of holding the shutdown up.
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = late => {
            tracing::debug!(%peer, "no complete request head in time; closing");
            return;
        }
        _ = async { stop.wait_for(|stopping| *stopping).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
    // An upgraded connection goes on in this task, as one that skipped the
    // HTTP server does: shutdown waits for it like for any other.
    let upgraded = upgrade.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some((on_upgrade, caller)) = upgraded else {
        return;
    };
    drop(guard);
    match on_upgrade.await {
        Ok(upgraded) => {
            ws::serve_socket(hub, TokioIo::new(upgraded), caller, shutdown, timeouts.send).await
        }
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            hub.close_connection(caller.conn);
        }
    }
}

async fn route(req: Request<Incoming>, hub: Arc<Hub>, upgrade: Upgrade) -> Response<Body> {
    // DNS rebinding: a page of evil.test resolving to 127.0.0.1 sends
    // `Host: evil.test:PORT`. Nothing is served to it.
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    if !host_is_us(host.unwrap_or(""), hub.port) {
        let refusal = Refusal::BadHost(host.unwrap_or("").to_string());
        tracing::warn!(reason = %refusal, path = req.uri().path(), "request refused");
        return forbidden(&refusal);
    }
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported\n");
    }
    match req.uri().path() {
        "/ws" => accept_upgrade(req, hub, upgrade).await,
        "/health" => with_type(StatusCode::OK, "application/json", hub.health().to_string()),
        "/scws.js" => with_type(StatusCode::OK, "text/javascript; charset=utf-8", SCWS_JS),
        "/scws.d.ts" => with_type(
            StatusCode::OK,
            "application/typescript; charset=utf-8",
            SCWS_DTS,
        ),
        "/demo" | "/demo/" => with_type(StatusCode::OK, "text/html; charset=utf-8", DEMO_HTML),
        "/" => {
            let mut r = text(StatusCode::FOUND, "see /demo\n");
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/demo"));
            r
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn accept_upgrade(
    mut req: Request<Incoming>,
    hub: Arc<Hub>,
    upgrade: Upgrade,
) -> Response<Body> {
    let headers = req.headers();
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return text(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade is expected here\n",
        );
    };
    if !is_upgrade {
        return text(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade is expected here\n",
        );
    }
    let origin = match headers.get(header::ORIGIN).map(|v| v.to_str()) {
        None => None,
        Some(Ok(o)) => Some(o),
        Some(Err(_)) => Some("\u{fffd}"),
    };
    let checked = hub.gate.check(
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
        origin,
        hub.port,
    );
    let (peer, once) = match checked {
        Ok(peer) => (peer, false),
        Err(Refusal::NotAllowed(o))
            if hub.limits.consent == ConsentMode::Prompt && !hub.gate.denied(&o) =>
        {
            match ask_consent(&hub, &o).await {
                Ok(Consent::AllowOnce) => (Peer::Web(o), true),
                Ok(Consent::AlwaysAllow) => (Peer::Web(o), false),
                Ok(Consent::Deny) | Err(_) => {
                    let refusal = Refusal::NotAllowed(o);
                    tracing::warn!(reason = %refusal, "WebSocket handshake refused by the user");
                    return forbidden(&refusal);
                }
            }
        }
        Err(refusal) => {
            tracing::warn!(reason = %refusal, "WebSocket handshake refused");
            return forbidden(&refusal);
        }
    };
    if !version_ok {
        let mut r = text(
            StatusCode::UPGRADE_REQUIRED,
            "WebSocket version 13 is required\n",
        );
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return r;
    }
    let Some(conn) = hub.open_connection() else {
        tracing::warn!("connection limit reached; handshake refused");
        let body = serde_json::json!({ "code": "TOO_MANY_CONNECTIONS", "message": "too many open connections" });
        return with_type(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            body.to_string(),
        );
    };
    let caller = Caller::new(conn, peer, once);
    let on_upgrade = hyper::upgrade::on(&mut req);
    *upgrade.lock().unwrap_or_else(|e| e.into_inner()) = Some((on_upgrade, caller));
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    r
}

fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Asks the user whether an unknown origin may use the card, and stores
/// "always" and "deny" decisions.
async fn ask_consent(hub: &Arc<Hub>, origin: &Origin) -> Result<Consent, ()> {
    // One dialog at a time; a decision taken meanwhile needs no new question.
    let _screen = hub.dialog_lock.lock().await;
    if hub.gate.allows(origin) {
        return Ok(Consent::AlwaysAllow);
    }
    if hub.gate.denied(origin) {
        return Ok(Consent::Deny);
    }
    let dialog = hub.dialog.clone();
    let text = format!(
        "Allow {origin} to use your smart card?\n\nThe site will be able to read your card's PIN status and ask for PIN operations."
    );
    let answer = tokio::task::spawn_blocking(move || dialog.confirm("Smart card access", &text))
        .await
        .map_err(|_| ())?;
    match answer {
        Ok(c) => {
            let remembered = match c {
                Consent::AlwaysAllow => Some(true),
                Consent::Deny => Some(false),
                Consent::AllowOnce => None,
            };
            if let Some(allow) = remembered
                && let Err(e) = hub.gate.remember(origin, allow)
            {
                tracing::warn!(error = %e, "could not store the consent decision");
            }
            tracing::info!(%origin, decision = ?c, "consent");
            Ok(c)
        }
        Err(e) => {
            tracing::warn!(%origin, error = %e, "consent dialog failed; refusing");
            Err(())
        }
    }
}

/// 403 with the stable code and the reason, before any upgrade.
fn forbidden(refusal: &Refusal) -> Response<Body> {
    let body = serde_json::json!({ "code": refusal.code(), "message": refusal.to_string() });
    with_type(StatusCode::FORBIDDEN, "application/json", body.to_string())
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    with_type(status, "text/plain; charset=utf-8", body)
}
