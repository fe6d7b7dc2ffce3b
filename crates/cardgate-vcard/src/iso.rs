//! A plain ISO/IEC 7816-4 card: one application, a PIN and a PUK, and no
//! object describing them (no discovery object, no DO C4, no PKCS#15
//! files): what a PIN engine meets on a card it does not know.
//!
//! - Application: AID `F0 63 61 72 64 67 61 74 65`, a proprietary AID
//!   (ISO/IEC 7816-4 §12.2.3: first byte F0, no registered RID) made of
//!   "cardgate". SELECT by DF name (§11.2.2) with P2=00 answers an FCI
//!   (`6F { 84 AID }`), with P2=0C nothing.
//! - PIN: reference 81, PUK: reference 82 (§7.5.1: b8 set, references
//!   specific to the application's DF). Values are 4 to 8 ASCII digits
//!   padded with FF to 8 bytes; a block of another length answers 6700, a
//!   badly formed one 6A80, neither spends a try.
//! - VERIFY (§11.5.6) of 81 or 82; without data the free status query
//!   (63Cx / 9000), unless quirk `empty_verify_spends_try`; P1=FF
//!   without data drops the verified state. CHANGE REFERENCE DATA
//!   (§11.5.7) P1=00, old ‖ new. RESET RETRY COUNTER (§11.5.10) P1=00,
//!   PUK ‖ new PIN, for 81 only.
//! - The try that blocks a reference answers 63C0; later presentations
//!   6983 (with quirk `blocked_sw_63c0`, 63C0).
//!
//! The same PIN and PUK, with the same formats, are the PKCS#15 card's
//! (see `pkcs15`), which describes them in its AODF.

use crate::apdu::StatusWord;
use crate::secret::Secret;

use super::command::Apdu;
use super::config::{CardConfig, ISO_DEFAULT_PIN, ISO_DEFAULT_PUK, MAX_MAX_TRIES};
use super::pin::{Conventions, Ref, RefData, ff_padded, is_ff_padded_digits, unblock};
use super::{Reply, tlv};

/// The application's AID: F0 then "cardgate".
pub const AID: [u8; 9] = [0xF0, b'c', b'a', b'r', b'd', b'g', b'a', b't', b'e'];
/// Reference of the PIN (VERIFY / CHANGE / RESET RETRY COUNTER P2).
pub const PIN_REF: u8 = 0x81;
/// Reference of the PUK.
pub const PUK_REF: u8 = 0x82;
/// Length of a PIN or PUK block (digits padded with FF).
pub const BLOCK_LEN: usize = 8;
/// Fewest digits of a PIN or PUK.
pub const MIN_DIGITS: usize = 4;

pub(crate) const INS_SELECT: u8 = 0xA4;
pub(crate) const INS_VERIFY: u8 = 0x20;
pub(crate) const INS_CHANGE_REFERENCE_DATA: u8 = 0x24;
pub(crate) const INS_RESET_RETRY_COUNTER: u8 = 0x2C;

/// The PIN and its PUK, references 81 and 82, 8-byte FF-padded digit
/// blocks: the `iso` card's, and the PKCS#15 card's.
pub(crate) struct PinPuk {
    pub pin: Ref,
    pub puk: Ref,
    pub conv: Conventions,
}

impl PinPuk {
    pub(crate) fn new(config: &CardConfig, default_pin: &str, default_puk: &str) -> Self {
        let max = config.max_tries.clamp(1, MAX_MAX_TRIES);
        let pin = config
            .pin
            .clone()
            .unwrap_or_else(|| Secret::from(default_pin));
        let puk = config
            .puk
            .clone()
            .unwrap_or_else(|| Secret::from(default_puk));
        let mut pin = RefData::new(Some(ff_padded(&pin, BLOCK_LEN)), max);
        if config.start_blocked {
            pin.block();
        }
        PinPuk {
            pin: Ref::new(pin),
            puk: Ref::new(RefData::new(Some(ff_padded(&puk, BLOCK_LEN)), max)),
            conv: Conventions::new(config, false),
        }
    }

