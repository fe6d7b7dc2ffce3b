//! One WebSocket connection: reads requests, answers each exactly once,
//! and forwards the daemon's notifications.

use super::dispatch::{Caller, Reply, dispatch};
use super::hub::Hub;
use crate::error::Error;
use crate::protocol::{self, Incoming, Request, RpcError};
use crate::security::origin::Peer;
use crate::security::throttle::RateLimit;
use futures_util::future::{BoxFuture, join_all};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::CapacityError};

/// Largest message accepted from a client.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The read buffer each connection starts with. Requests are small; a
/// bigger message (up to [`MAX_MESSAGE`]) grows it as needed. The library
/// zero-fills the free part of this buffer (up to its size) before every
/// read: at 4 KiB that was a fifth of the daemon's instructions with 1,000
/// clients; its default (128 KiB) also cost 128 KiB of RSS per open
/// connection (1,000 clients took the daemon from 7 to 84 MB).
const READ_BUFFER: usize = 1024;

/// A round of writes to the client (at most [`WRITE_BATCH`] messages and
/// their flush) not done within this closes the connection: its client does
/// not read (docs/protocol.md). Its answers and the task serving it are not
/// held any longer; card work it queued still runs to its end.
pub(super) const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Output gathered before it is written to the socket.
const WRITE_BUFFER: usize = 16 * 1024;

/// The most unsent output the WebSocket library may hold for one
/// connection (beyond the kernel's socket buffer); more is an error that
/// closes the connection. With batches of at most
/// [`protocol::MAX_BATCH`] requests an answer is far smaller.
const MAX_UNSENT: usize = 1024 * 1024;

/// At most this many messages are written before a flush.
const WRITE_BATCH: usize = 64;

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_UNSENT)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// A connection's requests being answered. They are polled by the
/// connection's own task, not spawned: a task per request cost more than a
/// status read itself with 1,000 clients asking at once, and the card work
/// is queued before the future is first polled, so order is unchanged.
/// Each yields the text to send back (`None`: a notification, no answer).
pub(crate) type InFlight = FuturesUnordered<BoxFuture<'static, Option<String>>>;

/// Why a connection ends, and the closing frame it sends (if any).
struct Ending {
    /// An error response sent before the closing frame.
    error: Option<String>,
    close: Option<(CloseCode, &'static str)>,
    /// The client does not read: nothing more is written to it.
    stuck: bool,
}

impl Ending {
    const QUIET: Ending = Ending {
        error: None,
        close: None,
        stuck: false,
    };

    const STUCK: Ending = Ending {
        error: None,
        close: None,
        stuck: true,
    };

    fn close(code: CloseCode, reason: &'static str) -> Ending {
        Ending {
            error: None,
            close: Some((code, reason)),
            stuck: false,
        }
    }
}

/// Serves a socket whose handshake has been answered (by the daemon or by
/// the HTTP server's upgrade): WebSocket frames from the first byte on.
pub async fn serve_socket<S>(
    hub: Arc<Hub>,
    io: S,
    caller: Caller,
    shutdown: watch::Receiver<bool>,
    send_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config())).await;
    serve(hub, ws, caller, shutdown, send_timeout).await;
}

