//! A simulated pinpad reader at the `control` level, with a scripted user.
//!
//! It answers PC/SC part 10 requests the way a CCID pinpad reader with
//! libccid does: `GET_FEATURE_REQUEST` lists the features (control codes
//! `0x42330000 + tag`, as libccid numbers them), `IFD_PIN_PROPERTIES` and
//! `GET_TLV_PROPERTIES` return the configured bytes, and
//! `VERIFY_PIN_DIRECT` / `MODIFY_PIN_DIRECT` unpack the structure, take
//! the next scripted entries (one for VERIFY; current, new and
//! confirmation for MODIFY, as bConfirmPIN asks), format each typed PIN
//! into the APDU template as bmFormatString / bmPINBlockString /
//! bmPINLengthFormat say, send the APDU to the card and return the card's
//! answer. The reader's own outcomes are its status words: 6400 timeout,
//! 6401 cancel, 6402 new PINs differ, 6403 length outside
//! wPINMaxExtraDigit, 6B80 a structure it cannot use.
//!
//! Supported formats (§2.5.2, the same fields in §2.5.3), read from the
//! structure alone:
//! - bmFormatString: positions in bytes or in bits (bit 7); the PIN's
//!   position inside its block (bits 6-3), on a byte boundary for ASCII
//!   and binary digits, on a nibble boundary for BCD; left or right
//!   justification (bit 2); binary, BCD or ASCII digits (bits 1-0; the
//!   fourth value answers 6B80).
//! - bmPINBlockString: a fixed-size block (bits 3-0 bytes, the template's
//!   bytes left where no digit goes: the padding) or variable-length
//!   insertion (size 0: the PIN is inserted with its own length, BCD
//!   packed with an F filling the odd nibble, and Lc is set to the new
//!   data length; in MODIFY the new PIN follows the current one when both
//!   offsets allow it); a PIN length field of bits 7-4 bits.
//! - bmPINLengthFormat: where that field goes in the block, in bits or in
//!   bytes (bit 4); it holds the number of digits typed.
//!
//! A block starts at the start of the data field for VERIFY, at
//! bInsertionOffsetOld / bInsertionOffsetNew for MODIFY; the PIN and
//! length positions count from there. A structure it cannot honour
//! answers 6B80 before the user is asked anything.

use crate::secret::Secret;
use crate::transport::part10::{
    self, EntryFormat, Features, ModifyRequest, VerifyRequest, confirm, feature,
};
use std::collections::VecDeque;

/// What the simulated user does when the reader asks for one PIN.
#[derive(Clone, Debug)]
pub enum PinpadInput {
    /// Types these digits, then presses OK.
    Type(Secret),
    /// Presses Cancel.
    Cancel,
    /// Walks away: the entry times out.
    Timeout,
}

impl PinpadInput {
    /// Types `digits` then OK. A keypad has only digits: anything else
    /// is a mistake in the test.
    pub fn digits(digits: &str) -> PinpadInput {
        assert!(
            digits.bytes().all(|b| b.is_ascii_digit()),
            "a pinpad only has digit keys"
        );
        PinpadInput::Type(Secret::from(digits))
    }
}

/// How a simulated pinpad reader is built.
#[derive(Clone, Debug)]
pub struct SimPinpad {
    /// The part 10 features it lists (tags, see [`feature`]).
    pub features: Vec<u8>,
    /// Its answer to `IFD_PIN_PROPERTIES` (§2.6.8).
    pub ifd_properties: Vec<u8>,
    /// Its answer to `GET_TLV_PROPERTIES` (§2.6.14).
    pub tlv_properties: Vec<u8>,
}

impl SimPinpad {
    /// A reader with a 2×16 display taking PINs of 4–15 digits on the OK
    /// key, that can verify and modify.
    pub fn full() -> SimPinpad {
        SimPinpad {
            features: vec![
                feature::VERIFY_PIN_DIRECT,
                feature::MODIFY_PIN_DIRECT,
                feature::IFD_PIN_PROPERTIES,
                feature::GET_TLV_PROPERTIES,
            ],
            // wLcdLayout 0x0210, bEntryValidationCondition 02, bTimeOut2 00.
            ifd_properties: vec![0x10, 0x02, 0x02, 0x00],
            // wLcdLayout, bEntryValidationCondition, bTimeOut2,
            // bMinPINSize 4, bMaxPINSize 15, wIdVendor, wIdProduct.
            tlv_properties: vec![
                0x01, 0x02, 0x10, 0x02, //
                0x02, 0x01, 0x02, //
                0x03, 0x01, 0x00, //
                0x06, 0x01, 0x04, //
                0x07, 0x01, 0x0F, //
                0x0B, 0x02, 0xE6, 0x04, //
                0x0C, 0x02, 0x34, 0x35,
            ],
        }
    }

