//! Status words (ISO/IEC 7816-4 §5.6) that the PIN engine tells apart.

use std::fmt;

/// A status word SW1-SW2, with the values the engine acts on named and
/// every other value kept as it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusWord {
    /// 9000
    Ok,
    /// 61xx: xx more bytes available with GET RESPONSE (00 = 256).
    BytesRemaining(u8),
    /// 6300: verification failed, no counter given.
    VerifyFailedNoInfo,
    /// 63Cx: verification failed (or status query), x tries left.
    TriesRemaining(u8),
    /// 6700: wrong length.
    WrongLength,
    /// 6982: security status not satisfied.
    SecurityNotSatisfied,
    /// 6983: authentication method blocked.
    AuthBlocked,
    /// 6984: reference data not usable (e.g. PIN not initialized).
    RefDataNotUsable,
    /// 6985: conditions of use not satisfied.
    ConditionsNotSatisfied,
    /// 6A80: incorrect parameters in the data field.
    WrongData,
    /// 6A82: file or application not found.
    FileNotFound,
    /// 6A86: incorrect P1-P2.
    WrongP1P2,
    /// 6A88: referenced data or reference not found.
    RefNotFound,
    /// 6Cxx: wrong Le, xx is the exact length (00 = 256).
    WrongLe(u8),
    /// 6D00: instruction not supported.
    InsNotSupported,
    /// 6E00: class not supported.
    ClaNotSupported,
    /// Anything else, kept raw.
    Other(u16),
}

impl StatusWord {
    /// Names a status word given as SW1 << 8 | SW2.
    pub fn from_u16(sw: u16) -> Self {
        use StatusWord::*;
        match sw {
            0x9000 => Ok,
            0x6300 => VerifyFailedNoInfo,
            0x6700 => WrongLength,
            0x6982 => SecurityNotSatisfied,
            0x6983 => AuthBlocked,
            0x6984 => RefDataNotUsable,
            0x6985 => ConditionsNotSatisfied,
            0x6A80 => WrongData,
            0x6A82 => FileNotFound,
            0x6A86 => WrongP1P2,
            0x6A88 => RefNotFound,
            0x6D00 => InsNotSupported,
            0x6E00 => ClaNotSupported,
            _ => match (sw >> 8) as u8 {
                0x61 => BytesRemaining(sw as u8),
                0x6C => WrongLe(sw as u8),
                0x63 if sw & 0xF0 == 0xC0 => TriesRemaining((sw & 0x0F) as u8),
                _ => Other(sw),
            },
        }
    }

    /// The status word as SW1 << 8 | SW2.
    pub fn to_u16(self) -> u16 {
        use StatusWord::*;
        match self {
            Ok => 0x9000,
            BytesRemaining(n) => 0x6100 | n as u16,
            VerifyFailedNoInfo => 0x6300,
            TriesRemaining(n) => 0x63C0 | (n & 0x0F) as u16,
            WrongLength => 0x6700,
            SecurityNotSatisfied => 0x6982,
            AuthBlocked => 0x6983,
            RefDataNotUsable => 0x6984,
            ConditionsNotSatisfied => 0x6985,
            WrongData => 0x6A80,
            FileNotFound => 0x6A82,
            WrongP1P2 => 0x6A86,
            RefNotFound => 0x6A88,
            WrongLe(n) => 0x6C00 | n as u16,
            InsNotSupported => 0x6D00,
            ClaNotSupported => 0x6E00,
            Other(sw) => sw,
        }
    }

    /// The status word as the two bytes SW1, SW2.
    pub fn to_bytes(self) -> [u8; 2] {
        self.to_u16().to_be_bytes()
    }
}

impl fmt::Display for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X}", self.to_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_status_word() {
        for sw in 0u16..=0xFFFF {
            assert_eq!(StatusWord::from_u16(sw).to_u16(), sw, "{sw:04X}");
        }
    }

    #[test]
    fn classifies_pin_status_words() {
        assert_eq!(StatusWord::from_u16(0x63C2), StatusWord::TriesRemaining(2));
        assert_eq!(StatusWord::from_u16(0x63C0), StatusWord::TriesRemaining(0));
        assert_eq!(StatusWord::from_u16(0x6300), StatusWord::VerifyFailedNoInfo);
        assert_eq!(StatusWord::from_u16(0x6381), StatusWord::Other(0x6381));
        assert_eq!(
            StatusWord::from_u16(0x6110),
            StatusWord::BytesRemaining(0x10)
        );
        assert_eq!(StatusWord::from_u16(0x6C05), StatusWord::WrongLe(5));
        assert_eq!(StatusWord::from_u16(0x6983), StatusWord::AuthBlocked);
        assert_eq!(format!("{}", StatusWord::TriesRemaining(3)), "63C3");
    }
}
