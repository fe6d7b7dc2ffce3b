//! A YubiKey 5 over CCID: the PIV application and the OpenPGP application
//! on one card, each selected by its AID (the `piv` and `openpgp` models,
//! unchanged), with Yubico's extensions of PIV.
//!
//! - Selecting one application drops the verified state of the other: a
//!   YubiKey clears an applet's security status when another applet is
//!   selected. Re-selecting the selected one keeps it; a SELECT of an
//!   unknown AID (6A82) changes nothing.
//! - PIV GET VERSION `00 FD 00 00` (Yubico PIV extension, every firmware):
//!   the firmware version, 3 bytes (`firmware`, default 5.4.3).
//! - PIV GET METADATA `00 F7 00 P2` (Yubico PIV extension, firmware 5.3.0
//!   and later; before, 6D00), for P2 = 80 (PIN) or 81 (PUK), as
//!   documented in Yubico's "Get metadata" APDU page and read by
//!   yubikey-manager (`yubikit/piv.py`, `_get_pin_puk_metadata`): the TLVs
//!   `01 01 FF` (algorithm: PIN or PUK), `05 01 dd` (01 while the value is
//!   still the factory default 123456 / 12345678, else 00) and `06 02 mm
//!   rr` (the total tries and the remaining ones). Yubico lists tag 02
//!   (policy) only for key slots and the management key, so the PIN and PUK
//!   answers carry no 02. Other P2: 6A88. Reading metadata spends no try.
//! - The OpenPGP AID names manufacturer 0006 (Yubico).
//! - ATR: a YubiKey 5's, `3B FD 13 00 00 81 31 FE 15 80 73 C0 21 C0 57 59
//!   75 62 69 4B 65 79 40` (historical bytes end in "YubiKey").

use crate::apdu::StatusWord;
use crate::apdu::commands::{PIV_PIN_REF, PIV_PUK_REF};

use super::command::Apdu;
use super::config::{CardConfig, YUBIKEY_DEFAULT_FIRMWARE};
use super::openpgp::{MANUFACTURER_YUBICO, OpenPgp};
use super::pin::RefData;
use super::piv::Piv;
use super::{INS_SELECT, Reply, tlv};

/// A YubiKey 5's answer to reset.
pub const ATR: [u8; 23] = [
    0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x80, 0x73, 0xC0, 0x21, 0xC0, 0x57, 0x59,
    0x75, 0x62, 0x69, 0x4B, 0x65, 0x79, 0x40,
];
/// The first firmware with GET METADATA.
pub const METADATA_SINCE: [u8; 3] = [5, 3, 0];

/// Yubico PIV extension: GET METADATA.
const INS_GET_METADATA: u8 = 0xF7;
/// Yubico PIV extension: GET VERSION.
const INS_GET_VERSION: u8 = 0xFD;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    None,
    Piv,
    OpenPgp,
}

pub(crate) struct YubiKey {
    piv: Piv,
    openpgp: OpenPgp,
    current: Current,
    firmware: [u8; 3],
}

impl YubiKey {
    pub(crate) fn new(config: &CardConfig) -> Self {
        YubiKey {
            piv: Piv::new(config),
            openpgp: OpenPgp::with_manufacturer(config, MANUFACTURER_YUBICO),
            current: Current::None,
            firmware: config.firmware.unwrap_or(YUBIKEY_DEFAULT_FIRMWARE),
        }
    }

    /// The PIV PIN's counter.
    pub(crate) fn user_tries(&self) -> u8 {
        self.piv.user_tries()
    }

    /// The retry counters, named after their application.
    pub(crate) fn counters_mut(&mut self) -> Vec<(&'static str, &mut RefData)> {
        let [(_, pin), (_, puk)] = self.piv.counters_mut();
        let [(_, pw1), (_, pw3), (_, rc)] = self.openpgp.counters_mut();
        vec![
            ("piv.pin", pin),
            ("piv.puk", puk),
            ("openpgp.pw1", pw1),
            ("openpgp.pw3", pw3),
            ("openpgp.rc", rc),
        ]
    }

    pub(crate) fn reset(&mut self) {
        self.current = Current::None;
        self.piv.reset();
        self.openpgp.reset();
    }

    pub(crate) fn process(&mut self, cmd: &Apdu) -> Reply {
        if cmd.cla != 0 {
            return Reply::sw(StatusWord::ClaNotSupported);
        }
        if cmd.ins == INS_SELECT {
            return self.select(cmd);
        }
        match self.current {
            Current::Piv if cmd.ins == INS_GET_VERSION => Reply::data(self.firmware.to_vec()),
            Current::Piv if cmd.ins == INS_GET_METADATA => self.get_metadata(cmd),
            Current::Piv if Piv::knows(cmd.ins) => self.piv.process(cmd),
            Current::OpenPgp if OpenPgp::knows(cmd.ins) => self.openpgp.process(cmd),
            Current::None
                if Piv::knows(cmd.ins)
                    || OpenPgp::knows(cmd.ins)
                    || matches!(cmd.ins, INS_GET_VERSION | INS_GET_METADATA) =>
            {
                Reply::sw(StatusWord::ConditionsNotSatisfied)
            }
            _ => Reply::sw(StatusWord::InsNotSupported),
        }
    }

    /// SELECT by DF name (ISO/IEC 7816-4 §11.2.2): the PIV AID (SP 800-73-4
    /// Part 2 §3.1.1) or the OpenPGP AID (3.4 §7.2.1). Selecting one
    /// application drops the other's security status.
    fn select(&mut self, cmd: &Apdu) -> Reply {
        if cmd.p1 != 0x04 || cmd.p2 != 0x00 {
            return Reply::sw(StatusWord::WrongP1P2);
        }
        if let Some(reply) = self.piv.select(&cmd.data) {
            self.openpgp.reset();
            self.current = Current::Piv;
            return reply;
        }
        if let Some(reply) = self.openpgp.select(&cmd.data) {
            self.piv.reset();
            self.current = Current::OpenPgp;
            return reply;
        }
        Reply::sw(StatusWord::FileNotFound)
    }

    /// GET METADATA of the PIN or the PUK (Yubico PIV extension).
    fn get_metadata(&self, cmd: &Apdu) -> Reply {
        if self.firmware < METADATA_SINCE {
            return Reply::sw(StatusWord::InsNotSupported);
        }
        if cmd.p1 != 0x00 {
            return Reply::sw(StatusWord::WrongP1P2);
        }
        if !matches!(cmd.p2, PIV_PIN_REF | PIV_PUK_REF) {
            return Reply::sw(StatusWord::RefNotFound);
        }
        let Some((default, max, left)) = self.piv.pin_puk_metadata(cmd.p2) else {
            return Reply::sw(StatusWord::RefNotFound);
        };
        let mut out = Vec::new();
        tlv(&mut out, &[0x01], &[0xFF]);
        tlv(&mut out, &[0x05], &[u8::from(default)]);
        tlv(&mut out, &[0x06], &[max, left]);
        Reply::data(out)
    }
}
