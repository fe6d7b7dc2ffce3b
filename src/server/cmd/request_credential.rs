//! `requestCredential`: `Pin.requestCredential`. Shows the daemon's dialog
//! and gives the page a one-time handle instead of the PIN (`null` when the
//! user cancels). With `reader` and `pin` the dialog shows the card's own
//! label and tries; the page's own texts are shown as the page's, never as
//! the card's.

use crate::error::Error;
use crate::pin::{Asking, SoPath};
use crate::pinentry::PinPrompt;
use crate::protocol::RpcError;
use crate::protocol::cmd::request_credential::RequestCredential;
use crate::server::caller::{Caller, Outcome, await_job, lock_creds};
use crate::server::hub::Hub;
use crate::server::operation::describe;
use futures_util::future::{BoxFuture, FutureExt};
use serde_json::{Value, json};
use std::sync::Arc;

impl RequestCredential {
    pub(crate) fn apply(self, hub: &Arc<Hub>, caller: &Caller) -> BoxFuture<'static, Outcome> {
        let (req, hub, caller) = (self, hub.clone(), caller.clone());
        async move {
            let origin = caller.peer.to_string();
            let facts = match (&req.reader, &req.pin) {
                (Some(reader), Some(pin)) => {
                    hub.service.check_reader(reader)?;
                    let (pin, asking) = (
                        pin.clone(),
                        if req.so {
                            Asking::So(SoPath::Default)
                        } else {
                            Asking::Own
                        },
                    );
                    let rx = hub
                        .service
                        .queue(reader, move |e| e.dialog_facts(&pin, asking));
                    Some(await_job(rx, hub.op_timeout).await?)
                }
                _ => None,
            };
            let mut description;
            let label;
            match (&facts, &req.reader) {
                (Some(f), Some(reader)) => {
                    label = f.label.clone();
                    description = describe(&origin, &format!("your {label}"), f, reader);
                }
                _ => {
                    label = req.pin_label.clone().unwrap_or_else(|| "PIN".into());
                    description = format!("{origin} asks for your {label}");
                    match (&req.card_label, &req.reader) {
                        (Some(c), Some(r)) => {
                            description += &format!(" (card \"{c}\" in the reader \"{r}\").")
                        }
                        (Some(c), None) => description += &format!(" (card \"{c}\")."),
                        (None, Some(r)) => description += &format!(" (reader \"{r}\")."),
                        (None, None) => description.push('.'),
                    }
                    description +=
                        "\n\nThe site did not say which card's PIN: the tries left are not known.";
                }
            }
            if let Some(note) = &req.error {
                description += &format!("\n\nMessage from {origin}: {note}");
            }
            let prompt = PinPrompt {
                title: format!("{label} for {origin}"),
                description,
                prompt: format!("{label}:"),
                error: None,
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
}
