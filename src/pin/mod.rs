//! The PIN engine: status, login (user and security officer), change,
//! init (unblock / re-initialise) and logout for the PIN objects of one
//! card, on top of a [`CardSession`].
//!
//! Rules that protect the user's tries:
//! - a new value (`change`, `init`) is checked against the PIN object's
//!   effective policy (constraints, see [`crate::policy`]) before any APDU;
//! - values are checked against the card's own limits before any APDU;
//! - a VERIFY is never retried on its own;
//! - after any failed VERIFY / CHANGE / RESET the counter is read again
//!   rather than trusted from the status word (some cards answer 6300
//!   with no counter);
//! - the counter is read without spending a try (empty VERIFY on PIV,
//!   DO C4 on OpenPGP), and a card seen spending tries on empty VERIFYs is
//!   not asked again.

mod guard;
mod pinpad;
mod status;

pub use guard::Presented;
pub use status::PinStatus;

use crate::apdu::commands::{self, OPENPGP_PW1_SIGN};
use crate::apdu::{Response, StatusWord};
use crate::card::{
    CardSession, Credential, Encoding, PinObject, SoMethod, StatusSource, Token, openpgp,
};
use crate::error::Error;
use crate::policy::{CardPolicy, Constraint, PinPolicy, PolicySet};
use crate::secret::Secret;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a PUK or resetting code given at SO login is kept for `init`.
pub const HELD_CODE_LIFETIME: Duration = Duration::from_secs(60);

/// Which security-officer path a SO login uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoPath {
    /// The card's SO credential: PIV PUK, OpenPGP admin PIN (PW3).
    Default,
    /// The OpenPGP resetting code.
    ResetCode,
}

/// What the engine knows about one credential beyond what the card says.
#[derive(Debug, Default, Clone)]
struct CredState {
    /// Verified on this connection and not reset since.
    validated: bool,
    /// Learned from 6984 (not initialized) on use.
    not_initialized: bool,
    /// Learned from 6985 on VERIFY of the right value.
    to_be_changed: bool,
    /// Highest counter value seen: the maximum is at least this.
    max_seen: u8,
    /// Last counter value known, from a status read or a failure.
    last_tries: Option<u8>,
    /// The counter value reported by the previous status query, with no
    /// other operation since. Two queries in a row that differ mean the
    /// card counts empty VERIFYs.
    last_query: Option<u8>,
    /// The card spends a try on an empty VERIFY: never query again.
    status_query_unsafe: bool,
}

/// A resetting code (PUK or RC) presented at SO login, kept until `init`.
struct HeldCode {
    pin_id: &'static str,
    method: SoMethod,
    value: Secret,
    since: Instant,
}

/// What a counter read found.
enum Counter {
    Tries { tries: u8, verified: Option<bool> },
    Blocked,
    NotInitialized,
    Unknown,
}

/// The PIN engine for the card in one reader.
pub struct Engine {
    session: CardSession,
    states: HashMap<u8, CredState>,
    held: Option<HeldCode>,
    /// The PIN ids whose SO PIN (OpenPGP PW3) is verified on this connection.
    so_verified: Vec<&'static str>,
    held_lifetime: Duration,
    /// The effective policy of each PIN object, resolved at session open.
    policy: CardPolicy,
    /// How PIN entry on a pinpad reader is asked for.
    pinpad_options: crate::card::pinpad::PinpadOptions,
    /// A SO login on the pinpad whose code (PIV PUK, OpenPGP reset code)
    /// is typed at `init_pinpad`: the PIN object and the path.
    pinpad_so: Option<(&'static str, SoPath)>,
}

impl Engine {
    /// An engine enforcing the built-in policies (and the card's limits).
    pub fn new(session: CardSession) -> Self {
        Engine::with_policies(session, &PolicySet::builtin())
    }

