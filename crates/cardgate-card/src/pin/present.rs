//! The one path by which a credential reaches the card.
//!
//! [`Engine::present`] is called for every value (or pinpad entry) the card
//! checks — a PIN at login or change, a PUK or reset code at unblock, an
//! admin PIN — and nothing else sends one. In the same job, right before
//! the command:
//! - the counter is read; a blocked (or unset) credential is refused, so
//!   nothing is spent and the answer says nothing was;
//! - a value a site chose ([`Provenance::from_site`]) is refused with
//!   `LAST_TRY_PROTECTED` when the counter is at 1 or the card does not
//!   show it (the user's dialog, pinpad or command line may go on);
//! - the site's gate (lockout) admits it, and hears the card's verdict.
//!
//! After a failure the count is taken from the card's answer (63Cx) when it
//! gave one; otherwise it is learned (see [`Engine::learn_tries`]) or left
//! unknown — never assumed.

use super::{Counter, Engine, Provenance, Purpose, SiteGate, Verdict};
use crate::apdu::StatusWord;
use crate::apdu::commands;
use crate::card::Credential;
use crate::error::Error;

impl Engine {
    /// Presents one credential: guard, gate, `send`, verdict. Returns the
    /// card's status word (or the reader's error for a pinpad entry).
    pub(super) fn present(
        &mut self,
        cred: &Credential,
        from: Provenance,
        so: bool,
        purpose: Purpose,
        site: &mut dyn SiteGate,
        send: impl FnOnce(&mut Engine) -> Result<StatusWord, Error>,
    ) -> Result<StatusWord, Error> {
        let mut counter = self.usable_counter(cred, so)?;
        if from.from_site()
            && let Counter::Tries {
                tries: None,
                verified: Some(true),
            } = counter
        {
            // Verified (by another application, or before the daemon
            // started) and the count hidden behind it: the site's value is
            // about to replace that verification anyway, so end it and ask.
            counter = match self.learn_tries(cred) {
                Some(0) => {
                    return Err(if so {
                        Error::SoPinBlocked
                    } else {
                        Error::PinBlocked
                    });
                }
                tries => Counter::Tries {
                    tries,
                    verified: Some(false),
                },
            };
        }
        last_try_guard(from, counter.tries())?;
        site.admit(from, purpose)?;
        self.presented_blind = counter.tries().is_none();
        // Until the card answers, nothing is known of the counter, and the
        // status-query detector must not compare across this command.
        let before = {
            let st = self.state(cred);
            st.last_query = None;
            st.known_tries.take()
        };
        let outcome = send(self);
        let verdict = match &outcome {
            Ok(sw) => verdict_of(*sw),
            Err(e) if reached_card(e) => Verdict::Unknown,
            Err(_) => Verdict::NotSent,
        };
        if verdict == Verdict::NotSent {
            self.state(cred).known_tries = before;
        }
        site.verdict(verdict);
        outcome
    }

    /// The counter of a credential about to be presented; a blocked or
    /// unset one is refused before the user is asked or anything is sent.
    pub(super) fn usable_counter(&mut self, cred: &Credential, so: bool) -> Result<Counter, Error> {
        let counter = self.read_counter(cred)?;
        match counter {
            Counter::Blocked if so => Err(Error::SoPinBlocked),
            Counter::Blocked => Err(Error::PinBlocked),
            Counter::NotInitialized if so => Err(Error::SoPinBlocked),
            Counter::NotInitialized => Err(Error::PinNotInitialized),
            c => Ok(c),
        }
    }

    /// A value was right: the card's counter is back at its maximum.
    pub(super) fn succeeded(&mut self, cred: &Credential) {
        let max = self.max_tries(cred);
        let st = self.state(cred);
        st.known_tries = Some(max);
        st.not_initialized = false;
        st.last_query = None;
    }

    pub(super) fn reinitialised(&mut self, cred: &Credential) {
        self.succeeded(cred);
        let st = self.state(cred);
        st.validated = false;
        st.to_be_changed = false;
    }

