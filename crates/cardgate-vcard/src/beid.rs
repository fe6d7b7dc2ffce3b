//! The Belgian eID card, Belpic applet 1.8, PIN part only, modelled on
//! the public middleware: Fedict's eid-mw
//! (`cardcomm/pkcs11/src/cardlayer/cardpluginbeid/beidcard.cpp`) and
//! OpenSC's `src/libopensc/card-belpic.c`. Their reference is the "Belpic
//! Applet v1.7 Reference Manual" (§6.9 GET CARD DATA), which this model has
//! not read.
//!
//! - The Belpic applet is the card's default application: OpenSC sends
//!   GET CARD DATA right after the reset, without a SELECT. SELECT by AID
//!   (`00 A4 04 0C`, the Belpic PKCS#15 AID `A0 00 00 01 77 "PKCS-15"`, or
//!   the applet's AID `A0 00 00 00 30 29 05 70 00 AD 13 10 01 01 FF`) or
//!   by path from the MF (`00 A4 08 0C`, 3F00, DF00 the PKCS#15 DF, DF01
//!   the identity DF, with or without 3F00 first) answers 9000 without FCI
//!   (OpenSC: "the SELECT FILE command doesn't return any FCI"); the files
//!   inside these DFs are not modelled (6A82).
//! - One PIN, reference 01, 4–12 digits, sent as an ISO 9564-1 format 2
//!   block (`2L` then BCD digits, F-filled to 8 bytes; OpenSC
//!   `SC_PIN_ENCODING_GLP`, eid-mw `PIN_ENC_GP`). A block of another length
//!   answers 6700, a malformed one 6A80, neither spends a try.
//! - VERIFY `00 20 00 01 08 block` wherever the applet is; CHANGE
//!   REFERENCE DATA `00 24 00 01 10 old ‖ new`. A wrong value answers
//!   63Cx; the try that blocks answers 63C0, later ones 6983 (eid-mw reads
//!   63C0, 6983 and 6984 alike). LOG OFF `80 E6 00 00` drops the verified
//!   state.
//! - Reading the tries: nothing. The unsigned PIN status `80 EA 00 ref` is
//!   an applet 2.0 command (eid-mw asks only when the applet version byte
//!   is ≥ 20): 6A86 here; the signed one `80 EA 02 ref` (applet ≥ 1.7)
//!   needs the card's own key: 6A81 here. An empty VERIFY is not a status
//!   query on this model: 6700, nothing spent (assumed; the sources never
//!   send one).
//! - GET CARD DATA `80 E4 00 00 1C`: 28 bytes, the applet version 18 at
//!   offset 21 and the life cycle 0F (issued) at 27, no tries.
//! - Unblocking: only at a municipality, over a secure channel (OpenSC:
//!   "no … update of data except after establishing a Secure Channel or
//!   CTV-authentication"): RESET RETRY COUNTER answers 6982 and spends
//!   nothing.

use crate::apdu::StatusWord;
use crate::secret::Secret;

use super::command::Apdu;
use super::config::{BEID_DEFAULT_PIN, CardConfig, MAX_MAX_TRIES};
use super::pin::{Conventions, Ref, RefData, format2_block, is_format2};
use super::{Reply, SW_FUNCTION_NOT_SUPPORTED};

/// The Belpic PKCS#15 application's AID.
pub const BELPIC_AID: [u8; 12] = [
    0xA0, 0x00, 0x00, 0x01, 0x77, b'P', b'K', b'C', b'S', b'-', b'1', b'5',
];
/// The Belpic Java Card applet's AID (eid-mw `APPLET_AID`).
pub const APPLET_AID: [u8; 15] = [
    0xA0, 0x00, 0x00, 0x00, 0x30, 0x29, 0x05, 0x70, 0x00, 0xAD, 0x13, 0x10, 0x01, 0x01, 0xFF,
];
/// The PIN's reference.
pub const PIN_REF: u8 = 0x01;
/// The answer to reset of a card with applet 1.8, as OpenSC's `belpic_atrs`
/// lists it (T=0 only, so no TCK).
pub const ATR: [u8; 20] = [
    0x3B, 0x7F, 0x96, 0x00, 0x00, 0x80, 0x31, 0x80, 0x65, 0xB0, 0x85, 0x04, 0x01, 0x20, 0x12, 0x0F,
    0xFF, 0x82, 0x90, 0x00,
];
/// The applet version in GET CARD DATA (offset 21): 1.8.
pub const APPLET_VERSION: u8 = 0x18;

