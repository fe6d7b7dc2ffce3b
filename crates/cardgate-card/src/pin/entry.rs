//! What a PIN operation presents to the card, typed with where each value
//! comes from.
//!
//! Every credential the card checks (a PIN, a PUK, an admin PIN, a reset
//! code) reaches it as an [`Entry`]: a value with its [`Provenance`], or
//! an entry on the reader's pinpad. The provenance travels with the value
//! until the moment it is sent — a PUK given at a security-officer login
//! and used at `init` keeps the provenance it had at login — so the
//! last-try guard and the site's lockout judge each credential by where it
//! came from, not by where the call's other inputs came from.

use crate::error::Error;
use crate::secret::Secret;

/// Where a value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Sent by a web page (a string or a CredentialValue with data).
    Page,
    /// A one-time `requestCredential` handle: typed by the user in the
    /// daemon's dialog, but routed by the page (it chose what to use it
    /// for), so it is judged like a page's value.
    Handle,
    /// Typed by the user in the daemon's own PIN dialog for this operation,
    /// which showed the card's real state.
    Dialog,
    /// Typed on the reader's keypad; the daemon never sees it.
    Pinpad,
    /// Typed by the user at the command line (the `cardgate pin` commands).
    Local,
}

impl Provenance {
    /// A value a site chose: it may never spend a credential's last try (or
    /// a try of a counter the card does not show), and a wrong one counts
    /// towards the site's lockout.
    pub fn from_site(self) -> bool {
        matches!(self, Provenance::Page | Provenance::Handle)
    }
}

/// A value and where it comes from.
#[derive(Debug, Clone)]
pub struct Entered {
    /// The value itself, in zeroizing memory.
    pub value: Secret,
    /// Who chose it; judged when it is about to be sent.
    pub from: Provenance,
}

impl Entered {
    /// A value with its provenance.
    pub fn new(value: Secret, from: Provenance) -> Self {
        Entered { value, from }
    }

    /// A value the user typed at the command line.
    pub fn local(value: &Secret) -> Self {
        Entered::new(value.clone(), Provenance::Local)
    }
}

/// One credential of an operation: a value, or an entry on the pinpad.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A value typed somewhere cardgate sees it.
    Typed(Entered),
    /// Typed on the reader's keypad when the command is sent (PC/SC part
    /// 10); cardgate never sees the value.
    Pinpad,
}

impl Entry {
    /// Where the credential comes from ([`Provenance::Pinpad`] for a
    /// pinpad entry).
    pub fn provenance(&self) -> Provenance {
        match self {
            Entry::Typed(v) => v.from,
            Entry::Pinpad => Provenance::Pinpad,
        }
    }
}

/// Which security-officer path a SO login uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoPath {
    /// The card's SO credential: PIV PUK, OpenPGP admin PIN (PW3).
    Default,
    /// The OpenPGP resetting code.
    ResetCode,
}

/// A PIN operation with its credentials (SCWS `Pin.login`, `change`, `init`).
#[derive(Debug, Clone)]
pub enum PinOp {
    /// `login(value)`: the PIN object's own value.
    Login(Entry),
    /// `login(value, true)`: the security officer's credential.
    SoLogin(SoPath, Entry),
    /// `change(old, new)`: both typed, or both on the pinpad.
    Change {
        /// The current value.
        old: Entry,
        /// The value it becomes.
        new: Entry,
    },
    /// `init(new)`: after a SO login.
    Init(Entry),
}

/// What a credential is presented for: decides what the user's own entries
/// may do while a site is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Login with the PIN object's own value.
    Login,
    /// Change of the PIN object's value.
    Change,
    /// Security-officer login or the unblock (`init`) that follows it.
    Unblock,
}

/// The card's verdict on one presented credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The card found it right.
    Right,
    /// The card found it wrong (a try was spent).
    Wrong,
    /// It never reached the card, or the card did not compare it (wrong
    /// length, cancelled on the pinpad …): nothing was spent.
    NotSent,
    /// It was sent and no answer came back (card removed mid-command): a
    /// try may have been spent.
    Unknown,
}

/// The daemon's side of presenting a credential: asked right before a
/// credential reaches the card (after the last-try guard passed), and told
/// the card's verdict. The web daemon keeps each site's lockout here.
pub trait SiteGate {
    /// `Err` refuses: nothing is sent.
    fn admit(&mut self, from: Provenance, purpose: Purpose) -> Result<(), Error>;
    /// The card's verdict on the credential admitted last.
    fn verdict(&mut self, verdict: Verdict);
}

/// No site: the command line, where the user types for themselves.
pub struct NoSite;

impl SiteGate for NoSite {
    fn admit(&mut self, _: Provenance, _: Purpose) -> Result<(), Error> {
        Ok(())
    }

    fn verdict(&mut self, _: Verdict) {}
}