    /// Maps a failed VERIFY / CHANGE / RESET RETRY COUNTER. A wrong value
    /// answers `PIN_INCORRECT` / `SO_PIN_INCORRECT` with the tries the card
    /// has left (0: this try blocked it), from its answer when it gave
    /// them, else learned, else absent.
    pub(super) fn failed(&mut self, cred: &Credential, sw: StatusWord, so: bool) -> Error {
        let wrong_value = matches!(
            sw,
            StatusWord::TriesRemaining(_)
                | StatusWord::VerifyFailedNoInfo
                | StatusWord::AuthBlocked
        );
        if !wrong_value {
            return match sw {
                // The SO credential itself is unusable (e.g. no reset code set).
                StatusWord::RefDataNotUsable if so => Error::SoPinBlocked,
                StatusWord::RefDataNotUsable => {
                    self.state(cred).not_initialized = true;
                    Error::PinNotInitialized
                }
                StatusWord::ConditionsNotSatisfied if !so => {
                    self.state(cred).to_be_changed = true;
                    Error::PinToBeChanged
                }
                sw => map_other(sw, cred),
            };
        }
        self.state(cred).validated = false;
        if sw == StatusWord::AuthBlocked && self.presented_blind {
            // Blocked before, or blocked by this try: the card does not
            // say which. It is blocked now; nothing is claimed spent.
            self.state(cred).known_tries = Some(0);
            return if so {
                Error::SoPinBlocked
            } else {
                Error::PinBlocked
            };
        }
        let tries = match sw {
            StatusWord::TriesRemaining(n) => Some(n),
            // A credential read as blocked is refused before it is sent,
            // so with a known count 6983 is this try's.
            StatusWord::AuthBlocked => Some(0),
            _ => self.learn_tries(cred),
        };
        let st = self.state(cred);
        st.known_tries = tries;
        if let Some(t) = tries {
            st.max_seen = st.max_seen.max(t);
        }
        if so {
            Error::SoPinIncorrect {
                remaining_tries: tries,
            }
        } else {
            Error::PinIncorrect {
                remaining_tries: tries,
            }
        }
    }

    /// The counter after a failure whose answer did not give it (6300).
    /// Some cards keep an earlier verification after a wrong value and hide
    /// the count behind it (the status query answers 9000): the
    /// verification is ended (VERIFY P1=FF) and the card asked again.
    pub(super) fn learn_tries(&mut self, cred: &Credential) -> Option<u8> {
        match self.read_counter(cred).ok()? {
            Counter::Tries {
                tries: None,
                verified: Some(true),
            } => {
                let ended = self
                    .send(cred, &commands::verify_reset(cred.reference))
                    .is_ok_and(|r| r.sw == StatusWord::Ok);
                if !ended {
                    return None;
                }
                self.state(cred).validated = false;
                match self.read_counter(cred).ok()? {
                    Counter::Tries {
                        tries,
                        verified: Some(false),
                    } => tries,
                    c => c.tries(),
                }
            }
            c => c.tries(),
        }
    }
}

/// The last-try guard: a value a site chose is never sent to a credential
/// with one try left, nor to one whose count the card does not show. The
/// user's own entries (dialog, pinpad, command line) may go on.
pub(super) fn last_try_guard(from: Provenance, tries: Option<u8>) -> Result<(), Error> {
    if from.from_site() && !matches!(tries, Some(t) if t > 1) {
        return Err(Error::LastTryProtected {
            remaining_tries: tries,
        });
    }
    Ok(())
}

/// What the card's answer says of the value it was given.
fn verdict_of(sw: StatusWord) -> Verdict {
    match sw {
        StatusWord::Ok => Verdict::Right,
        StatusWord::TriesRemaining(_)
        | StatusWord::VerifyFailedNoInfo
        | StatusWord::AuthBlocked => Verdict::Wrong,
        _ => Verdict::NotSent,
    }
}

/// Whether an error came after the command may have reached the card (the
/// card went away mid-command) rather than before it (a refusal, or the
/// user cancelling on the pinpad).
fn reached_card(e: &Error) -> bool {
    matches!(
        e,
        Error::CardRemoved | Error::CardAbsent | Error::ReaderError(_) | Error::NoPcscService
    )
}

pub(super) fn map_other(sw: StatusWord, cred: &Credential) -> Error {
    match sw {
        StatusWord::WrongLength | StatusWord::WrongData => Error::PinLengthInvalid {
            min: cred.format.min_len,
            max: cred.format.max_len,
        },
        StatusWord::InsNotSupported | StatusWord::WrongP1P2 | StatusWord::RefNotFound => {
            Error::OperationNotSupported(format!("this operation on the {}", cred.label))
        }
        StatusWord::SecurityNotSatisfied => Error::SoLoginRequired,
        sw => Error::CardError { sw },
    }
}