const INS_SELECT: u8 = 0xA4;
const INS_VERIFY: u8 = 0x20;
const INS_CHANGE_REFERENCE_DATA: u8 = 0x24;
const INS_RESET_RETRY_COUNTER: u8 = 0x2C;
/// Proprietary (CLA 80) GET CARD DATA.
const INS_GET_CARD_DATA: u8 = 0xE4;
/// Proprietary (CLA 80) LOG OFF.
const INS_LOG_OFF: u8 = 0xE6;
/// Proprietary (CLA 80) GET PIN STATUS.
const INS_PIN_STATUS: u8 = 0xEA;
/// Commands of the card this model does not implement: MSE SET, PSO,
/// INTERNAL AUTHENTICATE, GET CHALLENGE, READ BINARY.
const INS_UNIMPLEMENTED: [u8; 5] = [0x22, 0x2A, 0x88, 0x84, 0xB0];

/// The MF and the two DFs under it.
const PATHS: [[u8; 2]; 3] = [[0x3F, 0x00], [0xDF, 0x00], [0xDF, 0x01]];

pub(crate) struct Beid {
    pin: Ref,
    conv: Conventions,
}

impl Beid {
    pub(crate) fn new(config: &CardConfig) -> Self {
        let max = config.max_tries.clamp(1, MAX_MAX_TRIES);
        let pin = config
            .pin
            .clone()
            .unwrap_or_else(|| Secret::from(BEID_DEFAULT_PIN));
        // A validated configuration holds 4–12 digits; anything else leaves
        // a reference no block can match.
        let block = format2_block(pin.expose()).unwrap_or_else(|| Secret::new(vec![0; 8]));
        let mut pin = RefData::new(Some(block), max);
        if config.start_blocked {
            pin.block();
        }
        Beid {
            pin: Ref::new(pin),
            conv: Conventions::new(config, false),
        }
    }

    pub(crate) fn user_tries(&self) -> u8 {
        self.pin.data.tries()
    }

