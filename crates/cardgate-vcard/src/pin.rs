//! A reference data object (PIN, PUK, PW1, PW3, resetting code) with its
//! retry counter, and the status-word conventions, shared by every profile.

use crate::apdu::StatusWord;
use crate::secret::Secret;

use super::config::{CardConfig, Quirk};

/// One piece of reference data and its retry counter.
pub(crate) struct RefData {
    /// `None`: no value set (OpenPGP resetting code by default).
    value: Option<Secret>,
    tries: u8,
    max: u8,
    /// Tries spent over the card's life (wrong values, quirky status
    /// queries): what a test compares with the operations it made.
    spent: u64,
    /// Every value compared, in order: what the card saw and its counter
    /// before and after (tests check who spent which try).
    presented: Vec<Presentation>,
}

/// One value the card compared with its reference data.
#[derive(Debug, Clone)]
pub struct Presentation {
    /// The value as it arrived (a PIV block keeps its FF padding).
    pub value: Secret,
    /// The retry counter when the value arrived.
    pub tries_before: u8,
    /// The retry counter after the comparison.
    pub tries_after: u8,
    /// The value equalled the reference data.
    pub matched: bool,
}

/// The result of presenting a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// The value matched; the counter is back to its maximum.
    Match,
    /// The value did not match; `left` tries remain (0: now blocked).
    Mismatch { left: u8 },
    /// The counter was already 0: nothing compared, nothing spent.
    Blocked,
    /// No value is set.
    NotSet,
}

impl RefData {
    pub(crate) fn new(value: Option<Secret>, max: u8) -> Self {
        let tries = if value.is_some() { max } else { 0 };
        RefData {
            value,
            tries,
            max,
            spent: 0,
            presented: Vec::new(),
        }
    }

    pub(crate) fn tries(&self) -> u8 {
        self.tries
    }

    /// The counter's maximum (what a match resets it to).
    pub(crate) fn max(&self) -> u8 {
        self.max
    }

    /// Whether the stored value equals `candidate`, without presenting it:
    /// nothing is counted or recorded (a card's own bookkeeping, e.g.
    /// YubiKey metadata's "still the default value" flag).
    pub(crate) fn holds(&self, candidate: &[u8]) -> bool {
        self.value
            .as_ref()
            .is_some_and(|v| ct_eq(v.expose(), candidate))
    }

    /// The retry counter and the tries spent so far.
    pub(crate) fn counter(&self) -> (u8, u64) {
        (self.tries, self.spent)
    }

    /// Restores a counter saved by [`RefData::counter`] (a card's counters
    /// live in its non-volatile memory: they outlive the process).
    pub(crate) fn restore_counter(&mut self, tries: u8, spent: u64) {
        self.tries = tries.min(self.max);
        self.spent = spent;
    }

    pub(crate) fn is_set(&self) -> bool {
        self.value.is_some()
    }

    pub(crate) fn is_blocked(&self) -> bool {
        self.tries == 0
    }

    /// Length of the stored value (0 when not set).
    pub(crate) fn len(&self) -> usize {
        self.value.as_ref().map_or(0, Secret::len)
    }

    pub(crate) fn block(&mut self) {
        self.tries = 0;
    }

    /// Presents `candidate`: a match resets the counter, a mismatch spends a try.
    pub(crate) fn check(&mut self, candidate: &[u8]) -> Check {
        let Some(value) = &self.value else {
            return Check::NotSet;
        };
        if self.tries == 0 {
            return Check::Blocked;
        }
        let tries_before = self.tries;
        let matched = ct_eq(value.expose(), candidate);
        let check = if matched {
            self.tries = self.max;
            Check::Match
        } else {
            self.tries -= 1;
            self.spent += 1;
            Check::Mismatch { left: self.tries }
        };
        self.presented.push(Presentation {
            value: Secret::new(candidate.to_vec()),
            tries_before,
            tries_after: self.tries,
            matched,
        });
        check
    }

    /// Every value compared so far, oldest first.
    pub(crate) fn presented(&self) -> &[Presentation] {
        &self.presented
    }

    /// Spends a try without comparing anything (an empty VERIFY on a quirky card).
    pub(crate) fn spend(&mut self) -> Check {
        if self.value.is_none() {
            return Check::NotSet;
        }
        if self.tries == 0 {
            return Check::Blocked;
        }
        self.tries -= 1;
        self.spent += 1;
        Check::Mismatch { left: self.tries }
    }

    /// Sets a new value (or clears it) and resets the counter.
    pub(crate) fn set(&mut self, value: Option<Secret>) {
        self.tries = if value.is_some() { self.max } else { 0 };
        self.value = value;
    }
}

/// Compares without an early exit on the first differing byte.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Status-word conventions of one card, quirks included.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conventions {
    pub blocked_63c0: bool,
    pub empty_verify_spends_try: bool,
    pub change_wrong_old_6300: bool,
    pub failed_change_keeps_verification: bool,
    pub wrong_verify_6300: bool,
    /// PIV: the wrong try that brings the counter to 0 answers 6983
    /// (SP 800-73-4); OpenPGP answers 63C0 and 6983 afterwards.
    pub last_try_blocked: bool,
}