    /// A reader that can only verify (no MODIFY_PIN_DIRECT, no properties).
    pub fn verify_only() -> SimPinpad {
        SimPinpad {
            features: vec![feature::VERIFY_PIN_DIRECT],
            ifd_properties: Vec::new(),
            tlv_properties: Vec::new(),
        }
    }
}

/// libccid's numbering of feature control codes: `SCARD_CTL_CODE(0x330000 + tag)`.
pub fn feature_code(tag: u8) -> u32 {
    0x4233_0000 + tag as u32
}

/// A pinpad reader's state: configuration, the user's script, and what
/// the host sent (for tests).
#[derive(Debug)]
pub(super) struct PinpadState {
    pub config: SimPinpad,
    pub script: VecDeque<PinpadInput>,
    /// Every control request: (code, bytes).
    pub requests: Vec<(u32, Vec<u8>)>,
}

impl PinpadState {
    pub(super) fn new(config: SimPinpad) -> Self {
        PinpadState {
            config,
            script: VecDeque::new(),
            requests: Vec::new(),
        }
    }
}

/// What the reader does with one control request: answer itself, or
/// build an APDU for the card.
pub(super) enum Action {
    Answer(Vec<u8>),
    Unsupported,
    SendToCard(zeroize::Zeroizing<Vec<u8>>),
}

fn sw(sw: u16) -> Action {
    Action::Answer(sw.to_be_bytes().to_vec())
}

impl PinpadState {
    pub(super) fn handle(&mut self, code: u32, data: &[u8]) -> Action {
        self.requests.push((code, data.to_vec()));
        let has = |tag| self.config.features.contains(&tag) && code == feature_code(tag);
        if code == part10::GET_FEATURE_REQUEST {
            let list = self
                .config
                .features
                .iter()
                .map(|t| (*t, feature_code(*t)))
                .collect();
            return Action::Answer(Features::new(list).to_bytes());
        }
        if has(feature::IFD_PIN_PROPERTIES) {
            return Action::Answer(self.config.ifd_properties.clone());
        }
        if has(feature::GET_TLV_PROPERTIES) {
            return Action::Answer(self.config.tlv_properties.clone());
        }
        if has(feature::VERIFY_PIN_DIRECT) {
            return self.verify(data);
        }
        if has(feature::MODIFY_PIN_DIRECT) {
            return self.modify(data);
        }
        Action::Unsupported
    }

    /// The next entry of the user: the typed PIN, or the reader's SW.
    fn entry(&mut self, f: &EntryFormat) -> Result<Secret, u16> {
        // Nobody scripted anything: nobody is typing.
        match self.script.pop_front().unwrap_or(PinpadInput::Timeout) {
            PinpadInput::Timeout => Err(part10::sw::TIMEOUT),
            PinpadInput::Cancel => Err(part10::sw::CANCELLED),
            PinpadInput::Type(pin) => {
                let n = pin.len();
                if n < f.min_len as usize || n > f.max_len as usize {
                    return Err(part10::sw::WRONG_LENGTH);
                }
                Ok(pin)
            }
        }
    }

    fn verify(&mut self, data: &[u8]) -> Action {
        let Ok(req) = VerifyRequest::parse(data) else {
            return sw(part10::sw::BAD_STRUCTURE);
        };
        let Some(mut apdu) = Apdu::new(&req.apdu) else {
            return sw(part10::sw::BAD_STRUCTURE);
        };
        if !supported(&req.format) {
            return sw(part10::sw::BAD_STRUCTURE);
        }
        let pin = match self.entry(&req.format) {
            Ok(p) => p,
            Err(code) => return sw(code),
        };
        match apdu.insert(&req.format, &pin, 0) {
            Ok(_) => Action::SendToCard(apdu.finish()),
            Err(code) => sw(code),
        }
    }

