//! A site's side of presenting credentials: the PIN engine asks it right
//! before each credential reaches the card, in the reader's worker, and
//! tells it the card's verdict (see `pin/present.rs`). Values the site
//! chose (typed in the page, `requestCredential` handles) go through the
//! site's progressive lockout ([`crate::security::lockout`]): an attempt
//! counts against the site from the moment it is admitted until the card
//! says it was right. The user's own entries (the daemon's dialog, the
//! pinpad) never count; while the site is locked they may only unblock
//! (security-officer login and `init`), never log in or change the PIN.

use super::hub::Hub;
use crate::error::Error;
use crate::pin::{Provenance, Purpose, SiteGate, Verdict};
use crate::security::lockout::{self, Attempt, Notice, Now};
use std::sync::Arc;

/// The gate for one operation of one site.
pub(super) struct SiteAttempts {
    hub: Arc<Hub>,
    site: String,
    /// Admitted from the site and not yet judged by the card.
    attempt: Option<Attempt>,
    /// What the last wrong value did to the site, for the answer.
    pub notice: Option<Notice>,
}

impl SiteAttempts {
    pub(super) fn new(hub: Arc<Hub>, site: String) -> Self {
        SiteAttempts {
            hub,
            site,
            attempt: None,
            notice: None,
        }
    }
}

/// The refusal a locked site gets, if it is locked now: the same as an
/// attempt of the site would meet.
pub(super) fn locked(hub: &Hub, site: &str) -> Option<Error> {
    let lock = hub.lockout.state(site, Now::current()).lock?;
    Some(lock.refusal().into_error(site))
}

impl SiteGate for SiteAttempts {
    fn admit(&mut self, from: Provenance, purpose: Purpose) -> Result<(), Error> {
        if from.from_site() {
            let attempt = self
                .hub
                .lockout
                .begin(&self.site, Now::current())
                .map_err(|refusal| refusal.into_error(&self.site))?;
            self.attempt = Some(attempt);
            return Ok(());
        }
        if purpose == Purpose::Unblock {
            return Ok(());
        }
        locked(&self.hub, &self.site).map_or(Ok(()), Err)
    }

    fn verdict(&mut self, verdict: Verdict) {
        let Some(attempt) = self.attempt.take() else {
            return;
        };
        let verdict = match verdict {
            Verdict::Right => lockout::Verdict::Right,
            // Sent without an answer: it may have been wrong.
            Verdict::Wrong | Verdict::Unknown => lockout::Verdict::Wrong,
            Verdict::NotSent => lockout::Verdict::NotSent,
        };
        self.notice = self.hub.lockout.settle(attempt, verdict, Now::current());
    }
}
