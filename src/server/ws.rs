//! One WebSocket connection: reads requests, answers each exactly once,
//! and forwards the daemon's notifications.

use super::dispatch::{Caller, Reply, dispatch};
use super::hub::Hub;
use crate::error::Error;
use crate::protocol::{self, Incoming, Request, RpcError};
use crate::security::throttle::RateLimit;
use futures_util::FutureExt;
use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::CapacityError};

/// Largest message accepted from a client.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The read buffer each connection starts with. Requests are small; a
/// bigger message (up to [`MAX_MESSAGE`]) grows it as needed. The library's
/// default (128 KiB, zero-filled on first read) cost 128 KiB of RSS per open
/// connection: 1,000 clients took the daemon from 7 to 84 MB.
const READ_BUFFER: usize = 4 * 1024;

/// At most this many messages are written before a flush.
const WRITE_BATCH: usize = 64;

pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// What the writer sends: a response, or the closing frame. Shared with
/// the native-messaging host, whose sessions are answered the same way.
pub(crate) enum Out {
    Text(String),
    Close(CloseCode, &'static str),
}

pub async fn serve<S>(
    hub: Arc<Hub>,
    ws: WebSocketStream<S>,
    caller: Caller,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (out, mut out_rx) = mpsc::unbounded_channel::<Out>();
    let mut notes = hub.subscribe();
    let conn = caller.conn;

    // The writer: responses and notifications, so a slow request never
    // holds up another one, and a slow client only slows itself.
    // Notifications go first: an operation broadcasts its `pinStateChanged`
    // before its response is queued, so the caller always sees the new PIN
    // state before the response (docs/protocol.md promises it).
    let writer = tokio::spawn(async move {
        'write: loop {
            let first = tokio::select! {
                biased;
                n = notes.recv() => from_note(n, conn),
                m = out_rx.recv() => from_out(m),
            };
            // Everything else already waiting goes out in the same write
            // (a login's notification and its response: one syscall, one
            // wake-up of the client).
            let mut next = Some(first);
            let mut fed = 0;
            while let Some(item) = next.take() {
                match item {
                    Next::Skip => {}
                    Next::Send(msg) => {
                        if sink.feed(msg).await.is_err() {
                            break 'write;
                        }
                    }
                    Next::Close(msg) => {
                        let _ = sink.send(msg).await;
                        break 'write;
                    }
                    Next::End => break 'write,
                }
                fed += 1;
                if fed == WRITE_BATCH {
                    break;
                }
                next = match notes.try_recv() {
                    Ok(note) => Some(from_note(Ok(note), conn)),
                    Err(broadcast::error::TryRecvError::Lagged(missed)) => Some(from_note(
                        Err(broadcast::error::RecvError::Lagged(missed)),
                        conn,
                    )),
                    Err(_) => match out_rx.try_recv() {
                        Ok(m) => Some(from_out(Some(m))),
                        Err(_) => None,
                    },
                };
            }
            if sink.flush().await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let mut in_flight = tokio::task::JoinSet::new();
    let mut rate = RateLimit::new(hub.limits.rate_per_second, hub.limits.rate_burst);
    let login_idle = hub.limits.login_idle;
    let idle = tokio::time::sleep(login_idle);
    tokio::pin!(idle);
    let peer = caller.peer.clone();
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = shutdown.changed() => {
                let _ = out.send(Out::Close(CloseCode::Away, "the daemon is shutting down"));
                break;
            }
            // Reap answered requests at once (a JoinSet keeps finished
            // tasks until joined: a long-lived page would grow the daemon
            // with every request it ever made).
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
            () = &mut idle => {
                // Quiet for too long: this connection's logins end.
                hub.end_logins_of(conn);
                idle.as_mut().reset(tokio::time::Instant::now() + login_idle);
                continue;
            }
        };
        idle.as_mut()
            .reset(tokio::time::Instant::now() + login_idle);
        match msg {
            Some(Ok(Message::Text(_))) if !caller.once && !hub.gate.still_allows(&peer) => {
                // Revoked while connected: the connection ends here.
                tracing::info!(%peer, "origin revoked; closing its connection");
                let e = RpcError::origin_not_allowed(&peer.to_string());
                let _ = out.send(Out::Text(protocol::error(Value::Null, &e).to_string()));
                let _ = out.send(Out::Close(CloseCode::Policy, "origin not allowed"));
                break;
            }
            Some(Ok(Message::Text(text))) => {
                let limited = !rate.allow(std::time::Instant::now());
                handle(&hub, &caller, text.as_str(), limited, &out, &mut in_flight)
            }
            Some(Ok(Message::Binary(_))) => {
                let e = RpcError::invalid_request("binary frames are not accepted; send JSON text");
                let _ = out.send(Out::Text(protocol::error(Value::Null, &e).to_string()));
            }
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => {} // ping/pong: answered by the library
            Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                tracing::debug!(size, max_size, "message too big; closing");
                let _ = out.send(Out::Close(CloseCode::Size, "message too big"));
                break;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "websocket read failed");
                break;
            }
        }
    }
    // Requests already queued finish (the card is never left half way); their
    // responses go out if the client is still there.
    while in_flight.join_next().await.is_some() {}
    drop(out);
    let _ = writer.await;
    hub.close_connection(conn);
}

