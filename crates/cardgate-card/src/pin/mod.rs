//! The PIN engine: status, login (user and security officer), change,
//! init (unblock / re-initialise) and logout for the PIN objects of one
//! card, on top of a [`CardSession`].
//!
//! Rules that protect the user's tries:
//! - every credential the card checks reaches it through one path,
//!   `Engine::present` (`present.rs`): the counter is read in the same
//!   job, a blocked credential is refused before anything is sent, a value
//!   a site chose never spends the last try nor a try of a counter the card
//!   does not show, and the site's lockout is asked and told the verdict;
//! - a new value (`change`, `init`) is checked against the PIN object's
//!   effective policy (constraints, see [`crate::policy`]) before any APDU;
//! - values are checked against the card's own limits before any APDU;
//! - a VERIFY is never retried on its own;
//! - a count is only reported when the card gave it after the last
//!   operation that could have spent a try (63Cx, or 9000 on a checked
//!   value); after a failure without a count (6300) it is learned again
//!   (`present.rs`), or reported as unknown;
//! - the counter is read without spending a try, only as the card's
//!   profile says (empty VERIFY on PIV, DO C4 on OpenPGP, GET DATA or GET
//!   METADATA elsewhere), and a card seen spending tries on empty VERIFYs
//!   is not asked again.

mod entry;
mod ops;
mod pinpad;
mod present;
mod status;

pub use entry::{Entered, Entry, NoSite, PinOp, Provenance, Purpose, SiteGate, SoPath, Verdict};
pub use status::PinStatus;

use crate::apdu::commands;
use crate::apdu::{Response, StatusWord};
use crate::card::{CardSession, Credential, LogoutForm, PinObject, StatusSource, Token, openpgp};
use crate::error::Error;
use crate::policy::{CardPolicy, Constraint, PinPolicy, PolicySet};
use crate::secret::Secret;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub use ops::{Asking, DialogFacts, check_format};

/// How long a PUK or resetting code given at SO login is kept for `init`.
pub const HELD_CODE_LIFETIME: Duration = Duration::from_secs(60);

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
    /// The counter as the card last gave it (63Cx, DO C4, or its maximum
    /// after a checked value was right), `None` once an operation that
    /// could have spent a try ended without the card saying how many are
    /// left.
    known_tries: Option<u8>,
    /// The counter value reported by the previous status query, with no
    /// other operation since. Two queries in a row that differ mean the
    /// card counts empty VERIFYs.
    last_query: Option<u8>,
    /// The card spends a try on an empty VERIFY: never query again.
    status_query_unsafe: bool,
}

/// A resetting code (PUK or RC) presented at SO login, kept until `init`
/// with the provenance it came with.
struct HeldCode {
    pin_id: &'static str,
    method: crate::card::SoMethod,
    code: Entered,
    since: Instant,
}

/// What a counter read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    /// `tries` is `None` when the card answered "verified" (9000) and
    /// nothing since the last count tells how many are left.
    Tries {
        tries: Option<u8>,
        verified: Option<bool>,
    },
    Blocked,
    NotInitialized,
    Unknown,
}

impl Counter {
    /// The tries left, as far as the card (or the last count it gave) says.
    fn tries(self) -> Option<u8> {
        match self {
            Counter::Tries { tries, .. } => tries,
            Counter::Blocked => Some(0),
            Counter::NotInitialized | Counter::Unknown => None,
        }
    }
}

