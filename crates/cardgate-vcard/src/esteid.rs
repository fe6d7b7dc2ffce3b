//! The Estonian ID card, IDEMIA generation (2018 and later, Cosmo 8 chip),
//! PIN part only, modelled on what the public client software sends to it:
//! web-eid's libelectronic-id (`src/electronic-ids/pcsc/EIDIDEMIA.cpp`,
//! `EstEIDIDEMIA.hpp`, its mock transcript
//! `tests/mock/select-certificate-script-EST-IDEMIA.hpp`) and DigiDoc4's
//! `client/QSmartCard.cpp` (`IDEMIACard`). Their reference is the card
//! specification "TD-ID1-Chip-App" of the Estonian Police and Border
//! Guard Board, which this model has not read.
//!
//! - Applications, selected with `00 A4 04 0C` (or P2=00; no FCI here):
//!   main `A0 00 00 00 77 01 08 00 07 00 00 FE 00 00 01 00`, the
//!   authentication application "AWP" `E8 28 BD 08 0F F2 50 4F 54 20 41 57
//!   50`, the signing application "QSCD Application" `51 53 43 44 20 41 70
//!   70 6C 69 63 61 74 69 6F 6E`; `00 A4 00 0C` without data (or 3F00)
//!   selects the MF, which is current after a reset.
//! - PIN1: reference 01, 4–12 digits; PUK: reference 02, 8–12 digits; both
//!   global (ISO/IEC 7816-4 §7.5.1, b8 clear): usable whichever application
//!   is selected, and their verified state survives selecting another one
//!   (DigiDoc4 verifies the PUK in the main application, then selects QSCD
//!   and resets PIN2). PIN2: reference 85, 5–12 digits, specific to the
//!   QSCD application: elsewhere 6A88, and selecting another application
//!   drops its verified state.
//! - Values are ASCII digits padded with FF to 12 bytes (DigiDoc4's
//!   `pinTemplate`, libelectronic-id's `verifyPin(…, 0xFF)`); a block of
//!   another length answers 6700, a badly formed one 6A80 (the two answers
//!   libelectronic-id reads as "invalid PIN length"), neither spends a try.
//! - Tries: `00 CB 3F FF 0A 4D 08 70 06 BF 81 rr 02 A0 80 00` with rr = the
//!   reference's low nibble (01, 02, 05) answers `70 1E BF 81 rr 1A A0 18
//!   9A 01 max 9B 01 left A1 10 8C 06 F3 00 00 73 xx 00 9C 06 F3 00 00 73
//!   xx 00` (the mock transcript's bytes; xx = 43 for 01, FF for 05; for 02
//!   assumed 43). Reading spends nothing. rr = 05 needs QSCD selected.
//! - VERIFY `00 20 00 ref 0C block`; an empty VERIFY is taken as the ISO
//!   status query (63Cx / 9000, no try spent: assumed, the sources never
//!   send it). A wrong value answers 63Cx; the try that blocks answers 63C0
//!   (both sources read 63C0 as "blocked"), later ones 6983.
//! - CHANGE REFERENCE DATA `00 24 00 ref 18 old ‖ new` for 01, 02, 85
//!   (DigiDoc4 `IDEMIACard::change`).
//! - Unblocking (DigiDoc4 `IDEMIACard::replace`): VERIFY of the PUK
//!   (`00 20 00 02 0C puk`), then RESET RETRY COUNTER without the resetting
//!   code, `00 2C 02 ref 0C new` for 01 (any application) or 85 (QSCD
//!   selected); 6982 while the PUK is not verified. P1=00 (PUK ‖ new in
//!   one command) is not what the sources send: 6A86 here.

use crate::apdu::StatusWord;
use crate::secret::Secret;

use super::command::Apdu;
use super::config::{
    CardConfig, ESTEID_DEFAULT_PIN1, ESTEID_DEFAULT_PIN2, ESTEID_DEFAULT_PUK, MAX_MAX_TRIES,
};
use super::pin::{Conventions, Ref, RefData, ff_padded, is_ff_padded_digits};
use super::{Reply, tlv};

/// The main application's AID.
pub const MAIN_AID: [u8; 16] = [
    0xA0, 0x00, 0x00, 0x00, 0x77, 0x01, 0x08, 0x00, 0x07, 0x00, 0x00, 0xFE, 0x00, 0x00, 0x01, 0x00,
];
/// The authentication application's AID ("…POT AWP").
pub const AWP_AID: [u8; 13] = [
    0xE8, 0x28, 0xBD, 0x08, 0x0F, 0xF2, 0x50, 0x4F, 0x54, 0x20, 0x41, 0x57, 0x50,
];
/// The signing application's AID: "QSCD Application".
pub const QSCD_AID: [u8; 16] = *b"QSCD Application";
/// PIN1 (authentication) reference.
pub const PIN1_REF: u8 = 0x01;
/// PUK reference.
pub const PUK_REF: u8 = 0x02;
/// PIN2 (signing) reference, in the QSCD application.
pub const PIN2_REF: u8 = 0x85;
/// Length of every PIN block (digits padded with FF).
pub const BLOCK_LEN: usize = 12;
/// The answer to reset of the IDEMIA Cosmo 8.1/8.2 card, as libelectronic-id
/// (`SUPPORTED_ATRS`) and DigiDoc4 (`IDEMIACard::isSupported`) list it.
pub const ATR: [u8; 22] = [
    0x3B, 0xDB, 0x96, 0x00, 0x80, 0xB1, 0xFE, 0x45, 0x1F, 0x83, 0x00, 0x12, 0x23, 0x3F, 0x53, 0x65,
    0x49, 0x44, 0x0F, 0x90, 0x00, 0xF1,
];

