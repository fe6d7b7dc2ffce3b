//! The PIN format constraints of SCWS `Pin.getConstraints()` and how each
//! is checked. The exact meaning of every type is in `docs/constraints.md`;
//! this file is its implementation, keep them in step.
//!
//! Characters are Unicode scalar values of the UTF-8 PIN. A value that is
//! not valid UTF-8 is read as ISO-8859-1 (one character per byte). Checking
//! never touches a card, and never copies a PIN outside zeroizing memory.

use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroizing;

/// One constraint, serialized exactly as the SCWS contract has it: a `type`
/// field plus the type's parameters (`{"type":"minMaxLength","minLength":6,"maxLength":8}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Constraint {
    /// At least `min_length` characters.
    #[serde(rename_all = "camelCase")]
    MinLength {
        /// Fewest characters.
        min_length: u32,
    },
    /// Exactly `length` characters.
    ExactLength {
        /// The only length allowed.
        length: u32,
    },
    /// Between `min_length` and `max_length` characters, inclusive.
    #[serde(rename_all = "camelCase")]
    MinMaxLength {
        /// Fewest characters.
        min_length: u32,
        /// Most characters.
        max_length: u32,
    },
    /// Only the ASCII digits 0–9.
    Numeric,
    /// At least `count` ASCII digits 0–9.
    MinDigits {
        /// Fewest digits.
        count: u32,
    },
    /// At least `count` uppercase letters (Unicode `Uppercase`).
    MinUpperCase {
        /// Fewest uppercase letters.
        count: u32,
    },
    /// At least `count` special characters (neither letters nor digits).
    MinSpecial {
        /// Fewest special characters.
        count: u32,
    },
    /// At least `count` lowercase letters (Unicode `Lowercase`).
    MinLowerCase {
        /// Fewest lowercase letters.
        count: u32,
    },
    /// The new PIN differs from the old one (satisfied when the old one is empty).
    NewOldDifferent,
    /// Edit distance × 100 ≥ `threshold` × the longer length (satisfied when the old one is empty).
    NewOldDissimilar {
        /// Smallest edit distance, in percent of the longer value's length.
        threshold: u32,
    },
    /// No run of `count` identical characters.
    MaxIdenticalSequence {
        /// Length of the shortest run that is refused.
        count: u32,
    },
    /// No run of `count` characters each one above (or each one below) the previous.
    MaxIncDecSequence {
        /// Length of the shortest run that is refused.
        count: u32,
    },
}

/// The characters of a PIN, in zeroizing memory.
pub struct Chars(Zeroizing<Vec<char>>);

impl Chars {
    /// Decodes a value: UTF-8, or ISO-8859-1 when it is not valid UTF-8.
    pub fn of(value: &Secret) -> Chars {
        let bytes = value.expose();
        // Reserve once: chars never outnumber bytes, so the vector never
        // reallocates and leaves no unwiped copy behind.
        let mut v = Zeroizing::new(Vec::with_capacity(bytes.len()));
        match std::str::from_utf8(bytes) {
            Ok(s) => v.extend(s.chars()),
            Err(_) => v.extend(bytes.iter().map(|&b| char::from(b))),
        }
        Chars(v)
    }

    /// Number of characters.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No characters at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn count(&self, f: impl Fn(char) -> bool) -> usize {
        self.0.iter().filter(|c| f(**c)).count()
    }
}

/// ASCII 0–9 only: the SCWS `numeric` definition.
pub fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

/// Uppercase: the Unicode `Uppercase` property, as `minUpperCase` counts.
pub fn is_upper(c: char) -> bool {
    c.is_uppercase()
}

/// Lowercase: the Unicode `Lowercase` property, as `minLowerCase` counts.
pub fn is_lower(c: char) -> bool {
    c.is_lowercase()
}

/// Special: neither a letter nor a digit of any script (not
/// `char::is_alphanumeric`): punctuation, symbols, spaces, emoji, controls.
pub fn is_special(c: char) -> bool {
    !c.is_alphanumeric()
}

/// Levenshtein distance (insertions, deletions, substitutions, each 1)
/// between two character sequences.
pub fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The longest run of identical characters.
pub fn longest_identical_run(s: &[char]) -> usize {
    let mut longest = usize::from(!s.is_empty());
    let mut run = 1;
    for w in s.windows(2) {
        run = if w[0] == w[1] { run + 1 } else { 1 };
        longest = longest.max(run);
    }
    longest
}

