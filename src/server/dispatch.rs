//! Runs parsed calls: each call's own file in `cmd/` says what it does
//! (`apply`). Card work is queued on the reader's worker at once, in
//! arrival order; the returned future only waits for the result.
//!
//! A login belongs to the connection that made it: other connections see
//! `validated: false`. PIN operations are in `operation.rs`; the rules
//! that protect the card's tries are applied by the PIN engine to each
//! credential as it is sent (`pin/present.rs`). Reads shared by the pages
//! asking at once, and waiting for a job on a reader's worker, are here.

pub(crate) use super::caller::Caller;
use super::caller::{Outcome, await_job, ready};
use super::hub::{ConnId, Hub};
use crate::error::Error;
use crate::pin::{Engine, PinStatus};
use crate::protocol::{Call, RpcError};
use futures_util::future::{BoxFuture, FutureExt};
use serde_json::Value;
use std::sync::Arc;

/// What a call answers: a JSON value, or a PIN status serialised as it is
/// sent (a status read is the hot path; building a JSON tree for it cost
/// more than the rest of the request).
#[derive(serde::Serialize)]
#[serde(untagged)]
pub(super) enum Reply {
    Value(Value),
    Status(PinStatus),
}

/// Starts a call: queues its card work now, returns the future of its result.
pub(super) fn dispatch(
    hub: &Arc<Hub>,
    caller: &Caller,
    call: Call,
) -> BoxFuture<'static, Result<Reply, RpcError>> {
    if let Some(t) = call.target()
        && let Err(e) = hub.service.check_reader(&t.reader)
    {
        return futures_util::future::ready(Err(e.into())).boxed();
    }
    let value = match call {
        Call::GetPinStatus(c) => {
            return c.apply(hub, caller).map(|r| r.map(Reply::Status)).boxed();
        }
        Call::Hello(c) => ready(c.apply()),
        Call::GetReaders(c) => c.apply(hub, caller),
        Call::Login(c) => c.apply(hub, caller),
        Call::Change(c) => c.apply(hub, caller),
        Call::Init(c) => c.apply(hub, caller),
        Call::RequestCredential(c) => c.apply(hub, caller),
        Call::Logout(c) => c.apply(hub, caller),
        Call::GetConstraints(c) => c.apply(hub, caller),
        Call::CheckConstraints(c) => c.apply(hub, caller),
    };
    value.map(|r| r.map(Reply::Value)).boxed()
}

/// A read shared by every caller waiting for the same `key` on `reader`
/// ([`crate::service::Service::queue_shared`]), and whether the card's
/// login is `me`'s, as seen when the card was read (the caller masks what
/// is not its own).
pub(super) fn shared_read<R, F>(
    hub: &Arc<Hub>,
    reader: &str,
    key: &str,
    me: ConnId,
    read: F,
) -> impl Future<Output = Result<(R, bool), RpcError>> + Send + use<R, F>
where
    R: Clone + Send + 'static,
    F: FnOnce(&mut Engine) -> Result<R, Error> + Send + 'static,
{
    let (name, job_hub) = (reader.to_string(), hub.clone());
    let rx = hub.service.queue_shared(reader, key, move |e| {
        Ok((read(e)?, job_hub.logins.owner(&name)))
    });
    let timeout = hub.op_timeout;
    async move {
        let (value, owner) = await_job(rx, timeout).await?;
        Ok((value, owner == Some(me)))
    }
}

/// Queues `f` on the reader's worker and waits for it.
pub(super) fn wait<F>(hub: &Arc<Hub>, reader: &str, f: F) -> BoxFuture<'static, Outcome>
where
    F: FnOnce(&mut Engine) -> Result<Value, Error> + Send + 'static,
{
    let rx = hub.service.queue(reader, f);
    await_job(rx, hub.op_timeout).boxed()
}
