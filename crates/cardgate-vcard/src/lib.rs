//! Our own virtual smart card: ISO 7816 PIN state machines modelling PIV,
//! OpenPGP and a few real cards, each from its public specification or,
//! where none is public, from the public software that drives it. It runs
//! in-process (the simulated transport) or as a separate process speaking
//! the vpcd protocol to pcscd (`cardgate vcard`, see [`vpcd`] and [`cli`]).
//! It never reads the daemon's card profiles: tests check those against a
//! separately written card.
//!
//! The card follows the specifications, not our engine's habits:
//! - PIV: NIST SP 800-73-4 Part 2 — SELECT (right-truncated AID), VERIFY
//!   (incl. the empty-data status query and P1=FF reset), CHANGE REFERENCE
//!   DATA, RESET RETRY COUNTER with the PUK, GET DATA of the discovery object.
//! - OpenPGP: OpenPGP card 3.4 — SELECT, GET DATA (4F, 5F52, 65, 6E, 7A, C4,
//!   empty 7F21, …), SELECT DATA (7F21 occurrences),
//!   VERIFY 81/82/83 (incl. empty-data status query and P1=FF),
//!   CHANGE REFERENCE DATA 81/83, RESET RETRY COUNTER with the resetting code
//!   (P1=00) or after PW3 (P1=02), PUT DATA D3 (resetting code) and C4.
//! - YubiKey ([`yubikey`]): both applications above on one card, selecting
//!   one drops the other's verified state; Yubico's PIV GET METADATA (PIN,
//!   PUK; firmware 5.3.0 and later) and GET VERSION.
//! - EstEID ([`esteid`]): the IDEMIA Estonian ID card — main, AWP and QSCD
//!   applications, PIN1 01 / PUK 02 global and PIN2 85 in QSCD, 12-byte
//!   FF-padded values, tries by GET DATA `00 CB 3F FF`, unblocking by PUK
//!   VERIFY then RESET RETRY COUNTER P1=02.
//! - Belgian eID ([`beid`]): Belpic applet 1.8 — PIN 01 in ISO 9564-1
//!   format 2 blocks, GET CARD DATA and LOG OFF (CLA 80), no way to read
//!   the tries, no unblocking by software.
//! - PKCS#15 ([`pkcs15`]): PKCS #15 v1.1 / ISO/IEC 7816-15 files (EF.DIR,
//!   ODF, TokenInfo, AODF in DER, [`pkcs15::encoded_files`]) with SELECT
//!   FILE by identifier, path and AID, READ BINARY, and the PIN 81 / PUK 82
//!   they describe.
//! - ISO ([`iso`]): ISO/IEC 7816-4 alone — one application (AID F0
//!   "cardgate"), PIN 81 and PUK 82, 8-byte FF-padded digits, RESET RETRY
//!   COUNTER P1=00 PUK ‖ new; with quirks `empty_verify_spends_try` and
//!   `wrong_verify_6300` it is the unknown, hostile card.
//!
//! # Conventions where the specifications leave room
//!
//! | situation | answer |
//! |---|---|
//! | fewer than 4 bytes, or Lc/Le inconsistent with the length | 6700 |
//! | CLA with the chaining bit (10) | 6884; any other CLA but 00: 6E00 (Belgian eID: CLA 80 for its proprietary commands) |
//! | unknown INS | 6D00; an INS of the profile's spec we do not implement: 6A81 |
//! | a known INS before the application is selected | 6985 (EstEID, PKCS#15: the MF is current after a reset; Belgian eID: its applet is) |
//! | SELECT of another AID | 6A82, the current selection is kept |
//! | SELECT with P1≠04 or P2≠00 | 6A86 (EstEID, Belgian eID, ISO: P2=0C too; PKCS#15: P1 00/01/02/04/08/09, P2 00/04/0C) |
//! | references specific to a DF (PKCS#15 81/82, EstEID PIN2 85) | 6A88 elsewhere; leaving the DF drops their verified state |
//! | YubiKey: selecting one application | drops the other's verified states; re-selecting the same keeps them |
//! | P1 not 00/FF in VERIFY, not 00 in CHANGE | 6A86 |
//! | unsupported reference | PIV, EstEID, Belgian eID, PKCS#15, ISO: 6A88 (incl. PIV global PIN 00); OpenPGP: 6A86 |
//! | VERIFY P1=FF with data | 6700 |
//! | a failed VERIFY | clears the verified state of that PIN |
//! | a failed CHANGE REFERENCE DATA | clears it too (PIV: kept with quirk `failed_change_keeps_verification`) |
//! | wrong value, x tries left | 63Cx (6300 with quirk `wrong_verify_6300`); PIV answers 6983 for the try that blocks, the others 63C0 |
//! | presenting to a blocked reference | 6983 (63C0 with quirk `blocked_sw_63c0`), no try spent |
//! | empty-data VERIFY | 9000 when verified, else 63Cx (6983 when blocked), no try spent; Belgian eID: 6700 (no status query) |
//! | EstEID, Belgian eID, PKCS#15, ISO value of the wrong length / malformed | 6700 / 6A80, no try spent |
//! | PIV PIN/PUK block not 8 bytes / PIN not 6–8 digits FF-padded | 6A80, no try spent |
//! | OpenPGP password length out of min..=127 | 6700, no try spent |
//! | OpenPGP CHANGE/RESET: the old value / RC is split off at its stored length and checked first, then the new value's length | wrong → 63Cx, new too short/long → 6700 |
//! | OpenPGP RESET RETRY COUNTER P1=00 while no resetting code is set | 6984 |
//! | OpenPGP P1=02 / PUT DATA without PW3 verified | 6982 |
//! | user PIN not initialized (`pin_not_initialized`) | VERIFY (also empty) and CHANGE: 6984; RESET RETRY COUNTER sets it |
//! | user PIN must be changed (`pin_must_change`) | VERIFY with the correct value: 6985, not verified, no try spent (the counter is reset as for any correct value); a wrong value counts as usual; the empty status query answers 63Cx; a successful CHANGE REFERENCE DATA or RESET RETRY COUNTER clears the flag |
//! | re-SELECT of the selected application | keeps verified states (only reset and power cycle drop them) |
//! | response longer than Ne | the first Ne bytes + 61xx; the rest with GET RESPONSE |
//! | GET RESPONSE with nothing pending | 6985 |
//!
//! Reference data and incoming command data live in zeroizing buffers, and
//! nothing here logs a PIN value.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, rust_2018_idioms, unused_qualifications)]
#![warn(clippy::unwrap_used, clippy::expect_used)]
// Tests may unwrap: a panic there is a failed test, not a crash.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod beid;
pub mod cli;
mod command;
pub mod config;
pub mod esteid;
pub mod iso;
mod openpgp;
mod pin;
pub use pin::Presentation;
mod piv;
pub mod pkcs15;
pub mod sim;
pub mod vpcd;
pub mod yubikey;

