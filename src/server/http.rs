//! HTTP/1.1 routes and the WebSocket upgrade.

use super::hub::Hub;
use super::ws;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

const SCWS_JS: &str = include_str!("assets/scws.js");
const SCWS_DTS: &str = include_str!("assets/scws.d.ts");
const DEMO_HTML: &str = include_str!("assets/demo.html");

type Body = Full<Bytes>;

pub async fn accept_loop(
    listener: TcpListener,
    hub: Arc<Hub>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
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
        let hub = hub.clone();
        let shutdown = shutdown.clone();
        let mut stop = shutdown.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let hub = hub.clone();
                let shutdown = shutdown.clone();
                async move { Ok::<_, Infallible>(route(req, hub, shutdown)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            // At shutdown, a request in progress is answered, then the
            // connection closes; an idle keep-alive connection (a browser
            // that loaded the demo page) closes at once instead of holding
            // the shutdown up.
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = async { stop.wait_for(|stopping| *stopping).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    // Upgraded WebSockets watch the shutdown signal themselves.
    while connections.join_next().await.is_some() {}
}

fn route(req: Request<Incoming>, hub: Arc<Hub>, shutdown: watch::Receiver<bool>) -> Response<Body> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported\n");
    }
    match req.uri().path() {
        "/ws" => upgrade(req, hub, shutdown),
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

fn upgrade(
    mut req: Request<Incoming>,
    hub: Arc<Hub>,
    shutdown: watch::Receiver<bool>,
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
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let stream = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(ws::config()),
                )
                .await;
                ws::serve(hub, stream, shutdown).await;
            }
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
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

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    with_type(status, "text/plain; charset=utf-8", body)
}
