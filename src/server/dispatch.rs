//! Runs parsed calls. Card work is queued on the reader's worker at once,
//! in arrival order; the returned future only waits for the result.
//!
//! The security rules a web page meets live here, around the PIN engine:
//! - a login belongs to the connection that made it: before another
//!   connection's PIN operation on that card the login is ended, and other
//!   connections see `validated: false`;
//! - a value sent by a page never spends a credential's last try;
//! - wrong values are counted per origin, and an origin that keeps sending
//!   them is locked, longer each time ([`crate::security::lockout`]).

use super::credentials::ConnCredentials;
use super::hub::{ConnId, Hub, describe_token, logout_all, mask_pin_status, mask_status};
use crate::error::Error;
use crate::pin::{Engine, PinStatus, Presented};
use crate::pinentry::PinPrompt;
use crate::protocol::{CAPABILITIES, Call, PROTOCOL_VERSION, RpcError, Target};
use crate::protocol::{CredentialRequest, Input};
use crate::secret::Secret;
use crate::security::lockout::{Now, Verdict};
use crate::security::origin::Peer;
use futures_util::future::{BoxFuture, FutureExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

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

/// The connection a call comes from.
#[derive(Clone)]
pub struct Caller {
    pub conn: ConnId,
    pub peer: Peer,
    /// Allowed once at the consent prompt: for this connection only.
    pub once: bool,
    pub creds: Arc<Mutex<ConnCredentials>>,
}

impl Caller {
    /// A newly opened connection: no credentials handed out yet.
    pub fn new(conn: ConnId, peer: Peer, once: bool) -> Caller {
        Caller {
            conn,
            peer,
            once,
            creds: Default::default(),
        }
    }

    /// The key wrong-PIN counts are kept under: the origin.
    fn site_key(&self) -> String {
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
    let rx = hub
        .service
        .queue_shared(reader, key, move |e| Ok((read(e)?, job_hub.owner(&name))));
    let timeout = hub.op_timeout;
    async move {
        let (value, owner) = await_job(rx, timeout).await?;
        Ok((value, owner == Some(me)))
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
    // Set for values that came from the page: the last-try guard applies and
    // wrong values count towards the origin's lockout.
    page_guard: Option<Presented>,
    op: F,
) -> BoxFuture<'static, Outcome>
where
    // Ok(true) when the card checked a value and found it right.
    F: FnOnce(&mut Engine, &str) -> Result<bool, Error> + Send + 'static,
{
    let key = caller.site_key();
    let from_page = page_guard.is_some();
    let me = caller.conn;
    let (pin, reader, job_hub) = (target.pin.clone(), target.reader.clone(), hub.clone());
    let site = key.clone();
    let rx = hub.service.queue(&target.reader, move |e| {
        // The site's lockout, consulted when its value is about to reach the card.
        let attempt = match page_guard {
            Some(_) => match job_hub.lockout.begin(&site, Now::current()) {
                Ok(a) => Some(a),
                Err(refusal) => return Ok((Err(refusal.into_error(&site)), None, None, None)),
            },
            None => None,
        };
        let owner = job_hub.owner(&reader);
        if owner.is_some_and(|o| o != me) {
            // Another connection's login must not serve this one.
            logout_all(e)?;
            job_hub.clear_owner(&reader);
        }
        let result = match page_guard {
            Some(presented) => e.guard_last_try(&pin, presented).and_then(|()| op(e, &pin)),
            None => op(e, &pin),
        };
        match (kind, &result) {
            (Kind::Login, Ok(_)) => job_hub.set_owner(&reader, me),
            (Kind::Logout, Ok(_)) => job_hub.clear_owner(&reader),
            _ => {}
        }
        let notice = attempt.and_then(|a| {
            let verdict = match &result {
                Ok(true) => Verdict::Right,
                Err(Error::PinIncorrect { .. } | Error::SoPinIncorrect { .. }) => Verdict::Wrong,
                // Not checked by the card (a held PUK), or failed before it.
                _ => Verdict::NotSent,
            };
            job_hub.lockout.settle(a, verdict, Now::current())
        });
        let status = e.status(&pin).ok();
        Ok((result, status, job_hub.owner(&reader), notice))
    });
    let hub = hub.clone();
    // A value not from the page may be typed on the pinpad while the job
    // holds the card: wait for the user too.
    let timeout = if from_page || kind == Kind::Logout {
        hub.op_timeout
    } else {
        hub.op_timeout
            + std::time::Duration::from_secs(
                crate::card::pinpad::PinpadOptions::default()
                    .timeout_secs
                    .into(),
            )
    };
    async move {
        let (result, status, owner, notice): (Result<bool, Error>, Option<PinStatus>, _, _) =
            await_job(rx, timeout).await?;
        if let Some(status) = status {
            hub.broadcast_pin(&target.reader, &target.pin, &status, owner);
        }
        match result {
            Ok(_) => Ok(Value::Null),
            Err(e @ (Error::PinIncorrect { .. } | Error::SoPinIncorrect { .. })) if from_page => {
                let mut rpc = RpcError::from(e);
                if let Some(notice) = notice {
                    notice.annotate(&mut rpc.data, &key);
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

// ---- where PIN values come from ---------------------------------------------

/// A PIN operation and the values it needs.
#[derive(Clone, Copy)]
enum Op {
    Login { so: bool, path: crate::pin::SoPath },
    Change,
    Init,
}

impl Op {
    fn kind(self) -> Kind {
        match self {
            Op::Login { .. } => Kind::Login,
            Op::Change => Kind::Change,
            Op::Init => Kind::Init,
        }
    }

    /// The credential the card will check.
    fn presented(self) -> Presented {
        match self {
            Op::Login { so: true, path } => Presented::So(path),
            Op::Login { .. } | Op::Change => Presented::Own,
            Op::Init => Presented::Init,
        }
    }

    /// Runs it with the values typed on the reader's pinpad.
    fn run_pinpad(self, e: &mut Engine, pin: &str) -> Result<bool, Error> {
        match self {
            Op::Login { so: true, path } => {
                e.login_so_pinpad(pin, path)?;
                Ok(!e.so_login_is_deferred(pin, path))
            }
            Op::Login { so: false, .. } => e.login_pinpad(pin, false).map(|()| true),
            Op::Change => e.change_pinpad(pin).map(|()| true),
            Op::Init => e.init_pinpad(pin).map(|()| true),
        }
    }

    /// Runs it; `Ok(true)` when the card checked a value and found it right.
    fn run(self, e: &mut Engine, pin: &str, values: &[Secret]) -> Result<bool, Error> {
        match (self, values) {
            (Op::Login { so: true, path }, [v]) => {
                e.login_so(pin, v, path)?;
                // A PUK / reset code is only held, not checked, until init.
                Ok(!e.so_login_is_deferred(pin, path))
            }
            (Op::Login { so: false, .. }, [v]) => e.login(pin, v, false).map(|()| true),
            (Op::Change, [old, new]) => e.change(pin, old, new).map(|()| true),
            (Op::Init, [new]) => e.init(pin, new).map(|()| true),
            _ => Err(Error::OperationNotSupported(
                "this combination of values".into(),
            )),
        }
    }
}

fn lock_creds(caller: &Caller) -> std::sync::MutexGuard<'_, ConnCredentials> {
    caller.creds.lock().unwrap_or_else(|e| e.into_inner())
}

/// Routes a PIN operation by where its values come from: the page, a
/// `requestCredential` handle, the daemon's dialog, or the pinpad.
fn pin_operation(
    hub: &Arc<Hub>,
    caller: &Caller,
    target: Target,
    op: Op,
    inputs: Vec<Input>,
) -> BoxFuture<'static, Outcome> {
    let all = |f: fn(&Input) -> bool| inputs.iter().all(f);
    if all(|i| matches!(i, Input::Pinpad)) {
        // The user types on the reader: no last-try guard, no page lockout
        // (the daemon never sees the value). The engine answers
        // OPERATION_NOT_SUPPORTED on readers without a pinpad.
        return operation(hub, caller, target, op.kind(), None, move |e, pin| {
            op.run_pinpad(e, pin)
        });
    }
    if all(|i| matches!(i, Input::Dialog)) {
        return dialog_operation(hub, caller, target, op);
    }
    if inputs
        .iter()
        .any(|i| matches!(i, Input::Dialog | Input::Pinpad))
    {
        return ready(Err(RpcError::invalid_params(
            "values must all come from the page, all from the PIN dialog (false) or all from the pinpad (null)",
        )));
    }
    let mut from_page = false;
    let mut values = Vec::new();
    for input in inputs {
        match input {
            Input::Value(v) => {
                from_page = true;
                values.push(v);
            }
            Input::Handle(h) => match lock_creds(caller).take(&h) {
                Some(v) => values.push(v),
                None => return ready(Err(Error::CredentialHandleInvalid.into())),
            },
            Input::Dialog | Input::Pinpad => unreachable!("handled above"),
        }
    }
    let guard = from_page.then(|| op.presented());
    operation(hub, caller, target, op.kind(), guard, move |e, pin| {
        op.run(e, pin, &values)
    })
}

/// What a dialog needs to say: the card, the credential, the tries left.
struct DialogContext {
    card: String,
    label: String,
    tries: Option<u8>,
}

fn describe(origin: &str, what: &str, ctx: &DialogContext, reader: &str) -> String {
    let mut text = format!(
        "{origin} asks for {what} of the card \"{}\" in the reader \"{reader}\".",
        ctx.card
    );
    match ctx.tries {
        Some(1) => text.push_str("\n\nOnly 1 try is left: a wrong value blocks it."),
        Some(n) => text.push_str(&format!("\n\n{n} tries left.")),
        None => {}
    }
    text
}

/// The daemon's own dialog asks the user; the page never sees the values.
fn dialog_operation(
    hub: &Arc<Hub>,
    caller: &Caller,
    target: Target,
    op: Op,
) -> BoxFuture<'static, Outcome> {
    let (hub, caller) = (hub.clone(), caller.clone());
    async move {
        let pin = target.pin.clone();
        let presented = op.presented();
        let rx = hub.service.queue(&target.reader, move |e| {
            let label = e.credential_label(&pin, presented)?;
            let tries = e.presented(&pin, presented)?.and_then(|(_, t)| t);
            Ok(DialogContext {
                card: e.token().label.clone(),
                label,
                tries,
            })
        });
        let ctx = await_job(rx, hub.op_timeout).await?;
        let origin = caller.peer.to_string();
        let error = lock_creds(&caller).last_error(&target.reader, &target.pin);
        let label = ctx.label.clone();
        let prompts: Vec<PinPrompt> = match op {
            Op::Login { .. } => vec![PinPrompt {
                title: format!("{label} for {origin}"),
                description: describe(&origin, &format!("the {label}"), &ctx, &target.reader),
                prompt: format!("{label}:"),
                error,
                repeat: false,
            }],
            Op::Change => vec![
                PinPrompt {
                    title: format!("Change the {label}"),
                    description: describe(
                        &origin,
                        &format!("a change of the {label}"),
                        &ctx,
                        &target.reader,
                    ) + "\n\nFirst the current value:",
                    prompt: format!("Current {label}:"),
                    error,
                    repeat: false,
                },
                PinPrompt {
                    title: format!("Change the {label}"),
                    description: format!("Now the new {label}, twice."),
                    prompt: format!("New {label}:"),
                    error: None,
                    repeat: true,
                },
            ],
            Op::Init => vec![PinPrompt {
                title: format!("New {label}"),
                description: describe(&origin, &format!("a new {label}"), &ctx, &target.reader),
                prompt: format!("New {label}:"),
                error,
                repeat: true,
            }],
        };
        // One dialog at a time on the user's screen.
        let _screen = hub.dialog_lock.lock().await;
        let dialog = hub.dialog.clone();
        let values = tokio::task::spawn_blocking(move || {
            prompts
                .iter()
                .map(|p| dialog.get_pin(p))
                .collect::<Result<Vec<Secret>, _>>()
        })
        .await
        .map_err(|_| RpcError::from(Error::PinDialogUnavailable("the dialog crashed".into())))?
        .map_err(|e| RpcError::from(Error::from(e)))?;
        drop(_screen);
        let outcome = operation(
            &hub,
            &caller,
            target.clone(),
            op.kind(),
            None,
            move |e, pin| op.run(e, pin, &values),
        )
        .await;
        let message = outcome.as_ref().err().map(|e| e.message().to_string());
        lock_creds(&caller).set_last_error(&target.reader, &target.pin, message);
        outcome
    }
    .boxed()
}

/// `Pin.requestCredential`: shows the dialog and gives the page a one-time
/// handle instead of the PIN; `null` when the user cancels.
fn request_credential(
    hub: &Arc<Hub>,
    caller: &Caller,
    req: CredentialRequest,
) -> BoxFuture<'static, Outcome> {
    let (hub, caller) = (hub.clone(), caller.clone());
    async move {
        let origin = caller.peer.to_string();
        let label = req.pin_label.clone().unwrap_or_else(|| "PIN".into());
        let mut description = format!("{origin} asks for your {label}");
        match (&req.card_label, &req.reader) {
            (Some(c), Some(r)) => description += &format!(" (card \"{c}\" in the reader \"{r}\")."),
            (Some(c), None) => description += &format!(" (card \"{c}\")."),
            (None, Some(r)) => description += &format!(" (reader \"{r}\")."),
            (None, None) => description.push('.'),
        }
        if let Some(n) = req.tries_left {
            description += &format!("\n\n{n} {} left.", if n == 1 { "try" } else { "tries" });
        }
        let prompt = PinPrompt {
            title: format!("{label} for {origin}"),
            description,
            prompt: format!("{label}:"),
            error: req.error.clone(),
            repeat: false,
        };
        let _screen = hub.dialog_lock.lock().await;
        let dialog = hub.dialog.clone();
        let answer = tokio::task::spawn_blocking(move || dialog.get_pin(&prompt))
            .await
            .map_err(|_| {
                RpcError::from(Error::PinDialogUnavailable("the dialog crashed".into()))
            })?;
        match answer {
            Ok(pin) => {
                let handle = lock_creds(&caller).issue(pin);
                Ok(json!({ "type": "pin", "handle": handle }))
            }
            Err(crate::pinentry::DialogError::Cancelled) => Ok(Value::Null),
            Err(e) => Err(Error::from(e).into()),
        }
    }
    .boxed()
}
