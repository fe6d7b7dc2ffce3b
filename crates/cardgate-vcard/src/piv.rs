//! The PIV card application (NIST SP 800-73-4 Part 2 §3), PIN part only.

use crate::apdu::StatusWord;
use crate::apdu::commands::{PIV_AID, PIV_PIN_BLOCK_LEN, PIV_PIN_REF, PIV_PUK_REF};
use crate::secret::Secret;

use super::command::Apdu;
use super::config::{CardConfig, MAX_MAX_TRIES, PIV_DEFAULT_PIN, PIV_DEFAULT_PUK};
use super::pin::{Check, Conventions, RefData};
use super::{Reply, SW_FUNCTION_NOT_SUPPORTED, secret_bytes, tlv};

/// Full PIV AID: RID A0 00 00 03 08, PIX 00 00 10 00, version 01 00
/// (SP 800-73-4 Part 1 §2.2).
pub(crate) const FULL_AID: [u8; 11] = [
    0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
];

const INS_VERIFY: u8 = 0x20;
const INS_CHANGE_REFERENCE_DATA: u8 = 0x24;
const INS_RESET_RETRY_COUNTER: u8 = 0x2C;
const INS_GET_DATA: u8 = 0xCB;
/// PIV commands that exist but that this card does not implement:
/// GENERATE ASYMMETRIC KEY PAIR, GENERAL AUTHENTICATE, PUT DATA.
const INS_UNIMPLEMENTED: [u8; 3] = [0x47, 0x87, 0xDB];

/// Application label in the Application Property Template.
const LABEL: &[u8] = b"cardgate virtual PIV";

pub(crate) struct Piv {
    pin: RefData,
    puk: RefData,
    pin_verified: bool,
    pin_initialized: bool,
    pin_must_change: bool,
    conv: Conventions,
}

impl Piv {
    pub(crate) fn new(config: &CardConfig) -> Self {
        let max = config.max_tries.clamp(1, MAX_MAX_TRIES);
        let pin = config
            .pin
            .clone()
            .unwrap_or_else(|| Secret::from(PIV_DEFAULT_PIN));
        let puk = config
            .puk
            .clone()
            .unwrap_or_else(|| Secret::from(PIV_DEFAULT_PUK));
        let mut pin = RefData::new(Some(Secret::new(pin_block(&pin))), max);
        if config.start_blocked {
            pin.block();
        }
        Piv {
            pin,
            puk: RefData::new(Some(Secret::new(pin_block(&puk))), max),
            pin_verified: false,
            pin_initialized: !config.pin_not_initialized,
            pin_must_change: config.pin_must_change,
            conv: Conventions::new(config, true),
        }
    }

    /// The user PIN's retry counter (for tests that look inside the card).
    pub(crate) fn user_tries(&self) -> u8 {
        self.pin.tries()
    }

    /// For Yubico's GET METADATA of the PIN (80) or the PUK (81): whether
    /// it still holds its factory default, its maximum and its remaining
    /// tries. `None` for any other reference.
    pub(crate) fn pin_puk_metadata(&self, reference: u8) -> Option<(bool, u8, u8)> {
        let (r, default) = match reference {
            PIV_PIN_REF => (&self.pin, PIV_DEFAULT_PIN),
            PIV_PUK_REF => (&self.puk, PIV_DEFAULT_PUK),
            _ => return None,
        };
        let default = zeroize::Zeroizing::new(pin_block(&Secret::from(default)));
        Some((r.holds(&default), r.max(), r.tries()))
    }