// The card library's modules under the names this crate's code uses.
pub(crate) use cardgate_card::{apdu, secret, transport};

pub use config::{CardConfig, CardConfigError, Profile, Quirk};

use crate::apdu::StatusWord;
use command::Apdu;

/// What an application answers to one command.
pub(crate) struct Reply {
    pub data: Vec<u8>,
    pub sw: StatusWord,
}

impl Reply {
    pub(crate) fn sw(sw: StatusWord) -> Self {
        Reply {
            data: Vec::new(),
            sw,
        }
    }

    pub(crate) fn ok() -> Self {
        Reply::sw(StatusWord::Ok)
    }

    pub(crate) fn data(data: Vec<u8>) -> Self {
        Reply {
            data,
            sw: StatusWord::Ok,
        }
    }
}

/// 6A81: function not supported.
pub(crate) const SW_FUNCTION_NOT_SUPPORTED: StatusWord = StatusWord::Other(0x6A81);
/// 6884: command chaining not supported.
const SW_CHAINING_NOT_SUPPORTED: StatusWord = StatusWord::Other(0x6884);

const INS_SELECT: u8 = 0xA4;
const INS_GET_RESPONSE: u8 = 0xC0;

enum App {
    Piv(piv::Piv),
    OpenPgp(openpgp::OpenPgp),
    YubiKey(Box<yubikey::YubiKey>),
    EstEid(esteid::EstEid),
    Beid(beid::Beid),
    Pkcs15(Box<pkcs15::Pkcs15>),
    Iso(iso::Iso),
}

/// How many command headers a card keeps for [`VirtualCard::commands`].
const MAX_HEADERS_KEPT: usize = 100_000;

/// A virtual card in one reader.
pub struct VirtualCard {
    profile: Profile,
    app: App,
    selected: bool,
    /// Response bytes waiting for GET RESPONSE.
    pending: Vec<u8>,
    atr: Vec<u8>,
    /// The header (CLA INS P1 P2) of every command received, and whether
    /// it carried data: what a test counts (never the data itself).
    headers: Vec<([u8; 4], bool)>,
}

