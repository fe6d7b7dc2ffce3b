//! `cardgate native-host`: the browsers' native-messaging host, for pages
//! where the browser's policy blocks loopback WebSockets.
//!
//! The browser starts this process for the cardgate extension and talks to
//! it over stdin/stdout: each message is a 4-byte length in native byte
//! order followed by that many bytes of UTF-8 JSON. The extension keeps one
//! port open and multiplexes the pages using it as *sessions*; each session
//! carries the very JSON-RPC text a WebSocket would.
//!
//! The host is a relay, not a second owner of the cards: each session is a
//! WebSocket to the running daemon (`ws://127.0.0.1:PORT/ws`, `port` from
//! the configuration) with the page's origin as its `Origin` header, so the
//! daemon's allowlist, consent, per-site lockout, login ownership and
//! last-try guard apply exactly as for a page connecting directly. When
//! nothing listens the host starts the daemon ([`upstream`]). The page's
//! origin comes from the browser (the extension reads `sender.origin`,
//! which a page cannot forge). Which extension may start the host is the
//! browser's check, from the host manifest.
//!
//! Envelopes (docs/native-messaging.md):
//! - extension → host: `{"type":"open","session":N,"origin":"https://…"}`,
//!   `{"type":"message","session":N,"data":"<JSON-RPC text>"}`,
//!   `{"type":"close","session":N}` (optionally with a `code`);
//! - host → extension: `{"type":"opened","session":N}`,
//!   `{"type":"refused","session":N,"code":…,"message":…}`,
//!   `{"type":"message","session":N,"data":"<JSON-RPC text>"}`,
//!   `{"type":"closed","session":N,"code":1008,"reason":…}`,
//!   `{"type":"error","code":…,"message":…}` (about the envelope itself, or
//!   with `session` about that session).

pub(crate) mod upstream;

use crate::config::Config;
use crate::security::origin::Origin;
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
pub(crate) use upstream::{Starter, Upstream};

/// The largest envelope accepted from the browser: a 64 KiB JSON-RPC
/// message, escaped into a JSON string, fits. A bigger length means a
/// broken peer: the host says so and exits rather than read it.
pub(crate) const MAX_FRAME: u32 = 256 * 1024;
/// Chrome refuses messages over 1 MiB from a host.
pub(crate) const MAX_OUT_FRAME: usize = 1024 * 1024;
/// How long a closing session waits for the daemon's close answer.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// A session's messages waiting to be sent to the daemon (while it starts,
/// or while it reads slower than the page sends). One more ends the
/// session with [`QUEUE_FULL`]: a page cannot make the host hold an
/// unbounded backlog (each message may be 256 KiB).
pub(crate) const MAX_QUEUED: usize = 64;
/// The code of the `error` envelope for a session whose queue overflowed.
const QUEUE_FULL: &str = "TOO_MANY_MESSAGES";

#[derive(Args)]
/// `cardgate native-host`'s arguments: what the browser passes, and
/// whether to relay to a demo daemon.
pub(crate) struct NativeHostArgs {
    /// Relay to a daemon with simulated readers and cards: when none
    /// listens, start `cardgate demo` (a PIV and an OpenPGP card) instead
    /// of `cardgate serve`.
    #[arg(long)]
    demo: bool,
    /// What the browser passes: Chrome the extension's origin
    /// (chrome-extension://ID/), Firefox the manifest path and the
    /// extension's id. Logged only.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    browser_args: Vec<String>,
}

