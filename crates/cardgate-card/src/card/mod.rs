//! Card profiles: recognising an application on a card and describing its
//! PIN objects (references, encodings, limits, how to read the retry counter
//! without spending a try, how to log out and re-initialise).
//!
//! Profiles are data ([`profile`], docs/cards.md). A card is recognised
//! by its ATR and the applications that answer SELECT ([`recognise`]);
//! a card no profile describes is reported as unsupported with its ATR and
//! the applications that answered, never sent a VERIFY, never guessed at.

mod encoding;
pub mod openpgp;
pub mod pinpad;
pub mod piv;
pub mod pkcs15;
pub mod profile;
mod recognise;
mod session;

pub use encoding::pin_block;
pub use profile::{CardProfile, LogoutForm, ProfileError, ProfileSet, Role};
pub use recognise::{WELL_KNOWN_AIDS, answers, probe, recognise};
pub use session::CardSession;

use crate::apdu::StatusWord;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

/// How a PIN value is put into an APDU (docs/cards.md, `encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// The ASCII bytes as typed (padded when the format says).
    Ascii,
    /// The UTF-8 bytes as typed (padded when the format says).
    Utf8,
    /// Digits packed two per byte, the last nibble filled with F.
    Bcd,
    /// An ISO 9564-1 format 2 PIN block: 2L, BCD digits, F filling, 8 bytes.
    #[serde(rename = "format2")]
    Format2,
}

/// Limits the card itself imposes on a value, and its encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PinFormat {
    /// Minimum length in characters of the value.
    pub min_len: usize,
    /// Maximum length in characters of the value.
    pub max_len: usize,
    /// Only ASCII digits 0–9 are accepted.
    pub numeric: bool,
    /// How the value goes into the APDU.
    #[serde(skip)]
    pub encoding: Encoding,
    /// The byte that fills the value up to `stored_len` (None: not padded).
    #[serde(skip)]
    pub pad: Option<u8>,
    /// The length in bytes of the encoded value (0: as long as the value).
    #[serde(skip)]
    pub stored_len: usize,
}

/// Where a value is in a card's answer: a BER-TLV tag path (empty: the
/// whole answer), then a byte offset in that value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueAt {
    /// Tags from the outside in (see [`crate::apdu::tlv::find`]).
    pub tags: Vec<u32>,
    /// The byte's offset in the value found.
    pub offset: usize,
}

impl ValueAt {
    /// The byte in `data`, if it is there.
    pub fn read(&self, data: &[u8]) -> Option<u8> {
        let value = if self.tags.is_empty() {
            data
        } else {
            crate::apdu::tlv::find(data, &self.tags)?
        };
        value.get(self.offset).copied()
    }
}

/// A read-only command whose answer holds the try counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriesQuery {
    /// The command (a short APDU; only reading instructions are allowed,
    /// see [`crate::apdu::commands::read_only_query`]).
    pub apdu: Vec<u8>,
    /// Where the tries left are.
    pub tries: ValueAt,
    /// Where the maximum is, when the card says.
    pub max: Option<ValueAt>,
}

/// Where the retry counter (and possibly the verified state) can be read
/// without spending a try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusSource {
    /// VERIFY with no data: 9000 = verified, 63Cx = x tries left, 6983 =
    /// blocked. Only for cards whose specification says it spends nothing.
    EmptyVerify,
    /// OpenPGP "PW status bytes" DO C4, tries at this byte index.
    OpenPgpPwStatus {
        /// One of the `C4_TRIES_*` indexes of [`openpgp`].
        tries_index: usize,
    },
    /// A read-only command (GET DATA, GET METADATA …) whose answer holds
    /// the count.
    Query(Box<TriesQuery>),
}

/// The `&'static str` for an id: PIN and application ids are few and
/// live as long as the process, so each distinct one is kept once.
pub fn intern(s: &str) -> &'static str {
    static IDS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut ids = IDS.lock().unwrap_or_else(PoisonError::into_inner);
    let ids = ids.get_or_insert_with(HashSet::new);
    if let Some(known) = ids.get(s) {
        return known;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    ids.insert(leaked);
    leaked
}

