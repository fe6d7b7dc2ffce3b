//! BER-TLV as cards use it (ISO/IEC 7816-4 §6.2; X.690 §8.1 for the DER
//! that PKCS#15 files are written in): tags of one to three bytes, lengths
//! in short or long form. Card answers are untrusted input: every read is
//! bounded and a malformed object ends the walk instead of panicking.

/// One data object: its tag (the tag bytes as a big-endian number, e.g.
/// `0xBF8101`), whether it is constructed, and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag bytes as a number (`0x9B`, `0x7F21`, `0xBF8101`).
    pub tag: u32,
    /// Bit 6 of the first tag byte: the value holds further data objects.
    pub constructed: bool,
    /// The value bytes.
    pub value: &'a [u8],
}

/// Reads the data object at the start of `data`; returns it and the rest.
/// `None` when `data` does not start with a whole, well-formed object
/// (including 00/FF padding bytes between objects, which end the walk).
pub fn parse_one(data: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&first, mut rest) = data.split_first()?;
    if first == 0x00 || first == 0xFF {
        return None;
    }
    let mut tag = u32::from(first);
    if first & 0x1F == 0x1F {
        // Subsequent tag bytes: bit 8 set on all but the last; at most
        // three tag bytes in all (ISO 7816-4 §6.2: tags up to 3 bytes).
        for i in 0..2 {
            let (&b, r) = rest.split_first()?;
            rest = r;
            tag = (tag << 8) | u32::from(b);
            if b & 0x80 == 0 {
                break;
            }
            if i == 1 {
                return None;
            }
        }
    }
    let (&len0, r) = rest.split_first()?;
    rest = r;
    let len = match len0 {
        0x00..=0x7F => usize::from(len0),
        0x81 => {
            let (&l, r) = rest.split_first()?;
            rest = r;
            usize::from(l)
        }
        0x82 => {
            let [hi, lo, ref r @ ..] = *rest else {
                return None;
            };
            rest = r;
            usize::from(u16::from_be_bytes([hi, lo]))
        }
        // 0x80 (indefinite form) is not used by cards; longer forms
        // exceed any APDU.
        _ => return None,
    };
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((
        Tlv {
            tag,
            constructed: first & 0x20 != 0,
            value,
        },
        rest,
    ))
}

/// Iterates over the data objects in `data`, one level, stopping at the
/// first malformed one.
pub fn iter(data: &[u8]) -> impl Iterator<Item = Tlv<'_>> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (tlv, r) = parse_one(rest)?;
        rest = r;
        Some(tlv)
    })
}

/// The value at a tag path: `path[0]` among the objects of `data`, then
/// `path[1]` inside its value, and so on. The last tag may be primitive.
pub fn find<'a>(data: &'a [u8], path: &[u32]) -> Option<&'a [u8]> {
    let (first, rest) = path.split_first()?;
    let tlv = iter(data).find(|t| t.tag == *first)?;
    if rest.is_empty() {
        Some(tlv.value)
    } else {
        find(tlv.value, rest)
    }
}

/// A DER INTEGER or ENUMERATED value as an unsigned number (X.690 §8.3),
/// `None` when negative or wider than 32 bits.
pub fn unsigned(value: &[u8]) -> Option<u32> {
    let value = match value {
        [0, rest @ ..] if !rest.is_empty() => rest,
        [first, ..] if first & 0x80 != 0 => return None,
        v => v,
    };
    if value.is_empty() || value.len() > 4 {
        return None;
    }
    Some(value.iter().fold(0, |n, b| (n << 8) | u32::from(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_nested_objects_with_multi_byte_tags() {
        // An Estonian-eID-like answer: 70 { BF8101 { A0 { 9A 03, 9B 02 } } }.
        let data = [
            0x70, 0x0C, 0xBF, 0x81, 0x01, 0x08, 0xA0, 0x06, 0x9A, 0x01, 0x03, 0x9B, 0x01, 0x02,
        ];
        assert_eq!(find(&data, &[0x70, 0xBF8101, 0xA0, 0x9B]), Some(&[2u8][..]));
        assert_eq!(find(&data, &[0x70, 0xBF8101, 0xA0, 0x9A]), Some(&[3u8][..]));
        assert_eq!(find(&data, &[0x70, 0xBF8102]), None);
        let (top, rest) = parse_one(&data).unwrap();
        assert!(top.constructed && rest.is_empty());
    }

    #[test]
    fn long_lengths_and_malformed_input() {
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([7; 0x80]);
        assert_eq!(parse_one(&long).unwrap().0.value.len(), 0x80);
        let mut longer = vec![0x04, 0x82, 0x01, 0x00];
        longer.extend([7; 0x100]);
        assert_eq!(parse_one(&longer).unwrap().0.value.len(), 0x100);
        // Truncated value, truncated length, a four-byte tag, indefinite
        // length, padding.
        for bad in [
            &[0x04, 0x05, 1, 2][..],
            &[0x04, 0x82, 0x01][..],
            &[0x5F, 0x81, 0x82, 0x01, 0x00][..],
            &[0x30, 0x80, 0x00, 0x00][..],
            &[0x00, 0x01, 0x00][..],
            &[][..],
        ] {
            assert_eq!(parse_one(bad), None, "{bad:02X?}");
        }
        assert_eq!(iter(&[0x80, 0x01, 0x05, 0xFF, 0xFF]).count(), 1);
    }

    #[test]
    fn der_integers() {
        assert_eq!(unsigned(&[0x00, 0x80]), Some(0x80));
        assert_eq!(unsigned(&[0x7F]), Some(0x7F));
        assert_eq!(unsigned(&[0x80]), None);
        assert_eq!(unsigned(&[]), None);
        assert_eq!(unsigned(&[1, 2, 3, 4, 5]), None);
    }
}