/// Serves one WebSocket connection in one task: its requests, their
/// answers and the daemon's notifications. (A writer task of its own and a
/// channel to it cost a wake-up per message.) A client that does not read
/// only holds up its own connection: the card work of its requests is
/// queued at once and runs regardless.
async fn serve<S>(
    hub: Arc<Hub>,
    mut ws: WebSocketStream<S>,
    caller: Caller,
    mut shutdown: watch::Receiver<bool>,
    send_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut notes = hub.subscribe();
    let conn = caller.conn;
    let mut in_flight = InFlight::new();
    let mut rate = RateLimit::new(hub.limits.rate_per_second, hub.limits.rate_burst);
    let login_idle = hub.limits.login_idle;
    // The idle timer is not moved on every message (a timer-wheel update
    // each time): when it fires, it looks at the last message and sleeps
    // on if there was one since.
    let mut last_message = tokio::time::Instant::now();
    let idle = tokio::time::sleep(login_idle);
    tokio::pin!(idle);
    let peer = caller.peer.clone();
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    // Made once: a new `changed()` each time round registers a new waiter.
    let stopping = shutdown.changed();
    tokio::pin!(stopping);
    let ending = 'conn: loop {
        // Shutdown first (a client that never stops sending must not hold
        // it off), then notifications: an operation broadcasts its
        // `pinStateChanged` before it hands over its result, so the caller
        // always sees the new PIN state before the response
        // (docs/protocol.md promises it). The client's messages last.
        let first = tokio::select! {
            biased;
            _ = &mut stopping => break Ending::close(CloseCode::Away, "the daemon is shutting down"),
            n = notes.recv() => from_note(n, conn),
            Some(answer) = in_flight.next(), if !in_flight.is_empty() => Next::Answer(answer),
            m = ws.next() => match read(&hub, &caller, &peer, m, &mut rate, &mut in_flight) {
                Ok(()) => {
                    last_message = tokio::time::Instant::now();
                    Next::Skip
                }
                Err(ending) => break ending,
            },
            () = &mut idle => {
                let now = tokio::time::Instant::now();
                if last_message + login_idle > now {
                    idle.as_mut().reset(last_message + login_idle);
                } else {
                    // Quiet for too long: this connection's logins end.
                    hub.end_logins_of(conn);
                    idle.as_mut().reset(now + login_idle);
                }
                Next::Skip
            }
        };
        // Everything else already waiting goes out in the same write (a
        // login's notification and its response: one syscall, one wake-up
        // of the client).
        let mut item = first;
        loop {
            let answer = match item {
                Next::Note(msg) => {
                    batch.push(msg);
                    None
                }
                Next::Answer(answer) => answer,
                Next::Skip => None,
                Next::End => break 'conn Ending::QUIET,
            };
            // Notifications go before the answer: an operation broadcasts
            // its `pinStateChanged` as its answer is made, so the caller
            // sees the new PIN state first (docs/protocol.md promises it),
            // all of them, however many.
            while answer.is_some() || batch.len() < WRITE_BATCH {
                match try_note(&mut notes, conn) {
                    Some(Next::Note(msg)) => batch.push(msg),
                    Some(Next::End) => break 'conn Ending::QUIET,
                    Some(_) => {}
                    None => break,
                }
            }
            if let Some(text) = answer {
                batch.push(Message::text(text));
            }
            if batch.len() >= WRITE_BATCH {
                break;
            }
            item = match in_flight.next().now_or_never() {
                Some(Some(answer)) => Next::Answer(answer),
                _ => break,
            };
        }
        if !batch.is_empty() {
            // Bounded: a client that does not read would otherwise hold
            // this task, its answers and its buffers for ever.
            let sent = tokio::time::timeout(send_timeout, async {
                for msg in batch.drain(..) {
                    ws.feed(msg).await?;
                }
                ws.flush().await
            })
            .await;
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break Ending::QUIET,
                Err(_) => {
                    tracing::debug!(conn, "the client does not read its answers; closing");
                    batch.clear();
                    break Ending::STUCK;
                }
            }
        }
    };
    // Requests already queued finish (the card is never left half way, and
    // a login ends with its connection only once it is done); their
    // responses go out if the client is still there, then the closing frame.
    // Each write as bounded as above.
    let mut open = !ending.stuck;
    while let Some(answer) = in_flight.next().await {
        let Some(text) = answer else { continue };
        if !open {
            continue;
        }
        let sent = tokio::time::timeout(send_timeout, async {
            // As above: the notifications an operation broadcast go before
            // its answer.
            loop {
                match try_note(&mut notes, conn) {
                    Some(Next::Note(msg)) => ws.feed(msg).await?,
                    Some(Next::Skip) => {}
                    _ => break,
                }
            }
            ws.send(Message::text(text)).await
        })
        .await;
        open = matches!(sent, Ok(Ok(())));
    }
    if open {
        let _ = tokio::time::timeout(send_timeout, async {
            if let Some(text) = ending.error {
                let _ = ws.feed(Message::text(text)).await;
            }
            if let Some((code, reason)) = ending.close {
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let _ = ws.send(Message::Close(Some(frame))).await;
            }
            // A client's Close frame has its answer queued by the library
            // (RFC 6455 §5.5.1): flushing sends it. `close` would not: it
            // refuses to send once the peer has closed.
            let _ = ws.flush().await;
            ws.close(None).await
        })
        .await;
    }
    hub.close_connection(conn);
}

