//! Who owns the login on each card, and what the others see of it.
//!
//! A login (user or security officer) belongs to the connection that made
//! it. Before another connection's PIN operation on that card the login is
//! ended on the card ([`Logins::make_way`]); it ends when its connection
//! closes or stays idle too long ([`Logins::release_all_of`]); and every
//! other connection sees `validated: false` / `soValidated: false`
//! ([`mask_pin_status`]).

use crate::error::Error;
use crate::pin::{Engine, PinStatus};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Identifies one connection for the lifetime of the daemon.
pub(crate) type ConnId = u64;

/// Reader → the connection whose login is on its card.
#[derive(Default)]
pub(crate) struct Logins {
    owners: Mutex<HashMap<String, ConnId>>,
}

impl Logins {
    fn owners(&self) -> MutexGuard<'_, HashMap<String, ConnId>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection whose login is on the card in `reader`.
    pub(crate) fn owner(&self, reader: &str) -> Option<ConnId> {
        self.owners().get(reader).copied()
    }

    /// Before `me`'s PIN operation, on the reader's worker: another
    /// connection's login must not serve it, so it is ended on the card.
    pub(crate) fn make_way(&self, e: &mut Engine, reader: &str, me: ConnId) -> Result<(), Error> {
        if self.owner(reader).is_some_and(|o| o != me) {
            logout_all(e)?;
            self.release(reader);
        }
        Ok(())
    }

    /// `conn` logged in on the card in `reader`.
    pub(crate) fn claim(&self, reader: &str, conn: ConnId) {
        self.owners().insert(reader.to_string(), conn);
    }

    /// Nobody's login is on the card in `reader` any more.
    pub(crate) fn release(&self, reader: &str) {
        self.owners().remove(reader);
    }

    /// The readers whose login `conn` owned, which it no longer owns; the
    /// caller logs them out on the cards.
    pub(crate) fn release_all_of(&self, conn: ConnId) -> Vec<String> {
        let mut owners = self.owners();
        let mine: Vec<String> = owners
            .iter()
            .filter(|(_, c)| **c == conn)
            .map(|(r, _)| r.clone())
            .collect();
        for r in &mine {
            owners.remove(r);
        }
        mine
    }
}

/// Logs out every PIN object of the card.
pub(super) fn logout_all(e: &mut Engine) -> Result<(), Error> {
    let ids: Vec<&'static str> = e.token().pins.iter().map(|p| p.id).collect();
    for id in ids {
        e.logout(id)?;
    }
    Ok(())
}

/// Hides a login that is not the viewer's.
pub(super) fn mask_pin_status(status: &mut PinStatus) {
    status.validated = false;
    status.so_validated = false;
}

/// [`mask_pin_status`] on a status already in JSON form.
pub(super) fn mask_status(status: &mut Value) {
    if status.is_object() {
        status["validated"] = json!(false);
        status["soValidated"] = json!(false);
    }
}
