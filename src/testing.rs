//! Internals that the crate's own tests and benchmark use, behind the
//! `test-support` feature. **Not a stable API**: it changes with the code
//! it exposes, without notice.

use crate::server::Server;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

pub use crate::logging::init_with_writer;
pub use crate::service::{ReaderList, Service};

/// The reader workers of a running daemon.
pub fn service(server: &Server) -> &Service {
    &server.hub().service
}

/// The WebSocket connections a running daemon has open.
pub fn connection_count(server: &Server) -> usize {
    server.hub().connection_count()
}

/// Unlocks `site` in a running daemon's lockout, as `cardgate origins
/// unlock` does; `Ok(false)` when it was not locked.
pub fn unlock_site(server: &Server, site: &str) -> Result<bool, String> {
    server.hub().lockout.unlock(site)
}

/// Parses one text frame as the daemon does; the JSON-RPC error (code and
/// `data`) of each part refused: the frame's, or each request's.
pub fn parse_errors(text: &str) -> Vec<(i64, serde_json::Value)> {
    use crate::protocol::{Incoming, parse_message};
    let refused = |r: crate::protocol::Request| r.call.err().map(|e| (e.code, e.data));
    match parse_message(text) {
        Incoming::Invalid(e) => vec![(e.code, e.data)],
        Incoming::Single(r) => refused(r).into_iter().collect(),
        Incoming::Batch(items) => items.into_iter().filter_map(refused).collect(),
    }
}

/// The native-messaging host relaying to the daemon on `port` (never
/// starting one): reads the browser's frames from `input`, writes its own
/// to `output`, and returns its exit code.
pub async fn native_host<R, W>(port: u16, input: R, output: W) -> u8
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let upstream = Arc::new(crate::native::Upstream::new(port, None));
    crate::native::serve(upstream, input, output).await
}

/// Creates a CA and a certificate for 127.0.0.1/localhost in `dir`, as
/// `cardgate tls init` does; the CA certificate's path.
pub fn tls_init(dir: &Path) -> Result<PathBuf, String> {
    let files = crate::tls::TlsFiles::in_dir(dir);
    crate::tls::init(&files, false).map(|g| g.files.ca)
}
