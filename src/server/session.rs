//! A client's session, whatever carries its messages: the daemon's
//! WebSocket connections (`ws.rs`) are a framing adapter ([`Frames`])
//! around [`serve`] (the native-messaging host, `crate::native`, relays its
//! sessions to these WebSockets),
//! which owns the contract: each request answered exactly once, the rate
//! per request, idle logins, the origin's revocation while connected, the
//! notifications an operation caused before its answer, the bounded and
//! timeboxed output, and the requests in flight answered at the close.

use super::dispatch::{Caller, Reply, dispatch};
use super::hub::{ConnId, Hub, Note};
use crate::error::Error;
use crate::protocol::{self, Incoming, Request, RpcError};
use crate::security::throttle::RateLimit;
use futures_util::future::{BoxFuture, join_all};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Largest message accepted from a client.
pub(super) const MAX_MESSAGE: usize = 64 * 1024;

/// A round of writes to the client (at most [`WRITE_BATCH`] messages and
/// their flush) not done within this closes the session: its client does
/// not read (docs/protocol.md). Its answers and the task serving it are not
/// held any longer; card work it queued still runs to its end.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many messages are written before a flush.
const WRITE_BATCH: usize = 64;

/// A message from the client.
pub(crate) enum Frame {
    /// JSON-RPC text.
    Text(Utf8Bytes),
    /// Binary data (WebSocket only): answered with an error.
    Binary,
    /// Anything the framing answers itself (a WebSocket ping).
    Control,
}

/// Why the client's messages cannot be read.
pub(crate) enum FrameError {
    /// A message over the limit: the session closes with 1009.
    TooBig { size: usize, max_size: usize },
    /// The transport broke: the session ends without a closing frame.
    Broken(String),
}

/// The client is gone: nothing more can be written to it.
pub(crate) struct Gone;

/// How a session's messages travel: one client's frames in, text out.
/// The session calls `next` inside a `select!`: it must be cancel-safe.
/// Writes are made by `feed` and sent by `flush`; the session bounds each
/// round of them in time.
pub(crate) trait Frames: Send {
    /// The client's next message; `None` when it closed its side.
    fn next(&mut self) -> impl Future<Output = Option<Result<Frame, FrameError>>> + Send;
    /// Queues one message (an answer or a notification) for the client.
    fn feed(&mut self, text: String) -> impl Future<Output = Result<(), Gone>> + Send;
    /// Sends what was fed.
    fn flush(&mut self) -> impl Future<Output = Result<(), Gone>> + Send;
    /// Ends the session's framing, with a closing code and reason sent to
    /// the client (`None`: the client closed, or is gone).
    fn close(
        &mut self,
        close: Option<(CloseCode, &'static str)>,
    ) -> impl Future<Output = ()> + Send;
}

/// A session's requests being answered. They are polled by the session's
/// own task, not spawned (a task per request cost more than the status
/// read it serves; docs/performance.md, change 10), and the card work is queued
/// before the future is first polled, so order is unchanged. Each yields
/// the text to send back (`None`: a notification, no answer).
type InFlight = FuturesUnordered<BoxFuture<'static, Option<String>>>;

/// Why a session ends, and the closing frame it sends (if any).
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

/// Serves one client's session in the task that calls it: its requests,
/// their answers and the daemon's notifications. (A writer task of its own
/// and a channel to it cost a wake-up per message.) A client that does not
/// read only holds up its own session: the card work of its requests is
/// queued at once and runs regardless. `stopping` ends the session with
/// 1001 (the daemon is shutting down); the connection is closed on the hub
/// when the session ends.
pub(crate) async fn serve<F: Frames>(
    hub: Arc<Hub>,
    mut frames: F,
    caller: Caller,
    stopping: impl Future<Output = ()> + Send,
    send_timeout: Duration,
) {
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
    let mut batch: Vec<String> = Vec::with_capacity(WRITE_BATCH);
    // Made once by the caller: a new `changed()` each time round would
    // register a new waiter.
    tokio::pin!(stopping);
    let ending = 'conn: loop {
        // Shutdown first (a client that never stops sending must not hold
        // it off), then notifications: an operation broadcasts its
        // `pinStateChanged` before it hands over its result, so the caller
        // always sees the new PIN state before the response
        // (docs/protocol.md promises it). The client's messages last.
        let first = tokio::select! {
            biased;
            () = &mut stopping => break Ending::close(CloseCode::Away, "the daemon is shutting down"),
            n = notes.recv() => from_note(n, conn),
            Some(answer) = in_flight.next(), if !in_flight.is_empty() => Next::Answer(answer),
            m = frames.next() => match read(&hub, &caller, m, &mut rate, &mut in_flight) {
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
                    // Quiet for too long: this session's logins end.
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
                batch.push(text);
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
                    frames.feed(msg).await?;
                }
                frames.flush().await
            })
            .await;
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(Gone)) => break Ending::QUIET,
                Err(_) => {
                    tracing::debug!(conn, "the client does not read its answers; closing");
                    batch.clear();
                    break Ending::STUCK;
                }
            }
        }
    };
    // Requests already queued finish (the card is never left half way, and
    // a login ends with its session only once it is done); their responses
    // go out if the client is still there, then the closing frame. Each
    // write as bounded as above.
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
                    Some(Next::Note(msg)) => frames.feed(msg).await?,
                    Some(Next::Skip) => {}
                    _ => break,
                }
            }
            frames.feed(text).await?;
            frames.flush().await
        })
        .await;
        open = matches!(sent, Ok(Ok(())));
    }
    if open {
        let _ = tokio::time::timeout(send_timeout, async {
            if let Some(text) = ending.error {
                let _ = frames.feed(text).await;
            }
            frames.close(ending.close).await
        })
        .await;
    }
    hub.close_connection(conn);
}