    fn modify(&mut self, data: &[u8]) -> Action {
        let Ok(req) = ModifyRequest::parse(data) else {
            return sw(part10::sw::BAD_STRUCTURE);
        };
        let Some(mut apdu) = Apdu::new(&req.apdu) else {
            return sw(part10::sw::BAD_STRUCTURE);
        };
        if !supported(&req.format) {
            return sw(part10::sw::BAD_STRUCTURE);
        }
        let f = &req.format;
        let l = &req.layout;
        let old = if l.confirm & confirm::CURRENT_PIN != 0 {
            match self.entry(f) {
                Ok(p) => Some(p),
                Err(code) => return sw(code),
            }
        } else {
            None
        };
        let new = match self.entry(f) {
            Ok(p) => p,
            Err(code) => return sw(code),
        };
        if l.confirm & confirm::CONFIRM_NEW != 0 {
            match self.entry(f) {
                Ok(again) if again == new => {}
                Ok(_) => return sw(part10::sw::NEW_PINS_DIFFER),
                Err(code) => return sw(code),
            }
        }
        let mut new_offset = l.offset_new as usize;
        if let Some(old) = &old {
            match apdu.insert(f, old, l.offset_old as usize) {
                // Variable length: what was inserted before the new PIN's
                // place moves it along.
                Ok(inserted) if l.offset_new >= l.offset_old => new_offset += inserted,
                Ok(_) => {}
                Err(code) => return sw(code),
            }
        }
        match apdu.insert(f, &new, new_offset) {
            Ok(_) => Action::SendToCard(apdu.finish()),
            Err(code) => sw(code),
        }
    }
}

/// Bits per digit of bmFormatString's PIN format type (bits 1-0):
/// binary and ASCII a byte, BCD a nibble; `None` for the reserved value.
fn digit_bits(f: &EntryFormat) -> Option<usize> {
    match f.format_string & 0x03 {
        part10::format::BINARY | part10::format::ASCII => Some(8),
        part10::format::BCD => Some(4),
        _ => None,
    }
}

/// Whether this reader can honour the structure's formatting fields: a
/// known PIN format, the PIN on a digit boundary inside its block (and on
/// a byte boundary when it is inserted with its own length).
fn supported(f: &EntryFormat) -> bool {
    let Some(unit) = digit_bits(f) else {
        return false;
    };
    let at = f.pin_position() * f.units_bits();
    let variable = f.block_size() == 0;
    at.is_multiple_of(unit) && (!variable || at.is_multiple_of(8))
}

/// A short APDU template being completed by the reader.
struct Apdu {
    header: [u8; 4],
    data: zeroize::Zeroizing<Vec<u8>>,
    le: Option<u8>,
}

impl Apdu {
    /// Reads `CLA INS P1 P2 [Lc data] [Le]` (abData).
    fn new(raw: &[u8]) -> Option<Apdu> {
        let (header, rest) = raw.split_first_chunk::<4>()?;
        let (data, le) = match rest {
            [] => (Vec::new(), None),
            [lc, body @ ..] if body.len() == *lc as usize => (body.to_vec(), None),
            [lc, body @ .., le] if body.len() == *lc as usize => (body.to_vec(), Some(*le)),
            _ => return None,
        };
        Some(Apdu {
            header: *header,
            data: zeroize::Zeroizing::new(data),
            le,
        })
    }

    /// Formats `pin` into the block that starts at byte `at` of the data
    /// per `f`; returns how many bytes were inserted (0 for a fixed block,
    /// which is overwritten in place).
    fn insert(&mut self, f: &EntryFormat, pin: &Secret, at: usize) -> Result<usize, u16> {
        let bad = Err(part10::sw::BAD_STRUCTURE);
        let Some(unit) = digit_bits(f) else {
            return bad;
        };
        // Each typed key as the format type says: the ASCII character, or
        // the digit's value (a byte for binary, a nibble for BCD).
        let ascii = f.format_string & 0x03 == part10::format::ASCII;
        let digit = |k: u8| if ascii { k } else { k.wrapping_sub(b'0') };
        let keys = pin.expose();
        let pin_bits = keys.len() * unit;
        // Where the PIN goes inside the block (bmFormatString bits 6-3).
        let offset = f.pin_position() * f.units_bits();
        if !offset.is_multiple_of(unit) {
            return bad;
        }
        let block = f.block_size();
        let inserted = if block == 0 {
            // Variable length: the encoded PIN is inserted, BCD packed two
            // digits a byte with F filling the last nibble.
            if !offset.is_multiple_of(8) {
                return bad;
            }
            let pos = at + offset / 8;
            if pos > self.data.len() {
                return bad;
            }
            let mut encoded = zeroize::Zeroizing::new(vec![0xFF; pin_bits.div_ceil(8)]);
            for (i, k) in keys.iter().enumerate() {
                set_bits(&mut encoded, i * unit, unit, u32::from(digit(*k)));
            }
            self.data.splice(pos..pos, encoded.iter().copied());
            encoded.len()
        } else {
            let (start, end) = (at * 8, (at + block) * 8);
            if end > self.data.len() * 8 {
                return bad;
            }
            let first = if f.format_string & part10::format::RIGHT_JUSTIFY != 0 {
                end.checked_sub(pin_bits).ok_or(part10::sw::WRONG_LENGTH)?
            } else {
                start + offset
            };
            if first < start + offset || first + pin_bits > end {
                return Err(part10::sw::WRONG_LENGTH);
            }
            for (i, k) in keys.iter().enumerate() {
                set_bits(&mut self.data, first + i * unit, unit, u32::from(digit(*k)));
            }
            0
        };
        // The PIN length field (bmPINBlockString bits 7-4, placed per
        // bmPINLengthFormat): the number of digits typed.
        let bits = f.length_bits();
        if bits > 0 {
            let pos = at * 8 + f.length_position_bits();
            if pos + bits > self.data.len() * 8 {
                return bad;
            }
            if keys.len() >= 1 << bits {
                return Err(part10::sw::WRONG_LENGTH);
            }
            set_bits(&mut self.data, pos, bits, keys.len() as u32);
        }
        Ok(inserted)
    }

