//! PC/SC part 10 ("IFDs with Secure PIN Entry Capabilities", v2.02.09):
//! reader feature discovery, reader PIN properties, and the
//! `PIN_VERIFY_STRUCTURE` / `PIN_MODIFY_STRUCTURE` a pinpad reader takes.
//!
//! Everything here is bytes in, bytes out: which structure a card profile
//! needs is decided in `crate::card::pinpad`. The parsers of the two
//! structures exist for the reader side, i.e. the simulated pinpad
//! (`crate::transport::sim`), which unpacks them exactly as a reader does.
//!
//! Byte order: the feature list gives control codes big-endian (§2.3);
//! every multi-byte field of the structures and of the TLV properties is
//! little-endian (the CCID wire order, §2.5.2 / §2.5.3 / §2.6.14).

use crate::apdu::Command;

/// `CM_IOCTL_GET_FEATURE_REQUEST` = `SCARD_CTL_CODE(3400)` (§2.2);
/// 0x42000D48 with pcsc-lite.
pub const GET_FEATURE_REQUEST: u32 = pcsc::ctl_code(3400) as u32;

/// Feature tags of the `GET_FEATURE_REQUEST` answer (§2.3, table 2-2).
pub mod feature {
    /// `FEATURE_VERIFY_PIN_START`: PIN verification in two steps.
    pub const VERIFY_PIN_START: u8 = 0x01;
    /// `FEATURE_VERIFY_PIN_FINISH`: ends a two-step verification.
    pub const VERIFY_PIN_FINISH: u8 = 0x02;
    /// `FEATURE_MODIFY_PIN_START`: PIN modification in two steps.
    pub const MODIFY_PIN_START: u8 = 0x03;
    /// `FEATURE_MODIFY_PIN_FINISH`: ends a two-step modification.
    pub const MODIFY_PIN_FINISH: u8 = 0x04;
    /// `FEATURE_VERIFY_PIN_DIRECT`: takes a `PIN_VERIFY_STRUCTURE` (§2.5.2).
    pub const VERIFY_PIN_DIRECT: u8 = 0x06;
    /// `FEATURE_MODIFY_PIN_DIRECT`: takes a `PIN_MODIFY_STRUCTURE` (§2.5.3).
    pub const MODIFY_PIN_DIRECT: u8 = 0x07;
    /// `FEATURE_IFD_PIN_PROPERTIES`: answers a `PIN_PROPERTIES_STRUCTURE` (§2.6.8).
    pub const IFD_PIN_PROPERTIES: u8 = 0x0A;
    /// `FEATURE_GET_TLV_PROPERTIES`: answers TLV reader properties (§2.6.14).
    pub const GET_TLV_PROPERTIES: u8 = 0x12;
}

/// Tags of the `GET_TLV_PROPERTIES` answer (§2.6.14).
pub mod property {
    /// wLcdLayout: display lines and characters, 0 = no display.
    pub const W_LCD_LAYOUT: u8 = 0x01;
    /// bEntryValidationCondition: the entry end conditions supported.
    pub const B_ENTRY_VALIDATION_CONDITION: u8 = 0x02;
    /// bTimeOut2: the inter-key timeout, seconds.
    pub const B_TIME_OUT2: u8 = 0x03;
    /// wLcdMaxCharacters: characters per display line.
    pub const W_LCD_MAX_CHARACTERS: u8 = 0x04;
    /// wLcdMaxLines: display lines.
    pub const W_LCD_MAX_LINES: u8 = 0x05;
    /// bMinPINSize: fewest digits the reader accepts.
    pub const B_MIN_PIN_SIZE: u8 = 0x06;
    /// bMaxPINSize: most digits the reader accepts.
    pub const B_MAX_PIN_SIZE: u8 = 0x07;
    /// sFirmwareID: the reader firmware's name, as text.
    pub const S_FIRMWARE_ID: u8 = 0x08;
    /// wIdVendor: the reader's USB vendor id.
    pub const W_ID_VENDOR: u8 = 0x0B;
    /// wIdProduct: the reader's USB product id.
    pub const W_ID_PRODUCT: u8 = 0x0C;
}

