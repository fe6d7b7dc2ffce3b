//! OpenPGP card 3.4: user PIN PW1 (references 81/82), admin PIN PW3 (83)
//! and the optional resetting code RC. The profile is data
//! (`profiles/openpgp.toml`); this is what it cannot say: DO C4 and the
//! serial number (its `hook`).

use super::{Application, Credential, PinObject, ProfileSet, SoMethod, StatusSource, Token, hex};
use crate::apdu::StatusWord;
use crate::apdu::commands::{self, OPENPGP_DO_PW_STATUS};
use crate::transport::{self, Transport, TransportError};

/// Minimum length of PW1, the user PIN (OpenPGP 3.4 §4.3).
pub const PW1_MIN: usize = 6;
/// Minimum length of PW3, the admin PIN (OpenPGP 3.4 §4.3).
pub const PW3_MIN: usize = 8;
/// Minimum length of the resetting code (OpenPGP 3.4 §4.3).
pub const RC_MIN: usize = 8;
/// Used when DO C4 gives no maximum.
const DEFAULT_MAX: usize = 127;

/// Byte index of PW1's try counter in DO C4 (OpenPGP 3.4 §4.4.1).
pub const C4_TRIES_PW1: usize = 4;
/// Byte index of the resetting code's try counter in DO C4.
pub const C4_TRIES_RC: usize = 5;
/// Byte index of PW3's try counter in DO C4.
pub const C4_TRIES_PW3: usize = 6;

/// "PW status bytes", DO C4 (OpenPGP 3.4 §4.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PwStatus {
    /// 00: PW1 (81) is valid for one signature only.
    pub pw1_single_signature: bool,
    /// Maximum length of PW1 (byte 1, bits 1-7; 0 read as 127).
    pub max_pw1: usize,
    /// Maximum length of the resetting code (byte 2, likewise).
    pub max_rc: usize,
    /// Maximum length of PW3 (byte 3, likewise).
    pub max_pw3: usize,
    /// Tries left for PW1, the resetting code and PW3 (bytes 4-6).
    pub tries: [u8; 3],
}

impl PwStatus {
    /// Reads the 7 bytes of DO C4, bare or inside their tag; `None` when
    /// they are not 7 bytes.
    pub fn parse(data: &[u8]) -> Option<PwStatus> {
        // Some cards wrap the value in its tag.
        let v = match data {
            [0xC4, 7, rest @ ..] if rest.len() == 7 => rest,
            _ => data,
        };
        if v.len() != 7 {
            return None;
        }
        // Bits 1-7: maximum length; bit 8 flags PIN block format 2.
        let max = |b: u8| match (b & 0x7F) as usize {
            0 => DEFAULT_MAX,
            n => n,
        };
        Some(PwStatus {
            pw1_single_signature: v[0] == 0,
            max_pw1: max(v[1]),
            max_rc: max(v[2]),
            max_pw3: max(v[3]),
            tries: [v[4], v[5], v[6]],
        })
    }

    /// The retry counter at a DO C4 byte index.
    pub fn tries_at(&self, index: usize) -> Option<u8> {
        index
            .checked_sub(C4_TRIES_PW1)
            .and_then(|i| self.tries.get(i))
            .copied()
    }
}

/// Reads DO C4.
pub fn read_pw_status(
    t: &mut dyn Transport,
) -> Result<Result<PwStatus, StatusWord>, TransportError> {
    let resp = transport::exchange(t, &commands::get_data(OPENPGP_DO_PW_STATUS))?;
    if resp.sw != StatusWord::Ok {
        return Ok(Err(resp.sw));
    }
    Ok(PwStatus::parse(&resp.data).ok_or(StatusWord::Other(0x6F00)))
}

/// The profile's hook (`hook = "openpgp"`), run after the application at
/// `app` answered SELECT: its serial number from the full AID (DO 4F,
/// §4.2.1) in its label, and the maximum lengths DO C4 announces (§4.4.1)
/// on its PINs.
pub fn hook(
    t: &mut dyn Transport,
    app: usize,
    applications: &mut [Application],
    pins: &mut [PinObject],
) -> Result<(), TransportError> {
    let aid = transport::exchange(t, &commands::get_data(0x004F))?;
    let serial = (aid.sw == StatusWord::Ok && aid.data.len() >= 14).then(|| hex(&aid.data[8..14]));
    let status = read_pw_status(t)?.ok();
    apply(app, applications, pins, serial, status);
    Ok(())
}

/// What the hook learnt, applied: the serial in the label, DO C4's
/// maximum lengths on every credential whose counter is in DO C4.
pub fn apply(
    app: usize,
    applications: &mut [Application],
    pins: &mut [PinObject],
    serial: Option<String>,
    status: Option<PwStatus>,
) {
    if let Some(a) = applications.get_mut(app) {
        if let Some(s) = &serial {
            a.label = format!("{} {s}", a.label);
        }
        a.serial = serial;
    }
    let Some(status) = status else {
        return;
    };
    let fix = |c: &mut Credential| {
        if c.app != app {
            return;
        }
        for source in &c.status {
            if let StatusSource::OpenPgpPwStatus { tries_index } = source {
                let max = match *tries_index {
                    C4_TRIES_PW1 => status.max_pw1,
                    C4_TRIES_RC => status.max_rc,
                    _ => status.max_pw3,
                };
                c.format.max_len = max.max(c.format.min_len);
            }
        }
    };
    for pin in pins.iter_mut() {
        fix(&mut pin.credential);
        for m in [pin.so.as_mut(), pin.reset_code.as_mut()]
            .into_iter()
            .flatten()
        {
            match m {
                SoMethod::CodeWithNewPin(c) | SoMethod::VerifyThenReset(c) => fix(c),
            }
        }
    }
}

/// The OpenPGP token of a card with this serial and DO C4 (`None`: the
/// card did not give it, default maximum lengths).
pub fn build_token(serial: Option<String>, status: Option<PwStatus>) -> Token {
    // The built-in profiles are checked by their unit tests.
    #[allow(clippy::expect_used)]
    let mut token = ProfileSet::builtin()
        .offline_token("openpgp")
        .expect("the built-in OpenPGP profile");
    apply(0, &mut token.applications, &mut token.pins, serial, status);
    token.label = token.applications[0].label.clone();
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pw_status() {
        let s = PwStatus::parse(&[0x00, 0x7F, 0x7F, 0x7F, 3, 0, 3]).unwrap();
        assert!(s.pw1_single_signature);
        assert_eq!((s.max_pw1, s.max_rc, s.max_pw3), (127, 127, 127));
        assert_eq!(s.tries_at(C4_TRIES_PW1), Some(3));
        assert_eq!(s.tries_at(C4_TRIES_RC), Some(0));
        assert_eq!(s.tries_at(7), None);
        // Bit 8 of a length byte is a format flag, not part of the length.
        let s = PwStatus::parse(&[0x01, 0xA0, 0x20, 0x20, 2, 1, 3]).unwrap();
        assert_eq!(s.max_pw1, 0x20);
        assert!(!s.pw1_single_signature);
        assert_eq!(
            PwStatus::parse(&[0xC4, 7, 1, 32, 32, 32, 3, 3, 3])
                .unwrap()
                .tries,
            [3, 3, 3]
        );
        assert_eq!(PwStatus::parse(&[1, 2, 3]), None);
    }
}