/// Takes one message from the client: a request is started, anything else
/// answered or ends the connection.
fn read(
    hub: &Arc<Hub>,
    caller: &Caller,
    peer: &Peer,
    msg: Option<Result<Message, WsError>>,
    rate: &mut RateLimit,
    in_flight: &mut InFlight,
) -> Result<(), Ending> {
    match msg {
        Some(Ok(Message::Text(_))) if !caller.once && !hub.gate.still_allows(peer) => {
            // Revoked while connected: the connection ends here.
            tracing::info!(%peer, "origin revoked; closing its connection");
            let e = RpcError::origin_not_allowed(&peer.to_string());
            Err(Ending {
                error: Some(protocol::error(Value::Null, &e).to_string()),
                close: Some((CloseCode::Policy, "origin not allowed")),
                stuck: false,
            })
        }
        Some(Ok(Message::Text(text))) => {
            handle(hub, caller, text.as_str(), rate, in_flight);
            Ok(())
        }
        Some(Ok(Message::Binary(_))) => {
            let e = RpcError::invalid_request("binary frames are not accepted; send JSON text");
            answer_now(in_flight, protocol::error(Value::Null, &e).to_string());
            Ok(())
        }
        Some(Ok(Message::Close(_))) | None => Err(Ending::QUIET),
        Some(Ok(_)) => Ok(()), // ping/pong: answered by the library
        Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
            tracing::debug!(size, max_size, "message too big; closing");
            Err(Ending::close(CloseCode::Size, "message too big"))
        }
        Some(Err(e)) => {
            tracing::debug!(error = %e, "websocket read failed");
            Err(Ending::QUIET)
        }
    }
}

/// What the connection writes next.
enum Next {
    Note(Message),
    /// A request's answer (`None`: it was a notification, no answer).
    Answer(Option<String>),
    /// Nothing to send (a missed notification, a message read).
    Skip,
    /// The daemon is going away.
    End,
}

/// A notification already waiting, if any.
fn try_note(notes: &mut broadcast::Receiver<Arc<super::hub::Note>>, conn: u64) -> Option<Next> {
    use broadcast::error::{RecvError, TryRecvError};
    match notes.try_recv() {
        Ok(note) => Some(from_note(Ok(note), conn)),
        Err(TryRecvError::Lagged(missed)) => Some(from_note(Err(RecvError::Lagged(missed)), conn)),
        Err(TryRecvError::Closed) => Some(Next::End),
        Err(TryRecvError::Empty) => None,
    }
}

fn from_note(n: Result<Arc<super::hub::Note>, broadcast::error::RecvError>, conn: u64) -> Next {
    match n {
        Ok(note) => Next::Note(Message::text(note.for_conn(conn).to_string())),
        Err(broadcast::error::RecvError::Lagged(missed)) => {
            tracing::debug!(missed, "slow client missed notifications");
            Next::Skip
        }
        Err(broadcast::error::RecvError::Closed) => Next::End,
    }
}

/// Queues an answer that needs no work.
fn answer_now(in_flight: &mut InFlight, text: String) {
    in_flight.push(futures_util::future::ready(Some(text)).boxed());
}

/// Answers one text message of a connection: parses it (single request or
/// batch of at most [`protocol::MAX_BATCH`]), queues each call's card work
/// at once, and sends each response to `out` when it is ready. The
/// WebSocket and the native-messaging host both use it, so both speak
/// exactly the same protocol.
///
/// The connection's rate limit is charged one token per request, each
/// request of a batch too (a message that is not JSON, or a batch too
/// large, counts as one): a request over the rate gets `RATE_LIMITED` and
/// nothing is run for it.
pub(crate) fn handle(
    hub: &Arc<Hub>,
    caller: &Caller,
    text: &str,
    rate: &mut RateLimit,
    in_flight: &mut InFlight,
) {
    let now = std::time::Instant::now();
    let mut limited = || !rate.allow(now);
    match protocol::parse_message(text) {
        Incoming::Invalid(e) => {
            let _ = limited();
            answer_now(in_flight, protocol::error(Value::Null, &e).to_string());
        }
        Incoming::Single(req) => {
            let (id, fut) = start(hub, caller, req, limited());
            in_flight.push(
                async move {
                    let outcome = fut.await;
                    id.map(|id| respond(&id, &outcome))
                }
                .boxed(),
            );
        }
        Incoming::Batch(reqs) => {
            let started: Vec<_> = reqs
                .into_iter()
                .map(|r| start(hub, caller, r, limited()))
                .collect();
            in_flight.push(
                async move {
                    let (ids, futs): (Vec<_>, Vec<_>) = started.into_iter().unzip();
                    let outcomes = join_all(futs).await;
                    let responses: Vec<String> = ids
                        .into_iter()
                        .zip(outcomes)
                        .filter_map(|(id, o)| id.map(|id| respond(&id, &o)))
                        .collect();
                    // Each response is a JSON object: the batch is their array.
                    (!responses.is_empty()).then(|| format!("[{}]", responses.join(",")))
                }
                .boxed(),
            );
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