    /// The APDU to send; Lc follows the data.
    fn finish(self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut out = zeroize::Zeroizing::new(self.header.to_vec());
        if !self.data.is_empty() {
            out.push(self.data.len() as u8);
            out.extend_from_slice(&self.data);
        }
        if let Some(le) = self.le {
            out.push(le);
        }
        out
    }
}

/// Writes the `n` low bits of `value` at bit offset `at` (bit 0 = the
/// most significant bit of the first byte).
fn set_bits(data: &mut [u8], at: usize, n: usize, value: u32) {
    for i in 0..n {
        let bit = (value >> (n - 1 - i)) & 1;
        let pos = at + i;
        let mask = 0x80u8 >> (pos % 8);
        if bit == 1 {
            data[pos / 8] |= mask;
        } else {
            data[pos / 8] &= !mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(format_string: u8, block_string: u8, length_format: u8) -> EntryFormat {
        EntryFormat {
            timeout: 0,
            timeout2: 0,
            format_string,
            block_string,
            length_format,
            min_len: 4,
            max_len: 12,
            validation: 2,
            messages: 1,
            lang: part10::LANG_EN_US,
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02X}")).collect()
    }

    #[test]
    fn formats_pins_like_a_reader() {
        let pin = Secret::from("1234");
        // ASCII, left-justified in an 8-byte FF block.
        let mut a = Apdu::new(&[
            0, 0x20, 0, 0x80, 8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ])
        .unwrap();
        a.insert(&format(0x82, 0x08, 0), &pin, 0).unwrap();
        assert_eq!(hex(&a.finish()), "002000800831323334FFFFFFFF");
        // Right-justified.
        let mut a = Apdu::new(&[
            0, 0x20, 0, 0x80, 8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ])
        .unwrap();
        a.insert(&format(0x86, 0x08, 0), &pin, 0).unwrap();
        assert_eq!(hex(&a.finish()), "0020008008FFFFFFFF31323334");
        // Variable length: Lc follows the PIN.
        let mut a = Apdu::new(&[0, 0x20, 0, 0x82, 0]).unwrap();
        assert_eq!(a.insert(&format(0x82, 0x00, 0), &pin, 0), Ok(4));
        assert_eq!(hex(&a.finish()), "002000820431323334");
        // Binary digits after a 4-bit length field in the first byte
        // (ISO 9564 format 2 style: 2L then the PIN from byte 1).
        let mut a = Apdu::new(&[
            0, 0x20, 0, 0x80, 8, 0x20, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ])
        .unwrap();
        a.insert(&format(0x88, 0x47, 0x04), &pin, 0).unwrap();
        assert_eq!(
            hex(&a.finish()),
            "0020008008240102030 4FFFFFF".replace(' ', "")
        );
        // A block too small for the PIN: wrong length.
        let mut a = Apdu::new(&[0, 0x20, 0, 0x80, 2, 0xFF, 0xFF]).unwrap();
        assert_eq!(a.insert(&format(0x82, 0x02, 0), &pin, 0), Err(0x6403));
        // The reserved PIN format type (bits 1-0 = 11) is not a format.
        let mut a = Apdu::new(&[0, 0x20, 0, 0x80, 0]).unwrap();
        assert_eq!(a.insert(&format(0x83, 0x00, 0), &pin, 0), Err(0x6B80));
        assert!(!supported(&format(0x83, 0x00, 0)));
    }

    fn ff_block(len: u8) -> Vec<u8> {
        let mut raw = vec![0, 0x20, 0, 0x01, len];
        raw.extend(std::iter::repeat_n(0xFF, len as usize));
        raw
    }

    #[test]
    fn formats_bcd_pins_like_a_reader() {
        // BCD in bytes, left-justified in a 4-byte FF block: the odd
        // digit's low nibble stays F.
        let mut a = Apdu::new(&ff_block(4)).unwrap();
        a.insert(&format(0x81, 0x04, 0), &Secret::from("12345"), 0)
            .unwrap();
        assert_eq!(hex(&a.finish()), "002000010412345FFF");
        // Right-justified: the last digit ends the block.
        let mut a = Apdu::new(&ff_block(4)).unwrap();
        a.insert(&format(0x85, 0x04, 0), &Secret::from("12345"), 0)
            .unwrap();
        assert_eq!(hex(&a.finish()), "0020000104FFF12345");
        // Variable length: packed, F-filled, Lc follows.
        let mut a = Apdu::new(&[0, 0x20, 0, 0x01, 0]).unwrap();
        assert_eq!(
            a.insert(&format(0x81, 0x00, 0), &Secret::from("12345"), 0),
            Ok(3)
        );
        assert_eq!(hex(&a.finish()), "002000010312345F");
        // Nine digits do not fit a 4-byte block.
        let mut a = Apdu::new(&ff_block(4)).unwrap();
        assert_eq!(
            a.insert(&format(0x81, 0x04, 0), &Secret::from("123456789"), 0),
            Err(0x6403)
        );
    }

    #[test]
    fn formats_iso_9564_format_2_like_a_reader() {
        // bmFormatString 41: bits, the PIN 8 bits in, BCD; bmPINBlockString
        // 48: a 4-bit length field, 8-byte block; bmPINLengthFormat 04: the
        // field 4 bits in, the low nibble of byte 0.
        let f2 = format(0x41, 0x48, 0x04);
        assert!(supported(&f2));
        let template = [
            0, 0x20, 0, 0x01, 8, 0x20, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        let mut a = Apdu::new(&template).unwrap();
        a.insert(&f2, &Secret::from("12345"), 0).unwrap();
        assert_eq!(hex(&a.finish()), "00200001082512345FFFFFFFFF");
        let mut a = Apdu::new(&template).unwrap();
        a.insert(&f2, &Secret::from("123456789012"), 0).unwrap();
        assert_eq!(hex(&a.finish()), "00200001082C123456789012FF");
        // 14 digits fill the block; 15 do not fit the 7 bytes after 2L.
        let mut a = Apdu::new(&template).unwrap();
        a.insert(&f2, &Secret::from("12345678901234"), 0).unwrap();
        assert_eq!(hex(&a.finish()), "00200001082E12345678901234");
        let mut a = Apdu::new(&template).unwrap();
        assert_eq!(
            a.insert(&f2, &Secret::from("123456789012345"), 0),
            Err(0x6403)
        );
        // Two blocks (CHANGE REFERENCE DATA): the second at byte 8, its
        // positions counted from there.
        let mut raw = vec![0, 0x24, 0, 0x01, 16];
        raw.extend_from_slice(&template[5..]);
        raw.extend_from_slice(&template[5..]);
        let mut a = Apdu::new(&raw).unwrap();
        a.insert(&f2, &Secret::from("1234"), 0).unwrap();
        a.insert(&f2, &Secret::from("987654"), 8).unwrap();
        assert_eq!(
            hex(&a.finish()),
            "002400011024 1234FFFFFFFFFF 26987654FFFFFFFF".replace(' ', "")
        );
        // A length field in bytes (bit 4): byte 1 of the block holds it.
        let mut a = Apdu::new(&ff_block(8)).unwrap();
        a.insert(&format(0x91, 0x88, 0x11), &Secret::from("1234"), 0)
            .unwrap();
        assert_eq!(hex(&a.finish()), "0020000108FF041234FFFFFFFF");
        // The PIN off a nibble boundary cannot be BCD; a variable-length
        // PIN off a byte boundary cannot be inserted.
        assert!(!supported(&format(0x19, 0x48, 0x04)));
        assert!(!supported(&format(0x21, 0x00, 0x00)));
    }
}
