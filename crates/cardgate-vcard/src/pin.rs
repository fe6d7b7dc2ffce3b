//! A reference data object (PIN, PUK, PW1, PW3, resetting code) with its
//! retry counter, shared by both profiles.

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
    fn compares_exactly() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(ct_eq(b"", b""));
    }
}