/// Status words a pinpad reader answers itself, without the card (§2.5.2,
/// "PIN_VERIFY / PIN_MODIFY result").
pub mod sw {
    /// The user did not finish the entry in time.
    pub const TIMEOUT: u16 = 0x6400;
    /// The user pressed Cancel.
    pub const CANCELLED: u16 = 0x6401;
    /// The new PIN and its confirmation differ.
    pub const NEW_PINS_DIFFER: u16 = 0x6402;
    /// The PIN entered is outside the allowed length (wPINMaxExtraDigit).
    pub const WRONG_LENGTH: u16 = 0x6403;
    /// The reader rejected the structure ("wrong data in the buffer").
    pub const BAD_STRUCTURE: u16 = 0x6B80;
}

/// bEntryValidationCondition bits (§2.5.2).
pub mod validation {
    /// The entry ends when the maximum size is reached.
    pub const MAX_SIZE_REACHED: u8 = 0x01;
    /// The entry ends when the user presses the validation key.
    pub const KEY_PRESSED: u8 = 0x02;
    /// The entry ends when the timeout elapses.
    pub const TIMEOUT: u8 = 0x04;
}

/// bmFormatString bits (§2.5.2; CCID 1.1 §6.1.11.4).
pub mod format {
    /// Bit 7: positions are in bytes (else in bits).
    pub const UNITS_BYTES: u8 = 0x80;
    /// Bit 2: the PIN is right-justified in its block (else left).
    pub const RIGHT_JUSTIFY: u8 = 0x04;
    /// Bits 1-0, PIN format type: binary, one digit per byte.
    pub const BINARY: u8 = 0x00;
    /// Bits 1-0, PIN format type: BCD, two digits per byte.
    pub const BCD: u8 = 0x01;
    /// Bits 1-0, PIN format type: ASCII, one character per byte.
    pub const ASCII: u8 = 0x02;
}

/// bConfirmPIN bits (§2.5.3).
pub mod confirm {
    /// The new PIN is entered twice.
    pub const CONFIRM_NEW: u8 = 0x01;
    /// The current PIN is entered first.
    pub const CURRENT_PIN: u8 = 0x02;
}

/// US English, the language most readers display (§2.5.2 wLangId).
pub const LANG_EN_US: u16 = 0x0409;

/// Size of `PIN_VERIFY_STRUCTURE` before abData (§2.5.2).
pub const VERIFY_HEADER_LEN: usize = 19;
/// Size of `PIN_MODIFY_STRUCTURE` before abData (§2.5.3).
pub const MODIFY_HEADER_LEN: usize = 24;

/// The control codes a reader announced for each feature (§2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features(Vec<(u8, u32)>);

impl Features {
    /// Parses the `GET_FEATURE_REQUEST` answer: a list of
    /// `tag(1) len(1)=4 control-code(4, big-endian)` (§2.3). A truncated or
    /// malformed entry ends the list (what came before it is kept).
    pub fn parse(data: &[u8]) -> Features {
        let mut out = Vec::new();
        let mut rest = data;
        while let [tag, 4, a, b, c, d, tail @ ..] = rest {
            out.push((*tag, u32::from_be_bytes([*a, *b, *c, *d])));
            rest = tail;
        }
        Features(out)
    }

    /// Serializes the list as a reader answers it (used by the simulation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.len() * 6);
        for (tag, code) in &self.0 {
            out.push(*tag);
            out.push(4);
            out.extend_from_slice(&code.to_be_bytes());
        }
        out
    }

    /// A list of `(feature tag, control code)` pairs, as a simulated
    /// reader announces them.
    pub fn new(entries: Vec<(u8, u32)>) -> Features {
        Features(entries)
    }

    /// The control code of a feature, if the reader has it.
    pub fn code(&self, tag: u8) -> Option<u32> {
        self.0.iter().find(|(t, _)| *t == tag).map(|(_, c)| *c)
    }

    /// The reader announced no feature (no part 10 support).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a reader says about its PIN entry (`IFD_PIN_PROPERTIES`, §2.6.8,