/// Runs the host; `config_file` is the `--config` it was given, passed on
/// to a daemon it starts.
pub(crate) fn run(
    args: NativeHostArgs,
    config: &Config,
    config_file: Option<&std::path::Path>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(caller = ?args.browser_args, port = config.port, "native-messaging host started");
    let starter = match std::env::current_exe() {
        Ok(exe) => Some(Starter {
            exe,
            global_args: config_file
                .map(|f| vec!["--config".into(), f.as_os_str().to_owned()])
                .unwrap_or_default(),
            demo: args.demo,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot find the cardgate executable; the daemon will not be started on demand");
            None
        }
    };
    let upstream = Arc::new(Upstream::new(config.port, starter));
    let code = runtime.block_on(serve(upstream, tokio::io::stdin(), tokio::io::stdout()));
    runtime.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}

/// Why reading a frame stopped.
#[derive(Debug)]
enum ReadEnd {
    /// End of input between frames: the browser closed the port.
    Eof,
    /// End of input inside a frame.
    Truncated,
    TooBig(u32),
    Io(std::io::Error),
}

async fn read_frame<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, ReadEnd> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]).await {
            Ok(0) if got == 0 => return Err(ReadEnd::Eof),
            Ok(0) => return Err(ReadEnd::Truncated),
            Ok(n) => got += n,
            Err(e) => return Err(ReadEnd::Io(e)),
        }
    }
    let len = u32::from_ne_bytes(len);
    if len > MAX_FRAME {
        return Err(ReadEnd::TooBig(len));
    }
    let mut body = vec![0u8; len as usize];
    match r.read_exact(&mut body).await {
        Ok(_) => Ok(body),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ReadEnd::Truncated),
        Err(e) => Err(ReadEnd::Io(e)),
    }
}