    /// The retry counters by name (see [`super::VirtualCard::counters`]).
    pub(crate) fn counters_mut(&mut self) -> [(&'static str, &mut RefData); 2] {
        [("pin", &mut self.pin), ("puk", &mut self.puk)]
    }

    pub(crate) fn knows(ins: u8) -> bool {
        matches!(
            ins,
            INS_VERIFY | INS_CHANGE_REFERENCE_DATA | INS_RESET_RETRY_COUNTER | INS_GET_DATA
        ) || INS_UNIMPLEMENTED.contains(&ins)
    }

    pub(crate) fn reset(&mut self) {
        self.pin_verified = false;
    }

    /// SELECT: the full AID or a right-truncated one down to the RID
    /// (SP 800-73-4 Part 2 §3.1.1). Answers the Application Property Template.
    pub(crate) fn select(&self, aid: &[u8]) -> Option<Reply> {
        if aid.len() < PIV_AID.len() || !FULL_AID.starts_with(aid) {
            return None;
        }
        let mut apt = Vec::new();
        // Application identifier: the PIX with version.
        tlv(&mut apt, &[0x4F], &FULL_AID[5..]);
        // Coexistent tag allocation authority: the NIST RID.
        let mut authority = Vec::new();
        tlv(&mut authority, &[0x4F], &PIV_AID);
        tlv(&mut apt, &[0x79], &authority);
        tlv(&mut apt, &[0x50], LABEL);
        let mut out = Vec::new();
        tlv(&mut out, &[0x61], &apt);
        Some(Reply::data(out))
    }

    pub(crate) fn process(&mut self, cmd: &Apdu) -> Reply {
        match cmd.ins {
            INS_VERIFY => self.verify(cmd),
            INS_CHANGE_REFERENCE_DATA => self.change_reference_data(cmd),
            INS_RESET_RETRY_COUNTER => self.reset_retry_counter(cmd),
            INS_GET_DATA => get_data(cmd),
            _ => Reply::sw(SW_FUNCTION_NOT_SUPPORTED),
        }
    }

    /// VERIFY (SP 800-73-4 Part 2 §3.2.1).
    fn verify(&mut self, cmd: &Apdu) -> Reply {
        if cmd.p1 != 0x00 && cmd.p1 != 0xFF {
            return Reply::sw(StatusWord::WrongP1P2);
        }
        if cmd.p2 != PIV_PIN_REF {
            // Global PIN 00, PUK 81 (not verifiable), OCC/pairing code: not here.
            return Reply::sw(StatusWord::RefNotFound);
        }
        if cmd.p1 == 0xFF {
            if !cmd.data.is_empty() {
                return Reply::sw(StatusWord::WrongLength);
            }
            self.pin_verified = false;
            return Reply::ok();
        }
        if cmd.data.is_empty() {
            if !self.pin_initialized {
                return Reply::sw(StatusWord::RefDataNotUsable);
            }
            if self.conv.empty_verify_spends_try {
                self.pin_verified = false;
                return Reply::sw(self.conv.spend_empty(&mut self.pin));
            }
            if self.pin_verified {
                return Reply::ok();
            }
            return Reply::sw(self.conv.status(&self.pin));
        }
        if !is_pin_block(&cmd.data) {
            return Reply::sw(StatusWord::WrongData);
        }
        if !self.pin_initialized {
            return Reply::sw(StatusWord::RefDataNotUsable);
        }
        match self.pin.check(&cmd.data) {
            Check::Match if self.pin_must_change => {
                self.pin_verified = false;
                Reply::sw(StatusWord::ConditionsNotSatisfied)
            }
            Check::Match => {
                self.pin_verified = true;
                Reply::ok()
            }
            Check::Mismatch { left } => {
                self.pin_verified = false;
                Reply::sw(self.conv.wrong_verify(left))
            }
            Check::Blocked | Check::NotSet => {
                self.pin_verified = false;
                Reply::sw(self.conv.blocked())
            }
        }
    }

    /// CHANGE REFERENCE DATA (SP 800-73-4 Part 2 §3.2.2): old || new, 8 bytes each.
    fn change_reference_data(&mut self, cmd: &Apdu) -> Reply {
        if cmd.p1 != 0x00 {
            return Reply::sw(StatusWord::WrongP1P2);
        }
        let is_pin = match cmd.p2 {
            PIV_PIN_REF => true,
            PIV_PUK_REF => false,
            _ => return Reply::sw(StatusWord::RefNotFound),
        };
        if cmd.data.len() != 2 * PIV_PIN_BLOCK_LEN {
            return Reply::sw(StatusWord::WrongData);
        }
        let (old, new) = cmd.data.split_at(PIV_PIN_BLOCK_LEN);
        if is_pin && (!is_pin_block(old) || !is_pin_block(new)) {
            return Reply::sw(StatusWord::WrongData);
        }
        if is_pin && !self.pin_initialized {
            return Reply::sw(StatusWord::RefDataNotUsable);
        }
        let target = if is_pin { &mut self.pin } else { &mut self.puk };
        match target.check(old) {
            Check::Match => {
                target.set(Some(secret_bytes(new)));
                if is_pin {
                    self.pin_must_change = false;
                }
                Reply::ok()
            }
            Check::Mismatch { left } => {
                if is_pin && !self.conv.failed_change_keeps_verification {
                    self.pin_verified = false;
                }
                Reply::sw(self.conv.wrong_old(left))
            }
            Check::Blocked | Check::NotSet => Reply::sw(self.conv.blocked()),
        }
    }

    /// RESET RETRY COUNTER (SP 800-73-4 Part 2 §3.2.3): PUK || new PIN.
    fn reset_retry_counter(&mut self, cmd: &Apdu) -> Reply {
        if cmd.p1 != 0x00 {
            return Reply::sw(StatusWord::WrongP1P2);
        }
        if cmd.p2 != PIV_PIN_REF {
            return Reply::sw(StatusWord::RefNotFound);
        }
        if cmd.data.len() != 2 * PIV_PIN_BLOCK_LEN {
            return Reply::sw(StatusWord::WrongData);
        }
        let (puk, new) = cmd.data.split_at(PIV_PIN_BLOCK_LEN);
        if !is_pin_block(new) {
            return Reply::sw(StatusWord::WrongData);
        }
        match self.puk.check(puk) {
            Check::Match => {
                self.pin.set(Some(secret_bytes(new)));
                self.pin_verified = false;
                self.pin_initialized = true;
                self.pin_must_change = false;
                Reply::ok()
            }
            Check::Mismatch { left } => Reply::sw(self.conv.wrong(left)),
            Check::Blocked | Check::NotSet => Reply::sw(self.conv.blocked()),
        }
    }
}

/// GET DATA (SP 800-73-4 Part 2 §3.1.2): only the discovery object exists.
fn get_data(cmd: &Apdu) -> Reply {
    if cmd.p1 != 0x3F || cmd.p2 != 0xFF {
        return Reply::sw(StatusWord::WrongP1P2);
    }
    match cmd.data.as_slice() {
        // Discovery object: PIV AID, PIN usage policy "PIV card application
        // PIN satisfies the PIV access control rules", no global PIN.
        [0x5C, 0x01, 0x7E] => {
            let mut value = Vec::new();
            tlv(&mut value, &[0x4F], &FULL_AID);
            tlv(&mut value, &[0x5F, 0x2F], &[0x40, 0x00]);
            let mut out = Vec::new();
            tlv(&mut out, &[0x7E], &value);
            Reply::data(out)
        }
        [0x5C, n, tag @ ..] if usize::from(*n) == tag.len() && !tag.is_empty() => {
            Reply::sw(StatusWord::FileNotFound)
        }
        _ => Reply::sw(StatusWord::WrongData),
    }
}

/// A PIV PIN block: 6–8 ASCII digits, padded with FF to 8 bytes
/// (SP 800-73-4 Part 2 §2.4.3).
fn is_pin_block(block: &[u8]) -> bool {
    if block.len() != PIV_PIN_BLOCK_LEN {
        return false;
    }
    let digits = block.iter().take_while(|b| b.is_ascii_digit()).count();
    digits >= 6 && block[digits..].iter().all(|&b| b == 0xFF)
}

/// Encodes a configured PIN/PUK as a PIV block (FF padding to 8 bytes).
fn pin_block(value: &Secret) -> Vec<u8> {
    let mut block = value.expose().to_vec();
    block.resize(PIV_PIN_BLOCK_LEN, 0xFF);
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_block_format() {
        assert!(is_pin_block(b"123456\xFF\xFF"));
        assert!(is_pin_block(b"12345678"));
        assert!(is_pin_block(b"1234567\xFF"));
        assert!(!is_pin_block(b"12345\xFF\xFF\xFF"));
        assert!(!is_pin_block(b"123456\xFF1"));
        assert!(!is_pin_block(b"12345a\xFF\xFF"));
        assert!(!is_pin_block(b"123456\x00\x00"));
        assert!(!is_pin_block(b"123456"));
    }
}