/// The longest run of characters whose scalar values go up by exactly 1
/// each step ("123", "abc") or down by exactly 1 each step ("321", "cba").
pub fn longest_inc_dec_run(s: &[char]) -> usize {
    let mut longest = usize::from(!s.is_empty());
    let (mut inc, mut dec) = (1, 1);
    for w in s.windows(2) {
        let step = i64::from(u32::from(w[1])) - i64::from(u32::from(w[0]));
        inc = if step == 1 { inc + 1 } else { 1 };
        dec = if step == -1 { dec + 1 } else { 1 };
        longest = longest.max(inc).max(dec);
    }
    longest
}

impl Constraint {
    /// Checks one constraint. `old` is the current PIN, empty when unknown.
    pub fn check(&self, old: &Secret, new: &Secret) -> bool {
        self.check_chars(&Chars::of(old), &Chars::of(new))
    }

    /// Checks one constraint on decoded values.
    pub fn check_chars(&self, old: &Chars, new: &Chars) -> bool {
        let n = new.len() as u64;
        let at_least = |count: usize, min: u32| count as u64 >= u64::from(min);
        match *self {
            Constraint::MinLength { min_length } => n >= u64::from(min_length),
            Constraint::ExactLength { length } => n == u64::from(length),
            Constraint::MinMaxLength {
                min_length,
                max_length,
            } => n >= u64::from(min_length) && n <= u64::from(max_length),
            Constraint::Numeric => new.0.iter().all(|c| is_digit(*c)),
            Constraint::MinDigits { count } => at_least(new.count(is_digit), count),
            Constraint::MinUpperCase { count } => at_least(new.count(is_upper), count),
            Constraint::MinSpecial { count } => at_least(new.count(is_special), count),
            Constraint::MinLowerCase { count } => at_least(new.count(is_lower), count),
            Constraint::NewOldDifferent => old.is_empty() || old.0[..] != new.0[..],
            Constraint::NewOldDissimilar { threshold } => {
                if old.is_empty() {
                    return true;
                }
                let d = edit_distance(&old.0, &new.0) as u64;
                let longer = old.len().max(new.len()) as u64;
                d * 100 >= u64::from(threshold) * longer
            }
            Constraint::MaxIdenticalSequence { count } => {
                (longest_identical_run(&new.0) as u64) < u64::from(count)
            }
            Constraint::MaxIncDecSequence { count } => {
                (longest_inc_dec_run(&new.0) as u64) < u64::from(count)
            }
        }
    }

    /// The SCWS type string.
    pub fn type_name(&self) -> &'static str {
        match self {
            Constraint::MinLength { .. } => "minLength",
            Constraint::ExactLength { .. } => "exactLength",
            Constraint::MinMaxLength { .. } => "minMaxLength",
            Constraint::Numeric => "numeric",
            Constraint::MinDigits { .. } => "minDigits",
            Constraint::MinUpperCase { .. } => "minUpperCase",
            Constraint::MinSpecial { .. } => "minSpecial",
            Constraint::MinLowerCase { .. } => "minLowerCase",
            Constraint::NewOldDifferent => "newOldDifferent",
            Constraint::NewOldDissimilar { .. } => "newOldDissimilar",
            Constraint::MaxIdenticalSequence { .. } => "maxIdenticalSequence",
            Constraint::MaxIncDecSequence { .. } => "maxIncDecSequence",
        }
    }

    /// A sentence for people: "6 to 8 characters".
    pub fn describe(&self) -> String {
        let plural =
            |n: u32, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        match *self {
            Constraint::MinLength { min_length } => {
                format!("at least {}", plural(min_length, "character", "characters"))
            }
            Constraint::ExactLength { length } => {
                format!("exactly {}", plural(length, "character", "characters"))
            }
            Constraint::MinMaxLength {
                min_length,
                max_length,
            } => format!("{min_length} to {max_length} characters"),
            Constraint::Numeric => "digits 0-9 only".into(),
            Constraint::MinDigits { count } => {
                format!("at least {}", plural(count, "digit", "digits"))
            }
            Constraint::MinUpperCase { count } => format!(
                "at least {}",
                plural(count, "uppercase letter", "uppercase letters")
            ),
            Constraint::MinSpecial { count } => format!(
                "at least {}",
                plural(count, "special character", "special characters")
            ),
            Constraint::MinLowerCase { count } => format!(
                "at least {}",
                plural(count, "lowercase letter", "lowercase letters")
            ),
            Constraint::NewOldDifferent => "different from the current PIN".into(),
            Constraint::NewOldDissimilar { threshold } => {
                format!("at least {threshold}% of the characters changed from the current PIN")
            }
            Constraint::MaxIdenticalSequence { count } => {
                format!("no {count} identical characters in a row")
            }
            Constraint::MaxIncDecSequence { count } => {
                format!("no {count} increasing or decreasing characters in a row")
            }
        }
    }
}

