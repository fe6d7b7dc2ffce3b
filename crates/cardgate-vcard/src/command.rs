//! Card-side parsing of command APDUs (ISO/IEC 7816-4 §5.1): cases 1–4,
//! short and extended length. Anything that does not parse is answered 6700.

use zeroize::Zeroizing;

/// A parsed command APDU. The data field (often a PIN) is zeroized on drop.
pub(crate) struct Apdu {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Zeroizing<Vec<u8>>,
    /// Ne: maximum number of response bytes, `None` when Le is absent.
    /// Short Le 00 means 256, extended Le 0000 means 65536.
    pub ne: Option<usize>,
}

/// The command bytes do not form a valid APDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

impl Apdu {
    pub(crate) fn parse(raw: &[u8]) -> Result<Apdu, Malformed> {
        let (header, body) = match raw.split_first_chunk::<4>() {
            Some(split) => split,
            None => return Err(Malformed),
        };
        let [cla, ins, p1, p2] = *header;
        let (data, ne): (&[u8], Option<usize>) = match body {
            // Case 1.
            [] => (&[], None),
            // Case 2S.
            [le] => (&[], Some(short_ne(*le))),
            // Extended length: a leading 00 and at least two more bytes.
            [0, rest @ ..] if rest.len() >= 2 => {
                let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let after = &rest[2..];
                if after.is_empty() {
                    // Case 2E.
                    (&[], Some(extended_ne(n)))
                } else if n == 0 {
                    return Err(Malformed);
                } else if after.len() == n {
                    // Case 3E.
                    (after, None)
                } else if after.len() == n + 2 {
                    // Case 4E.
                    let le = u16::from_be_bytes([after[n], after[n + 1]]);
                    (&after[..n], Some(extended_ne(usize::from(le))))
                } else {
                    return Err(Malformed);
                }
            }
            [0, _] => return Err(Malformed),
            [lc, rest @ ..] => {
                let n = usize::from(*lc);
                if rest.len() == n {
                    // Case 3S.
                    (rest, None)
                } else if rest.len() == n + 1 {
                    // Case 4S.
                    (&rest[..n], Some(short_ne(rest[n])))
                } else {
                    return Err(Malformed);
                }
            }
        };
        Ok(Apdu {
            cla,
            ins,
            p1,
            p2,
            data: Zeroizing::new(data.to_vec()),
            ne,
        })
    }
}

fn short_ne(le: u8) -> usize {
    if le == 0 { 256 } else { usize::from(le) }
}

fn extended_ne(le: usize) -> usize {
    if le == 0 { 65536 } else { le }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(raw: &[u8]) -> Option<(Vec<u8>, Option<usize>)> {
        Apdu::parse(raw).ok().map(|a| (a.data.to_vec(), a.ne))
    }

    #[test]
    fn parses_short_cases() {
        assert_eq!(p(&[0, 0x20, 0, 0x80]), Some((vec![], None)));
        assert_eq!(p(&[0, 0xCA, 0, 0xC4, 0]), Some((vec![], Some(256))));
        assert_eq!(p(&[0, 0xCA, 0, 0xC4, 7]), Some((vec![], Some(7))));
        assert_eq!(p(&[0, 0x20, 0, 0x80, 2, 1, 2]), Some((vec![1, 2], None)));
        assert_eq!(
            p(&[0, 0xA4, 4, 0, 1, 0xA0, 0]),
            Some((vec![0xA0], Some(256)))
        );
    }

    #[test]
    fn parses_extended_cases() {
        assert_eq!(p(&[0, 0xCA, 0, 0x6E, 0, 0, 0]), Some((vec![], Some(65536))));
        assert_eq!(p(&[0, 0xCA, 0, 0x6E, 0, 1, 0]), Some((vec![], Some(256))));
        assert_eq!(
            p(&[0, 0x20, 0, 0x81, 0, 0, 2, 9, 8]),
            Some((vec![9, 8], None))
        );
        assert_eq!(
            p(&[0, 0x20, 0, 0x81, 0, 0, 2, 9, 8, 0, 5]),
            Some((vec![9, 8], Some(5)))
        );
    }

    #[test]
    fn rejects_malformed() {
        for raw in [
            &[][..],
            &[0],
            &[0, 0x20, 0],
            &[0, 0x20, 0, 0x80, 3, 1, 2],
            &[0, 0x20, 0, 0x80, 1, 1, 2, 3],
            &[0, 0x20, 0, 0x80, 0, 1],
            &[0, 0x20, 0, 0x80, 0, 0, 0, 1],
            &[0, 0x20, 0, 0x80, 0, 0, 2, 1],
            &[0, 0x20, 0, 0x80, 0, 0, 2, 1, 2, 3],
        ] {
            assert!(Apdu::parse(raw).is_err(), "{raw:02X?}");
        }
    }
}