/// Takes one message from the client: a request is started, anything else
/// answered or ends the session.
fn read(
    hub: &Arc<Hub>,
    caller: &Caller,
    msg: Option<Result<Frame, FrameError>>,
    rate: &mut RateLimit,
    in_flight: &mut InFlight,
) -> Result<(), Ending> {
    match msg {
        Some(Ok(Frame::Text(_))) if !caller.once && !hub.gate.still_allows(&caller.peer) => {
            // Revoked while connected: the session ends here.
            let peer = &caller.peer;
            tracing::info!(%peer, "origin revoked; closing its connection");
            let e = RpcError::origin_not_allowed(&peer.to_string());
            Err(Ending {
                error: Some(protocol::error(Value::Null, &e).to_string()),
                close: Some((CloseCode::Policy, "origin not allowed")),
                stuck: false,
            })
        }
        Some(Ok(Frame::Text(text))) => {
            handle(hub, caller, text.as_str(), rate, in_flight);
            Ok(())
        }
        Some(Ok(Frame::Binary)) => {
            let e = RpcError::invalid_request("binary frames are not accepted; send JSON text");
            answer_now(in_flight, protocol::error(Value::Null, &e).to_string());
            Ok(())
        }
        Some(Ok(Frame::Control)) => Ok(()),
        None => Err(Ending::QUIET),
        Some(Err(FrameError::TooBig { size, max_size })) => {
            tracing::debug!(size, max_size, "message too big; closing");
            Err(Ending::close(CloseCode::Size, "message too big"))
        }
        Some(Err(FrameError::Broken(e))) => {
            tracing::debug!(error = %e, "reading the client's messages failed");
            Err(Ending::QUIET)
        }
    }
}

/// What the session writes next.
enum Next {
    Note(String),
    /// A request's answer (`None`: it was a notification, no answer).
    Answer(Option<String>),
    /// Nothing to send (a missed notification, a message read).
    Skip,
    /// The daemon is going away.
    End,
}

/// A notification already waiting, if any.
fn try_note(notes: &mut broadcast::Receiver<Arc<Note>>, conn: ConnId) -> Option<Next> {
    use broadcast::error::{RecvError, TryRecvError};
    match notes.try_recv() {
        Ok(note) => Some(from_note(Ok(note), conn)),
        Err(TryRecvError::Lagged(missed)) => Some(from_note(Err(RecvError::Lagged(missed)), conn)),
        Err(TryRecvError::Closed) => Some(Next::End),
        Err(TryRecvError::Empty) => None,
    }
}

fn from_note(n: Result<Arc<Note>, broadcast::error::RecvError>, conn: ConnId) -> Next {
    match n {
        Ok(note) => Next::Note(note.for_conn(conn).to_string()),
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

/// Answers one text message of a session: parses it (single request or
/// batch of at most [`protocol::MAX_BATCH`]), queues each call's card work
/// at once, and adds the future of its answer to `in_flight`.
///
/// The session's rate limit is charged one token per request, each request
/// of a batch too (a message that is not JSON, or a batch too large, counts
/// as one): a request over the rate gets `RATE_LIMITED` and nothing is run
/// for it.
fn handle(
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

type Started = (Option<Value>, BoxFuture<'static, Result<Reply, RpcError>>);

/// Queues a request's card work now (keeping arrival order per reader);
/// a session over its rate gets `RATE_LIMITED` and nothing is run.
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