/// `type(param=value, …)`, as in the JSON: `minMaxLength(minLength=6, maxLength=8)`.
impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.type_name())?;
        let params = match *self {
            Constraint::MinLength { min_length } => format!("minLength={min_length}"),
            Constraint::ExactLength { length } => format!("length={length}"),
            Constraint::MinMaxLength {
                min_length,
                max_length,
            } => format!("minLength={min_length}, maxLength={max_length}"),
            Constraint::NewOldDissimilar { threshold } => format!("threshold={threshold}"),
            Constraint::MinDigits { count }
            | Constraint::MinUpperCase { count }
            | Constraint::MinSpecial { count }
            | Constraint::MinLowerCase { count }
            | Constraint::MaxIdenticalSequence { count }
            | Constraint::MaxIncDecSequence { count } => format!("count={count}"),
            Constraint::Numeric | Constraint::NewOldDifferent => return Ok(()),
        };
        write!(f, "({params})")
    }
}

/// `checkConstraints`: one boolean per constraint, in order.
pub fn check_all(constraints: &[Constraint], old: &Secret, new: &Secret) -> Vec<bool> {
    let (old, new) = (Chars::of(old), Chars::of(new));
    constraints
        .iter()
        .map(|c| c.check_chars(&old, &new))
        .collect()
}