const INS_SELECT: u8 = 0xA4;
const INS_VERIFY: u8 = 0x20;
const INS_CHANGE_REFERENCE_DATA: u8 = 0x24;
const INS_RESET_RETRY_COUNTER: u8 = 0x2C;
const INS_GET_DATA_ODD: u8 = 0xCB;
/// Commands of the card this model does not implement: MSE SET, PSO,
/// INTERNAL AUTHENTICATE, READ BINARY.
const INS_UNIMPLEMENTED: [u8; 4] = [0x22, 0x2A, 0x88, 0xB0];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    Mf,
    Main,
    Awp,
    Qscd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Pin1,
    Pin2,
    Puk,
}

impl Which {
    fn min(self) -> usize {
        match self {
            Which::Pin1 => 4,
            Which::Pin2 => 5,
            Which::Puk => 8,
        }
    }
}

pub(crate) struct EstEid {
    pin1: Ref,
    pin2: Ref,
    puk: Ref,
    current: Current,
    conv: Conventions,
}

impl EstEid {
    pub(crate) fn new(config: &CardConfig) -> Self {
        let max = config.max_tries.clamp(1, MAX_MAX_TRIES);
        let value = |v: &Option<Secret>, default: &str| {
            let v = v.clone().unwrap_or_else(|| Secret::from(default));
            RefData::new(Some(ff_padded(&v, BLOCK_LEN)), max)
        };
        let mut pin1 = value(&config.pin1, ESTEID_DEFAULT_PIN1);
        if config.start_blocked {
            pin1.block();
        }
        EstEid {
            pin1: Ref::new(pin1),
            pin2: Ref::new(value(&config.pin2, ESTEID_DEFAULT_PIN2)),
            puk: Ref::new(value(&config.puk, ESTEID_DEFAULT_PUK)),
            current: Current::Mf,
            conv: Conventions::new(config, false),
        }
    }

    pub(crate) fn user_tries(&self) -> u8 {
        self.pin1.data.tries()
    }