/// One secret the card checks: a PIN, a PUK, an admin PIN or a reset code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Its name for display: "PIN", "PUK", "Admin PIN", ….
    pub label: String,
    /// What it is for.
    pub role: Role,
    /// The application (index in [`Token::applications`]) selected for
    /// its commands.
    pub app: usize,
    /// Key reference used in P2 of VERIFY.
    pub reference: u8,
    /// Key reference used in P2 of CHANGE REFERENCE DATA and RESET RETRY
    /// COUNTER (differs from `reference` for OpenPGP PW1: 82 vs 81).
    pub change_reference: u8,
    /// The card's limits on its value.
    pub format: PinFormat,
    /// Where its try counter can be read without spending a try, tried in
    /// order (empty: the card does not show it).
    pub status: Vec<StatusSource>,
    /// Can be presented alone with VERIFY (a PIV PUK cannot).
    pub verifiable: bool,
    /// The counter's maximum when the card does not say (most cards: 3).
    pub default_max_tries: u8,
    /// The card checks this code alone when it is changed to itself with
    /// CHANGE REFERENCE DATA (a PIV PUK, which has no VERIFY: SP 800-73-4
    /// Part 2 §3.2.2; success also resets its counter). A security-officer
    /// login checks it at once instead of holding it unchecked for `init`.
    pub checked_by_change: bool,
    /// How its verification is ended.
    pub logout: LogoutForm,
    /// Further references ended with it (OpenPGP PW1 is verified
    /// separately for signing, 81).
    pub logout_also: Vec<u8>,
    /// Status words this card uses for what ISO 7816-4 says otherwise,
    /// with their ISO meaning.
    pub sw_map: Vec<(u16, StatusWord)>,
    /// Status words with which this card refuses, in CHANGE REFERENCE DATA,
    /// a new value equal to the old one.
    pub new_same_as_old: Vec<u16>,
}

impl Credential {
    /// The card's answer in ISO 7816-4 terms.
    pub fn normalise(&self, sw: StatusWord) -> StatusWord {
        let raw = sw.to_u16();
        self.sw_map
            .iter()
            .find(|(from, _)| *from == raw)
            .map_or(sw, |(_, to)| *to)
    }
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
    /// The application it belongs to (index in [`Token::applications`]).
    pub app: usize,
    /// The secret the card checks for it.
    pub credential: Credential,
    /// The SO path used by `login(value, so=true)` + `init`.
    pub so: Option<SoMethod>,
    /// A second SO path with a resetting code (OpenPGP reset code).
    pub reset_code: Option<SoMethod>,
}

/// An application found on a card (or one more selection one of its PINs
/// needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    /// Its id ("piv", "openpgp", "esteid" …): each PIN says its application.
    pub id: &'static str,
    /// Its name for display ("PIV card", "OpenPGP card SERIAL").
    pub label: String,
    /// The AID that selects it.
    pub aid: Vec<u8>,
    /// Its serial number in hex, when it gives one (OpenPGP 3.4 §4.2.1).
    pub serial: Option<String>,
    /// Code run after it is found.
    pub hook: Option<profile::Hook>,
}

/// The card in a reader as SCWS sees it: one token, with the PIN objects
/// of every application the card answered to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The card profile that recognised it ("piv", "yubikey", "pkcs15" …).
    pub profile: String,
    /// Its name for display.
    pub label: String,
    /// Its applications; a PIN's `app` indexes this list.
    pub applications: Vec<Application>,
    /// Selecting one application ends the verifications of another.
    pub select_clears_other: bool,
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

    /// The application a PIN object belongs to.
    pub fn application_of(&self, pin: &PinObject) -> &Application {
        &self.applications[pin.app]
    }

    /// The serial number of the first application that gives one.
    pub fn serial(&self) -> Option<&str> {
        self.applications.iter().find_map(|a| a.serial.as_deref())
    }

    /// The ids of its distinct applications, in order.
    pub fn application_ids(&self) -> Vec<&'static str> {
        let mut ids: Vec<&'static str> = Vec::new();
        for a in &self.applications {
            if !ids.contains(&a.id) {
                ids.push(a.id);
            }
        }
        ids
    }
}

/// Bytes as uppercase hex without spaces, as ATRs and AIDs are shown.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