/// What the writer does next.
enum Next {
    Send(Message),
    /// Send this closing frame, then stop.
    Close(Message),
    /// A notification was missed; nothing to send for it.
    Skip,
    End,
}

fn from_note(n: Result<Arc<super::hub::Note>, broadcast::error::RecvError>, conn: u64) -> Next {
    match n {
        Ok(note) => Next::Send(Message::text(note.for_conn(conn).to_string())),
        Err(broadcast::error::RecvError::Lagged(missed)) => {
            tracing::debug!(missed, "slow client missed notifications");
            Next::Skip
        }
        Err(broadcast::error::RecvError::Closed) => Next::End,
    }
}

fn from_out(m: Option<Out>) -> Next {
    match m {
        Some(Out::Text(t)) => Next::Send(Message::text(t)),
        Some(Out::Close(code, reason)) => Next::Close(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))),
        None => Next::End,
    }
}

/// Answers one text message of a connection: parses it (single request or
/// batch), queues each call's card work at once, and sends each response
/// to `out` when it is ready. The WebSocket and the native-messaging host
/// both use it, so both speak exactly the same protocol.
pub(crate) fn handle(
    hub: &Arc<Hub>,
    caller: &Caller,
    text: &str,
    limited: bool,
    out: &mpsc::UnboundedSender<Out>,
    in_flight: &mut tokio::task::JoinSet<()>,
) {
    match protocol::parse_message(text) {
        Incoming::Invalid(e) => {
            let _ = out.send(Out::Text(protocol::error(Value::Null, &e).to_string()));
        }
        Incoming::Single(req) => {
            let (id, fut) = start(hub, caller, req, limited);
            let out = out.clone();
            in_flight.spawn(async move {
                let outcome = fut.await;
                if let Some(id) = id {
                    let _ = out.send(Out::Text(respond(&id, &outcome)));
                }
            });
        }
        Incoming::Batch(reqs) => {
            let started: Vec<_> = reqs
                .into_iter()
                .map(|r| start(hub, caller, r, limited))
                .collect();
            let out = out.clone();
            in_flight.spawn(async move {
                let (ids, futs): (Vec<_>, Vec<_>) = started.into_iter().unzip();
                let outcomes = join_all(futs).await;
                let responses: Vec<String> = ids
                    .into_iter()
                    .zip(outcomes)
                    .filter_map(|(id, o)| id.map(|id| respond(&id, &o)))
                    .collect();
                if !responses.is_empty() {
                    // Each response is a JSON object: the batch is their array.
                    let _ = out.send(Out::Text(format!("[{}]", responses.join(","))));
                }
            });
        }
    }
}

type Started = (
    Option<Value>,
    futures_util::future::BoxFuture<'static, Result<Reply, RpcError>>,
);

/// Queues a request's card work now (keeping arrival order per reader);
/// a connection over its rate gets `RATE_LIMITED` and nothing is run.
fn start(hub: &Arc<Hub>, caller: &Caller, req: Request, limited: bool) -> Started {
    let fut = match req.call {
        Ok(_) if limited => futures_util::future::ready(Err(Error::RateLimited.into())).boxed(),
        Ok(call) => dispatch(hub, caller, call),
        Err(e) => futures_util::future::ready(Err(e)).boxed(),
    };
    (req.id, fut)
}

fn respond(id: &Value, outcome: &Result<Reply, RpcError>) -> String {
    match outcome {
        Ok(r) => protocol::result_text(id, r),
        Err(e) => protocol::error_text(id, e),
    }
}