/// The PIN engine for the card in one reader.
pub struct Engine {
    session: CardSession,
    /// Keyed by (application, reference): references repeat across
    /// applications.
    states: HashMap<(usize, u8), CredState>,
    held: Option<HeldCode>,
    /// The PIN ids whose SO PIN (OpenPGP PW3) is verified on this connection.
    so_verified: Vec<&'static str>,
    held_lifetime: Duration,
    /// The effective policy of each PIN object, resolved at session open.
    policy: CardPolicy,
    /// How PIN entry on a pinpad reader is asked for.
    pinpad_options: crate::card::pinpad::PinpadOptions,
    /// A SO login on the pinpad whose code (PIV PUK, OpenPGP reset code)
    /// is typed at `init` on the pinpad: the PIN object and the path.
    pinpad_so: Option<(&'static str, SoPath)>,
    /// The credential presented last had no known count (a PIV PUK the
    /// card never told): a "blocked" answer to it may mean it was blocked
    /// already, so nothing is said to have been spent.
    presented_blind: bool,
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
            presented_blind: false,
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

    /// The application on the card and its PIN objects.
    pub fn token(&self) -> &Token {
        &self.session.token
    }

    /// The card's answer to reset.
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
        self.states.entry((cred.app, cred.reference)).or_default()
    }

    /// Sends a command to the application of `cred`; forgets verified
    /// states the card ended meanwhile (a reset, or leaving an
    /// application for another). The answer is in ISO 7816-4 terms
    /// ([`Credential::normalise`]).
    fn send(&mut self, cred: &Credential, cmd: &crate::apdu::Command) -> Result<Response, Error> {
        let resp = self.session.send_in(cred.app, cmd);
        if self.session.take_reset() {
            self.forget_verified();
        }
        for app in self.session.take_left() {
            self.forget_verified_in(app);
        }
        resp.map(|mut r| {
            r.sw = cred.normalise(r.sw);
            r
        })
    }

