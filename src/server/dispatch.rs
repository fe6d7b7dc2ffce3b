//! Runs parsed calls. Card work is queued on the reader's worker at once,
//! in arrival order; the returned future only waits for the result.

use super::hub::{Hub, describe_token};
use crate::error::Error;
use crate::pin::{Engine, PinStatus};
use crate::protocol::{CAPABILITIES, Call, PROTOCOL_VERSION, RpcError, Target};
use futures_util::future::{BoxFuture, FutureExt};
use serde_json::{Value, json};
use std::sync::Arc;

type Outcome = Result<Value, RpcError>;

/// Starts a call: queues its card work now, returns the future of its result.
pub fn dispatch(hub: &Arc<Hub>, call: Call) -> BoxFuture<'static, Outcome> {
    if let Some(t) = call.target()
        && let Err(e) = hub.check_reader(&t.reader)
    {
        return ready(Err(e.into()));
    }
    match call {
        Call::Hello { protocol } => ready(hello(protocol)),
        Call::GetReaders => get_readers(hub),
        Call::GetPinStatus(t) => {
            let pin = t.pin.clone();
            wait(hub, &t.reader, move |e| Ok(json!(e.status(&pin)?)))
        }
        Call::Login {
            target,
            value,
            so,
            path,
        } => operation(hub, target, move |e, pin| {
            if so {
                e.login_so(pin, &value, path)
            } else {
                e.login(pin, &value, false)
            }
        }),
        Call::Change { target, old, new } => {
            operation(hub, target, move |e, pin| e.change(pin, &old, &new))
        }
        Call::Init { target, new } => operation(hub, target, move |e, pin| e.init(pin, &new)),
        Call::Logout(target) => operation(hub, target, |e, pin| e.logout(pin)),
        Call::GetConstraints(_) | Call::CheckConstraints { .. } => ready(Err(
            Error::OperationNotSupported("PIN constraints (not wired yet)".into()).into(),
        )),
    }
}

fn ready(outcome: Outcome) -> BoxFuture<'static, Outcome> {
    futures_util::future::ready(outcome).boxed()
}

fn hello(protocol: Option<u64>) -> Outcome {
    if let Some(p) = protocol
        && p != PROTOCOL_VERSION
    {
        return Err(RpcError {
            code: crate::protocol::code::OPERATION_FAILED,
            data: json!({
                "code": "PROTOCOL_UNSUPPORTED",
                "message": format!("protocol {p} is not supported"),
                "supported": [PROTOCOL_VERSION],
            }),
        });
    }
    Ok(json!({
        "protocol": PROTOCOL_VERSION,
        "daemon": "cardgate",
        "version": env!("CARGO_PKG_VERSION"),
        "capabilities": CAPABILITIES,
    }))
}

/// Queues `f` on the reader's worker and waits for it, at most the
/// operation timeout. A timed-out operation still runs to its end.
fn wait<F>(hub: &Arc<Hub>, reader: &str, f: F) -> BoxFuture<'static, Outcome>
where
    F: FnOnce(&mut Engine) -> Result<Value, Error> + Send + 'static,
{
    let rx = hub.service.queue(reader, f);
    let timeout = hub.op_timeout;
    async move {
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result.map_err(RpcError::from),
            Ok(Err(_)) => Err(Error::ReaderError("the reader worker stopped".into()).into()),
            Err(_) => Err(RpcError::timeout(timeout.as_secs())),
        }
    }
    .boxed()
}

/// A PIN operation: runs it, then reads the PIN's status in the same job
/// and tells every client how it changed (success or failure).
fn operation<F>(hub: &Arc<Hub>, target: Target, op: F) -> BoxFuture<'static, Outcome>
where
    F: FnOnce(&mut Engine, &str) -> Result<(), Error> + Send + 'static,
{
    let pin = target.pin.clone();
    let rx = hub.service.queue(&target.reader, move |e| {
        let result = op(e, &pin);
        let status = e.status(&pin).ok();
        Ok((result, status))
    });
    let hub = hub.clone();
    let timeout = hub.op_timeout;
    async move {
        let done: Result<(Result<(), Error>, Option<PinStatus>), Error> =
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(Error::ReaderError("the reader worker stopped".into())),
                Err(_) => return Err(RpcError::timeout(timeout.as_secs())),
            };
        let (result, status) = done?;
        if let Some(status) = status {
            hub.broadcast(
                "pinStateChanged",
                json!({ "reader": target.reader, "pin": target.pin, "status": status }),
            );
        }
        result.map(|()| Value::Null).map_err(RpcError::from)
    }
    .boxed()
}

fn get_readers(hub: &Arc<Hub>) -> BoxFuture<'static, Outcome> {
    let pcsc = if hub.pcsc_up() { "up" } else { "down" };
    let pending: Vec<_> = hub
        .readers()
        .into_iter()
        .map(|(name, atr)| {
            let token = atr.as_ref().map(|_| wait(hub, &name, describe_token));
            (name, atr, token)
        })
        .collect();
    // Every token's job is queued already, each on its reader's worker, so
    // they run concurrently; waiting for them in turn costs nothing more.
    async move {
        let mut readers = Vec::new();
        for (name, atr, token) in pending {
            let mut r = json!({ "name": name, "cardPresent": atr.is_some() });
            if let Some(atr) = &atr {
                r["atr"] = json!(crate::card::hex(atr));
            }
            if let Some(token) = token {
                match token.await {
                    Ok(t) => r["token"] = t,
                    Err(e) => r["error"] = e.data,
                }
            }
            readers.push(r);
        }
        Ok(json!({ "pcsc": pcsc, "readers": readers }))
    }
    .boxed()
}
