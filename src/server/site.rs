//! A site's side of presenting credentials: the PIN engine asks it right
//! before each credential reaches the card, in the reader's worker, and
//! tells it the card's verdict (see `pin/present.rs`). Values the site
//! chose (typed in the page, `requestCredential` handles) count towards its
//! lockout; the user's own entries (the daemon's dialog, the pinpad) do not,
//! and while the site is locked they may only unblock (security-officer
//! login and `init`), never log in or change the PIN.

use super::hub::Hub;
use crate::error::Error;
use crate::pin::{Provenance, Purpose, SiteGate, Verdict};
use crate::security::throttle::AfterFailure;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

/// The gate for one operation of one site.
pub struct SiteAttempts {
    hub: Arc<Hub>,
    key: String,
    /// Admitted from the site and not yet judged by the card.
    pending: bool,
    /// What the last wrong value did to the site's count, for the answer.
    pub notice: Option<AfterFailure>,
}

impl SiteAttempts {
    pub fn new(hub: Arc<Hub>, key: String) -> Self {
        SiteAttempts {
            hub,
            key,
            pending: false,
            notice: None,
        }
    }
}

impl SiteGate for SiteAttempts {
    fn admit(&mut self, from: Provenance, purpose: Purpose) -> Result<(), Error> {
        let locked = self.hub.throttle.check(&self.key, Instant::now());
        match locked {
            Err(retry) if from.from_site() || purpose != Purpose::Unblock => {
                Err(Error::TemporarilyLocked {
                    retry_after: retry.as_secs().max(1),
                })
            }
            _ => {
                self.pending = from.from_site();
                Ok(())
            }
        }
    }

    fn verdict(&mut self, verdict: Verdict) {
        if !std::mem::take(&mut self.pending) {
            return;
        }
        match verdict {
            Verdict::Right => self.hub.throttle.success(&self.key),
            Verdict::Wrong | Verdict::Unknown => {
                self.notice = self.hub.throttle.failure(&self.key, Instant::now());
            }
            Verdict::NotSent => {}
        }
    }
}

/// Adds what a wrong value did to the site's count to the error's data.
pub fn annotate(data: &mut Value, notice: AfterFailure) {
    match notice {
        AfterFailure::Remaining(n) => data["attemptsBeforeLock"] = json!(n),
        AfterFailure::LockedNow(d) => {
            let message = data["message"]
                .as_str()
                .unwrap_or("wrong value")
                .to_string();
            data["lockedFor"] = json!(d.as_secs());
            data["message"] = json!(format!(
                "{message}; this site is now locked for {} s",
                d.as_secs()
            ));
        }
    }
}