impl std::fmt::Debug for VirtualCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualCard")
            .field("profile", &self.profile)
            .field("selected", &self.selected)
            .finish_non_exhaustive()
    }
}

impl VirtualCard {
    /// A card as configured. The configuration is expected to be valid
    /// ([`CardConfig::validate`]); out-of-range values are clamped.
    pub fn new(config: CardConfig) -> Self {
        let profile = config.profile;
        let app = match profile {
            Profile::Piv => App::Piv(piv::Piv::new(&config)),
            Profile::OpenPgp => App::OpenPgp(openpgp::OpenPgp::new(&config)),
            Profile::YubiKey => App::YubiKey(Box::new(yubikey::YubiKey::new(&config))),
            Profile::EstEid => App::EstEid(esteid::EstEid::new(&config)),
            Profile::Beid => App::Beid(beid::Beid::new(&config)),
            Profile::Pkcs15 => App::Pkcs15(Box::new(pkcs15::Pkcs15::new(&config))),
            Profile::Iso => App::Iso(iso::Iso::new(&config)),
        };
        VirtualCard {
            profile,
            app,
            selected: false,
            pending: Vec::new(),
            atr: config.atr.clone().unwrap_or_else(|| default_atr(profile)),
            headers: Vec::new(),
        }
    }

    /// The card application it carries.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The user PIN's retry counter, read from inside the card (for tests
    /// that check no try was spent): PIV `pin`, OpenPGP `pw1`, YubiKey
    /// `piv.pin`, EstEID `pin1`, the others' `pin`.
    pub fn user_pin_tries(&self) -> u8 {
        match &self.app {
            App::Piv(a) => a.user_tries(),
            App::OpenPgp(a) => a.user_tries(),
            App::YubiKey(a) => a.user_tries(),
            App::EstEid(a) => a.user_tries(),
            App::Beid(a) => a.user_tries(),
            App::Pkcs15(a) => a.user_tries(),
            App::Iso(a) => a.user_tries(),
        }
    }

    /// The retry counter of the reference data object `name` (as in
    /// [`VirtualCard::counters`]), read from inside the card; `None` when
    /// the card has no such object.
    pub fn tries(&mut self, name: &str) -> Option<u8> {
        let mut found = None;
        self.for_each_counter(|n, r| {
            if n == name {
                found = Some(r.tries());
            }
        });
        found
    }

