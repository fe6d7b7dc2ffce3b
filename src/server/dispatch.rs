//! Runs parsed calls. Card work is queued on the reader's worker at once,
//! in arrival order; the returned future only waits for the result.
//!
//! The security rules a web page meets live here, around the PIN engine:
//! - a login belongs to the connection that made it: before another
//!   connection's PIN operation on that card the login is ended, and other
//!   connections see `validated: false`;
//! - a value sent by a page never spends a credential's last try;
//! - wrong values are counted per origin, and an origin that keeps sending
//!   them is locked for a while.

use super::hub::{ConnId, Hub, describe_token, logout_all, mask_status};
use crate::error::Error;
use crate::pin::{Engine, PinStatus, Presented};
use crate::protocol::{CAPABILITIES, Call, PROTOCOL_VERSION, RpcError, Target};
use crate::security::origin::Peer;
use crate::security::throttle::AfterFailure;
use futures_util::future::{BoxFuture, FutureExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

type Outcome = Result<Value, RpcError>;

/// The connection a call comes from.
#[derive(Debug, Clone)]
pub struct Caller {
    pub conn: ConnId,
    pub peer: Peer,
}

impl Caller {
    /// The key wrong-PIN counts are kept under: the origin.
    fn throttle_key(&self) -> String {
        self.peer.to_string()
    }
}

/// What a PIN operation does to the login ownership of the card.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Login,
    Change,
    Init,
    Logout,
}

/// Starts a call: queues its card work now, returns the future of its result.
pub fn dispatch(hub: &Arc<Hub>, caller: &Caller, call: Call) -> BoxFuture<'static, Outcome> {
    if let Some(t) = call.target()
        && let Err(e) = hub.check_reader(&t.reader)
    {
        return ready(Err(e.into()));
    }
    let me = caller.conn;
    match call {
        Call::Hello { protocol } => ready(hello(protocol)),
        Call::GetReaders => get_readers(hub, me),
        Call::GetPinStatus(t) => {
            let (pin, reader, hub2) = (t.pin.clone(), t.reader.clone(), hub.clone());
            wait(hub, &t.reader, move |e| {
                let mut status = json!(e.status(&pin)?);
                if hub2.owner(&reader) != Some(me) {
                    mask_status(&mut status);
                }
                Ok(status)
            })
        }
        Call::Login {
            target,
            value,
            so,
            path,
        } => {
            let presented = if so {
                Presented::So(path)
            } else {
                Presented::Own
            };
            operation(
                hub,
                caller,
                target,
                Kind::Login,
                Some(presented),
                move |e, pin| {
                    if so {
                        e.login_so(pin, &value, path)?;
                        // A PUK / reset code is only held, not checked, until init.
                        Ok(!e.so_login_is_deferred(pin, path))
                    } else {
                        e.login(pin, &value, false).map(|()| true)
                    }
                },
            )
        }
        Call::Change { target, old, new } => operation(
            hub,
            caller,
            target,
            Kind::Change,
            Some(Presented::Own),
            move |e, pin| e.change(pin, &old, &new).map(|()| true),
        ),
        Call::Init { target, new } => operation(
            hub,
            caller,
            target,
            Kind::Init,
            Some(Presented::Init),
            move |e, pin| e.init(pin, &new).map(|()| true),
        ),
        Call::Logout(target) => operation(hub, caller, target, Kind::Logout, None, |e, pin| {
            e.logout(pin).map(|()| false)
        }),
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

/// Waits for a queued job, at most the operation timeout. A timed-out
/// operation still runs to its end on the card.
async fn await_job<R>(
    rx: tokio::sync::oneshot::Receiver<Result<R, Error>>,
    timeout: std::time::Duration,
) -> Result<R, RpcError> {
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(result)) => result.map_err(RpcError::from),
        Ok(Err(_)) => Err(Error::ReaderError("the reader worker stopped".into()).into()),
        Err(_) => Err(RpcError::timeout(timeout.as_secs())),
    }
}

