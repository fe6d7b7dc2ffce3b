//! The OpenPGP card application 3.4, password part only (no keys).
//!
//! PW1 status byte (DO C4 byte 1): with 00, a PW1 verification in mode 81 is
//! valid for one PSO:COMPUTE DIGITAL SIGNATURE only. This card has no keys
//! and answers PSO with 6A81, so a signature never consumes the state: the
//! byte is stored, reported and writable (PUT DATA C4), nothing more.

use crate::apdu::StatusWord;
use crate::apdu::commands::{OPENPGP_AID, OPENPGP_PW1_OTHER, OPENPGP_PW1_SIGN, OPENPGP_PW3};
use crate::secret::Secret;

use super::command::Apdu;
use super::config::{
    CardConfig, DEFAULT_SERIAL, MAX_MAX_TRIES, OPENPGP_DEFAULT_PW1, OPENPGP_DEFAULT_PW3,
    OPENPGP_PW_MAX, OPENPGP_PW1_MIN, OPENPGP_PW3_MIN, OPENPGP_RC_MIN,
};
use super::pin::{Check, Conventions, RefData};
use super::{Reply, SW_FUNCTION_NOT_SUPPORTED, historical_bytes, secret_bytes, tlv};

const INS_VERIFY: u8 = 0x20;
const INS_CHANGE_REFERENCE_DATA: u8 = 0x24;
const INS_RESET_RETRY_COUNTER: u8 = 0x2C;
const INS_GET_DATA: u8 = 0xCA;
const INS_PUT_DATA: u8 = 0xDA;
const INS_SELECT_DATA: u8 = 0xA5;
/// OpenPGP 3.4 commands this card does not implement: MSE, PSO, GENERATE,
/// GET CHALLENGE, INTERNAL AUTHENTICATE, GET DATA (odd), GET NEXT DATA,
/// PUT DATA (odd), TERMINATE DF, ACTIVATE FILE.
const INS_UNIMPLEMENTED: [u8; 10] = [0x22, 0x2A, 0x47, 0x84, 0x88, 0xCB, 0xCC, 0xDB, 0xE6, 0x44];

const TAG_AID: u16 = 0x004F;
const TAG_HISTORICAL: u16 = 0x5F52;
const TAG_CARDHOLDER: u16 = 0x0065;
const TAG_APP_DATA: u16 = 0x006E;
const TAG_SECURITY_SUPPORT: u16 = 0x007A;
const TAG_LOGIN: u16 = 0x005E;
const TAG_URL: u16 = 0x5F50;
const TAG_PW_STATUS: u16 = 0x00C4;
const TAG_CARDHOLDER_CERT: u16 = 0x7F21;
const TAG_RESET_CODE: u16 = 0x00D3;

/// SELECT DATA (3.4 §7.2.5): chooses an occurrence of the cardholder
/// certificate 7F21 (0..=2). All occurrences are empty on this card.
fn select_data(cmd: &Apdu) -> Reply {
    if cmd.p1 > 2 || cmd.p2 != 0x04 {
        return Reply::sw(StatusWord::WrongP1P2);
    }
    match cmd.data.as_slice() {
        [0x60, 0x04, 0x5C, 0x02, 0x7F, 0x21] => Reply::ok(),
        [0x60, len, 0x5C, n, tag @ ..]
            if usize::from(*len) == tag.len() + 2 && usize::from(*n) == tag.len() =>
        {
            Reply::sw(StatusWord::RefNotFound)
        }
        _ => Reply::sw(StatusWord::WrongData),
    }
}

/// Manufacturer FFFF: test card (3.4 §4.2.1).
const MANUFACTURER: [u8; 2] = [0xFF, 0xFF];
/// Manufacturer 0006: Yubico (the OpenPGP card specification's list of
/// manufacturers), in a YubiKey's OpenPGP AID.
pub(crate) const MANUFACTURER_YUBICO: [u8; 2] = [0x00, 0x06];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pw {
    Pw1,
    Pw3,
}

