//! Runs parsed calls. Card work is queued on the reader's worker at once,
//! in arrival order; the returned future only waits for the result.
//!
//! A login belongs to the connection that made it: other connections see
//! `validated: false`. PIN operations are in `operation.rs`; the rules
//! that protect the card's tries are applied by the PIN engine to each
//! credential as it is sent (`pin/present.rs`).

pub(crate) use super::caller::Caller;
use super::caller::{await_job, ready};
use super::hub::{ConnId, Hub, describe_token};
use super::logins::{mask_pin_status, mask_status};
use super::operation::{Op, logout, pin_operation, request_credential};
use crate::error::Error;
use crate::pin::{Engine, PinStatus};
use crate::protocol::{CAPABILITIES, Call, PROTOCOL_VERSION, RpcError, Target};
use futures_util::future::{BoxFuture, FutureExt};
use serde_json::{Value, json};
use std::sync::Arc;

type Outcome = Result<Value, RpcError>;

/// What a call answers: a JSON value, or a PIN status serialised as it is
/// sent (a status read is the hot path; building a JSON tree for it cost
/// more than the rest of the request).
#[derive(serde::Serialize)]
#[serde(untagged)]
pub enum Reply {
    Value(Value),
    Status(PinStatus),
}

/// Starts a call: queues its card work now, returns the future of its result.
pub fn dispatch(
    hub: &Arc<Hub>,
    caller: &Caller,
    call: Call,
) -> BoxFuture<'static, Result<Reply, RpcError>> {
    if let Some(t) = call.target()
        && let Err(e) = hub.check_reader(&t.reader)
    {
        return futures_util::future::ready(Err(e.into())).boxed();
    }
    let me = caller.conn;
    match call {
        Call::GetPinStatus(t) => pin_status(hub, me, &t)
            .map(|r| r.map(Reply::Status))
            .boxed(),
        other => dispatch_value(hub, caller, other)
            .map(|r| r.map(Reply::Value))
            .boxed(),
    }
}

/// Every call but the status read: answered with a JSON value.
fn dispatch_value(hub: &Arc<Hub>, caller: &Caller, call: Call) -> BoxFuture<'static, Outcome> {
    let me = caller.conn;
    match call {
        Call::Hello { protocol } => ready(hello(protocol)),
        Call::GetReaders => get_readers(hub, me),
        // `dispatch` answers it as a struct; kept so this match is total.
        Call::GetPinStatus(t) => pin_status(hub, me, &t).map(|r| r.map(|s| json!(s))).boxed(),
        Call::Login {
            target,
            value,
            so,
            path,
        } => pin_operation(hub, caller, target, Op::Login { so, path }, vec![value]),
        Call::Change { target, old, new } => {
            pin_operation(hub, caller, target, Op::Change, vec![old, new])
        }
        Call::Init { target, new } => pin_operation(hub, caller, target, Op::Init, vec![new]),
        Call::RequestCredential(request) => request_credential(hub, caller, request),
        Call::Logout(target) => logout(hub, caller, target),
        Call::GetConstraints(t) => {
            let pin = t.pin.clone();
            wait(hub, &t.reader, move |e| Ok(json!(e.constraints(&pin)?)))
        }
        Call::CheckConstraints { target, old, new } => {
            // Never touches the card: the policy was resolved when it was opened.
            let pin = target.pin.clone();
            wait(hub, &target.reader, move |e| {
                Ok(json!(e.check_constraints(&pin, &old, &new)?))
            })
        }
    }
}

/// A PIN's status. Pages asking at once share one card read; each sees
/// the login only if it is its own.
fn pin_status(
    hub: &Arc<Hub>,
    me: ConnId,
    t: &Target,
) -> impl std::future::Future<Output = Result<PinStatus, RpcError>> + Send + use<> {
    let pin = t.pin.clone();
    let read = shared_read(hub, &t.reader, &format!("status {pin}"), me, move |e| {
        e.status(&pin)
    });
    async move {
        let (mut status, mine) = read.await?;
        if !mine {
            mask_pin_status(&mut status);
        }
        Ok(status)
    }
}

/// A read shared by every caller waiting for the same `key` on `reader`
/// ([`crate::service::Service::queue_shared`]), and whether the card's
/// login is `me`'s, as seen when the card was read (the caller masks what
/// is not its own).
fn shared_read<R, F>(
    hub: &Arc<Hub>,
    reader: &str,
    key: &str,
    me: ConnId,
    read: F,
) -> impl std::future::Future<Output = Result<(R, bool), RpcError>> + Send + use<R, F>
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

/// Queues `f` on the reader's worker and waits for it.
fn wait<F>(hub: &Arc<Hub>, reader: &str, f: F) -> BoxFuture<'static, Outcome>
where
    F: FnOnce(&mut Engine) -> Result<Value, Error> + Send + 'static,
{
    let rx = hub.service.queue(reader, f);
    await_job(rx, hub.op_timeout).boxed()
}

fn get_readers(hub: &Arc<Hub>, me: ConnId) -> BoxFuture<'static, Outcome> {
    let pcsc = if hub.pcsc_up() { "up" } else { "down" };
    let pending: Vec<_> = hub
        .readers()
        .into_iter()
        .map(|(name, atr)| {
            let token = atr.as_ref().map(|_| {
                // Shared like a PIN's status (every page asks at load).
                let read = shared_read(hub, &name, "token", me, describe_token);
                async move {
                    let (mut token, mine) = read.await?;
                    if !mine && let Some(pins) = token["pins"].as_array_mut() {
                        pins.iter_mut().for_each(mask_status);
                    }
                    Ok::<Value, RpcError>(token)
                }
                .boxed()
            });
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