/// and/or `GET_TLV_PROPERTIES`, §2.6.14). Absent fields were not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinProperties {
    /// XXYY: XX lines of YY characters; 0 = no display.
    pub lcd_layout: Option<u16>,
    /// The bEntryValidationCondition values the reader supports.
    pub entry_validation: Option<u8>,
    /// The reader's inter-key timeout, seconds (0 = its default).
    pub timeout2: Option<u8>,
    /// bMinPINSize: fewest digits the reader accepts.
    pub min_pin_size: Option<u8>,
    /// bMaxPINSize: most digits the reader accepts.
    pub max_pin_size: Option<u8>,
    /// wIdVendor: USB vendor id.
    pub vendor: Option<u16>,
    /// wIdProduct: USB product id.
    pub product: Option<u16>,
    /// sFirmwareID: the firmware's name.
    pub firmware: Option<String>,
}

impl PinProperties {
    /// Parses `PIN_PROPERTIES_STRUCTURE` (§2.6.8): wLcdLayout (LE),
    /// bEntryValidationCondition, bTimeOut2. `None` when shorter than 4 bytes.
    pub fn parse_ifd(data: &[u8]) -> Option<PinProperties> {
        let [l0, l1, validation, timeout2, ..] = *data else {
            return None;
        };
        Some(PinProperties {
            lcd_layout: Some(u16::from_le_bytes([l0, l1])),
            entry_validation: Some(validation),
            timeout2: Some(timeout2),
            ..PinProperties::default()
        })
    }

    /// Parses the `GET_TLV_PROPERTIES` answer (§2.6.14): `tag(1) len(1)
    /// value(len)`, integers little-endian. Unknown tags are skipped; a
    /// truncated entry ends the list.
    pub fn parse_tlv(data: &[u8]) -> PinProperties {
        let mut p = PinProperties::default();
        let mut rest = data;
        while let [tag, len, tail @ ..] = rest {
            let len = *len as usize;
            if tail.len() < len {
                break;
            }
            let (v, tail) = tail.split_at(len);
            let u8v = v.first().copied().filter(|_| len == 1);
            let u16v = (len == 2).then(|| u16::from_le_bytes([v[0], v[1]]));
            match *tag {
                property::W_LCD_LAYOUT => p.lcd_layout = u16v,
                property::B_ENTRY_VALIDATION_CONDITION => p.entry_validation = u8v,
                property::B_TIME_OUT2 => p.timeout2 = u8v,
                property::B_MIN_PIN_SIZE => p.min_pin_size = u8v,
                property::B_MAX_PIN_SIZE => p.max_pin_size = u8v,
                property::W_ID_VENDOR => p.vendor = u16v,
                property::W_ID_PRODUCT => p.product = u16v,
                property::S_FIRMWARE_ID => {
                    p.firmware = Some(String::from_utf8_lossy(v).into_owned())
                }
                _ => {}
            }
            rest = tail;
        }
        p
    }

    /// Fields of `other` fill the ones missing here.
    pub fn merge(&mut self, other: PinProperties) {
        let PinProperties {
            lcd_layout,
            entry_validation,
            timeout2,
            min_pin_size,
            max_pin_size,
            vendor,
            product,
            firmware,
        } = other;
        self.lcd_layout = self.lcd_layout.or(lcd_layout);
        self.entry_validation = self.entry_validation.or(entry_validation);
        self.timeout2 = self.timeout2.or(timeout2);
        self.min_pin_size = self.min_pin_size.or(min_pin_size);
        self.max_pin_size = self.max_pin_size.or(max_pin_size);
        self.vendor = self.vendor.or(vendor);
        self.product = self.product.or(product);
        self.firmware = self.firmware.take().or(firmware);
    }

    /// The reader has a display (wLcdLayout ≠ 0).
    pub fn has_display(&self) -> bool {
        self.lcd_layout.is_some_and(|l| l != 0)
    }
}