    pub(crate) fn counters_mut(&mut self) -> [(&'static str, &mut RefData); 3] {
        [
            ("pin1", &mut self.pin1.data),
            ("pin2", &mut self.pin2.data),
            ("puk", &mut self.puk.data),
        ]
    }

    pub(crate) fn reset(&mut self) {
        self.current = Current::Mf;
        self.pin1.verified = false;
        self.pin2.verified = false;
        self.puk.verified = false;
    }

    pub(crate) fn process(&mut self, cmd: &Apdu) -> Reply {
        if cmd.cla != 0 {
            return Reply::sw(StatusWord::ClaNotSupported);
        }
        match cmd.ins {
            INS_SELECT => self.select(cmd),
            INS_VERIFY => Reply::sw(self.verify(cmd)),
            INS_CHANGE_REFERENCE_DATA => Reply::sw(self.change(cmd)),
            INS_RESET_RETRY_COUNTER => Reply::sw(self.reset_retry_counter(cmd)),
            INS_GET_DATA_ODD => self.get_data(cmd),
            ins if INS_UNIMPLEMENTED.contains(&ins) => Reply::sw(super::SW_FUNCTION_NOT_SUPPORTED),
            _ => Reply::sw(StatusWord::InsNotSupported),
        }
    }

    /// SELECT (ISO/IEC 7816-4 §11.2.2): an application by AID (P1=04), or
    /// the MF (P1=00, no data or 3F00).
    fn select(&mut self, cmd: &Apdu) -> Reply {
        if !matches!(cmd.p2, 0x00 | 0x0C) {
            return Reply::sw(StatusWord::WrongP1P2);
        }
        let target = match (cmd.p1, cmd.data.as_slice()) {
            (0x04, aid) if aid == MAIN_AID => Current::Main,
            (0x04, aid) if aid == AWP_AID => Current::Awp,
            (0x04, aid) if aid == QSCD_AID => Current::Qscd,
            (0x00, [] | [0x3F, 0x00]) => Current::Mf,
            (0x00 | 0x01 | 0x02 | 0x04 | 0x08 | 0x09, _) => {
                return Reply::sw(StatusWord::FileNotFound);
            }
            _ => return Reply::sw(StatusWord::WrongP1P2),
        };
        if target != Current::Qscd {
            // PIN2 is specific to the QSCD application.
            self.pin2.verified = false;
        }
        self.current = target;
        Reply::ok()
    }

    /// The reference named by P2, if usable in the current application.
    fn which(&self, p2: u8) -> Result<Which, StatusWord> {
        match p2 {
            PIN1_REF => Ok(Which::Pin1),
            PUK_REF => Ok(Which::Puk),
            PIN2_REF if self.current == Current::Qscd => Ok(Which::Pin2),
            _ => Err(StatusWord::RefNotFound),
        }
    }

    fn get(&mut self, which: Which) -> &mut Ref {
        match which {
            Which::Pin1 => &mut self.pin1,
            Which::Pin2 => &mut self.pin2,
            Which::Puk => &mut self.puk,
        }
    }

    /// 6700 for a block of another length, 6A80 for a malformed one.
    fn malformed(which: Which, block: &[u8]) -> Option<StatusWord> {
        if block.len() != BLOCK_LEN {
            Some(StatusWord::WrongLength)
        } else if !is_ff_padded_digits(block, BLOCK_LEN, which.min(), BLOCK_LEN) {
            Some(StatusWord::WrongData)
        } else {
            None
        }
    }

    /// VERIFY (ISO/IEC 7816-4 §11.5.6).
    fn verify(&mut self, cmd: &Apdu) -> StatusWord {
        if cmd.p1 != 0x00 {
            return StatusWord::WrongP1P2;
        }
        let which = match self.which(cmd.p2) {
            Ok(w) => w,
            Err(sw) => return sw,
        };
        let conv = self.conv;
        if cmd.data.is_empty() {
            return self.get(which).status_query(&conv);
        }
        if let Some(sw) = Self::malformed(which, &cmd.data) {
            return sw;
        }
        self.get(which).verify(&conv, &cmd.data)
    }

    /// CHANGE REFERENCE DATA (ISO/IEC 7816-4 §11.5.7): old ‖ new, 12 bytes
    /// each.
    fn change(&mut self, cmd: &Apdu) -> StatusWord {
        if cmd.p1 != 0x00 {
            return StatusWord::WrongP1P2;
        }
        let which = match self.which(cmd.p2) {
            Ok(w) => w,
            Err(sw) => return sw,
        };
        if cmd.data.len() != 2 * BLOCK_LEN {
            return StatusWord::WrongLength;
        }
        let (old, new) = cmd.data.split_at(BLOCK_LEN);
        if Self::malformed(which, old).is_some() || Self::malformed(which, new).is_some() {
            return StatusWord::WrongData;
        }
        let conv = self.conv;
        self.get(which).change(&conv, old, new)
    }

    /// RESET RETRY COUNTER (ISO/IEC 7816-4 §11.5.10) with P1=02: the new
    /// value only, after the PUK was verified.
    fn reset_retry_counter(&mut self, cmd: &Apdu) -> StatusWord {
        if cmd.p1 != 0x02 {
            return StatusWord::WrongP1P2;
        }
        let which = match self.which(cmd.p2) {
            Ok(Which::Puk) | Err(_) => return StatusWord::RefNotFound,
            Ok(w) => w,
        };
        if let Some(sw) = Self::malformed(which, &cmd.data) {
            return sw;
        }
        if !self.puk.verified {
            return StatusWord::SecurityNotSatisfied;
        }
        self.get(which).reset_to(&cmd.data);
        StatusWord::Ok
    }

    /// GET DATA with an odd INS (ISO/IEC 7816-4 §11.4.3), P1P2 3FFF: the
    /// retry counter of one reference, the only request the sources make.
    fn get_data(&mut self, cmd: &Apdu) -> Reply {
        if cmd.p1 != 0x3F || cmd.p2 != 0xFF {
            return Reply::sw(StatusWord::WrongP1P2);
        }
        let [0x4D, 0x08, 0x70, 0x06, 0xBF, 0x81, rr, 0x02, 0xA0, 0x80] = *cmd.data.as_slice()
        else {
            return Reply::sw(StatusWord::WrongData);
        };
        let which = match rr {
            0x01 => self.which(PIN1_REF),
            0x02 => self.which(PUK_REF),
            0x05 => self.which(PIN2_REF),
            _ => Err(StatusWord::RefNotFound),
        };
        let which = match which {
            Ok(w) => w,
            Err(sw) => return Reply::sw(sw),
        };
        let r = &self.get(which).data;
        let (max, left) = (r.max(), r.tries());
        let rule = if which == Which::Pin2 { 0xFF } else { 0x43 };
        let access = [0xF3, 0x00, 0x00, 0x73, rule, 0x00];
        let mut rules = Vec::new();
        tlv(&mut rules, &[0x8C], &access);
        tlv(&mut rules, &[0x9C], &access);
        let mut a0 = Vec::new();
        tlv(&mut a0, &[0x9A], &[max]);
        tlv(&mut a0, &[0x9B], &[left]);
        tlv(&mut a0, &[0xA1], &rules);
        let mut object = Vec::new();
        tlv(&mut object, &[0xA0], &a0);
        let mut bf = Vec::new();
        tlv(&mut bf, &[0xBF, 0x81, rr], &object);
        let mut out = Vec::new();
        tlv(&mut out, &[0x70], &bf);
        Reply::data(out)
    }
}