    pub(crate) fn counters_mut(&mut self) -> [(&'static str, &mut RefData); 1] {
        [("pin", &mut self.pin.data)]
    }

    pub(crate) fn reset(&mut self) {
        self.pin.verified = false;
    }

    pub(crate) fn process(&mut self, cmd: &Apdu) -> Reply {
        match cmd.cla {
            0x00 => self.process_iso(cmd),
            0x80 => self.process_proprietary(cmd),
            _ => Reply::sw(StatusWord::ClaNotSupported),
        }
    }

    fn process_iso(&mut self, cmd: &Apdu) -> Reply {
        match cmd.ins {
            INS_SELECT => select(cmd),
            INS_VERIFY => Reply::sw(self.verify(cmd)),
            INS_CHANGE_REFERENCE_DATA => Reply::sw(self.change(cmd)),
            INS_RESET_RETRY_COUNTER => Reply::sw(StatusWord::SecurityNotSatisfied),
            ins if INS_UNIMPLEMENTED.contains(&ins) => Reply::sw(SW_FUNCTION_NOT_SUPPORTED),
            _ => Reply::sw(StatusWord::InsNotSupported),
        }
    }

    fn process_proprietary(&mut self, cmd: &Apdu) -> Reply {
        match cmd.ins {
            INS_GET_CARD_DATA => match (cmd.p1, cmd.p2) {
                (0x00, 0x00) => Reply::data(card_data().to_vec()),
                (0x02, 0x00) => Reply::sw(SW_FUNCTION_NOT_SUPPORTED),
                _ => Reply::sw(StatusWord::WrongP1P2),
            },
            INS_LOG_OFF => {
                self.pin.verified = false;
                Reply::ok()
            }
            INS_PIN_STATUS => match cmd.p1 {
                0x02 => Reply::sw(SW_FUNCTION_NOT_SUPPORTED),
                _ => Reply::sw(StatusWord::WrongP1P2),
            },
            _ => Reply::sw(StatusWord::InsNotSupported),
        }
    }

    /// 6700 for a block of another length, 6A80 for a malformed one.
    fn malformed(block: &[u8]) -> Option<StatusWord> {
        if block.len() != 8 {
            Some(StatusWord::WrongLength)
        } else if !is_format2(block, 4, 12) {
            Some(StatusWord::WrongData)
        } else {
            None
        }
    }

    /// VERIFY (ISO/IEC 7816-4 §11.5.6), format 2 block.
    fn verify(&mut self, cmd: &Apdu) -> StatusWord {
        if cmd.p1 != 0x00 {
            return StatusWord::WrongP1P2;
        }
        if cmd.p2 != PIN_REF {
            return StatusWord::RefNotFound;
        }
        if let Some(sw) = Self::malformed(&cmd.data) {
            return sw;
        }
        let conv = self.conv;
        self.pin.verify(&conv, &cmd.data)
    }

    /// CHANGE REFERENCE DATA (ISO/IEC 7816-4 §11.5.7): old block ‖ new
    /// block.
    fn change(&mut self, cmd: &Apdu) -> StatusWord {
        if cmd.p1 != 0x00 {
            return StatusWord::WrongP1P2;
        }
        if cmd.p2 != PIN_REF {
            return StatusWord::RefNotFound;
        }
        if cmd.data.len() != 16 {
            return StatusWord::WrongLength;
        }
        let (old, new) = cmd.data.split_at(8);
        if Self::malformed(old).is_some() || Self::malformed(new).is_some() {
            return StatusWord::WrongData;
        }
        let conv = self.conv;
        self.pin.change(&conv, old, new)
    }
}

/// SELECT by AID or by path from the MF; no FCI.
fn select(cmd: &Apdu) -> Reply {
    if !matches!(cmd.p2, 0x00 | 0x0C) {
        return Reply::sw(StatusWord::WrongP1P2);
    }
    let data = cmd.data.as_slice();
    let found = match cmd.p1 {
        0x04 => data == BELPIC_AID || data == APPLET_AID,
        0x00 => data.is_empty() || data == [0x3F, 0x00],
        0x08 => {
            let path = data.strip_prefix(&[0x3F, 0x00][..]).unwrap_or(data);
            match path {
                [] => true,
                [a, b] => PATHS[1..].contains(&[*a, *b]),
                _ => false,
            }
        }
        0x01 | 0x02 | 0x09 => false,
        _ => return Reply::sw(StatusWord::WrongP1P2),
    };
    Reply::sw(if found {
        StatusWord::Ok
    } else {
        StatusWord::FileNotFound
    })
}

/// GET CARD DATA (applet reference manual §6.9, field offsets from
/// OpenSC's `BELPIC_CARDDATA_OFF_*`): serial number (16), component code,
/// OS number, OS version, softmask number, softmask version, applet
/// version, global OS version (2), applet interface version, PKCS#1
/// support, key exchange version, applet life cycle.
fn card_data() -> [u8; 28] {
    let mut d = [0u8; 28];
    d[..16].copy_from_slice(b"cardgate-beid-01");
    d[16..21].copy_from_slice(&[0xD0, 0x01, 0x01, 0x01, 0x01]);
    d[21] = APPLET_VERSION;
    d[22..24].copy_from_slice(&[0x00, 0x02]);
    d[24..27].copy_from_slice(&[0x01, 0x01, 0x01]);
    d[27] = 0x0F;
    d
}
