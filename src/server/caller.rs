//! Who a call comes from (a connection, its site, its one-time handles),
//! and waiting for the card work a call queued.

use super::credentials::ConnCredentials;
use super::hub::ConnId;
use crate::error::Error;
use crate::protocol::RpcError;
use crate::security::origin::Peer;
use futures_util::future::{BoxFuture, FutureExt};
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// What a call answers, or why it failed.
pub(super) type Outcome = Result<Value, RpcError>;

/// The connection a call comes from.
#[derive(Clone)]
pub(crate) struct Caller {
    pub conn: ConnId,
    pub peer: Peer,
    /// Allowed once at the consent prompt: for this connection only.
    pub once: bool,
    pub creds: Arc<Mutex<ConnCredentials>>,
}

impl Caller {
    /// A newly opened connection: no credentials handed out yet.
    pub(crate) fn new(conn: ConnId, peer: Peer, once: bool) -> Caller {
        Caller {
            conn,
            peer,
            once,
            creds: Default::default(),
        }
    }

    /// The key wrong-PIN counts are kept under: the origin.
    pub(super) fn site_key(&self) -> String {
        self.peer.to_string()
    }
}

pub(super) fn ready(outcome: Outcome) -> BoxFuture<'static, Outcome> {
    futures_util::future::ready(outcome).boxed()
}

/// Waits for a queued job, at most the operation timeout. A timed-out
/// operation still runs to its end on the card.
pub(super) async fn await_job<R>(
    rx: tokio::sync::oneshot::Receiver<Result<R, Error>>,
    timeout: std::time::Duration,
) -> Result<R, RpcError> {
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(result)) => result.map_err(RpcError::from),
        Ok(Err(_)) => Err(Error::ReaderError("the reader worker stopped".into()).into()),
        Err(_) => Err(RpcError::timeout(timeout.as_secs())),
    }
}

pub(super) fn lock_creds(caller: &Caller) -> std::sync::MutexGuard<'_, ConnCredentials> {
    caller.creds.lock().unwrap_or_else(|e| e.into_inner())
}