    /// The retry counters by name (see [`super::VirtualCard::counters`]).
    pub(crate) fn counters_mut(&mut self) -> [(&'static str, &mut RefData); 2] {
        [("pin", &mut self.pin.data), ("puk", &mut self.puk.data)]
    }

    /// Drops both verified states (reset, or leaving the DF they belong to).
    pub(crate) fn logout(&mut self) {
        self.pin.verified = false;
        self.puk.verified = false;
    }

    fn target(&mut self, p2: u8) -> Option<&mut Ref> {
        match p2 {
            PIN_REF => Some(&mut self.pin),
            PUK_REF => Some(&mut self.puk),
            _ => None,
        }
    }

    /// Handles VERIFY, CHANGE REFERENCE DATA and RESET RETRY COUNTER;
    /// `None` for any other instruction.
    pub(crate) fn process(&mut self, cmd: &Apdu) -> Option<Reply> {
        let sw = match cmd.ins {
            INS_VERIFY => self.verify(cmd),
            INS_CHANGE_REFERENCE_DATA => self.change(cmd),
            INS_RESET_RETRY_COUNTER => self.reset_retry_counter(cmd),
            _ => return None,
        };
        Some(Reply::sw(sw))
    }

    fn verify(&mut self, cmd: &Apdu) -> StatusWord {
        if cmd.p1 != 0x00 && cmd.p1 != 0xFF {
            return StatusWord::WrongP1P2;
        }
        let conv = self.conv;
        let Some(target) = self.target(cmd.p2) else {
            return StatusWord::RefNotFound;
        };
        if cmd.p1 == 0xFF {
            if !cmd.data.is_empty() {
                return StatusWord::WrongLength;
            }
            target.verified = false;
            return StatusWord::Ok;
        }
        if cmd.data.is_empty() {
            return target.status_query(&conv);
        }
        if let Some(sw) = malformed(&cmd.data) {
            return sw;
        }
        target.verify(&conv, &cmd.data)
    }

    fn change(&mut self, cmd: &Apdu) -> StatusWord {
        if cmd.p1 != 0x00 {
            return StatusWord::WrongP1P2;
        }
        let conv = self.conv;
        let Some(target) = self.target(cmd.p2) else {
            return StatusWord::RefNotFound;
        };
        if cmd.data.len() != 2 * BLOCK_LEN {
            return StatusWord::WrongLength;
        }
        let (old, new) = cmd.data.split_at(BLOCK_LEN);
        if malformed(old).is_some() || malformed(new).is_some() {
            return StatusWord::WrongData;
        }
        target.change(&conv, old, new)
    }

    fn reset_retry_counter(&mut self, cmd: &Apdu) -> StatusWord {
        if cmd.p1 != 0x00 {
            return StatusWord::WrongP1P2;
        }
        if cmd.p2 != PIN_REF {
            return StatusWord::RefNotFound;
        }
        if cmd.data.len() != 2 * BLOCK_LEN {
            return StatusWord::WrongLength;
        }
        let (puk, new) = cmd.data.split_at(BLOCK_LEN);
        if malformed(puk).is_some() || malformed(new).is_some() {
            return StatusWord::WrongData;
        }
        let conv = self.conv;
        unblock(&conv, &mut self.puk, &mut self.pin, puk, new)
    }
}

/// Why a PIN/PUK block is refused before any comparison: 6700 for another
/// length, 6A80 for anything but 4–8 digits padded with FF.
fn malformed(block: &[u8]) -> Option<StatusWord> {
    if block.len() != BLOCK_LEN {
        Some(StatusWord::WrongLength)
    } else if !is_ff_padded_digits(block, BLOCK_LEN, MIN_DIGITS, BLOCK_LEN) {
        Some(StatusWord::WrongData)
    } else {
        None
    }
}

/// The `iso` card.
pub(crate) struct Iso {
    refs: PinPuk,
    selected: bool,
}

impl Iso {
    pub(crate) fn new(config: &CardConfig) -> Self {
        Iso {
            refs: PinPuk::new(config, ISO_DEFAULT_PIN, ISO_DEFAULT_PUK),
            selected: false,
        }
    }

    pub(crate) fn user_tries(&self) -> u8 {
        self.refs.pin.data.tries()
    }

    pub(crate) fn counters_mut(&mut self) -> [(&'static str, &mut RefData); 2] {
        self.refs.counters_mut()
    }

    pub(crate) fn reset(&mut self) {
        self.selected = false;
        self.refs.logout();
    }

    pub(crate) fn process(&mut self, cmd: &Apdu) -> Reply {
        if cmd.cla != 0 {
            return Reply::sw(StatusWord::ClaNotSupported);
        }
        if cmd.ins == INS_SELECT {
            return self.select(cmd);
        }
        if !matches!(
            cmd.ins,
            INS_VERIFY | INS_CHANGE_REFERENCE_DATA | INS_RESET_RETRY_COUNTER
        ) {
            return Reply::sw(StatusWord::InsNotSupported);
        }
        if !self.selected {
            return Reply::sw(StatusWord::ConditionsNotSatisfied);
        }
        self.refs
            .process(cmd)
            .unwrap_or(Reply::sw(StatusWord::InsNotSupported))
    }

    /// SELECT by DF name (ISO/IEC 7816-4 §11.2.2), the full AID only.
    fn select(&mut self, cmd: &Apdu) -> Reply {
        if cmd.p1 != 0x04 || !matches!(cmd.p2, 0x00 | 0x0C) {
            return Reply::sw(StatusWord::WrongP1P2);
        }
        if cmd.data.as_slice() != AID {
            return Reply::sw(StatusWord::FileNotFound);
        }
        self.selected = true;
        if cmd.p2 == 0x0C {
            return Reply::ok();
        }
        let mut fci = Vec::new();
        tlv(&mut fci, &[0x84], &AID);
        let mut out = Vec::new();
        tlv(&mut out, &[0x6F], &fci);
        Reply::data(out)
    }
}