    /// An engine enforcing the policies of `policies` that match this card.
    pub fn with_policies(session: CardSession, policies: &PolicySet) -> Self {
        let policy = policies.resolve(&session.token, session.atr());
        Engine {
            session,
            states: HashMap::new(),
            held: None,
            so_verified: Vec::new(),
            held_lifetime: HELD_CODE_LIFETIME,
            policy,
            pinpad_options: Default::default(),
            pinpad_so: None,
        }
    }

    /// Resolves the card's policy again from another set (policies reloaded).
    pub fn set_policies(&mut self, policies: &PolicySet) {
        self.policy = policies.resolve(&self.session.token, self.session.atr());
    }

    /// Changes how long a held PUK / resetting code lives (tests).
    pub fn set_held_code_lifetime(&mut self, lifetime: Duration) {
        self.held_lifetime = lifetime;
    }

    pub fn token(&self) -> &Token {
        &self.session.token
    }

    pub fn atr(&self) -> &[u8] {
        self.session.atr()
    }

    /// Ends the connection, leaving verified states on the card.
    pub fn close(mut self) {
        self.held = None;
        self.session.close();
    }

    fn pin(&self, id: &str) -> Result<PinObject, Error> {
        self.session
            .token
            .pin(id)
            .cloned()
            .ok_or_else(|| Error::PinNotFound(id.to_string()))
    }

    fn state(&mut self, cred: &Credential) -> &mut CredState {
        self.states.entry(cred.reference).or_default()
    }

    /// Sends a command; forgets verified states if the card was reset meanwhile.
    fn send(&mut self, cmd: &crate::apdu::Command) -> Result<Response, Error> {
        let resp = self.session.send(cmd);
        if self.session.take_reset() {
            self.forget_verified();
        }
        resp
    }

    fn forget_verified(&mut self) {
        for st in self.states.values_mut() {
            st.validated = false;
        }
        self.so_verified.clear();
    }

    /// Drops a held PUK / resetting code whose lifetime is over.
    pub fn expire_held_code(&mut self, now: Instant) {
        if self
            .held
            .as_ref()
            .is_some_and(|h| now.duration_since(h.since) >= self.held_lifetime)
        {
            self.held = None;
        }
    }

    /// When the held code (if any) expires; the owner calls
    /// [`Engine::expire_held_code`] then.
    pub fn held_code_deadline(&self) -> Option<Instant> {
        self.held.as_ref().map(|h| h.since + self.held_lifetime)
    }

    // ---- policy ---------------------------------------------------------

    /// The effective policy of a PIN object.
    pub fn pin_policy(&self, pin_id: &str) -> Result<&PinPolicy, Error> {
        let pin = self.pin(pin_id)?;
        Ok(self
            .policy
            .pin(pin.id)
            .expect("every PIN object of the token has a resolved policy"))
    }

    /// The effective policy of every PIN object of the card.
    pub fn card_policy(&self) -> &CardPolicy {
        &self.policy
    }

    /// `Pin.getConstraints()`.
    pub fn constraints(&self, pin_id: &str) -> Result<&[Constraint], Error> {
        Ok(&self.pin_policy(pin_id)?.constraints)
    }

    /// `Pin.checkConstraints(oldPin, newPin)`: one boolean per constraint of
    /// [`Engine::constraints`], in the same order. Never touches the card.
    pub fn check_constraints(
        &self,
        pin_id: &str,
        old: &Secret,
        new: &Secret,
    ) -> Result<Vec<bool>, Error> {
        Ok(self.pin_policy(pin_id)?.check(old, new))
    }

    // ---- status ---------------------------------------------------------