    /// The names of the card's reference data objects, in the order of
    /// [`VirtualCard::counters`].
    pub fn counter_names(&mut self) -> Vec<&'static str> {
        let mut names = Vec::new();
        self.for_each_counter(|n, _| names.push(n));
        names
    }

    /// The retry counters as text, one line per reference data object:
    /// `NAME TRIES SPENT`, where SPENT counts every try spent over the
    /// card's life. NAME is unique on the card: PIV `pin`, `puk`; OpenPGP
    /// `pw1`, `pw3`, `rc`; YubiKey `piv.pin`, `piv.puk`, `openpgp.pw1`,
    /// `openpgp.pw3`, `openpgp.rc`; EstEID `pin1`, `pin2`, `puk`; Belgian
    /// eID `pin`; PKCS#15 and ISO `pin`, `puk`. A card process keeps them
    /// in its `--state` file, as a real card keeps its counters when it is
    /// pulled out; tests compare them with the operations they made. Never
    /// holds a PIN value.
    pub fn counters(&mut self) -> String {
        let mut out = String::new();
        self.for_each_counter(|name, r| {
            let (tries, spent) = r.counter();
            out.push_str(&format!("{name} {tries} {spent}\n"));
        });
        out
    }

    /// Every value the reference data object `name` (as in
    /// [`VirtualCard::counters`]) compared, oldest first.
    pub fn presented(&mut self, name: &str) -> Vec<Presentation> {
        let mut out = Vec::new();
        self.for_each_counter(|n, r| {
            if n == name {
                out = r.presented().to_vec();
            }
        });
        out
    }

    /// The headers (CLA INS P1 P2) of the commands received so far, each
    /// with whether it carried data, oldest first (the first 100,000).
    pub fn commands(&self) -> &[([u8; 4], bool)] {
        &self.headers
    }

    /// Restores counters saved by [`VirtualCard::counters`]; unknown names
    /// and malformed lines are ignored.
    pub fn restore_counters(&mut self, text: &str) {
        let saved: Vec<(&str, u8, u64)> = text
            .lines()
            .filter_map(|line| {
                let mut f = line.split_whitespace();
                Some((f.next()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?))
            })
            .collect();
        self.for_each_counter(|name, r| {
            if let Some((_, tries, spent)) = saved.iter().find(|(n, _, _)| *n == name) {
                r.restore_counter(*tries, *spent);
            }
        });
    }

    fn for_each_counter(&mut self, mut f: impl FnMut(&'static str, &mut pin::RefData)) {
        match &mut self.app {
            App::Piv(a) => a.counters_mut().into_iter().for_each(|(n, r)| f(n, r)),
            App::OpenPgp(a) => a.counters_mut().into_iter().for_each(|(n, r)| f(n, r)),
            App::YubiKey(a) => a.counters_mut().into_iter().for_each(|(n, r)| f(n, r)),
            App::EstEid(a) => a.counters_mut().into_iter().for_each(|(n, r)| f(n, r)),
            App::Beid(a) => a.counters_mut().into_iter().for_each(|(n, r)| f(n, r)),
            App::Pkcs15(a) => a.counters_mut().into_iter().for_each(|(n, r)| f(n, r)),
            App::Iso(a) => a.counters_mut().into_iter().for_each(|(n, r)| f(n, r)),
        }
    }

    /// The answer to reset: the configured `atr`, else the profile's own
    /// (see [`default_atr`]).
    pub fn atr(&self) -> Vec<u8> {
        self.atr.clone()
    }

    /// Cold or warm reset: every verified state and the selection are dropped.
    pub fn reset(&mut self) {
        self.selected = false;
        self.pending.clear();
        match &mut self.app {
            App::Piv(a) => a.reset(),
            App::OpenPgp(a) => a.reset(),
            App::YubiKey(a) => a.reset(),
            App::EstEid(a) => a.reset(),
            App::Beid(a) => a.reset(),
            App::Pkcs15(a) => a.reset(),
            App::Iso(a) => a.reset(),
        }
    }

    /// Processes one command APDU; returns response data || SW1 SW2.
    /// Never panics, whatever the input.
    pub fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        let Ok(cmd) = Apdu::parse(apdu) else {
            self.pending.clear();
            return StatusWord::WrongLength.to_bytes().to_vec();
        };
        if self.headers.len() < MAX_HEADERS_KEPT {
            self.headers
                .push(([cmd.cla, cmd.ins, cmd.p1, cmd.p2], !cmd.data.is_empty()));
        }
        let reply = self.dispatch(&cmd);
        tracing::trace!(
            ins = format_args!("{:02X}", cmd.ins),
            p1 = format_args!("{:02X}", cmd.p1),
            p2 = format_args!("{:02X}", cmd.p2),
            sw = %reply.sw,
            "vcard command"
        );
        self.respond(reply, cmd.ne)
    }

    fn dispatch(&mut self, cmd: &Apdu) -> Reply {
        // The Belgian eID's proprietary commands use CLA 80.
        let proprietary = cmd.cla == 0x80 && matches!(self.app, App::Beid(_));
        if cmd.cla != 0 && !proprietary {
            self.pending.clear();
            return Reply::sw(if cmd.cla & 0xEF == 0 {
                SW_CHAINING_NOT_SUPPORTED
            } else {
                StatusWord::ClaNotSupported
            });
        }
        if cmd.ins == INS_GET_RESPONSE && cmd.cla == 0 {
            return self.get_response(cmd);
        }
        self.pending.clear();
        match &mut self.app {
            App::Piv(_) | App::OpenPgp(_) => {}
            App::YubiKey(a) => return a.process(cmd),
            App::EstEid(a) => return a.process(cmd),
            App::Beid(a) => return a.process(cmd),
            App::Pkcs15(a) => return a.process(cmd),
            App::Iso(a) => return a.process(cmd),
        }
        if cmd.ins == INS_SELECT {
            return self.select(cmd);
        }
        let known = match &self.app {
            App::Piv(_) => piv::Piv::knows(cmd.ins),
            App::OpenPgp(_) => openpgp::OpenPgp::knows(cmd.ins),
            _ => false,
        };
        if !known {
            return Reply::sw(StatusWord::InsNotSupported);
        }
        if !self.selected {
            return Reply::sw(StatusWord::ConditionsNotSatisfied);
        }
        match &mut self.app {
            App::Piv(a) => a.process(cmd),
            App::OpenPgp(a) => a.process(cmd),
            _ => Reply::sw(StatusWord::InsNotSupported),
        }
    }

    /// SELECT by DF name (ISO 7816-4 §11.2.2).
    fn select(&mut self, cmd: &Apdu) -> Reply {
        if cmd.p1 != 0x04 || cmd.p2 != 0x00 {
            return Reply::sw(StatusWord::WrongP1P2);
        }
        let answer = match &self.app {
            App::Piv(a) => a.select(&cmd.data),
            App::OpenPgp(a) => a.select(&cmd.data),
            _ => None,
        };
        match answer {
            Some(reply) => {
                self.selected = true;
                reply
            }
            None => Reply::sw(StatusWord::FileNotFound),
        }
    }

    /// GET RESPONSE (ISO 7816-4 §11.5.4).
    fn get_response(&mut self, cmd: &Apdu) -> Reply {
        if cmd.p1 != 0 || cmd.p2 != 0 {
            self.pending.clear();
            return Reply::sw(StatusWord::WrongP1P2);
        }
        if self.pending.is_empty() {
            return Reply::sw(StatusWord::ConditionsNotSatisfied);
        }
        Reply::data(std::mem::take(&mut self.pending))
    }

    /// Appends the status word, cutting the data at Ne (61xx for the rest).
    fn respond(&mut self, reply: Reply, ne: Option<usize>) -> Vec<u8> {
        let Reply { mut data, sw } = reply;
        if let Some(ne) = ne
            && data.len() > ne
        {
            self.pending = data.split_off(ne);
            let more = self.pending.len().min(256) as u8; // 256 is encoded 00
            data.extend_from_slice(&[0x61, more]);
            return data;
        }
        data.extend_from_slice(&sw.to_bytes());
        data
    }
}