/// Queues `f` on the reader's worker and waits for it.
fn wait<F>(hub: &Arc<Hub>, reader: &str, f: F) -> BoxFuture<'static, Outcome>
where
    F: FnOnce(&mut Engine) -> Result<Value, Error> + Send + 'static,
{
    let rx = hub.service.queue(reader, f);
    await_job(rx, hub.op_timeout).boxed()
}

/// A PIN operation, in one job on the card's worker: end another
/// connection's login, check the last-try guard, run the operation, update
/// the login's owner, read the PIN's status for every client.
fn operation<F>(
    hub: &Arc<Hub>,
    caller: &Caller,
    target: Target,
    kind: Kind,
    guard: Option<Presented>,
    op: F,
) -> BoxFuture<'static, Outcome>
where
    // Ok(true) when the card checked a value and found it right.
    F: FnOnce(&mut Engine, &str) -> Result<bool, Error> + Send + 'static,
{
    let key = caller.throttle_key();
    if kind != Kind::Logout
        && let Err(retry) = hub.throttle.check(&key, Instant::now())
    {
        let retry_after = retry.as_secs().max(1);
        return ready(Err(Error::TemporarilyLocked { retry_after }.into()));
    }
    let me = caller.conn;
    let (pin, reader, job_hub) = (target.pin.clone(), target.reader.clone(), hub.clone());
    let rx = hub.service.queue(&target.reader, move |e| {
        let owner = job_hub.owner(&reader);
        if owner.is_some_and(|o| o != me) {
            // Another connection's login must not serve this one.
            logout_all(e)?;
            job_hub.clear_owner(&reader);
        }
        let result = match guard {
            Some(presented) => e.guard_last_try(&pin, presented).and_then(|()| op(e, &pin)),
            None => op(e, &pin),
        };
        match (kind, &result) {
            (Kind::Login, Ok(_)) => job_hub.set_owner(&reader, me),
            (Kind::Logout, Ok(_)) => job_hub.clear_owner(&reader),
            _ => {}
        }
        let status = e.status(&pin).ok();
        Ok((result, status, job_hub.owner(&reader)))
    });
    let hub = hub.clone();
    let timeout = hub.op_timeout;
    async move {
        let (result, status, owner): (Result<bool, Error>, Option<PinStatus>, _) =
            await_job(rx, timeout).await?;
        if let Some(status) = status {
            hub.broadcast_pin(&target.reader, &target.pin, &status, owner);
        }
        match result {
            Ok(checked) => {
                if checked {
                    hub.throttle.success(&key);
                }
                Ok(Value::Null)
            }
            Err(e @ (Error::PinIncorrect { .. } | Error::SoPinIncorrect { .. })) => {
                let mut rpc = RpcError::from(e);
                match hub.throttle.failure(&key, Instant::now()) {
                    Some(AfterFailure::Remaining(n)) => rpc.data["attemptsBeforeLock"] = json!(n),
                    Some(AfterFailure::LockedNow(d)) => {
                        rpc.data["lockedFor"] = json!(d.as_secs());
                        rpc.data["message"] = json!(format!(
                            "{}; this site is now locked for {} s",
                            rpc.message(),
                            d.as_secs()
                        ));
                    }
                    None => {}
                }
                Err(rpc)
            }
            Err(e) => Err(e.into()),
        }
    }
    .boxed()
}

fn get_readers(hub: &Arc<Hub>, me: ConnId) -> BoxFuture<'static, Outcome> {
    let pcsc = if hub.pcsc_up() { "up" } else { "down" };
    let pending: Vec<_> = hub
        .readers()
        .into_iter()
        .map(|(name, atr)| {
            let token = atr.as_ref().map(|_| {
                let (reader, job_hub) = (name.clone(), hub.clone());
                wait(hub, &name, move |e| {
                    let mut token = describe_token(e)?;
                    if job_hub.owner(&reader) != Some(me)
                        && let Some(pins) = token["pins"].as_array_mut()
                    {
                        pins.iter_mut().for_each(mask_status);
                    }
                    Ok(token)
                })
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