    /// The SCWS status of one PIN object.
    pub fn status(&mut self, pin_id: &str) -> Result<PinStatus, Error> {
        let pin = self.pin(pin_id)?;
        let counter = self.read_counter(&pin.credential)?;
        let so_logged_in = self.so_verified.contains(&pin.id)
            || self.held.as_ref().is_some_and(|h| h.pin_id == pin.id)
            || self.pinpad_so.is_some_and(|(id, _)| id == pin.id);
        let st = self.state(&pin.credential).clone();
        let mut status = PinStatus::build(
            &pin,
            &st_view(&st),
            counter_view(&counter, &st),
            so_logged_in,
        );
        let policy = self.pin_policy(pin_id)?;
        if let Some(label) = &policy.label {
            status.label = label.clone();
        }
        if let Some(threshold) = policy.try_count_low {
            status.try_count_low = status.remaining_tries.is_some_and(|t| t <= threshold);
        }
        Ok(status)
    }

    /// The status of every PIN object of the token.
    pub fn statuses(&mut self) -> Result<Vec<PinStatus>, Error> {
        let ids: Vec<&'static str> = self.session.token.pins.iter().map(|p| p.id).collect();
        ids.into_iter().map(|id| self.status(id)).collect()
    }

    /// Reads a credential's counter without spending a try.
    fn read_counter(&mut self, cred: &Credential) -> Result<Counter, Error> {
        let counter = match cred.status {
            StatusSource::Unavailable => Counter::Unknown,
            StatusSource::EmptyVerify if self.state(cred).status_query_unsafe => Counter::Unknown,
            StatusSource::EmptyVerify => {
                let resp = self.send(&commands::verify_status(cred.reference))?;
                let counter = match resp.sw {
                    StatusWord::Ok => Counter::Tries {
                        tries: self.max_tries(cred),
                        verified: Some(true),
                    },
                    StatusWord::TriesRemaining(0) | StatusWord::AuthBlocked => Counter::Blocked,
                    StatusWord::TriesRemaining(n) => Counter::Tries {
                        tries: n,
                        verified: Some(false),
                    },
                    StatusWord::RefDataNotUsable => Counter::NotInitialized,
                    _ => Counter::Unknown,
                };
                self.check_query_spends_tries(cred, &counter);
                counter
            }
            StatusSource::OpenPgpPwStatus { tries_index } => {
                let resp = self.send(&commands::get_data(commands::OPENPGP_DO_PW_STATUS))?;
                match (resp.sw, openpgp::PwStatus::parse(&resp.data)) {
                    (StatusWord::Ok, Some(s)) => match s.tries_at(tries_index) {
                        Some(0) => Counter::Blocked,
                        Some(n) => Counter::Tries {
                            tries: n,
                            verified: None,
                        },
                        None => Counter::Unknown,
                    },
                    _ => Counter::Unknown,
                }
            }
        };
        let st = self.state(cred);
        match counter {
            Counter::Tries { tries, verified } => {
                st.max_seen = st.max_seen.max(tries);
                st.last_tries = Some(tries);
                st.not_initialized = false;
                if let Some(v) = verified {
                    st.validated = v;
                }
            }
            Counter::Blocked => {
                st.last_tries = Some(0);
                st.validated = false;
            }
            Counter::NotInitialized => st.not_initialized = true,
            Counter::Unknown => {}
        }
        Ok(counter)
    }

    /// Detects cards that spend a try on an empty VERIFY: two status
    /// queries in a row, with nothing in between, that report different
    /// counters.
    fn check_query_spends_tries(&mut self, cred: &Credential, counter: &Counter) {
        let now = match counter {
            Counter::Tries {
                tries,
                verified: Some(false),
            } => Some(*tries),
            Counter::Blocked => Some(0),
            _ => None,
        };
        let st = self.state(cred);
        if let (Some(prev), Some(now)) = (st.last_query, now)
            && now < prev
        {
            tracing::warn!(
                reference = cred.reference,
                "the card spends a try on every status query; no longer asking it"
            );
            st.status_query_unsafe = true;
        }
        st.last_query = now;
    }

    fn max_tries(&mut self, cred: &Credential) -> u8 {
        let seen = self.state(cred).max_seen;
        seen.max(cred.default_max_tries)
    }

    // ---- operations -----------------------------------------------------

