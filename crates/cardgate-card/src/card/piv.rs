//! PIV (NIST SP 800-73-4): one PIN (key reference 80) unblocked with the
//! PUK (81).

use super::{
    Credential, Encoding, PinFormat, PinObject, ProfileKind, SoMethod, StatusSource, Token,
};
use crate::apdu::commands::{PIV_AID, PIV_PIN_REF, PIV_PUK_REF};

/// PIV PIN: 6–8 digits (SP 800-73-4 Part 2 §2.4.3).
pub const PIN_FORMAT: PinFormat = PinFormat {
    min_len: 6,
    max_len: 8,
    numeric: true,
    encoding: Encoding::PivPadded,
};

/// PIV PUK: exactly 8 bytes (SP 800-73-4 Part 2 §2.4.3). Any byte value is
/// allowed by the specification; most issuers use digits.
pub const PUK_FORMAT: PinFormat = PinFormat {
    min_len: 8,
    max_len: 8,
    numeric: false,
    encoding: Encoding::PivPadded,
};

/// The PIV Card Application PIN (key reference 80, SP 800-73-4 Part 1
/// §3.1): 6 to 8 digits, padded to 8 bytes.
pub fn pin_credential() -> Credential {
    Credential {
        label: "PIN".into(),
        reference: PIV_PIN_REF,
        change_reference: PIV_PIN_REF,
        format: PIN_FORMAT,
        // SP 800-73-4 Part 2 §3.2.1: VERIFY without data returns the status.
        status: StatusSource::EmptyVerify,
        verifiable: true,
        default_max_tries: 3,
        checked_by_change: false,
    }
}

/// The PIV PUK (key reference 81): it unblocks the PIN and is checked by
/// changing it to itself (SP 800-73-4 Part 2 §3.2.2, §3.2.3).
pub fn puk_credential() -> Credential {
    Credential {
        label: "PUK".into(),
        reference: PIV_PUK_REF,
        change_reference: PIV_PUK_REF,
        format: PUK_FORMAT,
        // The PUK cannot be VERIFYed (only used by RESET RETRY COUNTER and
        // CHANGE REFERENCE DATA), so its counter is known only from failures.
        status: StatusSource::Unavailable,
        verifiable: false,
        default_max_tries: 3,
        checked_by_change: true,
    }
}

/// The token for a PIV application that answered SELECT with `fci`
/// (the Application Property Template, tag 61).
pub fn token(_fci: &[u8]) -> Token {
    Token {
        profile: ProfileKind::Piv,
        label: "PIV card".into(),
        aid: PIV_AID.to_vec(),
        serial: None,
        pins: vec![
            PinObject {
                id: "pin",
                credential: pin_credential(),
                so: Some(SoMethod::CodeWithNewPin(puk_credential())),
                reset_code: None,
            },
            PinObject {
                id: "puk",
                credential: puk_credential(),
                so: None,
                reset_code: None,
            },
        ],
    }
}
