//! PIN entry on a pinpad reader: which PC/SC part 10 features a reader
//! has, and the `PIN_VERIFY_STRUCTURE` / `PIN_MODIFY_STRUCTURE` each card
//! profile needs. The byte layout itself is in [`crate::transport::part10`];
//! the APDU templates come from [`crate::apdu::commands`].
//!
//! How each profile's PIN reaches the card (the reader fills it in):
//! - a padded value (PIV, SP 800-73-4 Part 2 §2.4.3): ASCII digits,
//!   left-justified in a block of its stored length pre-filled with its
//!   pad byte (PIV: 8 bytes of FF); 6–8 digits. Lc stays 08 (10 for
//!   CHANGE / RESET, two blocks, the new one at offset 8).
//! - a BCD value: digits packed two per byte (bmFormatString BCD),
//!   left-justified in a block of its stored length pre-filled with FF,
//!   the odd digit's low nibble left F; unpadded when it has no stored
//!   length (the reader inserts the packed digits and sets Lc).
//! - an ISO 9564-1 format 2 value (the Belgian eID, as OpenSC's
//!   `SC_PIN_ENCODING_GLP`): the 8-byte block `20 FF FF FF FF FF FF FF`;
//!   the reader writes the digits in BCD from byte 1 (position 8 in bits)
//!   and the number of digits in a 4-bit field at bit 4, the low nibble of
//!   byte 0 (bmFormatString 41, bmPINBlockString 48, bmPINLengthFormat
//!   04). CHANGE carries two such blocks, the new one at offset 8.
//! - an unpadded value (OpenPGP 3.4 §4.3 / §7.2.2): UTF-8 (the keypad types ASCII
//!   digits) as typed, no padding: the template has Lc = 00 and no data,
//!   block size 0, so the reader inserts the PIN(s) with their own length
//!   and sets Lc — the way GnuPG's scdaemon drives pinpads for this card.

use super::{Credential, Encoding, PinFormat};
use crate::apdu::{Command, commands};
use crate::error::Error;
use crate::transport::part10::{
    self, EntryFormat, Features, ModifyLayout, PinProperties, confirm, feature, validation,
};

/// What a reader offers for PIN entry, found once per connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pinpad {
    /// The part 10 features and their control codes (§2.3).
    pub features: Features,
    /// What the reader says about its display and PIN sizes.
    pub properties: PinProperties,
}

impl Pinpad {
    /// The reader can take a PIN on its keypad (`FEATURE_VERIFY_PIN_DIRECT`).
    pub fn can_verify(&self) -> bool {
        self.features.code(feature::VERIFY_PIN_DIRECT).is_some()
    }

    /// The reader can take a current and new PIN (`FEATURE_MODIFY_PIN_DIRECT`).
    pub fn can_modify(&self) -> bool {
        self.features.code(feature::MODIFY_PIN_DIRECT).is_some()
    }
}

/// Choices of ours in the structures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinpadOptions {
    /// bTimeOut: seconds the user has for the whole entry (0 = the
    /// reader's own default).
    pub timeout_secs: u8,
}

impl Default for PinpadOptions {
    fn default() -> Self {
        PinpadOptions { timeout_secs: 60 }
    }
}

/// A structure to hand to the reader, with the PIN lengths it allows
/// (the card's limits, narrowed to the reader's): what the reader's 6403
/// "wrong length" refers to.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// `PIN_VERIFY_STRUCTURE` or `PIN_MODIFY_STRUCTURE` (part 10 §2.5.2,
    /// §2.5.3).
    pub structure: Vec<u8>,
    /// Fewest PIN characters the reader will take.
    pub min_len: usize,
    /// Most PIN characters the reader will take.
    pub max_len: usize,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Request({} bytes, {}..={})",
            self.structure.len(),
            self.min_len,
            self.max_len
        )
    }
}