/// The answer to reset of a card of `profile` when the configuration sets
/// none:
///
/// | profile | ATR |
/// |---|---|
/// | PIV | ours: T=0/T=1, historical bytes `80 73 C0 01 00 58 "cardgate"` |
/// | OpenPGP | ours: T=0/T=1, the historical bytes OpenPGP cards use |
/// | YubiKey | a YubiKey 5's ([`yubikey::ATR`]) |
/// | EstEID | the IDEMIA Cosmo 8 card's ([`esteid::ATR`]) |
/// | Belgian eID | applet 1.8's ([`beid::ATR`]) |
/// | PKCS#15 | ours: T=0/T=1, historical bytes `80 56 "cg-p15"` (card issuer's data) |
/// | ISO | ours: `3B 89 80 01 80 57 63 67 2D 37 38 31 36 FE`: T=0/T=1, historical bytes category 80, card issuer's data (5x) "cg-7816", TCK FE |
pub fn default_atr(profile: Profile) -> Vec<u8> {
    match profile {
        Profile::YubiKey => yubikey::ATR.to_vec(),
        Profile::EstEid => esteid::ATR.to_vec(),
        Profile::Beid => beid::ATR.to_vec(),
        _ => build_atr(&historical_bytes(profile)),
    }
}

/// Historical bytes (ISO 7816-4 §8.1.1) of the ATRs we compose, distinct
/// per profile.
fn historical_bytes(profile: Profile) -> Vec<u8> {
    match profile {
        // Category 80, card capabilities (73: selection by full and partial
        // DF name, no chaining, no extended length), card issuer's data
        // (5x) "cardgate".
        Profile::Piv => {
            let mut h = vec![0x80, 0x73, 0xC0, 0x01, 0x00, 0x58];
            h.extend_from_slice(b"cardgate");
            h
        }
        // The layout OpenPGP cards use (3.4 §6): category 00, card service
        // data, card capabilities, then status indicator (LCS 05 =
        // operational, 9000).
        // The OpenPGP layout too for the YubiKey's OpenPGP DO 5F52 (its ATR
        // is a real YubiKey's).
        Profile::OpenPgp | Profile::YubiKey => {
            vec![0x00, 0x31, 0xC5, 0x73, 0xC0, 0x01, 0x00, 0x05, 0x90, 0x00]
        }
        // Category 80, card issuer's data (5x, 6 bytes) "cg-p15".
        Profile::Pkcs15 => {
            let mut h = vec![0x80, 0x56];
            h.extend_from_slice(b"cg-p15");
            h
        }
        // Category 80, card issuer's data (5x, 7 bytes) "cg-7816"; also
        // the fallback of profiles with a real card's ATR.
        Profile::Iso | Profile::EstEid | Profile::Beid => {
            let mut h = vec![0x80, 0x57];
            h.extend_from_slice(b"cg-7816");
            h
        }
    }
}