pub(crate) struct OpenPgp {
    pw1: RefData,
    pw3: RefData,
    rc: RefData,
    /// Access status of PW1 mode 81 (signing), PW1 mode 82, PW3 (83).
    verified_81: bool,
    verified_82: bool,
    verified_83: bool,
    /// DO C4 byte 1: PW1 valid for several signatures (01) or one (00).
    pw1_multiple: bool,
    pw1_initialized: bool,
    pw1_must_change: bool,
    aid: [u8; 16],
    conv: Conventions,
}

impl OpenPgp {
    pub(crate) fn new(config: &CardConfig) -> Self {
        Self::with_manufacturer(config, MANUFACTURER)
    }

    /// An application whose AID names `manufacturer` (3.4 §4.2.1).
    pub(crate) fn with_manufacturer(config: &CardConfig, manufacturer: [u8; 2]) -> Self {
        let max = config.max_tries.clamp(1, MAX_MAX_TRIES);
        let pw1 = config
            .pw1
            .clone()
            .unwrap_or_else(|| Secret::from(OPENPGP_DEFAULT_PW1));
        let pw3 = config
            .pw3
            .clone()
            .unwrap_or_else(|| Secret::from(OPENPGP_DEFAULT_PW3));
        let mut pw1 = RefData::new(Some(pw1), max);
        if config.start_blocked {
            pw1.block();
        }
        let mut aid = [0u8; 16];
        aid[..6].copy_from_slice(&OPENPGP_AID);
        aid[6..8].copy_from_slice(&[0x03, 0x04]);
        aid[8..10].copy_from_slice(&manufacturer);
        aid[10..14].copy_from_slice(&config.serial.unwrap_or(DEFAULT_SERIAL).to_be_bytes());
        OpenPgp {
            pw1,
            pw3: RefData::new(Some(pw3), max),
            rc: RefData::new(config.reset_code.clone(), max),
            verified_81: false,
            verified_82: false,
            verified_83: false,
            pw1_multiple: false,
            pw1_initialized: !config.pin_not_initialized,
            pw1_must_change: config.pin_must_change,
            aid,
            conv: Conventions::new(config, false),
        }
    }

    /// The user PIN's retry counter (for tests that look inside the card).
    pub(crate) fn user_tries(&self) -> u8 {
        self.pw1.tries()
    }