    /// The card left `app` for another application: the verifications of
    /// its specific references (b8 set, ISO 7816-4 §7.5.1) are gone; global
    /// ones (b8 clear, such as the Estonian ID card's PIN1 and PUK) stay.
    fn forget_verified_in(&mut self, app: usize) {
        let specific = |reference: u8| reference & 0x80 != 0;
        for ((a, reference), st) in self.states.iter_mut() {
            if *a == app && specific(*reference) {
                st.validated = false;
            }
        }
        let token = &self.session.token;
        self.so_verified.retain(|id| {
            token.pin(id).is_none_or(|p| {
                p.so.as_ref().is_none_or(|so| {
                    let c = so.credential();
                    c.app != app || !specific(c.reference)
                })
            })
        });
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
        // Cannot fail: `PolicySet::resolve` yields a policy for every PIN
        // object of the token (at session open and on reload), and
        // `self.pin` found this one in that token.
        #[allow(clippy::expect_used)]
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

    /// The SCWS status of one PIN object, read from the card.
    pub fn status(&mut self, pin_id: &str) -> Result<PinStatus, Error> {
        let pin = self.pin(pin_id)?;
        let counter = self.read_counter(&pin.credential)?;
        self.build_status(&pin, counter)
    }

    /// The status of a PIN object right after an operation on it: built
    /// from what the card's answer said when it gave the count (no APDU),
    /// read from the card otherwise.
    pub fn status_after_operation(&mut self, pin_id: &str) -> Result<PinStatus, Error> {
        let pin = self.pin(pin_id)?;
        let st = self.state(&pin.credential).clone();
        match st.known_tries {
            Some(0) => self.build_status(&pin, Counter::Blocked),
            Some(t) if !st.not_initialized => self.build_status(
                &pin,
                Counter::Tries {
                    tries: Some(t),
                    verified: None,
                },
            ),
            _ => self.status(pin_id),
        }
    }

    fn build_status(&mut self, pin: &PinObject, counter: Counter) -> Result<PinStatus, Error> {
        let so_logged_in = self.so_verified.contains(&pin.id)
            || self.held.as_ref().is_some_and(|h| h.pin_id == pin.id)
            || self.pinpad_so.is_some_and(|(id, _)| id == pin.id);
        let st = self.state(&pin.credential).clone();
        let application = self.session.token.application_of(pin).id;
        let mut status = PinStatus::build(
            pin,
            application,
            &st_view(&st),
            counter_view(counter),
            so_logged_in,
        );
        let policy = self.pin_policy(pin.id)?;
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

    /// Reads a credential's counter without spending a try: the first of
    /// its sources that answers.
    fn read_counter(&mut self, cred: &Credential) -> Result<Counter, Error> {
        let mut counter = Counter::Unknown;
        for source in &cred.status {
            counter = self.read_source(cred, source)?;
            if counter != Counter::Unknown {
                break;
            }
        }
        self.record_counter(cred, counter)
    }

    fn read_source(&mut self, cred: &Credential, source: &StatusSource) -> Result<Counter, Error> {
        Ok(match source {
            StatusSource::EmptyVerify if self.state(cred).status_query_unsafe => Counter::Unknown,
            StatusSource::EmptyVerify => {
                let resp = self.send(cred, &commands::verify_status(cred.reference))?;
                let counter = match resp.sw {
                    // Verified: the card does not give the count; the one
                    // it gave last holds if nothing could have spent a try
                    // since.
                    StatusWord::Ok => Counter::Tries {
                        tries: self.state(cred).known_tries,
                        verified: Some(true),
                    },
                    StatusWord::TriesRemaining(0) | StatusWord::AuthBlocked => Counter::Blocked,
                    StatusWord::TriesRemaining(n) => Counter::Tries {
                        tries: Some(n),
                        verified: Some(false),
                    },
                    StatusWord::RefDataNotUsable => Counter::NotInitialized,
                    _ => Counter::Unknown,
                };
                self.check_query_spends_tries(cred, &counter);
                counter
            }
            StatusSource::OpenPgpPwStatus { tries_index } => {
                let resp = self.send(cred, &commands::get_data(commands::OPENPGP_DO_PW_STATUS))?;
                match (resp.sw, openpgp::PwStatus::parse(&resp.data)) {
                    (StatusWord::Ok, Some(s)) => tries_counter(s.tries_at(*tries_index)),
                    _ => Counter::Unknown,
                }
            }
            StatusSource::Query(q) => {
                let Ok(cmd) = commands::read_only_query(&q.apdu) else {
                    return Ok(Counter::Unknown);
                };
                let resp = self.send(cred, &cmd)?;
                if resp.sw != StatusWord::Ok {
                    return Ok(Counter::Unknown);
                }
                if let Some(max) = q.max.as_ref().and_then(|m| m.read(&resp.data))
                    && (1..=15).contains(&max)
                {
                    let st = self.state(cred);
                    st.max_seen = st.max_seen.max(max);
                }
                tries_counter(q.tries.read(&resp.data).filter(|t| *t <= 15))
            }
        })
    }

    fn record_counter(&mut self, cred: &Credential, counter: Counter) -> Result<Counter, Error> {
        let st = self.state(cred);
        match counter {
            Counter::Tries { tries, verified } => {
                if let Some(t) = tries {
                    st.max_seen = st.max_seen.max(t);
                    st.known_tries = Some(t);
                }
                st.not_initialized = false;
                if let Some(v) = verified {
                    st.validated = v;
                }
            }
            Counter::Blocked => {
                st.known_tries = Some(0);
                st.validated = false;
            }
            Counter::NotInitialized => st.not_initialized = true,
            Counter::Unknown => {}
        }
        // A counter the card does not show: the last count it gave, if it
        // still holds.
        Ok(match counter {
            Counter::Unknown => match st.known_tries {
                Some(0) => Counter::Blocked,
                Some(t) => Counter::Tries {
                    tries: Some(t),
                    verified: None,
                },
                None => Counter::Unknown,
            },
            c => c,
        })
    }

    /// Detects cards that spend a try on an empty VERIFY: two status
    /// queries in a row, with nothing in between, that report different
    /// counters.
    fn check_query_spends_tries(&mut self, cred: &Credential, counter: &Counter) {
        let now = match counter {
            Counter::Tries {
                tries: Some(tries),
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
            st.known_tries = Some(now);
        }
        st.last_query = now;
    }

    fn max_tries(&mut self, cred: &Credential) -> u8 {
        let seen = self.state(cred).max_seen;
        seen.max(cred.default_max_tries)
    }

    // ---- the command line's operations (values typed by the user) ---------

    /// `Pin.login(value, so)` with a value typed at the command line.
    pub fn login(&mut self, pin_id: &str, value: &Secret, so: bool) -> Result<(), Error> {
        let entry = Entry::Typed(Entered::local(value));
        let op = if so {
            PinOp::SoLogin(SoPath::Default, entry)
        } else {
            PinOp::Login(entry)
        };
        self.perform(pin_id, op, &mut NoSite)
    }

    /// Security officer login through `path` with a value typed at the
    /// command line.
    pub fn login_so(&mut self, pin_id: &str, value: &Secret, path: SoPath) -> Result<(), Error> {
        let op = PinOp::SoLogin(path, Entry::Typed(Entered::local(value)));
        self.perform(pin_id, op, &mut NoSite)
    }

    /// `Pin.change(old, new)` with values typed at the command line.
    pub fn change(&mut self, pin_id: &str, old: &Secret, new: &Secret) -> Result<(), Error> {
        let op = PinOp::Change {
            old: Entry::Typed(Entered::local(old)),
            new: Entry::Typed(Entered::local(new)),
        };
        self.perform(pin_id, op, &mut NoSite)
    }

    /// `Pin.init(new)` with a value typed at the command line.
    pub fn init(&mut self, pin_id: &str, new: &Secret) -> Result<(), Error> {
        self.perform(
            pin_id,
            PinOp::Init(Entry::Typed(Entered::local(new))),
            &mut NoSite,
        )
    }

    /// `Pin.logout()`: resets the verified state of the PIN (and of its
    /// SO credential) and forgets a held PUK / resetting code. A card
    /// without VERIFY P1=FF (or whose profile says so) is reset.
    pub fn logout(&mut self, pin_id: &str) -> Result<(), Error> {
        let pin = self.pin(pin_id)?;
        self.held = None;
        self.pinpad_so = None;
        let mut ends: Vec<(Credential, u8)> =
            vec![(pin.credential.clone(), pin.credential.reference)];
        ends.extend(
            pin.credential
                .logout_also
                .iter()
                .map(|r| (pin.credential.clone(), *r)),
        );
        if self.so_verified.contains(&pin.id)
            && let Some(so) = &pin.so
        {
            ends.push((so.credential().clone(), so.credential().reference));
        }
        self.so_verified.retain(|id| *id != pin.id);
        let mut reset_needed = ends.iter().any(|(c, _)| c.logout == LogoutForm::Reset);
        if !reset_needed {
            for (cred, reference) in &ends {
                let resp = self.send(cred, &commands::verify_reset(*reference))?;
                if resp.sw != StatusWord::Ok {
                    // Cards without VERIFY P1=FF: a reset is the only way out.
                    reset_needed = true;
                }
            }
        }
        if reset_needed {
            tracing::debug!("ending the verification by resetting the card");
            self.session.reset_card()?;
            self.session.take_reset();
            self.forget_verified();
        }
        self.state(&pin.credential).validated = false;
        Ok(())
    }
}

/// A count read from the card: 0 is blocked.
fn tries_counter(tries: Option<u8>) -> Counter {
    match tries {
        Some(0) => Counter::Blocked,
        Some(n) => Counter::Tries {
            tries: Some(n),
            verified: None,
        },
        None => Counter::Unknown,
    }
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

fn counter_view(c: Counter) -> CounterView {
    match c {
        Counter::Tries { tries, .. } => CounterView {
            tries,
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
        Counter::Unknown => CounterView {
            tries: None,
            blocked: false,
            not_initialized: false,
        },
    }
}