/// One frame: length in native byte order, then the JSON.
pub(crate) fn encode_frame(v: &Value) -> Vec<u8> {
    let mut text = v.to_string();
    if text.len() > MAX_OUT_FRAME {
        text = json!({ "type": "error", "code": "MESSAGE_TOO_BIG", "message": "an answer exceeded the browser's 1 MiB limit and was dropped" }).to_string();
    }
    let mut out = Vec::with_capacity(4 + text.len());
    out.extend_from_slice(&(text.len() as u32).to_ne_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

fn error(code: &str, message: impl Into<String>) -> Value {
    json!({ "type": "error", "code": code, "message": message.into() })
}

/// What the reader loop passes to a session.
enum Inbound {
    Text(String),
    /// The page closed its socket, with this code.
    Close(CloseCode),
}

/// The reader loop's side of a session: its bounded queue, and what tells
/// the session the queue overflowed (what still waits is then dropped, not
/// sent, and the connection to the daemon is dropped at once).
struct SessionIn {
    tx: mpsc::Sender<Inbound>,
    overflowed: tokio::sync::watch::Sender<bool>,
}

/// Serves the framed stream until its end, relaying each session to the
/// daemon. Returns the exit status: 0 when the browser closed the port, 1
/// when the stream broke.
pub(crate) async fn serve<R, W>(upstream: Arc<Upstream>, mut input: R, mut output: W) -> u8
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (frames, mut frames_rx) = mpsc::unbounded_channel::<Value>();
    let writer = tokio::spawn(async move {
        while let Some(v) = frames_rx.recv().await {
            if output.write_all(&encode_frame(&v)).await.is_err() || output.flush().await.is_err() {
                break;
            }
        }
    });
    let mut sessions: HashMap<u64, SessionIn> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let code = loop {
        // Reap sessions that ended (a JoinSet keeps a finished task until
        // it is joined). Not in a select with the read: a frame read is
        // not cancel-safe.
        while tasks.try_join_next().is_some() {}
        let body = match read_frame(&mut input).await {
            Ok(b) => b,
            Err(ReadEnd::Eof) => break 0,
            Err(ReadEnd::TooBig(len)) => {
                let _ = frames.send(error(
                    "MESSAGE_TOO_BIG",
                    format!("a message of {len} bytes exceeds the limit of {MAX_FRAME}; closing"),
                ));
                break 1;
            }
            Err(ReadEnd::Truncated) => {
                tracing::warn!("input ended inside a message");
                break 1;
            }
            Err(ReadEnd::Io(e)) => {
                tracing::warn!(error = %e, "reading stdin failed");
                break 1;
            }
        };
        let Ok(env) = serde_json::from_slice::<Value>(&body) else {
            let _ = frames.send(error("INVALID_ENVELOPE", "the message is not JSON"));
            continue;
        };
        let session = env.get("session").and_then(Value::as_u64);
        let kind = env.get("type").and_then(Value::as_str);
        match (kind, session) {
            (Some("open"), Some(id)) => {
                if sessions.get(&id).is_some_and(|s| !s.tx.is_closed()) {
                    let _ = frames.send(refused(id, "INVALID_ENVELOPE", "session already open"));
                    continue;
                }
                let text = env.get("origin").and_then(Value::as_str).unwrap_or("");
                match Origin::parse(text) {
                    Ok(origin) => {
                        let (tx, rx) = mpsc::channel(MAX_QUEUED);
                        let (overflowed_tx, overflowed) = tokio::sync::watch::channel(false);
                        sessions.insert(
                            id,
                            SessionIn {
                                tx,
                                overflowed: overflowed_tx,
                            },
                        );
                        tasks.spawn(relay(
                            upstream.clone(),
                            id,
                            origin.to_string(),
                            Queue { rx, overflowed },
                            frames.clone(),
                        ));
                    }
                    Err(e) => {
                        tracing::warn!(session = id, error = %e, "session refused");
                        let _ = frames.send(refused(id, "ORIGIN_NOT_ALLOWED", &e.to_string()));
                    }
                }
            }
            (Some("message"), Some(id)) => {
                let Some(data) = env.get("data").and_then(Value::as_str) else {
                    let _ = frames.send(error(
                        "INVALID_ENVELOPE",
                        "a message needs \"data\": the JSON-RPC text",
                    ));
                    continue;
                };
                let sent = sessions
                    .get(&id)
                    .map(|s| s.tx.try_send(Inbound::Text(data.to_string())));
                match sent {
                    Some(Ok(())) => {}
                    Some(Err(mpsc::error::TrySendError::Full(_))) => {
                        if let Some(s) = sessions.remove(&id) {
                            let _ = s.overflowed.send(true);
                        }
                        tracing::warn!(session = id, "too many messages waiting; session closed");
                        let _ = frames.send(json!({
                            "type": "error",
                            "session": id,
                            "code": QUEUE_FULL,
                            "message": format!("more than {MAX_QUEUED} messages of session {id} were waiting for the daemon; the session is closed"),
                        }));
                        let _ = frames.send(closed(
                            id,
                            CloseCode::Policy,
                            "too many messages waiting for the daemon",
                        ));
                    }
                    Some(Err(mpsc::error::TrySendError::Closed(_))) | None => {
                        sessions.remove(&id);
                        let _ = frames.send(closed(id, CloseCode::Normal, "no such session"));
                    }
                }
            }
            (Some("close"), Some(id)) => {
                if let Some(s) = sessions.remove(&id) {
                    // A full queue: dropping the sender closes the session
                    // (1000) once what waits is sent.
                    let _ = s.tx.try_send(Inbound::Close(page_close_code(&env)));
                }
            }
            _ => {
                let _ = frames.send(error(
                    "INVALID_ENVELOPE",
                    "expected {\"type\": \"open\"|\"message\"|\"close\", \"session\": <number>, …}",
                ));
            }
        }
    };
    // Dropping the senders closes every session's connection to the daemon
    // (which ends their logins).
    sessions.clear();
    while tasks.join_next().await.is_some() {}
    drop(frames);
    let _ = writer.await;
    code
}

/// The code of a page's `close`: 1000, or one a page may choose
/// (3000–4999, as `WebSocket.close` allows).
fn page_close_code(env: &Value) -> CloseCode {
    match env.get("code").and_then(Value::as_u64) {
        Some(c @ 3000..=4999) => CloseCode::from(c as u16),
        _ => CloseCode::Normal,
    }
}

/// A session's side of its queue (see [`SessionIn`]).
struct Queue {
    rx: mpsc::Receiver<Inbound>,
    overflowed: tokio::sync::watch::Receiver<bool>,
}

/// One session: a WebSocket to the daemon for the page's origin, text
/// frames relayed both ways until either side closes.
async fn relay(
    upstream: Arc<Upstream>,
    id: u64,
    origin: String,
    queue: Queue,
    out: mpsc::UnboundedSender<Value>,
) {
    let Queue {
        mut rx,
        mut overflowed,
    } = queue;
    let ws = match upstream.connect(&origin).await {
        Ok(ws) => ws,
        Err(r) => {
            tracing::warn!(session = id, code = %r.code, message = %r.message, "session refused");
            let _ = out.send(refused(id, &r.code, &r.message));
            return;
        }
    };
    let _ = out.send(json!({ "type": "opened", "session": id }));
    let (mut sink, mut stream) = ws.split();
    let page_closed = Arc::new(AtomicBool::new(false));
    let (closing_tx, mut closing_rx) = tokio::sync::watch::channel(false);
    // Page → daemon, in a task of its own so that neither direction waits
    // for the other.
    let up = {
        let page_closed = page_closed.clone();
        let overflowed = overflowed.clone();
        tokio::spawn(async move {
            let code = loop {
                let next = rx.recv().await;
                if *overflowed.borrow() {
                    // What waits is dropped: the page was told the session
                    // is closed.
                    break CloseCode::Policy;
                }
                match next {
                    Some(Inbound::Text(t)) => {
                        if sink.send(Message::text(t)).await.is_err() {
                            return;
                        }
                    }
                    Some(Inbound::Close(code)) => break code,
                    // The browser closed the port (or the host ends).
                    None => break CloseCode::Normal,
                }
            };
            page_closed.store(true, Ordering::SeqCst);
            let _ = closing_tx.send(true);
            let frame = CloseFrame {
                code,
                reason: "".into(),
            };
            let _ = tokio::time::timeout(CLOSE_WAIT, sink.send(Message::Close(Some(frame)))).await;
        })
    };
    // Once the page has closed, the daemon's close answer is waited for a
    // bounded time.
    let grace = async move {
        let _ = closing_rx.wait_for(|c| *c).await;
        tokio::time::sleep(CLOSE_WAIT).await;
    };
    tokio::pin!(grace);
    let ending = loop {
        let next = tokio::select! {
            m = stream.next() => m,
            () = &mut grace => break None,
            // The page was told the session is closed; a daemon that does
            // not read is not waited for.
            _ = overflowed.wait_for(|o| *o) => {
                page_closed.store(true, Ordering::SeqCst);
                break None;
            }
        };
        match next {
            Some(Ok(Message::Text(t))) => {
                if page_closed.load(Ordering::SeqCst) {
                    continue;
                }
                let v = json!({ "type": "message", "session": id, "data": t.as_str() });
                if out.send(v).is_err() {
                    break None;
                }
            }
            Some(Ok(Message::Close(frame))) => {
                break Some(match frame {
                    Some(f) => (f.code, f.reason.to_string()),
                    None => (CloseCode::Status, String::new()),
                });
            }
            Some(Ok(_)) => {} // ping/pong: answered by the library
            Some(Err(_)) | None => {
                break Some((CloseCode::Abnormal, "the cardgate daemon went away".into()));
            }
        }
    };
    if let Some((code, reason)) = ending
        && !page_closed.load(Ordering::SeqCst)
    {
        tracing::debug!(
            session = id,
            code = u16::from(code),
            "the daemon closed the session"
        );
        let _ = out.send(closed(id, code, &reason));
    }
    // The daemon closed first: later messages of the page get "closed".
    up.abort();
    let _ = up.await;
}

fn refused(id: u64, code: &str, message: &str) -> Value {
    json!({ "type": "refused", "session": id, "code": code, "message": message })
}

fn closed(id: u64, code: CloseCode, reason: &str) -> Value {
    json!({ "type": "closed", "session": id, "code": u16::from(code), "reason": reason })
}
