//! One WebSocket connection: the WebSocket framing of a client's session
//! (`session.rs` answers its requests, each exactly once, and forwards the
//! daemon's notifications).

use super::dispatch::Caller;
use super::hub::Hub;
use super::session::{self, Frame, FrameError, Frames, Gone, MAX_MESSAGE};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::CapacityError};

/// The read buffer each connection starts with. Requests are small; a
/// bigger message (up to [`MAX_MESSAGE`]) grows it as needed. Small on
/// purpose: the library zero-fills the free part of this buffer before
/// every read, and each open connection holds it (docs/performance.md,
/// change 11).
const READ_BUFFER: usize = 1024;

/// Output gathered before it is written to the socket.
const WRITE_BUFFER: usize = 16 * 1024;

/// The most unsent output the WebSocket library may hold for one
/// connection (beyond the kernel's socket buffer); more is an error that
/// closes the connection. With batches of at most
/// [`crate::protocol::MAX_BATCH`] requests an answer is far smaller.
const MAX_UNSENT: usize = 1024 * 1024;

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_UNSENT)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// Serves a socket whose handshake has been answered (by the daemon or by
/// the HTTP server's upgrade): WebSocket frames from the first byte on.
pub(super) async fn serve_socket<S>(
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

/// Serves one WebSocket connection in one task ([`session::serve`]): the
/// WebSocket library's stream is the session's [`Frames`]. Messages fed are
/// gathered in its write buffer and go out in one write at the flush.
async fn serve<S>(
    hub: Arc<Hub>,
    ws: WebSocketStream<S>,
    caller: Caller,
    mut shutdown: watch::Receiver<bool>,
    send_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stopping = async move {
        let _ = shutdown.changed().await;
    };
    session::serve(hub, WsFrames(ws), caller, stopping, send_timeout).await;
}

/// A WebSocket connection's frames.
struct WsFrames<S>(WebSocketStream<S>);

impl<S> Frames for WsFrames<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn next(&mut self) -> Option<Result<Frame, FrameError>> {
        // `StreamExt::next` is cancel-safe: a message is taken whole or not.
        Some(match self.0.next().await? {
            Ok(Message::Text(text)) => Ok(Frame::Text(text)),
            Ok(Message::Binary(_)) => Ok(Frame::Binary),
            Ok(Message::Close(_)) => return None,
            Ok(_) => Ok(Frame::Control), // ping/pong: answered by the library
            Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size })) => {
                Err(FrameError::TooBig { size, max_size })
            }
            Err(e) => Err(FrameError::Broken(e.to_string())),
        })
    }

    async fn feed(&mut self, text: String) -> Result<(), Gone> {
        self.0.feed(Message::text(text)).await.map_err(|_| Gone)
    }

    async fn flush(&mut self) -> Result<(), Gone> {
        self.0.flush().await.map_err(|_| Gone)
    }

    async fn close(&mut self, close: Option<(CloseCode, &'static str)>) {
        if let Some((code, reason)) = close {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = self.0.send(Message::Close(Some(frame))).await;
        }
        // A client's Close frame has its answer queued by the library
        // (RFC 6455 §5.5.1): flushing sends it. `close` would not: it
        // refuses to send once the peer has closed.
        let _ = self.0.flush().await;
        let _ = SinkExt::close(&mut self.0).await;
    }
}