    /// `Pin.login(value, so)`: verifies the user PIN, or with `so` the
    /// security officer's credential through the default SO path.
    pub fn login(&mut self, pin_id: &str, value: &Secret, so: bool) -> Result<(), Error> {
        if so {
            return self.login_so(pin_id, value, SoPath::Default);
        }
        let pin = self.pin(pin_id)?;
        let cred = &pin.credential;
        if !cred.verifiable {
            return Err(Error::OperationNotSupported(format!(
                "login with the {}",
                cred.label
            )));
        }
        let encoded = encode(cred, value)?;
        let resp = self.send_operation(cred, commands::verify(cred.reference, &encoded))?;
        match resp.sw {
            StatusWord::Ok => {
                self.succeeded(cred);
                self.state(cred).validated = true;
                Ok(())
            }
            sw => Err(self.failed(cred, sw, false)),
        }
    }

    /// Security officer login. For a code sent together with the new PIN
    /// (PIV PUK, OpenPGP resetting code) the value is only checked for
    /// format and held for [`Engine::init`]; an admin PIN is VERIFYed now.
    pub fn login_so(&mut self, pin_id: &str, value: &Secret, path: SoPath) -> Result<(), Error> {
        let pin = self.pin(pin_id)?;
        let method = match path {
            SoPath::Default => pin.so.clone(),
            SoPath::ResetCode => pin.reset_code.clone(),
        }
        .ok_or_else(|| {
            Error::OperationNotSupported(match path {
                SoPath::Default => {
                    format!("security officer login for the {}", pin.credential.label)
                }
                SoPath::ResetCode => format!("a resetting code for the {}", pin.credential.label),
            })
        })?;
        let cred = method.credential().clone();
        match &method {
            SoMethod::CodeWithNewPin(_) => {
                check_format(&cred, value)?;
                // A code whose counter is readable and at 0 (OpenPGP: blocked,
                // or never set) would only fail at init: say so now.
                if matches!(self.read_counter(&cred)?, Counter::Blocked) {
                    return Err(Error::SoPinBlocked);
                }
                self.held = Some(HeldCode {
                    pin_id: pin.id,
                    method,
                    value: value.clone(),
                    since: Instant::now(),
                });
                Ok(())
            }
            SoMethod::VerifyThenReset(_) => {
                let encoded = encode(&cred, value)?;
                let resp =
                    self.send_operation(&cred, commands::verify(cred.reference, &encoded))?;
                self.so_verify_outcome(pin.id, &cred, resp.sw)
            }
        }
    }

    /// Records how verifying a PIN object's SO credential went (typed in or
    /// on the pinpad): the SO login stands, or is gone.
    fn so_verify_outcome(
        &mut self,
        pin_id: &'static str,
        cred: &Credential,
        sw: StatusWord,
    ) -> Result<(), Error> {
        if sw == StatusWord::Ok {
            self.succeeded(cred);
            self.state(cred).validated = true;
            if !self.so_verified.contains(&pin_id) {
                self.so_verified.push(pin_id);
            }
            return Ok(());
        }
        self.so_verified.retain(|id| *id != pin_id);
        Err(self.failed(cred, sw, true))
    }

    /// `Pin.change(old, new)`.
    /// Before anything is sent, the current value is checked against the
    /// card's limits (`PIN_LENGTH_INVALID` / `PIN_FORMAT_INVALID`), then the
    /// new value against the policy (`CONSTRAINT_VIOLATION`).
    pub fn change(&mut self, pin_id: &str, old: &Secret, new: &Secret) -> Result<(), Error> {
        let pin = self.pin(pin_id)?;
        let cred = &pin.credential;
        let old_encoded = encode(cred, old)?;
        self.pin_policy(pin.id)?.enforce(old, new)?;
        let old = old_encoded;
        let new = encode(cred, new)?;
        let resp = self.send_operation(
            cred,
            commands::change_reference_data(cred.change_reference, &old, &new),
        )?;
        match resp.sw {
            StatusWord::Ok => {
                self.succeeded(cred);
                self.state(cred).to_be_changed = false;
                Ok(())
            }
            sw => Err(self.failed(cred, sw, false)),
        }
    }

