//! PIN operations from a connection: where each credential comes from (the
//! page, a `requestCredential` handle, the daemon's dialog, the pinpad),
//! who owns the card's login, and the daemon's own PIN dialog. Shared by
//! the calls in `cmd/` that run them (`login`, `change`, `init`, `logout`;
//! `requestCredential` words its dialog with [`describe`]).
//!
//! The credentials are typed with their provenance here and handed to the
//! PIN engine, which guards each one at the moment it is sent, inside the
//! reader's queue (`pin/present.rs`), and asks the site's gate
//! ([`SiteAttempts`]) there. Nothing here decides whether a value may
//! reach the card.

use super::caller::{Caller, Outcome, await_job, lock_creds, ready};
use super::hub::{ConnId, ConsentMode, Hub};
use super::site::{SiteAttempts, locked};
use crate::error::Error;
use crate::pin::{Asking, DialogFacts, Engine, Entered, Entry, PinOp, Provenance, SoPath};
use crate::pinentry::PinPrompt;
use crate::protocol::{Input, RpcError, Target};
use crate::secret::Secret;
use futures_util::future::{BoxFuture, FutureExt};
use serde_json::Value;
use std::sync::Arc;

/// A PIN operation as asked for, before its credentials are gathered.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Login { so: bool, path: SoPath },
    Change,
    Init,
    Logout,
}

impl Op {
    /// The operation with its credentials.
    fn with(self, mut entries: Vec<Entry>) -> Result<PinOp, RpcError> {
        let mut next = || {
            entries
                .pop()
                .ok_or_else(|| RpcError::invalid_params("missing value"))
        };
        Ok(match self {
            Op::Login { so: false, .. } => PinOp::Login(next()?),
            Op::Login { so: true, path } => PinOp::SoLogin(path, next()?),
            Op::Change => {
                let new = next()?;
                let old = next()?;
                PinOp::Change { old, new }
            }
            Op::Init => PinOp::Init(next()?),
            Op::Logout => return Err(RpcError::invalid_params("logout takes no value")),
        })
    }

    /// The credential a dialog for this operation asks for first.
    fn asking(self) -> Asking {
        match self {
            Op::Login { so: true, path } => Asking::So(path),
            Op::Init => Asking::New,
            Op::Login { .. } | Op::Change | Op::Logout => Asking::Own,
        }
    }
}

/// Routes a PIN operation by where its values come from: the page, a
/// `requestCredential` handle, the daemon's dialog, or the pinpad. Where the
/// consent prompt is configured, a site locked until the user unlocks it
/// has the user asked first (once per connection).
pub(super) fn pin_operation(
    hub: &Arc<Hub>,
    caller: &Caller,
    target: Target,
    op: Op,
    inputs: Vec<Input>,
) -> BoxFuture<'static, Outcome> {
    if hub.limits.consent == ConsentMode::Prompt
        && matches!(
            locked(hub, &caller.site_key()),
            Some(Error::SiteLocked { .. })
        )
        && !std::mem::replace(&mut lock_creds(caller).unlock_asked, true)
    {
        let (hub, caller) = (hub.clone(), caller.clone());
        return async move {
            ask_to_unlock(&hub, &caller.site_key()).await;
            route(&hub, &caller, target, op, inputs).await
        }
        .boxed();
    }
    route(hub, caller, target, op, inputs)
}

/// Asks the user whether a site locked until they unlock it may be
/// unlocked; unlocks it on yes.
async fn ask_to_unlock(hub: &Arc<Hub>, site: &str) {
    let _screen = hub.dialog_lock.lock().await;
    let dialog = hub.dialog.clone();
    let text = format!(
        "{site} is locked: it sent too many wrong PINs to your smart card.\n\nUnlock it only if you typed those PINs yourself. Otherwise keep it locked; you can unlock it later with \"cardgate origins unlock {site}\"."
    );
    let answer = tokio::task::spawn_blocking(move || {
        dialog.ask("A site is locked", &text, "Unlock it", "Keep it locked")
    })
    .await;
    match answer {
        Ok(Ok(true)) => match hub.lockout.unlock(site) {
            Ok(_) => tracing::info!(%site, "site unlocked by the user"),
            Err(e) => {
                tracing::warn!(%site, error = %e, "unlocked, but the lockout file was not written")
            }
        },
        Ok(Ok(false)) => tracing::info!(%site, "the user kept the site locked"),
        Ok(Err(e)) => {
            tracing::warn!(%site, error = %e, "unlock dialog failed; the site stays locked")
        }
        Err(_) => {}
    }
}

/// [`pin_operation`] once the site may go on.
fn route(
    hub: &Arc<Hub>,
    caller: &Caller,
    target: Target,
    op: Op,
    inputs: Vec<Input>,
) -> BoxFuture<'static, Outcome> {
    let all = |f: fn(&Input) -> bool| inputs.iter().all(f);
    if all(|i| matches!(i, Input::Dialog)) {
        return dialog_operation(hub, caller, target, op);
    }
    let pinpad = all(|i| matches!(i, Input::Pinpad));
    if !pinpad
        && inputs
            .iter()
            .any(|i| matches!(i, Input::Dialog | Input::Pinpad))
    {
        return ready(Err(RpcError::invalid_params(
            "values must all come from the page, all from the PIN dialog (false) or all from the pinpad (null)",
        )));
    }
    let mut entries = Vec::new();
    for input in inputs {
        entries.push(match input {
            Input::Value(v) => Entry::Typed(Entered::new(v, Provenance::Page)),
            Input::Handle(h) => match lock_creds(caller).take(&h) {
                Some(v) => Entry::Typed(Entered::new(v, Provenance::Handle)),
                None => return ready(Err(Error::CredentialHandleInvalid.into())),
            },
            // The user types on the reader; the engine answers
            // OPERATION_NOT_SUPPORTED on readers without a pinpad.
            Input::Pinpad => Entry::Pinpad,
            Input::Dialog => unreachable!("handled above"),
        });
    }
    match op.with(entries) {
        Ok(pin_op) => operation(hub, caller, target, op, Some(pin_op), pinpad),
        Err(e) => ready(Err(e)),
    }
}

