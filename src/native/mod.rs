//! `cardgate native-host`: the browsers' native-messaging host, for pages
//! where the browser's policy blocks loopback WebSockets.
//!
//! The browser starts this process for the cardgate extension and talks to
//! it over stdin/stdout: each message is a 4-byte length in native byte
//! order followed by that many bytes of UTF-8 JSON. The extension keeps one
//! port open and multiplexes the pages using it as *sessions*; each session
//! carries the very JSON-RPC text a WebSocket would, served by the same
//! session as the daemon's WebSocket connections
//! ([`crate::server::serve_session`]: this module only frames it).
//! The page's origin comes from the browser (the extension reads
//! `sender.origin`, which a page cannot forge) and must be on the same
//! allowlist as the WebSocket's (`cardgate origins allow`). Which extension
//! may start the host is the browser's check, from the host manifest.
//!
//! Envelopes (docs/native-messaging.md):
//! - extension → host: `{"type":"open","session":N,"origin":"https://…"}`,
//!   `{"type":"message","session":N,"data":"<JSON-RPC text>"}`,
//!   `{"type":"close","session":N}`;
//! - host → extension: `{"type":"opened","session":N}`,
//!   `{"type":"refused","session":N,"code":…,"message":…}`,
//!   `{"type":"message","session":N,"data":"<JSON-RPC text>"}`,
//!   `{"type":"closed","session":N,"code":1008,"reason":…}`,
//!   `{"type":"error","code":…,"message":…}` (about the envelope itself).

use crate::config::Config;
use crate::security::origin::{Origin, OriginGate, Peer};
use crate::server::hub::Hub;
use crate::server::{
    Caller, Frame, FrameError, Frames, Gone, MAX_MESSAGE, SEND_TIMEOUT, serve_session,
};
use crate::service::Service;
use crate::transport::Backend;
use clap::Args;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The largest envelope accepted from the browser: a 64 KiB JSON-RPC
/// message, escaped into a JSON string, fits. A bigger length means a
/// broken peer: the host says so and exits rather than read it.
pub const MAX_FRAME: u32 = 256 * 1024;
/// Chrome refuses messages over 1 MiB from a host.
pub const MAX_OUT_FRAME: usize = 1024 * 1024;

#[derive(Args)]
pub struct NativeHostArgs {
    /// Simulated readers and cards (as `cardgate demo`) instead of PC/SC.
    #[arg(long)]
    demo: bool,
    /// What the browser passes: Chrome the extension's origin
    /// (chrome-extension://ID/), Firefox the manifest path and the
    /// extension's id. Logged only.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    browser_args: Vec<String>,
}