/// The fields common to both structures that describe how the reader
/// turns what the user types into APDU bytes, and when an entry ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryFormat {
    /// bTimeOut: seconds for the whole entry (0 = the reader's default).
    pub timeout: u8,
    /// bTimeOut2: seconds after the first key (0 = the reader's default).
    pub timeout2: u8,
    /// bmFormatString.
    pub format_string: u8,
    /// bmPINBlockString: bits 7-4 size in bits of a PIN length field in
    /// the APDU (0 = none), bits 3-0 PIN block size in bytes (0 = the PIN
    /// is inserted with its own length and Lc follows it).
    pub block_string: u8,
    /// bmPINLengthFormat: bit 4 units (bytes), bits 3-0 position of the
    /// PIN length field.
    pub length_format: u8,
    /// Minimum PIN size in digits (wPINMaxExtraDigit = 0xXXYY, XX).
    pub min_len: u8,
    /// Maximum PIN size in digits (wPINMaxExtraDigit = 0xXXYY, YY).
    pub max_len: u8,
    /// bEntryValidationCondition.
    pub validation: u8,
    /// bNumberMessage.
    pub messages: u8,
    /// wLangId.
    pub lang: u16,
}

impl EntryFormat {
    /// PIN block size in bytes (0 = variable length).
    pub fn block_size(&self) -> usize {
        (self.block_string & 0x0F) as usize
    }

    /// Size of the PIN length field in bits (0 = none).
    pub fn length_bits(&self) -> usize {
        (self.block_string >> 4) as usize
    }

    /// bits 6-3 of bmFormatString: where the PIN goes, from the start of
    /// the APDU's data field, in units of [`EntryFormat::units_bits`].
    pub fn pin_position(&self) -> usize {
        ((self.format_string >> 3) & 0x0F) as usize
    }

    /// 8 when positions are in bytes, 1 when in bits.
    pub fn units_bits(&self) -> usize {
        if self.format_string & format::UNITS_BYTES != 0 {
            8
        } else {
            1
        }
    }

    /// Where the PIN length field goes, in bits from the start of the data.
    pub fn length_position_bits(&self) -> usize {
        let units = if self.length_format & 0x10 != 0 { 8 } else { 1 };
        (self.length_format & 0x0F) as usize * units
    }

    fn max_extra_digit(&self) -> [u8; 2] {
        // 0xXXYY little-endian: YY (maximum) first.
        u16::from_be_bytes([self.min_len, self.max_len]).to_le_bytes()
    }
}

/// Why a structure could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StructureError {
    /// The template's data does not fit a short APDU (Lc is one byte).
    #[error("the APDU template must be a short APDU with at most 255 data bytes")]
    TemplateTooLong,
    /// The bytes are shorter than the header, or ulDataLength does not
    /// match the abData that follows.
    #[error("the structure is truncated or its ulDataLength is wrong")]
    Malformed,
}

/// abData: the APDU the reader completes, always with an Lc byte (the
/// reader rewrites it when the PIN has a variable length).
fn ab_data(template: &Command) -> Result<Vec<u8>, StructureError> {
    let data = template.data.as_slice();
    let lc = u8::try_from(data.len()).map_err(|_| StructureError::TemplateTooLong)?;
    let mut out = vec![template.cla, template.ins, template.p1, template.p2, lc];
    out.extend_from_slice(data);
    Ok(out)
}

/// Builds `PIN_VERIFY_STRUCTURE` (PC/SC part 10 §2.5.2; CCID 1.1
/// §6.1.11.4 "PIN Verification Data Structure"):
///
/// | offset | field | size |
/// |---|---|---|
/// | 0 | bTimeOut | 1 |
/// | 1 | bTimeOut2 | 1 |
/// | 2 | bmFormatString | 1 |
/// | 3 | bmPINBlockString | 1 |
/// | 4 | bmPINLengthFormat | 1 |
/// | 5 | wPINMaxExtraDigit (LE) | 2 |
/// | 7 | bEntryValidationCondition | 1 |
/// | 8 | bNumberMessage | 1 |
/// | 9 | wLangId (LE) | 2 |
/// | 11 | bMsgIndex | 1 |
/// | 12 | bTeoPrologue | 3 |
/// | 15 | ulDataLength (LE) | 4 |
/// | 19 | abData | ulDataLength |
///
/// `template` is the command with the PIN block's padding in place (or no
/// data for a variable-length PIN).
pub fn verify_structure(f: &EntryFormat, template: &Command) -> Result<Vec<u8>, StructureError> {
    let apdu = ab_data(template)?;
    let mut out = Vec::with_capacity(VERIFY_HEADER_LEN + apdu.len());
    out.extend_from_slice(&[
        f.timeout,
        f.timeout2,
        f.format_string,
        f.block_string,
        f.length_format,
    ]);
    out.extend_from_slice(&f.max_extra_digit());
    out.push(f.validation);
    out.push(f.messages);
    out.extend_from_slice(&f.lang.to_le_bytes());
    out.push(0x00); // bMsgIndex: "enter PIN"
    out.extend_from_slice(&[0, 0, 0]); // bTeoPrologue: T=1 only, filled by the driver
    out.extend_from_slice(&(apdu.len() as u32).to_le_bytes());
    out.extend_from_slice(&apdu);
    Ok(out)
}