impl Conventions {
    pub(crate) fn new(config: &CardConfig, last_try_blocked: bool) -> Self {
        Conventions {
            blocked_63c0: config.has_quirk(Quirk::BlockedSw63c0),
            empty_verify_spends_try: config.has_quirk(Quirk::EmptyVerifySpendsTry),
            change_wrong_old_6300: config.has_quirk(Quirk::ChangeWrongOld6300),
            failed_change_keeps_verification: config
                .has_quirk(Quirk::FailedChangeKeepsVerification),
            wrong_verify_6300: config.has_quirk(Quirk::WrongVerify6300),
            last_try_blocked,
        }
    }

    /// "Authentication method blocked".
    pub(crate) fn blocked(&self) -> StatusWord {
        if self.blocked_63c0 {
            StatusWord::TriesRemaining(0)
        } else {
            StatusWord::AuthBlocked
        }
    }

    /// The answer to a failed verification with `left` tries remaining.
    pub(crate) fn wrong(&self, left: u8) -> StatusWord {
        if left == 0 && self.last_try_blocked {
            self.blocked()
        } else {
            StatusWord::TriesRemaining(left)
        }
    }

    /// The answer to a failed VERIFY with `left` tries remaining: 6300
    /// with quirk `wrong_verify_6300`, else as [`Conventions::wrong`].
    pub(crate) fn wrong_verify(&self, left: u8) -> StatusWord {
        if self.wrong_verify_6300 {
            StatusWord::VerifyFailedNoInfo
        } else {
            self.wrong(left)
        }
    }

    /// The answer to an empty VERIFY on a card with quirk
    /// `empty_verify_spends_try`: a try is spent as for a wrong value.
    pub(crate) fn spend_empty(&self, r: &mut RefData) -> StatusWord {
        match r.spend() {
            Check::Mismatch { left } => self.wrong_verify(left),
            _ => self.blocked(),
        }
    }

    /// The answer to a wrong old value in CHANGE REFERENCE DATA.
    pub(crate) fn wrong_old(&self, left: u8) -> StatusWord {
        if self.change_wrong_old_6300 {
            StatusWord::VerifyFailedNoInfo
        } else {
            self.wrong(left)
        }
    }

    /// Status query of a reference that is not verified.
    pub(crate) fn status(&self, r: &RefData) -> StatusWord {
        if r.is_blocked() {
            self.blocked()
        } else {
            StatusWord::TriesRemaining(r.tries())
        }
    }
}

/// A reference data object and whether it is verified in the current
/// security status (ISO/IEC 7816-4 §5.4): the flow the cards modelled after
/// ISO 7816-4 alone share (EstEID, Belgian eID, PKCS#15, ISO). The caller
/// checks the format of a value first: a malformed value spends nothing.
pub(crate) struct Ref {
    pub data: RefData,
    pub verified: bool,
}

impl Ref {
    pub(crate) fn new(data: RefData) -> Self {
        Ref {
            data,
            verified: false,
        }
    }

    /// VERIFY without data (ISO/IEC 7816-4 §11.5.6): 9000 when verified,
    /// else 63Cx (6983 blocked), nothing spent; with quirk
    /// `empty_verify_spends_try` a wrong presentation.
    pub(crate) fn status_query(&mut self, conv: &Conventions) -> StatusWord {
        if conv.empty_verify_spends_try {
            self.verified = false;
            return conv.spend_empty(&mut self.data);
        }
        if self.verified {
            StatusWord::Ok
        } else {
            conv.status(&self.data)
        }
    }

    /// VERIFY with a well-formed value.
    pub(crate) fn verify(&mut self, conv: &Conventions, value: &[u8]) -> StatusWord {
        match self.data.check(value) {
            Check::Match => {
                self.verified = true;
                StatusWord::Ok
            }
            Check::Mismatch { left } => {
                self.verified = false;
                conv.wrong_verify(left)
            }
            Check::Blocked | Check::NotSet => {
                self.verified = false;
                conv.blocked()
            }
        }
    }

    /// CHANGE REFERENCE DATA (ISO/IEC 7816-4 §11.5.7) with P1=00: the old
    /// value is checked, then the new one stored (both well-formed).
    pub(crate) fn change(&mut self, conv: &Conventions, old: &[u8], new: &[u8]) -> StatusWord {
        match self.data.check(old) {
            Check::Match => {
                self.data.set(Some(Secret::new(new.to_vec())));
                StatusWord::Ok
            }
            Check::Mismatch { left } => {
                self.verified = false;
                conv.wrong_old(left)
            }
            Check::Blocked | Check::NotSet => conv.blocked(),
        }
    }

    /// Sets a new value after an unblocking (RESET RETRY COUNTER): the
    /// counter is back to its maximum, the state is not verified.
    pub(crate) fn reset_to(&mut self, new: &[u8]) {
        self.data.set(Some(Secret::new(new.to_vec())));
        self.verified = false;
    }
}