    /// `Pin.init(new)`: re-initialises (unblocks) the PIN after a SO login.
    /// The new value is checked against the policy first (the old value
    /// is unknown: constraints on it hold); a violation sends nothing and
    /// keeps a held PUK / resetting code.
    pub fn init(&mut self, pin_id: &str, new: &Secret) -> Result<(), Error> {
        self.expire_held_code(Instant::now());
        let pin = self.pin(pin_id)?;
        if pin.so.is_none() && pin.reset_code.is_none() {
            return Err(Error::OperationNotSupported(format!(
                "init of the {}",
                pin.credential.label
            )));
        }
        self.pin_policy(pin.id)?.enforce(&Secret::default(), new)?;
        let cred = &pin.credential;
        let new_encoded = encode(cred, new)?;
        if let Some(held) = self.held.take_if(|h| h.pin_id == pin.id) {
            // RESET RETRY COUNTER P1=00: resetting code || new PIN.
            let so_cred = held.method.credential().clone();
            let code = encode(&so_cred, &held.value)?;
            drop(held);
            let cmd = commands::reset_retry_counter(cred.change_reference, &code, &new_encoded);
            let resp = self.send_operation(&so_cred, cmd)?;
            return match resp.sw {
                StatusWord::Ok => {
                    self.succeeded(&so_cred);
                    self.reinitialised(cred);
                    Ok(())
                }
                sw => Err(self.failed(&so_cred, sw, true)),
            };
        }
        if self.so_verified.contains(&pin.id) {
            // RESET RETRY COUNTER P1=02 after the admin PIN was verified.
            let cmd = commands::reset_retry_counter_after_so(cred.change_reference, &new_encoded);
            let resp = self.send_operation(cred, cmd)?;
            return match resp.sw {
                StatusWord::Ok => {
                    self.reinitialised(cred);
                    Ok(())
                }
                StatusWord::SecurityNotSatisfied => {
                    self.so_verified.retain(|id| *id != pin.id);
                    Err(Error::SoLoginRequired)
                }
                sw => Err(map_other(sw, cred)),
            };
        }
        Err(Error::SoLoginRequired)
    }

    /// `Pin.logout()`: resets the verified state of the PIN (and of its
    /// SO credential) and forgets a held PUK / resetting code.
    pub fn logout(&mut self, pin_id: &str) -> Result<(), Error> {
        let pin = self.pin(pin_id)?;
        self.held = None;
        self.pinpad_so = None;
        let mut references = vec![pin.credential.reference];
        if self.session.token.profile == crate::card::ProfileKind::OpenPgp && pin.id == "user" {
            // PW1 is verified separately for signing (81) and other uses (82).
            references.push(OPENPGP_PW1_SIGN);
        }
        if self.so_verified.contains(&pin.id)
            && let Some(so) = &pin.so
        {
            references.push(so.credential().reference);
        }
        self.so_verified.retain(|id| *id != pin.id);
        let mut reset_needed = false;
        for reference in references {
            let resp = self.send(&commands::verify_reset(reference))?;
            if resp.sw != StatusWord::Ok {
                // Cards without VERIFY P1=FF: a reset is the only way out.
                reset_needed = true;
            }
        }
        if reset_needed {
            tracing::debug!("card does not support VERIFY P1=FF; resetting it to log out");
            self.session.reset_card()?;
            self.session.take_reset();
            self.forget_verified();
        }
        self.state(&pin.credential).validated = false;
        Ok(())
    }

    // ---- shared helpers ---------------------------------------------------

    /// Sends a command that may spend a try; the status-query detector
    /// must not compare across it.
    fn send_operation(
        &mut self,
        cred: &Credential,
        cmd: crate::apdu::Command,
    ) -> Result<Response, Error> {
        self.state(cred).last_query = None;
        self.send(&cmd)
    }

