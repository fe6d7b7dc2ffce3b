//! Card profiles: recognising an application on a card and describing its
//! PIN objects (references, encodings, limits, how to read the retry counter
//! without spending a try, how to log out and re-initialise).
//!
//! A card is recognised only by selecting an application we know. A card
//! with none of them is reported as unsupported with its ATR, never guessed at.

pub mod openpgp;
pub mod pinpad;
pub mod piv;
pub mod pkcs15;
mod session;

pub use session::CardSession;

use serde::Serialize;

/// The card applications cardgate knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    /// PIV (NIST SP 800-73-4).
    Piv,
    /// OpenPGP card (OpenPGP card 3.4).
    OpenPgp,
}

impl ProfileKind {
    /// The profile's name as policy files and logs spell it.
    pub fn name(self) -> &'static str {
        match self {
            ProfileKind::Piv => "piv",
            ProfileKind::OpenPgp => "openpgp",
        }
    }
}

/// How a PIN value is put into an APDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// ASCII bytes padded with FF up to 8 bytes (SP 800-73-4 Part 2 §2.4.3).
    PivPadded,
    /// The UTF-8 bytes as typed, no padding (OpenPGP 3.4 §4.3).
    Utf8,
}

/// Limits the card itself imposes on a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PinFormat {
    /// Minimum length in bytes of the encoded value (before padding).
    pub min_len: usize,
    /// Maximum length in bytes of the encoded value (before padding).
    pub max_len: usize,
    /// Only ASCII digits 0–9 are accepted.
    pub numeric: bool,
    /// How the value goes into the APDU.
    #[serde(skip)]
    pub encoding: Encoding,
}

/// Where the retry counter (and possibly the verified state) can be read
/// without spending a try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusSource {
    /// VERIFY with no data: 9000 = verified, 63Cx = x tries left, 6983 = blocked.
    EmptyVerify,
    /// OpenPGP "PW status bytes" DO C4, tries at this byte index.
    OpenPgpPwStatus {
        /// One of the `C4_TRIES_*` indexes of [`openpgp`].
        tries_index: usize,
    },
    /// The card offers no way: the counter is known only from failures.
    Unavailable,
}

/// One secret the card checks: a PIN, a PUK, an admin PIN or a reset code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Its name for display: "PIN", "PUK", "Admin PIN", ….
    pub label: String,
    /// Key reference used in P2 of VERIFY.
    pub reference: u8,
    /// Key reference used in P2 of CHANGE REFERENCE DATA and RESET RETRY
    /// COUNTER (differs from `reference` for OpenPGP PW1: 82 vs 81).
    pub change_reference: u8,
    /// The card's limits on its value.
    pub format: PinFormat,
    /// Where its try counter can be read without spending a try.
    pub status: StatusSource,
    /// Can be presented alone with VERIFY (a PIV PUK cannot).
    pub verifiable: bool,
    /// The counter's maximum when the card does not say (most cards: 3).
    pub default_max_tries: u8,
    /// The card checks this code alone when it is changed to itself with
    /// CHANGE REFERENCE DATA (a PIV PUK, which has no VERIFY: SP 800-73-4
    /// Part 2 §3.2.2; success also resets its counter). A security-officer
    /// login checks it at once instead of holding it unchecked for `init`.
    pub checked_by_change: bool,
}

/// How the security officer re-initialises (unblocks) a user PIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoMethod {
    /// The SO code is sent together with the new PIN in RESET RETRY COUNTER
    /// P1=00 (PIV PUK, OpenPGP reset code). The daemon holds it from the SO
    /// login until `init`.
    CodeWithNewPin(Credential),
    /// The SO PIN is verified first, then RESET RETRY COUNTER P1=02 carries
    /// only the new PIN (OpenPGP PW3).
    VerifyThenReset(Credential),
}

impl SoMethod {
    /// The SO credential of either method.
    pub fn credential(&self) -> &Credential {
        match self {
            SoMethod::CodeWithNewPin(c) | SoMethod::VerifyThenReset(c) => c,
        }
    }
}

/// A PIN object as the SCWS model sees it (`Token.pins`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinObject {
    /// Stable identifier within the token: "pin", "puk", "user", "admin".
    pub id: &'static str,
    /// The secret the card checks for it.
    pub credential: Credential,
    /// The SO path used by `login(value, so=true)` + `init`.
    pub so: Option<SoMethod>,
    /// A second SO path with a resetting code (OpenPGP reset code).
    pub reset_code: Option<SoMethod>,
}

/// An application recognised on a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Which application it is.
    pub profile: ProfileKind,
    /// Its name for display ("PIV card", "OpenPGP card SERIAL").
    pub label: String,
    /// The AID to select again after a reset.
    pub aid: Vec<u8>,
    /// The card's serial number in hex, when the application gives one
    /// (the OpenPGP AID, OpenPGP 3.4 §4.2.1).
    pub serial: Option<String>,
    /// Its PIN objects, the default user PIN first.
    pub pins: Vec<PinObject>,
}

impl Token {
    /// The PIN object with this id.
    pub fn pin(&self, id: &str) -> Option<&PinObject> {
        self.pins.iter().find(|p| p.id == id)
    }

    /// The PIN used when none is named: the first user PIN.
    pub fn default_pin(&self) -> &PinObject {
        &self.pins[0]
    }
}

/// Bytes as uppercase hex without spaces, as ATRs and AIDs are shown.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