/// RESET RETRY COUNTER with P1=00 (ISO/IEC 7816-4 §11.5.10): the
/// resetting code `puk_value` is checked against `puk`, then `pin` gets
/// `new`.
pub(crate) fn unblock(
    conv: &Conventions,
    puk: &mut Ref,
    pin: &mut Ref,
    puk_value: &[u8],
    new: &[u8],
) -> StatusWord {
    match puk.data.check(puk_value) {
        Check::Match => {
            pin.reset_to(new);
            StatusWord::Ok
        }
        Check::Mismatch { left } => conv.wrong(left),
        Check::Blocked | Check::NotSet => conv.blocked(),
    }
}

/// A block of ASCII digits padded with FF to `len` bytes, `min..=max`
/// digits.
pub(crate) fn is_ff_padded_digits(block: &[u8], len: usize, min: usize, max: usize) -> bool {
    if block.len() != len {
        return false;
    }
    let digits = block.iter().take_while(|b| b.is_ascii_digit()).count();
    (min..=max).contains(&digits) && block[digits..].iter().all(|&b| b == 0xFF)
}

/// A configured value padded with FF to `len` bytes.
pub(crate) fn ff_padded(value: &Secret, len: usize) -> Secret {
    let mut block = zeroize::Zeroizing::new(value.expose().to_vec());
    block.resize(len, 0xFF);
    Secret::new(block.to_vec())
}

/// An ISO 9564-1 format 2 PIN block (8 bytes): control nibble 2, the
/// number of digits L, L BCD digits, F filler. `None` when `digits` is not
/// 4 to 14 ASCII digits.
pub(crate) fn format2_block(digits: &[u8]) -> Option<Secret> {
    if !(4..=14).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut nibbles = zeroize::Zeroizing::new(vec![0x2, digits.len() as u8]);
    nibbles.extend(digits.iter().map(|d| d - b'0'));
    nibbles.resize(16, 0xF);
    let block: Vec<u8> = nibbles.chunks(2).map(|n| (n[0] << 4) | n[1]).collect();
    Some(Secret::new(block))
}

/// Whether `block` is a format 2 PIN block of `min..=max` digits.
pub(crate) fn is_format2(block: &[u8], min: usize, max: usize) -> bool {
    if block.len() != 8 || block[0] >> 4 != 0x2 {
        return false;
    }
    let len = usize::from(block[0] & 0x0F);
    if !(min..=max).contains(&len) {
        return false;
    }
    block[1..]
        .iter()
        .flat_map(|b| [b >> 4, b & 0x0F])
        .enumerate()
        .all(|(i, n)| if i < len { n <= 9 } else { n == 0xF })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_down_and_resets() {
        let mut r = RefData::new(Some(Secret::from("1234")), 3);
        assert_eq!(r.check(b"0000"), Check::Mismatch { left: 2 });
        assert_eq!(r.check(b"123"), Check::Mismatch { left: 1 });
        assert_eq!(r.check(b"1234"), Check::Match);
        assert_eq!(r.tries(), 3);
        for left in (0..3).rev() {
            assert_eq!(r.check(b"x"), Check::Mismatch { left });
        }
        assert_eq!(r.check(b"1234"), Check::Blocked);
        r.set(Some(Secret::from("5678")));
        assert_eq!(r.tries(), 3);
        r.set(None);
        assert_eq!(r.check(b"5678"), Check::NotSet);
        assert_eq!(r.tries(), 0);
    }

    #[test]
    fn format2_blocks() {
        let b = format2_block(b"1234").unwrap();
        assert_eq!(
            b.expose(),
            &[0x24, 0x12, 0x34, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        let b = format2_block(b"123456789012").unwrap();
        assert_eq!(
            b.expose(),
            &[0x2C, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0xFF]
        );
        assert!(is_format2(b.expose(), 4, 12));
        assert!(!is_format2(b.expose(), 4, 11));
        assert!(format2_block(b"123").is_none());
        assert!(format2_block(b"12a4").is_none());
        assert!(!is_format2(
            &[0x24, 0x12, 0x3A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            4,
            12
        ));
        assert!(!is_format2(
            &[0x24, 0x12, 0x34, 0xF0, 0xFF, 0xFF, 0xFF, 0xFF],
            4,
            12
        ));
        assert!(!is_format2(
            &[0x14, 0x12, 0x34, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            4,
            12
        ));
        assert!(!is_format2(&[0x24, 0x12, 0x34, 0xFF], 4, 12));
    }

    #[test]
    fn ff_padded_blocks() {
        assert!(is_ff_padded_digits(b"1234\xFF\xFF\xFF\xFF", 8, 4, 8));
        assert!(!is_ff_padded_digits(b"123\xFF\xFF\xFF\xFF\xFF", 8, 4, 8));
        assert!(!is_ff_padded_digits(b"1234\xFF\xFF\xFF1", 8, 4, 8));
        assert!(!is_ff_padded_digits(b"1234", 8, 4, 8));
        assert_eq!(ff_padded(&Secret::from("12"), 4).expose(), b"12\xFF\xFF");
    }

    #[test]
    fn compares_exactly() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(ct_eq(b"", b""));
    }
}
