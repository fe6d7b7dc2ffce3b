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

    /// Refuses with `LAST_TRY_PROTECTED` when the credential `what` would
    /// present has exactly one try left. Unknown counters are not refused.
    pub fn guard_last_try(&mut self, pin_id: &str, what: Presented) -> Result<(), Error> {
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
        let Some(cred) = cred else { return Ok(()) };
        let tries = match self.read_counter(&cred)? {
            Counter::Tries { tries, .. } => Some(tries),
            Counter::Blocked => Some(0),
            Counter::NotInitialized => None,
            Counter::Unknown => self.state(&cred).last_tries,
        };
        if tries == Some(1) {
            return Err(Error::LastTryProtected);
        }
        Ok(())
    }
}