/// The PIN-specific fields of `PIN_MODIFY_STRUCTURE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModifyLayout {
    /// bInsertionOffsetOld: where the current PIN block goes, in bytes
    /// from the start of the data field.
    pub offset_old: u8,
    /// bInsertionOffsetNew: where the new PIN block goes, likewise.
    pub offset_new: u8,
    /// bConfirmPIN (see [`confirm`]).
    pub confirm: u8,
}

/// Builds `PIN_MODIFY_STRUCTURE` (PC/SC part 10 §2.5.3; CCID 1.1
/// §6.1.11.7 "PIN Modification Data Structure"):
///
/// | offset | field | size |
/// |---|---|---|
/// | 0 | bTimeOut | 1 |
/// | 1 | bTimeOut2 | 1 |
/// | 2 | bmFormatString | 1 |
/// | 3 | bmPINBlockString | 1 |
/// | 4 | bmPINLengthFormat | 1 |
/// | 5 | bInsertionOffsetOld | 1 |
/// | 6 | bInsertionOffsetNew | 1 |
/// | 7 | wPINMaxExtraDigit (LE) | 2 |
/// | 9 | bConfirmPIN | 1 |
/// | 10 | bEntryValidationCondition | 1 |
/// | 11 | bNumberMessage | 1 |
/// | 12 | wLangId (LE) | 2 |
/// | 14 | bMsgIndex1, bMsgIndex2, bMsgIndex3 | 3 |
/// | 17 | bTeoPrologue | 3 |
/// | 20 | ulDataLength (LE) | 4 |
/// | 24 | abData | ulDataLength |
pub fn modify_structure(
    f: &EntryFormat,
    layout: &ModifyLayout,
    template: &Command,
) -> Result<Vec<u8>, StructureError> {
    let apdu = ab_data(template)?;
    let mut out = Vec::with_capacity(MODIFY_HEADER_LEN + apdu.len());
    out.extend_from_slice(&[
        f.timeout,
        f.timeout2,
        f.format_string,
        f.block_string,
        f.length_format,
        layout.offset_old,
        layout.offset_new,
    ]);
    out.extend_from_slice(&f.max_extra_digit());
    out.push(layout.confirm);
    out.push(f.validation);
    out.push(f.messages);
    out.extend_from_slice(&f.lang.to_le_bytes());
    // bMsgIndex1..3: "enter current PIN", "enter new PIN", "confirm new PIN".
    out.extend_from_slice(&[0x00, 0x01, 0x02]);
    out.extend_from_slice(&[0, 0, 0]); // bTeoPrologue
    out.extend_from_slice(&(apdu.len() as u32).to_le_bytes());
    out.extend_from_slice(&apdu);
    Ok(out)
}

/// A `PIN_VERIFY_STRUCTURE` as a reader reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    /// The fields that describe the entry and the PIN block.
    pub format: EntryFormat,
    /// abData: the APDU template.
    pub apdu: Vec<u8>,
}

/// A `PIN_MODIFY_STRUCTURE` as a reader reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModifyRequest {
    /// The fields that describe the entry and the PIN blocks.
    pub format: EntryFormat,
    /// Where the two PIN blocks go, and which entries are asked for.
    pub layout: ModifyLayout,
    /// abData: the APDU template.
    pub apdu: Vec<u8>,
}