fn request(
    format: &EntryFormat,
    built: Result<Vec<u8>, part10::StructureError>,
) -> Result<Request, Error> {
    Ok(Request {
        structure: built.map_err(structure_error)?,
        min_len: format.min_len as usize,
        max_len: format.max_len as usize,
    })
}

/// How one PIN block is laid out for the reader: the part of the APDU
/// template it fills, and the three fields of part 10 §2.5.2 (the same in
/// §2.5.3) that tell the reader how to format what the user types into it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    /// The template bytes of the block (empty: variable length, the reader
    /// inserts the PIN with its own length and sets Lc).
    template: Vec<u8>,
    /// bmFormatString.
    format_string: u8,
    /// bmPINBlockString.
    block_string: u8,
    /// bmPINLengthFormat.
    length_format: u8,
}

/// bmPINBlockString bits 3-0 hold the block size: at most 15 bytes.
const MAX_BLOCK: usize = 0x0F;

/// The block of one PIN value, as its profile's encoding says (the reader
/// types digits; docs/cards.md `encoding`):
/// - ascii / utf8: the characters as typed, left-justified at offset 0 in
///   a block of the stored length pre-filled with the pad byte (PIV: 8
///   bytes of FF), or with no block and their own length when unpadded;
/// - bcd: two digits per byte at offset 0 in a block of the stored length
///   pre-filled with FF (the odd digit's low nibble stays F), or with no
///   block and their own length;
/// - format2: the 8-byte ISO 9564-1 format 2 block, control nibble 2 and
///   the PIN length in byte 0, the digits in BCD from byte 1, F filling.
///
/// The field values for BCD and format 2 are the ones OpenSC's
/// `part10_build_verify_pin_block` / `part10_build_modify_pin_block`
/// (`src/libopensc/reader-pcsc.c`) send for `SC_PIN_ENCODING_BCD` and
/// `SC_PIN_ENCODING_GLP`, except that a BCD block is sized by the stored
/// length (OpenSC leaves bmPINBlockString 0 there).
fn block(f: &PinFormat) -> Result<Block, Error> {
    let fixed = |pad: u8| {
        if f.stored_len > 0 {
            vec![pad; f.stored_len]
        } else {
            Vec::new()
        }
    };
    let b = match f.encoding {
        Encoding::Ascii | Encoding::Utf8 => {
            let template = match f.pad {
                Some(pad) => fixed(pad),
                None => Vec::new(),
            };
            Block {
                // §2.5.2 bmFormatString: bit 7 = 1, positions in bytes;
                // bits 6-3 = 0, the PIN at the start of the block; bit 2 =
                // 0, left-justified; bits 1-0 = 10, ASCII.
                format_string: part10::format::UNITS_BYTES | part10::format::ASCII,
                // §2.5.2 bmPINBlockString: bits 7-4 = 0, no PIN length
                // field; bits 3-0, the block size in bytes (0 = variable).
                block_string: template.len() as u8,
                // §2.5.2 bmPINLengthFormat: no length field to place.
                length_format: 0x00,
                template,
            }
        }
        Encoding::Bcd => {
            let template = fixed(0xFF);
            Block {
                // bmFormatString: bit 7 = 1, bytes; bits 6-3 = 0, the PIN
                // at the start of the block; bit 2 = 0, left-justified;
                // bits 1-0 = 01, BCD (OpenSC: SC_CCID_PIN_ENCODING_BCD |
                // SC_CCID_PIN_UNITS_BYTES = 81).
                format_string: part10::format::UNITS_BYTES | part10::format::BCD,
                // bmPINBlockString: no length field; the block is the
                // stored length, its FF template the padding.
                block_string: template.len() as u8,
                // bmPINLengthFormat: no length field.
                length_format: 0x00,
                template,
            }
        }
        Encoding::Format2 => Block {
            // The block with no digits typed yet, as OpenSC's sc_build_pin
            // makes it for the pinpad (a PIN of length 0): control nibble
            // 2, length nibble 0 (the reader writes it), F filling.
            template: vec![0x20, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            // bmFormatString 41: bit 7 = 0, positions in bits; bits 6-3 =
            // 1000, the PIN 8 bits (one byte) into the block, after the
            // 2L byte; bit 2 = 0, left-justified; bits 1-0 = 01, BCD
            // (OpenSC: SC_CCID_PIN_ENCODING_BCD | 0x08 << 3).
            format_string: (8 << 3) | part10::format::BCD,
            // bmPINBlockString 48: bits 7-4 = 4, a PIN length field of 4
            // bits; bits 3-0 = 8, the block is 8 bytes (OpenSC: 0x40 | 0x08).
            block_string: (4 << 4) | 8,
            // bmPINLengthFormat 04: bit 4 = 0, the position in bits; bits
            // 3-0 = 4, the length field 4 bits into the block: the low
            // nibble of byte 0 (OpenSC: 0x04).
            length_format: 0x04,
        },
    };
    if b.template.len() > MAX_BLOCK {
        return Err(Error::OperationNotSupported(format!(
            "PIN entry on the pinpad for a PIN block of {} bytes (a reader takes at most {MAX_BLOCK})",
            b.template.len()
        )));
    }
    Ok(b)
}

/// The common fields for entries of PINs with limits `min..=max` laid
/// out as `block` says.
fn entry_format(
    min: usize,
    max: usize,
    block: &Block,
    messages: u8,
    reader: &PinProperties,
    opts: &PinpadOptions,
) -> EntryFormat {
    // wPINMaxExtraDigit holds one byte each; the reader may be narrower.
    let mut max = max.min(u8::MAX as usize) as u8;
    if let Some(rmax) = reader.max_pin_size.filter(|m| *m > 0) {
        max = max.min(rmax);
    }
    let min = (min.min(u8::MAX as usize) as u8).min(max);
    // End the entry with the OK key; also when the maximum is reached if
    // the length is fixed (GnuPG does the same), as far as the reader
    // supports either.
    let wanted = if min == max {
        validation::KEY_PRESSED | validation::MAX_SIZE_REACHED
    } else {
        validation::KEY_PRESSED
    };
    let condition = match reader.entry_validation {
        Some(supported) if supported & wanted != 0 => supported & wanted,
        Some(supported) if supported != 0 => supported,
        _ => wanted,
    };
    EntryFormat {
        timeout: opts.timeout_secs,
        timeout2: 0,
        // How the typed PIN is formatted into its block: see [`block`].
        format_string: block.format_string,
        block_string: block.block_string,
        length_format: block.length_format,
        min_len: min,
        max_len: max,
        validation: condition,
        // With no display the reader shows nothing (OpenSC does the same).
        messages: if reader.lcd_layout == Some(0) {
            0
        } else {
            messages
        },
        lang: part10::LANG_EN_US,
    }
}

fn structure_error(e: part10::StructureError) -> Error {
    Error::ReaderError(format!("cannot build the pinpad request: {e}"))
}

/// `PIN_VERIFY_STRUCTURE` for VERIFY of `cred` (ISO 7816-4 §11.6.6) with
/// the PIN typed on the reader.
pub fn verify(
    cred: &Credential,
    reader: &PinProperties,
    opts: &PinpadOptions,
) -> Result<Request, Error> {
    let f = &cred.format;
    let b = block(f)?;
    let template = commands::verify(cred.reference, &b.template);
    let format = entry_format(f.min_len, f.max_len, &b, 1, reader, opts);
    request(&format, part10::verify_structure(&format, &template))
}

/// Two blocks for one MODIFY: the first entry's, then the new PIN's.
fn modify(
    first: &PinFormat,
    new: &PinFormat,
    confirm_flags: u8,
    messages: u8,
    template: impl FnOnce(&[u8], &[u8]) -> Command,
    reader: &PinProperties,
    opts: &PinpadOptions,
) -> Result<Request, Error> {
    // One layout and one min/max for every entry of a MODIFY (§2.5.3 has
    // one bmFormatString, bmPINBlockString and bmPINLengthFormat): the
    // profiles use the same encoding for both values, and the card
    // checks each value's own limits.
    let first_block = block(first)?;
    let new_block = block(new)?;
    let same = |b: &Block| (b.format_string, b.block_string, b.length_format);
    if same(&first_block) != same(&new_block) {
        return Err(Error::OperationNotSupported(
            "PIN entry on the pinpad for two values encoded differently".into(),
        ));
    }
    let template = template(&first_block.template, &new_block.template);
    let format = entry_format(
        first.min_len.min(new.min_len),
        first.max_len.max(new.max_len),
        &new_block,
        messages,
        reader,
        opts,
    );
    // bInsertionOffsetOld / bInsertionOffsetNew (§2.5.3), in bytes from
    // the start of the data field: the first block, then the new one
    // (0 for both when variable: the reader puts the new PIN after the
    // current one).
    let layout = ModifyLayout {
        offset_old: 0,
        offset_new: first_block.template.len() as u8,
        confirm: confirm_flags,
    };
    request(
        &format,
        part10::modify_structure(&format, &layout, &template),
    )
}

/// `PIN_MODIFY_STRUCTURE` for CHANGE REFERENCE DATA of `cred` (ISO 7816-4
/// §11.6.7): the current PIN, the new PIN and its confirmation are typed.
pub fn change(
    cred: &Credential,
    reader: &PinProperties,
    opts: &PinpadOptions,
) -> Result<Request, Error> {
    let reference = cred.change_reference;
    modify(
        &cred.format,
        &cred.format,
        confirm::CURRENT_PIN | confirm::CONFIRM_NEW,
        3,
        |old, new| commands::change_reference_data(reference, old, new),
        reader,
        opts,
    )
}

/// `PIN_MODIFY_STRUCTURE` for RESET RETRY COUNTER P1=00 (ISO 7816-4
/// §11.6.10): the resetting code `so` (PIV PUK, OpenPGP reset code) in
/// place of the current PIN, then the new PIN of `cred` twice.
pub fn unblock(
    so: &Credential,
    cred: &Credential,
    reader: &PinProperties,
    opts: &PinpadOptions,
) -> Result<Request, Error> {
    let reference = cred.change_reference;
    modify(
        &so.format,
        &cred.format,
        confirm::CURRENT_PIN | confirm::CONFIRM_NEW,
        3,
        |code, new| commands::reset_retry_counter(reference, code, new),
        reader,
        opts,
    )
}

/// `PIN_MODIFY_STRUCTURE` for RESET RETRY COUNTER P1=02 after the security
/// officer was verified (OpenPGP 3.4 §7.2.4): the new PIN, twice.
pub fn reset_after_so(
    cred: &Credential,
    reader: &PinProperties,
    opts: &PinpadOptions,
) -> Result<Request, Error> {
    let f = &cred.format;
    let b = block(f)?;
    let template = commands::reset_retry_counter_after_so(cred.change_reference, &b.template);
    let format = entry_format(f.min_len, f.max_len, &b, 2, reader, opts);
    let layout = ModifyLayout {
        offset_old: 0,
        offset_new: 0,
        confirm: confirm::CONFIRM_NEW,
    };
    // Messages: "enter new PIN", "confirm new PIN".
    request(
        &format,
        part10::modify_structure(&format, &layout, &template),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::{openpgp, piv};

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02X}")).collect()
    }

    fn opts() -> PinpadOptions {
        PinpadOptions { timeout_secs: 0 }
    }

    #[test]
    fn piv_verify_is_gnupg_s_fixed_length_block() {
        // bTimeOut 00, bTimeOut2 00, bmFormatString 82, bmPINBlockString
        // 08, bmPINLengthFormat 00, wPINMaxExtraDigit 0806 (min 6, max 8),
        // key pressed, one message, 0409, bMsgIndex 00, no prologue,
        // ulDataLength 13, VERIFY 00 20 00 80 08 FF*8.
        let s = verify(&piv::pin_credential(), &PinProperties::default(), &opts())
            .unwrap()
            .structure;
        assert_eq!(
            hex(&s),
            "000082080008060201090400000000\
             0D000000\
             0020008008FFFFFFFFFFFFFFFF"
        );
    }

    #[test]
    fn piv_change_and_unblock_carry_two_padded_blocks() {
        let props = PinProperties::default();
        let s = change(&piv::pin_credential(), &props, &opts())
            .unwrap()
            .structure;
        assert_eq!(
            hex(&s),
            "0000820800000808060302030904000102000000\
             15000000\
             0024008010FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
        );
        // RESET RETRY COUNTER 00 2C 00 80: PUK block, then the new PIN's.
        let s = unblock(
            &piv::puk_credential(),
            &piv::pin_credential(),
            &props,
            &opts(),
        )
        .unwrap();
        assert_eq!((s.min_len, s.max_len), (6, 8));
        assert_eq!(
            hex(&s.structure),
            "0000820800000808060302030904000102000000\
             15000000\
             002C008010FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
        );
    }

    #[test]
    fn openpgp_structures_are_variable_length() {
        let token = openpgp::build_token(None, None);
        let user = &token.pin("user").unwrap().credential;
        let admin = &token.pin("admin").unwrap().credential;
        let props = PinProperties::default();
        // VERIFY 00 20 00 82 Lc=00: block 0, min 6, max 127.
        let s = verify(user, &props, &opts()).unwrap().structure;
        assert_eq!(
            hex(&s),
            "0000820000 7F06 0201 0904 00 000000 05000000 0020008200".replace(' ', "")
        );
        // VERIFY 00 20 00 83 for PW3: min 8.
        let s = verify(admin, &props, &opts()).unwrap().structure;
        assert!(hex(&s).starts_with("00008200007F0802"), "{}", hex(&s));
        assert!(hex(&s).ends_with("0020008300"));
        // CHANGE REFERENCE DATA 00 24 00 81 (PW1), Lc 00, both offsets 0.
        let s = change(user, &props, &opts()).unwrap().structure;
        assert_eq!(
            hex(&s),
            "0000820000 00 00 7F06 03 02 03 0904 000102 000000 05000000 0024008100"
                .replace(' ', "")
        );
        // RESET RETRY COUNTER P1=02 after PW3: new PIN twice.
        let s = reset_after_so(user, &props, &opts()).unwrap().structure;
        assert_eq!(
            hex(&s),
            "0000820000 00 00 7F06 01 02 02 0904 000102 000000 05000000 002C028100"
                .replace(' ', "")
        );
    }

    fn beid_pin() -> Credential {
        let token = crate::card::ProfileSet::builtin()
            .offline_token("beid")
            .unwrap();
        token.pin("pin").unwrap().credential.clone()
    }

    #[test]
    fn beid_structures_are_iso_9564_format_2_as_opensc_sends_them() {
        let props = PinProperties::default();
        let pin = beid_pin();
        // bTimeOut 00, bTimeOut2 00; bmFormatString 41 (bits, the PIN at
        // bit 8, left, BCD); bmPINBlockString 48 (4-bit length field,
        // 8-byte block); bmPINLengthFormat 04 (the length at bit 4, in
        // bits); wPINMaxExtraDigit 0C 04 (max 12, min 4); key pressed, one
        // message, 0409, bMsgIndex 00, no prologue; ulDataLength 13;
        // VERIFY 00 20 00 01 08 20 FF*7.
        let r = verify(&pin, &props, &opts()).unwrap();
        assert_eq!((r.min_len, r.max_len), (4, 12));
        assert_eq!(
            hex(&r.structure),
            "0000 41 48 04 0C04 02 01 0904 00 000000 0D000000 \
             0020000108 20FFFFFFFFFFFFFF"
                .replace(' ', "")
        );
        // CHANGE REFERENCE DATA 00 24 00 01 10: the current block at 0,
        // the new one at 8, each 20 FF*7; bConfirmPIN 03, three messages.
        let s = change(&pin, &props, &opts()).unwrap().structure;
        assert_eq!(
            hex(&s),
            "0000 41 48 04 00 08 0C04 03 02 03 0904 000102 000000 15000000 \
             0024000110 20FFFFFFFFFFFFFF 20FFFFFFFFFFFFFF"
                .replace(' ', "")
        );
    }

    #[test]
    fn bcd_structures_fill_the_stored_length_with_ff() {
        let props = PinProperties::default();
        let mut pin = beid_pin();
        pin.format.encoding = Encoding::Bcd;
        pin.format.stored_len = 6;
        // bmFormatString 81 (bytes, the PIN at 0, left, BCD),
        // bmPINBlockString 06 (no length field, 6-byte block),
        // bmPINLengthFormat 00; VERIFY 00 20 00 01 06 FF*6.
        let s = verify(&pin, &props, &opts()).unwrap().structure;
        assert_eq!(
            hex(&s),
            "0000 81 06 00 0C04 02 01 0904 00 000000 0B000000 0020000106 FFFFFFFFFFFF"
                .replace(' ', "")
        );
        // Two blocks: the new one at offset 6.
        let s = change(&pin, &props, &opts()).unwrap().structure;
        assert_eq!(
            hex(&s),
            "0000 81 06 00 00 06 0C04 03 02 03 0904 000102 000000 11000000 \
             002400010C FFFFFFFFFFFF FFFFFFFFFFFF"
                .replace(' ', "")
        );
        // No stored length: variable, the reader packs the digits and sets Lc.
        pin.format.stored_len = 0;
        let s = verify(&pin, &props, &opts()).unwrap().structure;
        assert_eq!(hex(&s[2..5]), "810000");
        assert!(hex(&s).ends_with("0020000100"));
        // Values encoded differently cannot share one MODIFY; a block
        // longer than 15 bytes does not fit bmPINBlockString.
        let so = beid_pin();
        assert!(matches!(
            unblock(&so, &pin, &props, &opts()),
            Err(Error::OperationNotSupported(_))
        ));
        pin.format.stored_len = 16;
        assert!(matches!(
            verify(&pin, &props, &opts()),
            Err(Error::OperationNotSupported(_))
        ));
    }

    #[test]
    fn reader_properties_narrow_the_entry() {
        let token = openpgp::build_token(None, None);
        let user = &token.pin("user").unwrap().credential;
        // A reader that takes at most 12 digits, has no display, and
        // validates only on the OK key.
        let props = PinProperties {
            max_pin_size: Some(12),
            lcd_layout: Some(0),
            entry_validation: Some(validation::KEY_PRESSED),
            ..PinProperties::default()
        };
        let r = verify(user, &props, &PinpadOptions { timeout_secs: 30 }).unwrap();
        assert_eq!((r.min_len, r.max_len), (6, 12));
        let s = r.structure;
        // bTimeOut 1E, max 0C min 06, validation 02, no message.
        assert_eq!(hex(&s[..9]), "1E00820000 0C06 02 00".replace(' ', ""));
        // The PIV PUK: fixed length 8 → validation also on max size when
        // the reader supports it.
        let props = PinProperties {
            entry_validation: Some(0x07),
            ..PinProperties::default()
        };
        let s = verify(&piv::puk_credential(), &props, &opts())
            .unwrap()
            .structure;
        assert_eq!(hex(&s[5..8]), "080803");
    }
}