/// The constraints a pair of values breaks, in order.
pub fn failed(constraints: &[Constraint], old: &Secret, new: &Secret) -> Vec<Constraint> {
    constraints
        .iter()
        .zip(check_all(constraints, old, new))
        .filter(|(_, ok)| !ok)
        .map(|(c, _)| c.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Constraint as C;

    fn ok(c: &C, old: &str, new: &str) -> bool {
        c.check(&Secret::from(old), &Secret::from(new))
    }

    /// (constraint, old, new, expected): every type at its boundaries.
    #[test]
    fn table() {
        let cases: &[(C, &str, &str, bool)] = &[
            (C::MinLength { min_length: 6 }, "", "12345", false),
            (C::MinLength { min_length: 6 }, "", "123456", true),
            (C::MinLength { min_length: 6 }, "", "1234567", true),
            (C::MinLength { min_length: 0 }, "", "", true),
            // Characters, not bytes: "é" is 2 bytes, 1 character.
            (C::MinLength { min_length: 6 }, "", "ééééé", false),
            (C::MinLength { min_length: 6 }, "", "éééééé", true),
            (C::ExactLength { length: 8 }, "", "1234567", false),
            (C::ExactLength { length: 8 }, "", "12345678", true),
            (C::ExactLength { length: 8 }, "", "123456789", false),
            (C::ExactLength { length: 3 }, "", "€€€", true),
            (
                C::MinMaxLength {
                    min_length: 6,
                    max_length: 8,
                },
                "",
                "12345",
                false,
            ),
            (
                C::MinMaxLength {
                    min_length: 6,
                    max_length: 8,
                },
                "",
                "123456",
                true,
            ),
            (
                C::MinMaxLength {
                    min_length: 6,
                    max_length: 8,
                },
                "",
                "12345678",
                true,
            ),
            (
                C::MinMaxLength {
                    min_length: 6,
                    max_length: 8,
                },
                "",
                "123456789",
                false,
            ),
            (C::Numeric, "", "0123456789", true),
            (C::Numeric, "", "", true),
            (C::Numeric, "", "12345a", false),
            (C::Numeric, "", "123 45", false),
            (C::Numeric, "", "12345٣", false), // Arabic-Indic digit: not 0-9
            (C::Numeric, "", "１２３", false), // fullwidth digits: not 0-9
            (C::MinDigits { count: 2 }, "", "abc1", false),
            (C::MinDigits { count: 2 }, "", "a1b2", true),
            (C::MinDigits { count: 0 }, "", "", true),
            (C::MinDigits { count: 1 }, "", "abc٣", false),
            (C::MinUpperCase { count: 1 }, "", "abc", false),
            (C::MinUpperCase { count: 1 }, "", "abC", true),
            (C::MinUpperCase { count: 2 }, "", "ÉÀ", true),
            (C::MinUpperCase { count: 1 }, "", "1!ß", false),
            (C::MinLowerCase { count: 1 }, "", "ABC", false),
            (C::MinLowerCase { count: 1 }, "", "ABc", true),
            (C::MinLowerCase { count: 2 }, "", "éß", true),
            (C::MinLowerCase { count: 1 }, "", "123漢", false),
            (C::MinSpecial { count: 1 }, "", "abc123", false),
            (C::MinSpecial { count: 1 }, "", "abc 123", true),
            (C::MinSpecial { count: 2 }, "", "a!b€", true),
            (C::MinSpecial { count: 1 }, "", "漢字é٣", false), // letters and digits of any script
            (C::MinSpecial { count: 1 }, "", "ab🙂", true),
            (C::NewOldDifferent, "123456", "123456", false),
            (C::NewOldDifferent, "123456", "123457", true),
            (C::NewOldDifferent, "", "123456", true),
            (C::NewOldDifferent, "", "", true),
            (C::NewOldDifferent, "123456", "1234567", true),
            // 123456 → 123457: distance 1 of 6 = 16.7 %.
            (
                C::NewOldDissimilar { threshold: 16 },
                "123456",
                "123457",
                true,
            ),
            (
                C::NewOldDissimilar { threshold: 17 },
                "123456",
                "123457",
                false,
            ),
            // 123456 → 654321: distance 6 of 6 = 100 %.
            (
                C::NewOldDissimilar { threshold: 100 },
                "123456",
                "654321",
                true,
            ),
            // 123456 → 1234: distance 2 of 6 = 33.3 %.
            (
                C::NewOldDissimilar { threshold: 33 },
                "123456",
                "1234",
                true,
            ),
            (
                C::NewOldDissimilar { threshold: 34 },
                "123456",
                "1234",
                false,
            ),
            // 12345678 → 23456789: distance 2 of 8 = exactly 25 %.
            (
                C::NewOldDissimilar { threshold: 25 },
                "12345678",
                "23456789",
                true,
            ),
            (
                C::NewOldDissimilar { threshold: 26 },
                "12345678",
                "23456789",
                false,
            ),
            (
                C::NewOldDissimilar { threshold: 1 },
                "123456",
                "123456",
                false,
            ),
            (
                C::NewOldDissimilar { threshold: 0 },
                "123456",
                "123456",
                true,
            ),
            (C::NewOldDissimilar { threshold: 100 }, "", "123456", true),
            (C::MaxIdenticalSequence { count: 3 }, "", "111", false),
            (C::MaxIdenticalSequence { count: 3 }, "", "11", true),
            (C::MaxIdenticalSequence { count: 3 }, "", "1121121", true),
            (C::MaxIdenticalSequence { count: 3 }, "", "12111", false),
            (C::MaxIdenticalSequence { count: 3 }, "", "aaA", true),
            (C::MaxIdenticalSequence { count: 3 }, "", "ééé", false),
            (C::MaxIdenticalSequence { count: 2 }, "", "11", false),
            (C::MaxIdenticalSequence { count: 2 }, "", "1", true),
            (C::MaxIdenticalSequence { count: 2 }, "", "", true),
            (C::MaxIncDecSequence { count: 3 }, "", "123", false),
            (C::MaxIncDecSequence { count: 3 }, "", "321", false),
            (C::MaxIncDecSequence { count: 3 }, "", "abc", false),
            (C::MaxIncDecSequence { count: 3 }, "", "cba", false),
            (C::MaxIncDecSequence { count: 3 }, "", "12", true),
            (C::MaxIncDecSequence { count: 3 }, "", "1213", true),
            (C::MaxIncDecSequence { count: 3 }, "", "121", true),
            (C::MaxIncDecSequence { count: 3 }, "", "135", true),
            (C::MaxIncDecSequence { count: 3 }, "", "890", true), // no wrap-around
            (C::MaxIncDecSequence { count: 3 }, "", "aBc", true), // B is not b
            (C::MaxIncDecSequence { count: 3 }, "", "111", true),
            (C::MaxIncDecSequence { count: 3 }, "", "9:;", false), // scalar values
            (C::MaxIncDecSequence { count: 4 }, "", "1234", false),
            (C::MaxIncDecSequence { count: 4 }, "", "123x321", true),
            (C::MaxIncDecSequence { count: 2 }, "", "12", false),
            (C::MaxIncDecSequence { count: 2 }, "", "1", true),
            (C::MaxIncDecSequence { count: 2 }, "", "", true),
        ];
        for (c, old, new, expected) in cases {
            assert_eq!(ok(c, old, new), *expected, "{c} old={old:?} new={new:?}");
        }
    }

    #[test]
    fn not_utf8_is_one_character_per_byte() {
        let v = Secret::new(vec![0xFF, 0x41, 0x31]);
        let none = Secret::default();
        assert!(C::ExactLength { length: 3 }.check(&none, &v));
        // ÿ (U+00FF) is a lowercase letter, A uppercase, 1 a digit.
        assert!(C::MinLowerCase { count: 1 }.check(&none, &v));
        assert!(C::MinUpperCase { count: 1 }.check(&none, &v));
        assert!(!C::Numeric.check(&none, &v));
    }

    #[test]
    fn edit_distance_examples() {
        let d = |a: &str, b: &str| {
            edit_distance(
                &a.chars().collect::<Vec<_>>(),
                &b.chars().collect::<Vec<_>>(),
            )
        };
        assert_eq!(d("", ""), 0);
        assert_eq!(d("", "abc"), 3);
        assert_eq!(d("kitten", "sitting"), 3);
        assert_eq!(d("123456", "654321"), 6);
        assert_eq!(d("123456", "1234"), 2);
        assert_eq!(d("12345678", "23456789"), 2);
        assert_eq!(d("pässwörd", "passwort"), 3);
    }

    #[test]
    fn serializes_with_the_scws_names() {
        let all = [
            (
                C::MinLength { min_length: 4 },
                r#"{"type":"minLength","minLength":4}"#,
            ),
            (
                C::ExactLength { length: 8 },
                r#"{"type":"exactLength","length":8}"#,
            ),
            (
                C::MinMaxLength {
                    min_length: 6,
                    max_length: 8,
                },
                r#"{"type":"minMaxLength","minLength":6,"maxLength":8}"#,
            ),
            (C::Numeric, r#"{"type":"numeric"}"#),
            (
                C::MinDigits { count: 1 },
                r#"{"type":"minDigits","count":1}"#,
            ),
            (
                C::MinUpperCase { count: 1 },
                r#"{"type":"minUpperCase","count":1}"#,
            ),
            (
                C::MinSpecial { count: 1 },
                r#"{"type":"minSpecial","count":1}"#,
            ),
            (
                C::MinLowerCase { count: 1 },
                r#"{"type":"minLowerCase","count":1}"#,
            ),
            (C::NewOldDifferent, r#"{"type":"newOldDifferent"}"#),
            (
                C::NewOldDissimilar { threshold: 50 },
                r#"{"type":"newOldDissimilar","threshold":50}"#,
            ),
            (
                C::MaxIdenticalSequence { count: 3 },
                r#"{"type":"maxIdenticalSequence","count":3}"#,
            ),
            (
                C::MaxIncDecSequence { count: 3 },
                r#"{"type":"maxIncDecSequence","count":3}"#,
            ),
        ];
        for (c, json) in all {
            assert_eq!(serde_json::to_string(&c).unwrap(), json);
            assert_eq!(serde_json::from_str::<C>(json).unwrap(), c);
            assert_eq!(
                c.type_name(),
                serde_json::from_str::<serde_json::Value>(json).unwrap()["type"]
            );
        }
        assert!(serde_json::from_str::<C>(r#"{"type":"minLength"}"#).is_err());
    }

    #[test]
    fn check_all_keeps_order() {
        let list = [
            C::Numeric,
            C::MinLength { min_length: 6 },
            C::NewOldDifferent,
        ];
        assert_eq!(
            check_all(&list, &Secret::from("1234"), &Secret::from("1234")),
            [true, false, false]
        );
        assert_eq!(
            failed(&list, &Secret::from("1234"), &Secret::from("1234a")),
            [C::Numeric, C::MinLength { min_length: 6 }]
        );
        assert_eq!(
            C::MinMaxLength {
                min_length: 6,
                max_length: 8
            }
            .to_string(),
            "minMaxLength(minLength=6, maxLength=8)"
        );
    }
}
