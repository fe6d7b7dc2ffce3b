//! How a PIN value becomes the bytes of a VERIFY, CHANGE REFERENCE DATA or
//! RESET RETRY COUNTER data field, as a card profile's `encoding`, `pad`
//! and `stored-length` say (docs/cards.md). The commands themselves are
//! built in [`crate::apdu::commands`].

use super::{Encoding, PinFormat};
use crate::secret::Secret;
use zeroize::Zeroizing;

/// Encodes a PIN value as its card profile says (docs/cards.md,
/// `encoding`, `pad`, `stored-length`). The caller has checked it against
/// the format ([`crate::pin::check_format`]).
/// - ascii / utf8: the bytes as typed, padded with `pad` up to the stored
///   length (SP 800-73-4 Part 2 §2.4.3 for PIV: FF to 8 bytes);
/// - bcd: two digits per byte, the last nibble and the padding F
///   (ISO/IEC 7816-4 §11.6.6 leaves the format to the card);
/// - format2: the ISO 9564-1 format 2 block: control nibble 2, the number
///   of digits, the digits in BCD, F filling, 8 bytes.
pub fn pin_block(format: &PinFormat, value: &Secret) -> Zeroizing<Vec<u8>> {
    let digits = || value.expose().iter().map(|d| d.wrapping_sub(b'0') & 0x0F);
    let pack = |nibbles: &mut dyn Iterator<Item = u8>, out: &mut Vec<u8>| {
        let nibbles: Zeroizing<Vec<u8>> = Zeroizing::new(nibbles.collect());
        for pair in nibbles.chunks(2) {
            out.push((pair[0] << 4) | pair.get(1).copied().unwrap_or(0x0F));
        }
    };
    let mut block = Zeroizing::new(Vec::with_capacity(format.stored_len.max(value.len())));
    match format.encoding {
        Encoding::Ascii | Encoding::Utf8 => block.extend_from_slice(value.expose()),
        Encoding::Bcd => pack(&mut digits(), &mut block),
        Encoding::Format2 => {
            block.push(0x20 | (value.len() as u8 & 0x0F));
            pack(&mut digits(), &mut block);
        }
    }
    let pad = match format.encoding {
        Encoding::Bcd | Encoding::Format2 => 0xFF,
        _ => format.pad.unwrap_or(0xFF),
    };
    if format.stored_len > block.len() {
        block.resize(format.stored_len, pad);
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_pin_blocks() {
        let f = |encoding, pad, stored_len| PinFormat {
            min_len: 4,
            max_len: 12,
            numeric: true,
            encoding,
            pad,
            stored_len,
        };
        let v = Secret::from("12345");
        let h = |b: Zeroizing<Vec<u8>>| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
        assert_eq!(
            h(pin_block(&f(Encoding::Ascii, Some(0xFF), 8), &v)),
            "3132333435FFFFFF"
        );
        assert_eq!(h(pin_block(&f(Encoding::Utf8, None, 0), &v)), "3132333435");
        assert_eq!(
            h(pin_block(&f(Encoding::Bcd, Some(0xFF), 4), &v)),
            "12345FFF"
        );
        // ISO 9564-1 format 2: 2, length 5, digits, F filling to 8 bytes.
        assert_eq!(
            h(pin_block(&f(Encoding::Format2, None, 8), &v)),
            "2512345FFFFFFFFF"
        );
        let twelve = Secret::from("123456789012");
        assert_eq!(
            h(pin_block(&f(Encoding::Format2, None, 8), &twelve)),
            "2C123456789012FF"
        );
    }
}