/// A PIN operation, in one job on the card's worker: end another
/// connection's login, run the operation (the engine guards each
/// credential as it is sent, asking the site's gate), update the login's
/// owner, and say the PIN's new status to every client.
pub(super) fn operation(
    hub: &Arc<Hub>,
    caller: &Caller,
    target: Target,
    op: Op,
    pin_op: Option<PinOp>,
    // The user may be typing on the reader while the job holds the card.
    waits_for_pinpad: bool,
) -> BoxFuture<'static, Outcome> {
    let me: ConnId = caller.conn;
    let site = caller.site_key();
    let mut gate = SiteAttempts::new(hub.clone(), site.clone());
    let (pin, reader, job_hub) = (target.pin.clone(), target.reader.clone(), hub.clone());
    let rx = hub.service.queue(&target.reader, move |e: &mut Engine| {
        job_hub.logins.make_way(e, &reader, me)?;
        let result = match pin_op {
            Some(pin_op) => e.perform(&pin, pin_op, &mut gate),
            None => e.logout(&pin),
        };
        match (op, &result) {
            (Op::Login { .. }, Ok(())) => job_hub.logins.claim(&reader, me),
            (Op::Logout, Ok(())) => job_hub.logins.release(&reader),
            _ => {}
        }
        let status = e.status_after_operation(&pin).ok();
        Ok((result, status, job_hub.logins.owner(&reader), gate.notice))
    });
    let hub = hub.clone();
    let timeout = if waits_for_pinpad {
        hub.op_timeout
            + std::time::Duration::from_secs(
                crate::card::pinpad::PinpadOptions::default()
                    .timeout_secs
                    .into(),
            )
    } else {
        hub.op_timeout
    };
    async move {
        let (result, status, owner, notice) = await_job(rx, timeout).await?;
        if let Some(status) = status {
            hub.broadcast_pin(&target.reader, &target.pin, &status, owner);
        }
        match result {
            Ok(()) => Ok(Value::Null),
            Err(e) => {
                let mut rpc = RpcError::from(e);
                if let Some(notice) = notice {
                    notice.annotate(&mut rpc.data, &site);
                }
                Err(rpc)
            }
        }
    }
    .boxed()
}

/// What a dialog says a site asks for, with the card's name and tries.
pub(super) fn describe(origin: &str, what: &str, facts: &DialogFacts, reader: &str) -> String {
    let mut text = format!(
        "{origin} asks for {what} of the card \"{}\" in the reader \"{reader}\".",
        facts.card
    );
    match facts.tries {
        Some(1) => text.push_str("\n\nOnly 1 try is left: a wrong value blocks it."),
        Some(n) => text.push_str(&format!("\n\n{n} tries left.")),
        None => {}
    }
    text
}

/// The key under which a dialog remembers that its last value was wrong.
fn dialog_key(target: &Target, label: &str) -> String {
    format!("{}\u{0}{}\u{0}{label}", target.reader, target.pin)
}

/// The daemon's own dialog asks the user; the page never sees the values.
/// What it shows comes from the card, read when it opens: the credential's
/// label and tries. A credential known to be blocked, or an `init` without
/// a SO login, is answered before anyone is asked.
fn dialog_operation(
    hub: &Arc<Hub>,
    caller: &Caller,
    target: Target,
    op: Op,
) -> BoxFuture<'static, Outcome> {
    let (hub, caller) = (hub.clone(), caller.clone());
    async move {
        // A locked site may still have the user unblock, never log in or
        // change: refused before anyone is asked.
        if matches!(op, Op::Login { so: false, .. } | Op::Change)
            && let Some(refusal) = locked(&hub, &caller.site_key())
        {
            return Err(refusal.into());
        }
        let pin = target.pin.clone();
        let asking = op.asking();
        let rx = hub
            .service
            .queue(&target.reader, move |e| e.dialog_facts(&pin, asking));
        let facts = await_job(rx, hub.op_timeout).await?;
        let origin = caller.peer.to_string();
        let label = facts.label.clone();
        let key = dialog_key(&target, &label);
        let error = lock_creds(&caller)
            .was_wrong(&key)
            .then(|| format!("The {label} entered last time was wrong."));
        let prompts: Vec<PinPrompt> = match op {
            Op::Login { .. } | Op::Logout => vec![PinPrompt {
                title: format!("{label} for {origin}"),
                description: describe(&origin, &format!("the {label}"), &facts, &target.reader),
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
                        &facts,
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
                description: describe(&origin, &format!("a new {label}"), &facts, &target.reader),
                prompt: format!("New {label}:"),
                error,
                repeat: true,
            }],
        };
        // One dialog at a time on the user's screen.
        let screen = hub.dialog_lock.lock().await;
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
        drop(screen);
        let entries = values
            .into_iter()
            .map(|v| Entry::Typed(Entered::new(v, Provenance::Dialog)))
            .collect();
        let pin_op = op.with(entries)?;
        let outcome = operation(&hub, &caller, target, op, Some(pin_op), false).await;
        let wrong = outcome.as_ref().err().is_some_and(|e| {
            matches!(
                e.data["code"].as_str(),
                Some("PIN_INCORRECT" | "SO_PIN_INCORRECT")
            )
        });
        lock_creds(&caller).set_wrong(&key, wrong);
        outcome
    }
    .boxed()
}