    fn succeeded(&mut self, cred: &Credential) {
        let max = self.max_tries(cred);
        let st = self.state(cred);
        st.last_tries = Some(max);
        st.not_initialized = false;
        st.last_query = None;
    }

    fn reinitialised(&mut self, cred: &Credential) {
        self.succeeded(cred);
        let st = self.state(cred);
        st.validated = false;
        st.to_be_changed = false;
    }

    /// Maps a failed VERIFY / CHANGE / RESET RETRY COUNTER, re-reading the
    /// counter instead of trusting the status word alone.
    fn failed(&mut self, cred: &Credential, sw: StatusWord, so: bool) -> Error {
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
        {
            let st = self.state(cred);
            st.validated = false;
        }
        let from_sw = match sw {
            StatusWord::TriesRemaining(n) => Some(n),
            StatusWord::AuthBlocked => Some(0),
            _ => None,
        };
        let tries = match self.read_counter(cred) {
            Ok(Counter::Tries { tries, .. }) => Some(tries),
            Ok(Counter::Blocked) => Some(0),
            _ => from_sw,
        };
        if let Some(t) = tries {
            self.state(cred).last_tries = Some(t);
        }
        match (tries, so) {
            (Some(0), false) => Error::PinBlocked,
            (Some(0), true) => Error::SoPinBlocked,
            (t, false) => Error::PinIncorrect { remaining_tries: t },
            (t, true) => Error::SoPinIncorrect { remaining_tries: t },
        }
    }
}

fn map_other(sw: StatusWord, cred: &Credential) -> Error {
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

/// Checks a value against the limits the card imposes, before any APDU.
pub fn check_format(cred: &Credential, value: &Secret) -> Result<(), Error> {
    let f = &cred.format;
    if f.numeric && !value.is_ascii_digits() {
        return Err(Error::PinFormatInvalid);
    }
    if value.len() < f.min_len || value.len() > f.max_len {
        return Err(Error::PinLengthInvalid {
            min: f.min_len,
            max: f.max_len,
        });
    }
    if f.encoding == Encoding::PivPadded && value.expose().contains(&0xFF) {
        // FF is the padding byte: a value containing it would be ambiguous.
        return Err(Error::PinFormatInvalid);
    }
    Ok(())
}

/// Checks and encodes a value for an APDU.
fn encode(cred: &Credential, value: &Secret) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
    check_format(cred, value)?;
    Ok(zeroize::Zeroizing::new(match cred.format.encoding {
        Encoding::PivPadded => commands::piv_pin_block(value),
        Encoding::Utf8 => value.expose().to_vec(),
    }))
}

/// The parts of the engine's knowledge the status needs.
pub(crate) struct StateView {
    pub validated: bool,
    pub not_initialized: bool,
    pub to_be_changed: bool,
    pub max_seen: u8,
}

fn st_view(st: &CredState) -> StateView {
    StateView {
        validated: st.validated,
        not_initialized: st.not_initialized,
        to_be_changed: st.to_be_changed,
        max_seen: st.max_seen,
    }
}

/// The counter as the status reports it: (tries, blocked, not initialized).
pub(crate) struct CounterView {
    pub tries: Option<u8>,
    pub blocked: bool,
    pub not_initialized: bool,
}

fn counter_view(c: &Counter, st: &CredState) -> CounterView {
    match c {
        Counter::Tries { tries, .. } => CounterView {
            tries: Some(*tries),
            blocked: false,
            not_initialized: false,
        },
        Counter::Blocked => CounterView {
            tries: Some(0),
            blocked: true,
            not_initialized: false,
        },
        Counter::NotInitialized => CounterView {
            tries: None,
            blocked: false,
            not_initialized: true,
        },
        // Fall back to what failures told us.
        Counter::Unknown => CounterView {
            tries: st.last_tries,
            blocked: st.last_tries == Some(0),
            not_initialized: false,
        },
    }
}