pub fn run(args: NativeHostArgs, config: &Config) -> ExitCode {
    let backend: Arc<dyn Backend> = if args.demo {
        Arc::new(crate::daemon::demo_backend())
    } else {
        Arc::new(crate::transport::pcsc::PcscBackend::new())
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(caller = ?args.browser_args, "native-messaging host started");
    let gate = OriginGate::new(config.origins_file.clone(), config.origins.clone());
    let policies = crate::daemon::policies(config);
    let service = Service::with_policies(backend.clone(), policies);
    let limits = config.limits.clone();
    let op_timeout = config.op_timeout;
    // The PIN dialog works as for the daemon; unknown origins are refused
    // here whatever `origins.unknown` says (no consent prompt).
    let dialog = crate::pinentry::PinDialog::new(
        config.pin_dialog.program.clone(),
        config.pin_dialog.timeout,
    );
    let code = runtime.block_on(async move {
        let hub = Hub::start(backend, service, op_timeout, gate, 0, limits, dialog);
        let code = serve(hub.clone(), tokio::io::stdin(), tokio::io::stdout()).await;
        hub.stop_watching();
        let h = hub.clone();
        let _ = tokio::task::spawn_blocking(move || crate::server::logout_everything(&h)).await;
        code
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
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
pub fn encode_frame(v: &Value) -> Vec<u8> {
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

/// A session as the reader loop knows it.
struct SessionHandle {
    tx: mpsc::UnboundedSender<String>,
}

/// Serves the framed stream until its end. Returns the exit status: 0 when
/// the browser closed the port, 1 when the stream broke.
pub async fn serve<R, W>(hub: Arc<Hub>, mut input: R, mut output: W) -> u8
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
    let mut sessions: HashMap<u64, SessionHandle> = HashMap::new();
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
                if sessions.contains_key(&id) {
                    let _ = frames.send(refused(id, "INVALID_ENVELOPE", "session already open"));
                    continue;
                }
                match open(&hub, &env) {
                    Ok(caller) => {
                        let (tx, rx) = mpsc::unbounded_channel();
                        sessions.insert(id, SessionHandle { tx });
                        let _ = frames.send(json!({ "type": "opened", "session": id }));
                        let session = SessionFrames {
                            id,
                            rx,
                            out: frames.clone(),
                        };
                        // No shutdown but the end of input: `close`, or
                        // the reader loop's end, ends each session.
                        tasks.spawn(serve_session(
                            hub.clone(),
                            session,
                            caller,
                            std::future::pending(),
                            SEND_TIMEOUT,
                        ));
                    }
                    Err((code, message)) => {
                        tracing::warn!(session = id, %message, "session refused");
                        let _ = frames.send(refused(id, code, &message));
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
                let delivered = sessions
                    .get(&id)
                    .is_some_and(|s| s.tx.send(data.to_string()).is_ok());
                if !delivered {
                    sessions.remove(&id);
                    let _ = frames.send(closed(id, CloseCode::Normal, "no such session"));
                }
            }
            (Some("close"), Some(id)) => {
                // Dropping the sender ends the session (its logins end).
                sessions.remove(&id);
            }
            _ => {
                let _ = frames.send(error(
                    "INVALID_ENVELOPE",
                    "expected {\"type\": \"open\"|\"message\"|\"close\", \"session\": <number>, …}",
                ));
            }
        }
    };
    sessions.clear();
    while tasks.join_next().await.is_some() {}
    drop(frames);
    let _ = writer.await;
    code
}

fn refused(id: u64, code: &str, message: &str) -> Value {
    json!({ "type": "refused", "session": id, "code": code, "message": message })
}

fn closed(id: u64, code: CloseCode, reason: &str) -> Value {
    json!({ "type": "closed", "session": id, "code": u16::from(code), "reason": reason })
}

/// Checks an `open`: the page's origin must be on the allowlist.
fn open(hub: &Hub, env: &Value) -> Result<Caller, (&'static str, String)> {
    let text = env.get("origin").and_then(Value::as_str).unwrap_or("");
    let origin = Origin::parse(text).map_err(|e| ("ORIGIN_NOT_ALLOWED", e.to_string()))?;
    let peer = Peer::Web(origin.clone());
    if !hub.gate.still_allows(&peer) {
        return Err((
            "ORIGIN_NOT_ALLOWED",
            format!("Origin {origin} is not on the allowlist (cardgate origins allow {origin})"),
        ));
    }
    let conn = hub
        .open_connection()
        .ok_or(("TOO_MANY_CONNECTIONS", "too many open connections".into()))?;
    Ok(Caller::new(conn, peer, false))
}

/// A session's frames: the JSON-RPC texts the reader loop routes to it
/// in, its answers and notifications out as `message` envelopes on the
/// host's output (the close as a `closed` one). The session itself is the
/// daemon's ([`serve_session`]), as for a WebSocket connection.
struct SessionFrames {
    id: u64,
    rx: mpsc::UnboundedReceiver<String>,
    out: mpsc::UnboundedSender<Value>,
}

impl Frames for SessionFrames {
    async fn next(&mut self) -> Option<Result<Frame, FrameError>> {
        // `recv` is cancel-safe, and nothing after it waits.
        let text = self.rx.recv().await?;
        if text.len() > MAX_MESSAGE {
            return Some(Err(FrameError::TooBig {
                size: text.len(),
                max_size: MAX_MESSAGE,
            }));
        }
        Some(Ok(Frame::Text(text.into())))
    }

    async fn feed(&mut self, text: String) -> Result<(), Gone> {
        // The host's output is an unbounded queue to its writer: this never
        // waits, so the session's send timeout does not apply here yet.
        let v = json!({ "type": "message", "session": self.id, "data": text });
        self.out.send(v).map_err(|_| Gone)
    }

    async fn flush(&mut self) -> Result<(), Gone> {
        // The host's writer writes and flushes each envelope.
        Ok(())
    }

    async fn close(&mut self, close: Option<(CloseCode, &'static str)>) {
        if let Some((code, reason)) = close {
            let _ = self.out.send(closed(self.id, code, reason));
        }
    }
}