    /// The retry counters by name (see [`super::VirtualCard::counters`]).
    pub(crate) fn counters_mut(&mut self) -> [(&'static str, &mut RefData); 3] {
        [
            ("pw1", &mut self.pw1),
            ("pw3", &mut self.pw3),
            ("rc", &mut self.rc),
        ]
    }

    pub(crate) fn knows(ins: u8) -> bool {
        matches!(
            ins,
            INS_VERIFY
                | INS_CHANGE_REFERENCE_DATA
                | INS_RESET_RETRY_COUNTER
                | INS_GET_DATA
                | INS_PUT_DATA
                | INS_SELECT_DATA
        ) || INS_UNIMPLEMENTED.contains(&ins)
    }

    pub(crate) fn reset(&mut self) {
        self.verified_81 = false;
        self.verified_82 = false;
        self.verified_83 = false;
    }

    /// SELECT (3.4 §7.2.1): the application id D2 76 00 01 24 01, or a
    /// longer prefix of the full AID. No FCI is returned.
    pub(crate) fn select(&self, aid: &[u8]) -> Option<Reply> {
        (aid.len() >= OPENPGP_AID.len() && self.aid.starts_with(aid)).then(Reply::ok)
    }

    pub(crate) fn process(&mut self, cmd: &Apdu) -> Reply {
        match cmd.ins {
            INS_VERIFY => self.verify(cmd),
            INS_CHANGE_REFERENCE_DATA => self.change_reference_data(cmd),
            INS_RESET_RETRY_COUNTER => self.reset_retry_counter(cmd),
            INS_GET_DATA => self.get_data(cmd),
            INS_PUT_DATA => self.put_data(cmd),
            INS_SELECT_DATA => select_data(cmd),
            _ => Reply::sw(SW_FUNCTION_NOT_SUPPORTED),
        }
    }

    fn clear_status(&mut self, pw: Pw) {
        match pw {
            Pw::Pw1 => {
                self.verified_81 = false;
                self.verified_82 = false;
            }
            Pw::Pw3 => self.verified_83 = false,
        }
    }

    fn refdata(&mut self, pw: Pw) -> &mut RefData {
        match pw {
            Pw::Pw1 => &mut self.pw1,
            Pw::Pw3 => &mut self.pw3,
        }
    }

    /// VERIFY (3.4 §7.2.2).
    fn verify(&mut self, cmd: &Apdu) -> Reply {
        if cmd.p1 != 0x00 && cmd.p1 != 0xFF {
            return Reply::sw(StatusWord::WrongP1P2);
        }
        let (pw, min) = match cmd.p2 {
            OPENPGP_PW1_SIGN | OPENPGP_PW1_OTHER => (Pw::Pw1, OPENPGP_PW1_MIN),
            OPENPGP_PW3 => (Pw::Pw3, OPENPGP_PW3_MIN),
            _ => return Reply::sw(StatusWord::WrongP1P2),
        };
        let status = match cmd.p2 {
            OPENPGP_PW1_SIGN => &mut self.verified_81,
            OPENPGP_PW1_OTHER => &mut self.verified_82,
            _ => &mut self.verified_83,
        };
        if cmd.p1 == 0xFF {
            // Reset the access status of this reference only.
            if !cmd.data.is_empty() {
                return Reply::sw(StatusWord::WrongLength);
            }
            *status = false;
            return Reply::ok();
        }
        let verified = *status;
        let not_usable = pw == Pw::Pw1 && !self.pw1_initialized;
        if cmd.data.is_empty() {
            if not_usable {
                return Reply::sw(StatusWord::RefDataNotUsable);
            }
            if self.conv.empty_verify_spends_try {
                self.clear_status(pw);
                let conv = self.conv;
                return Reply::sw(conv.spend_empty(self.refdata(pw)));
            }
            if verified {
                return Reply::ok();
            }
            let r = match pw {
                Pw::Pw1 => &self.pw1,
                Pw::Pw3 => &self.pw3,
            };
            return Reply::sw(self.conv.status(r));
        }
        if !(min..=OPENPGP_PW_MAX).contains(&cmd.data.len()) {
            return Reply::sw(StatusWord::WrongLength);
        }
        if not_usable {
            return Reply::sw(StatusWord::RefDataNotUsable);
        }
        let conv = self.conv;
        match self.refdata(pw).check(&cmd.data) {
            Check::Match if pw == Pw::Pw1 && self.pw1_must_change => {
                self.clear_status(pw);
                Reply::sw(StatusWord::ConditionsNotSatisfied)
            }
            Check::Match => {
                match cmd.p2 {
                    OPENPGP_PW1_SIGN => self.verified_81 = true,
                    OPENPGP_PW1_OTHER => self.verified_82 = true,
                    _ => self.verified_83 = true,
                }
                Reply::ok()
            }
            Check::Mismatch { left } => {
                self.clear_status(pw);
                Reply::sw(conv.wrong_verify(left))
            }
            Check::Blocked | Check::NotSet => {
                self.clear_status(pw);
                Reply::sw(conv.blocked())
            }
        }
    }

    /// CHANGE REFERENCE DATA (3.4 §7.2.3): old || new without separator;
    /// the card splits at the stored length of the old value.
    fn change_reference_data(&mut self, cmd: &Apdu) -> Reply {
        if cmd.p1 != 0x00 {
            return Reply::sw(StatusWord::WrongP1P2);
        }
        let (pw, min) = match cmd.p2 {
            OPENPGP_PW1_SIGN => (Pw::Pw1, OPENPGP_PW1_MIN),
            OPENPGP_PW3 => (Pw::Pw3, OPENPGP_PW3_MIN),
            _ => return Reply::sw(StatusWord::WrongP1P2),
        };
        if cmd.data.len() < 2 * min || cmd.data.len() > 2 * OPENPGP_PW_MAX {
            return Reply::sw(StatusWord::WrongLength);
        }
        if pw == Pw::Pw1 && !self.pw1_initialized {
            return Reply::sw(StatusWord::RefDataNotUsable);
        }
        let conv = self.conv;
        let target = self.refdata(pw);
        let split = target.len().min(cmd.data.len());
        let (old, new) = cmd.data.split_at(split);
        match target.check(old) {
            Check::Match => {
                // The old value was right: only now say whether the new one fits,
                // so the length of the stored value does not leak.
                if !(min..=OPENPGP_PW_MAX).contains(&new.len()) {
                    return Reply::sw(StatusWord::WrongLength);
                }
                target.set(Some(secret_bytes(new)));
                if pw == Pw::Pw1 {
                    self.pw1_must_change = false;
                }
                Reply::ok()
            }
            Check::Mismatch { left } => {
                self.clear_status(pw);
                Reply::sw(conv.wrong_old(left))
            }
            Check::Blocked | Check::NotSet => Reply::sw(conv.blocked()),
        }
    }

    /// RESET RETRY COUNTER (3.4 §7.2.4), PW1 only: P1=00 with the resetting
    /// code, P1=02 after PW3 verification.
    fn reset_retry_counter(&mut self, cmd: &Apdu) -> Reply {
        if cmd.p2 != OPENPGP_PW1_SIGN {
            return Reply::sw(StatusWord::WrongP1P2);
        }
        let new = match cmd.p1 {
            0x00 => {
                if !self.rc.is_set() {
                    return Reply::sw(StatusWord::RefDataNotUsable);
                }
                if cmd.data.len() < OPENPGP_RC_MIN + OPENPGP_PW1_MIN
                    || cmd.data.len() > 2 * OPENPGP_PW_MAX
                {
                    return Reply::sw(StatusWord::WrongLength);
                }
                let split = self.rc.len().min(cmd.data.len());
                let (rc, new) = cmd.data.split_at(split);
                match self.rc.check(rc) {
                    Check::Match => new,
                    Check::Mismatch { left } => return Reply::sw(self.conv.wrong(left)),
                    Check::Blocked | Check::NotSet => return Reply::sw(self.conv.blocked()),
                }
            }
            0x02 => {
                if !self.verified_83 {
                    return Reply::sw(StatusWord::SecurityNotSatisfied);
                }
                &cmd.data[..]
            }
            _ => return Reply::sw(StatusWord::WrongP1P2),
        };
        if !(OPENPGP_PW1_MIN..=OPENPGP_PW_MAX).contains(&new.len()) {
            return Reply::sw(StatusWord::WrongLength);
        }
        self.pw1.set(Some(secret_bytes(new)));
        self.pw1_initialized = true;
        self.pw1_must_change = false;
        self.clear_status(Pw::Pw1);
        Reply::ok()
    }

    /// GET DATA (3.4 §7.2.6).
    fn get_data(&self, cmd: &Apdu) -> Reply {
        let tag = u16::from_be_bytes([cmd.p1, cmd.p2]);
        match tag {
            TAG_AID => Reply::data(self.aid.to_vec()),
            TAG_HISTORICAL => Reply::data(historical_bytes(super::Profile::OpenPgp)),
            TAG_PW_STATUS => Reply::data(self.pw_status().to_vec()),
            // Empty: no login data, no URL, no cardholder certificate (in
            // any occurrence chosen by SELECT DATA).
            TAG_LOGIN | TAG_URL | TAG_CARDHOLDER_CERT => Reply::data(Vec::new()),
            TAG_CARDHOLDER => {
                let mut value = Vec::new();
                tlv(&mut value, &[0x5B], &[]);
                tlv(&mut value, &[0x5F, 0x2D], b"en");
                tlv(&mut value, &[0x5F, 0x35], b"9");
                let mut out = Vec::new();
                tlv(&mut out, &[0x65], &value);
                Reply::data(out)
            }
            TAG_SECURITY_SUPPORT => {
                let mut value = Vec::new();
                tlv(&mut value, &[0x93], &[0, 0, 0]);
                let mut out = Vec::new();
                tlv(&mut out, &[0x7A], &value);
                Reply::data(out)
            }
            TAG_APP_DATA => Reply::data(self.application_related_data()),
            _ => Reply::sw(StatusWord::RefNotFound),
        }
    }

    /// PUT DATA (3.4 §7.2.8): the resetting code D3 and the PW1 status byte
    /// C4, both after PW3 verification.
    fn put_data(&mut self, cmd: &Apdu) -> Reply {
        let tag = u16::from_be_bytes([cmd.p1, cmd.p2]);
        if tag != TAG_RESET_CODE && tag != TAG_PW_STATUS {
            return Reply::sw(StatusWord::RefNotFound);
        }
        if !self.verified_83 {
            return Reply::sw(StatusWord::SecurityNotSatisfied);
        }
        if tag == TAG_RESET_CODE {
            if cmd.data.is_empty() {
                self.rc.set(None);
                return Reply::ok();
            }
            if !(OPENPGP_RC_MIN..=OPENPGP_PW_MAX).contains(&cmd.data.len()) {
                return Reply::sw(StatusWord::WrongLength);
            }
            self.rc.set(Some(secret_bytes(&cmd.data)));
            return Reply::ok();
        }
        match cmd.data.as_slice() {
            [0x00] => self.pw1_multiple = false,
            [0x01] => self.pw1_multiple = true,
            [_] => return Reply::sw(StatusWord::WrongData),
            _ => return Reply::sw(StatusWord::WrongLength),
        }
        Reply::ok()
    }

    /// DO C4: PW1 validity, max lengths of PW1, RC, PW3, tries of PW1, RC, PW3.
    fn pw_status(&self) -> [u8; 7] {
        let max = OPENPGP_PW_MAX as u8;
        [
            u8::from(self.pw1_multiple),
            max,
            max,
            max,
            self.pw1.tries(),
            self.rc.tries(),
            self.pw3.tries(),
        ]
    }

    /// DO 6E (3.4 §4.4.1): AID, historical bytes, discretionary data objects.
    fn application_related_data(&self) -> Vec<u8> {
        // Extended capabilities (3.4 §4.4.3.7): PW1 status changeable; no SM,
        // no GET CHALLENGE, no key import, no private DOs; max special DO
        // length 255; PIN block 2 format and MSE not supported.
        let extended_capabilities = [0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0x00, 0x00];
        // Algorithm attributes: RSA 2048, 32-bit exponent, standard format.
        let rsa2048 = [0x01, 0x08, 0x00, 0x00, 0x20, 0x00];
        let mut dd = Vec::new();
        tlv(&mut dd, &[0xC0], &extended_capabilities);
        tlv(&mut dd, &[0xC1], &rsa2048);
        tlv(&mut dd, &[0xC2], &rsa2048);
        tlv(&mut dd, &[0xC3], &rsa2048);
        tlv(&mut dd, &[0xC4], &self.pw_status());
        tlv(&mut dd, &[0xC5], &[0; 60]); // fingerprints: no keys
        tlv(&mut dd, &[0xC6], &[0; 60]); // CA fingerprints
        tlv(&mut dd, &[0xCD], &[0; 12]); // key generation dates
        tlv(&mut dd, &[0xDE], &[0x01, 0x00, 0x02, 0x00, 0x03, 0x00]); // key information
        let mut value = Vec::new();
        tlv(&mut value, &[0x4F], &self.aid);
        tlv(
            &mut value,
            &[0x5F, 0x52],
            &historical_bytes(super::Profile::OpenPgp),
        );
        tlv(&mut value, &[0x73], &dd);
        let mut out = Vec::new();
        tlv(&mut out, &[0x6E], &value);
        out
    }
}