fn take_apdu(rest: &[u8]) -> Result<Vec<u8>, StructureError> {
    let [a, b, c, d, apdu @ ..] = rest else {
        return Err(StructureError::Malformed);
    };
    let len = u32::from_le_bytes([*a, *b, *c, *d]) as usize;
    if apdu.len() != len || len < 4 {
        return Err(StructureError::Malformed);
    }
    Ok(apdu.to_vec())
}

impl VerifyRequest {
    /// Parses `PIN_VERIFY_STRUCTURE` (§2.5.2; layout in [`verify_structure`]).
    pub fn parse(data: &[u8]) -> Result<VerifyRequest, StructureError> {
        if data.len() < VERIFY_HEADER_LEN {
            return Err(StructureError::Malformed);
        }
        let d = data;
        Ok(VerifyRequest {
            format: EntryFormat {
                timeout: d[0],
                timeout2: d[1],
                format_string: d[2],
                block_string: d[3],
                length_format: d[4],
                max_len: d[5],
                min_len: d[6],
                validation: d[7],
                messages: d[8],
                lang: u16::from_le_bytes([d[9], d[10]]),
            },
            apdu: take_apdu(&d[15..])?,
        })
    }
}

impl ModifyRequest {
    /// Parses `PIN_MODIFY_STRUCTURE` (§2.5.3; layout in [`modify_structure`]).
    pub fn parse(data: &[u8]) -> Result<ModifyRequest, StructureError> {
        if data.len() < MODIFY_HEADER_LEN {
            return Err(StructureError::Malformed);
        }
        let d = data;
        Ok(ModifyRequest {
            format: EntryFormat {
                timeout: d[0],
                timeout2: d[1],
                format_string: d[2],
                block_string: d[3],
                length_format: d[4],
                max_len: d[7],
                min_len: d[8],
                validation: d[10],
                messages: d[11],
                lang: u16::from_le_bytes([d[12], d[13]]),
            },
            layout: ModifyLayout {
                offset_old: d[5],
                offset_new: d[6],
                confirm: d[9],
            },
            apdu: take_apdu(&d[20..])?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02X}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn control_code_is_pcsc_lite_s() {
        #[cfg(not(windows))]
        assert_eq!(GET_FEATURE_REQUEST, 0x4200_0D48);
    }

    #[test]
    fn parses_the_feature_list() {
        // As libccid answers for a pinpad reader: codes 0x42330000 + tag.
        let f = Features::parse(&unhex(
            "06 04 42330006  07 04 42330007  0A 04 4233000A  12 04 42330012",
        ));
        assert_eq!(f.code(feature::VERIFY_PIN_DIRECT), Some(0x4233_0006));
        assert_eq!(f.code(feature::MODIFY_PIN_DIRECT), Some(0x4233_0007));
        assert_eq!(f.code(feature::IFD_PIN_PROPERTIES), Some(0x4233_000A));
        assert_eq!(f.code(feature::GET_TLV_PROPERTIES), Some(0x4233_0012));
        assert_eq!(f.code(feature::VERIFY_PIN_START), None);
        assert_eq!(Features::parse(&f.to_bytes()), f);
        // A broken entry ends the list; no panic on garbage.
        let f = Features::parse(&unhex("06 04 42330006 07 02 4233"));
        assert_eq!(f.code(feature::VERIFY_PIN_DIRECT), Some(0x4233_0006));
        assert_eq!(f.code(feature::MODIFY_PIN_DIRECT), None);
        assert!(Features::parse(&[]).is_empty());
    }

    #[test]
    fn parses_pin_properties() {
        // 2 lines of 16 characters, validation key, bTimeOut2 0.
        let p = PinProperties::parse_ifd(&unhex("1002 02 00")).unwrap();
        assert_eq!(p.lcd_layout, Some(0x0210));
        assert!(p.has_display());
        assert_eq!(p.entry_validation, Some(0x02));
        assert_eq!(p.timeout2, Some(0));
        assert_eq!(PinProperties::parse_ifd(&[1, 2]), None);

        let mut t = PinProperties::parse_tlv(&unhex(
            "01 02 0000  02 01 02  03 01 00  06 01 04  07 01 0F  0B 02 E604  0C 02 3435  08 03 414243  7F 01 00",
        ));
        assert_eq!(t.lcd_layout, Some(0));
        assert!(!t.has_display());
        assert_eq!((t.min_pin_size, t.max_pin_size), (Some(4), Some(15)));
        assert_eq!((t.vendor, t.product), (Some(0x04E6), Some(0x3534)));
        assert_eq!(t.firmware.as_deref(), Some("ABC"));
        t.merge(p);
        assert_eq!(t.lcd_layout, Some(0), "own fields win");
        // Truncated: stops without panicking.
        assert_eq!(
            PinProperties::parse_tlv(&unhex("06 01")),
            PinProperties::default()
        );
    }

    fn piv_format() -> EntryFormat {
        EntryFormat {
            timeout: 0,
            timeout2: 0,
            format_string: 0x82,
            block_string: 0x08,
            length_format: 0x00,
            min_len: 6,
            max_len: 8,
            validation: 0x02,
            messages: 0x01,
            lang: LANG_EN_US,
        }
    }

    #[test]
    fn verify_structure_bytes() {
        // PIV VERIFY 00 20 00 80 with an FF template of 8 bytes: the same
        // bytes GnuPG's pcsc_pinpad_verify sends for a fixed length of 8
        // (bmFormatString 82, block 8, wPINMaxExtraDigit max,min, key
        // pressed, one message, 0x0409), ulDataLength 13.
        let t = Command::new(0x00, 0x20, 0x00, 0x80).with_data(vec![0xFF; 8]);
        let s = verify_structure(&piv_format(), &t).unwrap();
        assert_eq!(
            hex(&s),
            "000082080008060201090400000000\
             0D000000\
             0020008008FFFFFFFFFFFFFFFF"
        );
        let parsed = VerifyRequest::parse(&s).unwrap();
        assert_eq!(parsed.format, piv_format());
        assert_eq!(hex(&parsed.apdu), "0020008008FFFFFFFFFFFFFFFF");

        // Variable length (OpenPGP): no block, Lc 00, ulDataLength 5.
        let f = EntryFormat {
            block_string: 0x00,
            min_len: 6,
            max_len: 64,
            ..piv_format()
        };
        let s = verify_structure(&f, &Command::new(0x00, 0x20, 0x00, 0x82)).unwrap();
        assert_eq!(hex(&s), "000082000040060201090400000000050000000020008200");
    }

    #[test]
    fn modify_structure_bytes() {
        // PIV CHANGE REFERENCE DATA 00 24 00 80: two 8-byte FF blocks, the
        // new one at offset 8, old + new + confirmation (bConfirmPIN 03),
        // three messages 00 01 02, ulDataLength 21.
        let t = Command::new(0x00, 0x24, 0x00, 0x80).with_data(vec![0xFF; 16]);
        let layout = ModifyLayout {
            offset_old: 0,
            offset_new: 8,
            confirm: confirm::CURRENT_PIN | confirm::CONFIRM_NEW,
        };
        let f = EntryFormat {
            messages: 3,
            ..piv_format()
        };
        let s = modify_structure(&f, &layout, &t).unwrap();
        assert_eq!(
            hex(&s),
            "0000820800000808060302030904000102000000\
             15000000\
             0024008010FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
        );
        let parsed = ModifyRequest::parse(&s).unwrap();
        assert_eq!(parsed.format, f);
        assert_eq!(parsed.layout, layout);
        assert_eq!(parsed.apdu.len(), 21);
    }

    #[test]
    fn rejects_malformed_structures() {
        assert_eq!(
            VerifyRequest::parse(&[0; 10]),
            Err(StructureError::Malformed)
        );
        let t = Command::new(0x00, 0x20, 0x00, 0x80).with_data(vec![0xFF; 8]);
        let mut s = verify_structure(&piv_format(), &t).unwrap();
        s.pop();
        assert_eq!(VerifyRequest::parse(&s), Err(StructureError::Malformed));
        assert_eq!(
            ModifyRequest::parse(&[0; 30]),
            Err(StructureError::Malformed)
        );
        let long = Command::new(0, 0x20, 0, 0x80).with_data(vec![0; 256]);
        assert_eq!(
            verify_structure(&piv_format(), &long),
            Err(StructureError::TemplateTooLong)
        );
    }
}