/// ATR: direct convention, T=0 and T=1 offered, historical bytes, TCK
/// (ISO 7816-3 §8.2).
fn build_atr(historical: &[u8]) -> Vec<u8> {
    let k = historical.len().min(15);
    // TS, T0 (TD1 present, K), TD1 (TD2 present, T=0), TD2 (T=1).
    let mut atr = vec![0x3B, 0x80 | k as u8, 0x80, 0x01];
    atr.extend_from_slice(&historical[..k]);
    let tck = atr[1..].iter().fold(0u8, |acc, b| acc ^ b);
    atr.push(tck);
    atr
}

/// Appends a BER-TLV with a definite length.
pub(crate) fn tlv(out: &mut Vec<u8>, tag: &[u8], value: &[u8]) {
    out.extend_from_slice(tag);
    let n = value.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n <= 0xFF {
        out.extend_from_slice(&[0x81, n as u8]);
    } else {
        out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(value);
}

/// Copies reference data out of a command into a zeroizing secret.
pub(crate) fn secret_bytes(bytes: &[u8]) -> secret::Secret {
    secret::Secret::new(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn atrs_are_valid_and_distinct() {
        let piv = VirtualCard::new(CardConfig::piv()).atr();
        let pgp = VirtualCard::new(CardConfig::openpgp()).atr();
        assert_ne!(piv, pgp);
        for atr in [&piv, &pgp] {
            assert_eq!(atr[0], 0x3B);
            let k = usize::from(atr[1] & 0x0F);
            assert_eq!(atr.len(), 4 + k + 1);
            assert_eq!(atr[1..].iter().fold(0, |a, b| a ^ b), 0, "TCK");
        }
        assert!(piv.windows(8).any(|w| w == b"cardgate"));
    }

    #[test]
    fn long_tlv_lengths() {
        let mut out = Vec::new();
        tlv(&mut out, &[0x53], &[0; 200]);
        assert_eq!(&out[..3], &[0x53, 0x81, 200]);
        out.clear();
        tlv(&mut out, &[0x53], &[0; 300]);
        assert_eq!(&out[..4], &[0x53, 0x82, 0x01, 0x2C]);
    }

    #[test]
    fn counters_survive_a_restart() {
        let select = hex("00A4040005A000000308");
        let wrong = hex("0020008008303030303030FFFF");
        let mut card = VirtualCard::new(CardConfig::piv());
        assert_eq!(card.counters(), "pin 3 0\npuk 3 0\n");
        card.process(&select);
        assert_eq!(card.process(&wrong), hex("63C2"));
        // A status query spends nothing.
        assert_eq!(card.process(&hex("00200080")), hex("63C2"));
        let saved = card.counters();
        assert_eq!(saved, "pin 2 1\npuk 3 0\n");

        let mut again = VirtualCard::new(CardConfig::piv());
        again.restore_counters(&saved);
        assert_eq!(again.user_pin_tries(), 2);
        again.process(&select);
        assert_eq!(again.process(&wrong), hex("63C1"));
        assert_eq!(again.counters(), "pin 1 2\npuk 3 0\n");
        // Out-of-range tries are clamped; junk lines are ignored.
        again.restore_counters("pin 9 7\nnonsense\n");
        assert_eq!(again.counters(), "pin 3 7\npuk 3 0\n");
    }

    #[test]
    fn card_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<VirtualCard>();
    }

    #[test]
    fn chains_long_responses_with_get_response() {
        let mut card = VirtualCard::new(CardConfig::openpgp());
        assert_eq!(card.process(&hex("00A4040006D27600012401")), hex("9000"));
        let full = card.process(&hex("00CA006E00"));
        assert_eq!(&full[full.len() - 2..], &[0x90, 0x00]);
        let body = &full[..full.len() - 2];
        let first = card.process(&hex("00CA006E10"));
        assert_eq!(&first[..16], &body[..16]);
        let rest_len = body.len() - 16;
        assert_eq!(&first[16..], &[0x61, rest_len as u8]);
        let rest = card.process(
            &hex("00C00000")
                .into_iter()
                .chain([rest_len as u8])
                .collect::<Vec<_>>(),
        );
        assert_eq!(&rest[..rest.len() - 2], &body[16..]);
        assert_eq!(card.process(&hex("00C0000010")), hex("6985"));
    }
}
