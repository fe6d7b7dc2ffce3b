//! PIV (NIST SP 800-73-4): one PIN (key reference 80) unblocked with the
//! PUK (81). The profile is data (`profiles/piv.toml`); these are its
//! parts by name, for code and tests that need them without a card.

use super::{Credential, ProfileSet, Token};

/// The PIV token as its profile describes it.
pub fn token() -> Token {
    // The built-in profiles are checked by their unit tests.
    #[allow(clippy::expect_used)]
    ProfileSet::builtin()
        .offline_token("piv")
        .expect("the built-in PIV profile")
}

/// The PIV Card Application PIN (key reference 80, SP 800-73-4 Part 1
/// §3.1): 6 to 8 digits, padded to 8 bytes.
pub fn pin_credential() -> Credential {
    credential("pin")
}

/// The PIV PUK (key reference 81): it unblocks the PIN and is checked by
/// changing it to itself (SP 800-73-4 Part 2 §3.2.2, §3.2.3).
pub fn puk_credential() -> Credential {
    credential("puk")
}

fn credential(id: &str) -> Credential {
    #[allow(clippy::expect_used)]
    token()
        .pin(id)
        .expect("the built-in PIV profile has a PIN and a PUK")
        .credential
        .clone()
}
