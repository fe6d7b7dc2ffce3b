//! The last-try guard: a value that came from a web page is never the one
//! to spend a credential's last try. The daemon's own PIN dialog or a
//! pinpad may (PIN-entry issue); the CLI, where the user types, may too.

use super::{Counter, Engine, SoPath};
use crate::card::{Credential, SoMethod};
use crate::error::Error;

/// Which credential an operation is about to present to the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// The PIN object's own value (login, change).
    Own,
    /// A security-officer login through this path.
    So(SoPath),
    /// `init`: the held PUK / resetting code, if that is how it unblocks.
    Init,
}

impl Engine {
    /// True when a SO login through `path` only holds the value for `init`
    /// (PIV PUK, OpenPGP reset code) rather than verifying it now.
    pub fn so_login_is_deferred(&self, pin_id: &str, path: SoPath) -> bool {
        let pin = self.session.token.pin(pin_id);
        let method = pin.and_then(|p| match path {
            SoPath::Default => p.so.as_ref(),
            SoPath::ResetCode => p.reset_code.as_ref(),
        });
        matches!(method, Some(SoMethod::CodeWithNewPin(_)))
    }

    /// The label and known retry counter of the credential `what` would
    /// present (`None` when it presents nothing now, e.g. a PIV PUK at SO
    /// login, which is only sent with `init`).
    pub fn presented(
        &mut self,
        pin_id: &str,
        what: Presented,
    ) -> Result<Option<(String, Option<u8>)>, Error> {
        let pin = self.pin(pin_id)?;
        let cred: Option<Credential> = match what {
            Presented::Own => Some(pin.credential.clone()),
            Presented::So(path) => match path {
                SoPath::Default => pin.so.as_ref(),
                SoPath::ResetCode => pin.reset_code.as_ref(),
            }
            .and_then(|m| match m {
                // Only checked when it is presented, at init.
                SoMethod::CodeWithNewPin(_) => None,
                SoMethod::VerifyThenReset(c) => Some(c.clone()),
            }),
            Presented::Init => self
                .held
                .as_ref()
                .filter(|h| h.pin_id == pin.id)
                .map(|h| h.method.credential().clone()),
        };
        let Some(cred) = cred else { return Ok(None) };
        let tries = match self.read_counter(&cred)? {
            Counter::Tries { tries, .. } => Some(tries),
            Counter::Blocked => Some(0),
            Counter::NotInitialized => None,
            Counter::Unknown => self.state(&cred).last_tries,
        };
        Ok(Some((cred.label.clone(), tries)))
    }

    /// Refuses with `LAST_TRY_PROTECTED` when the credential `what` would
    /// present has exactly one try left. Unknown counters are not refused.
    pub fn guard_last_try(&mut self, pin_id: &str, what: Presented) -> Result<(), Error> {
        match self.presented(pin_id, what)? {
            Some((_, Some(1))) => Err(Error::LastTryProtected),
            _ => Ok(()),
        }
    }
}

impl Engine {
    /// The label of the credential an operation asks the user for: the PIN
    /// object's own, or its SO credential's (PUK, admin PIN, reset code).
    pub fn credential_label(&self, pin_id: &str, what: Presented) -> Result<String, Error> {
        let pin = self.pin(pin_id)?;
        let so = |path: SoPath| match path {
            SoPath::Default => pin.so.as_ref(),
            SoPath::ResetCode => pin.reset_code.as_ref(),
        };
        Ok(match what {
            Presented::So(path) => so(path).map(|m| m.credential().label.clone()),
            Presented::Own | Presented::Init => None,
        }
        .unwrap_or_else(|| pin.credential.label.clone()))
    }
}
