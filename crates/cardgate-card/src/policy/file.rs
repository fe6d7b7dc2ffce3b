//! Policy files (TOML): parsing and validation. Every problem is reported
//! with the file, the line and what is wrong; see `docs/policies.md` for
//! the format.

use super::constraint::Constraint;
use crate::card::PinFormat;
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

/// A policy file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct PolicyError {
    /// The file's path (or `builtin:NAME` for an embedded policy).
    pub file: String,
    /// 1-based line of the problem, when it has one.
    pub line: Option<usize>,
    /// What is wrong, for a person to read.
    pub message: String,
}

/// A length bound in a policy file: a number, or `"card"` for the limit
/// the card itself reports (e.g. the maximum length in OpenPGP DO C4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// A length in characters.
    Value(u32),
    /// The card's own limit for the PIN object.
    Card,
}

impl Bound {
    fn resolve(self, card: usize) -> u32 {
        match self {
            Bound::Value(v) => v,
            Bound::Card => u32::try_from(card).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Value(v) => write!(f, "{v}"),
            Bound::Card => f.write_str("card"),
        }
    }
}

impl Serialize for Bound {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Bound::Value(v) => s.serialize_u32(*v),
            Bound::Card => s.serialize_str("card"),
        }
    }
}

impl<'de> Deserialize<'de> for Bound {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bound;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a length (a whole number from 0) or \"card\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Bound, E> {
                u32::try_from(v)
                    .map(Bound::Value)
                    .map_err(|_| E::custom(format!("length {v} is too large")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Bound, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("length {v} is negative")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Bound, E> {
                match v {
                    "card" => Ok(Bound::Card),
                    _ => Err(E::custom(format!(
                        "expected a length or \"card\", found \"{v}\""
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A constraint as written in a policy file: like [`Constraint`], but
/// `minLength` / `maxLength` may say `"card"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum ConstraintSpec {
    /// [`Constraint::MinLength`].
    #[serde(rename_all = "camelCase")]
    MinLength {
        /// Fewest characters, or the card's minimum.
        min_length: Bound,
    },
    /// [`Constraint::ExactLength`].
    ExactLength {
        /// The only length allowed.
        length: u32,
    },
    /// [`Constraint::MinMaxLength`].
    #[serde(rename_all = "camelCase")]
    MinMaxLength {
        /// Fewest characters, or the card's minimum.
        min_length: Bound,
        /// Most characters, or the card's maximum.
        max_length: Bound,
    },
    /// [`Constraint::Numeric`].
    Numeric,
    /// [`Constraint::MinDigits`].
    MinDigits {
        /// Fewest digits.
        count: u32,
    },
    /// [`Constraint::MinUpperCase`].
    MinUpperCase {
        /// Fewest uppercase letters.
        count: u32,
    },
    /// [`Constraint::MinSpecial`].
    MinSpecial {
        /// Fewest special characters.
        count: u32,
    },
    /// [`Constraint::MinLowerCase`].
    MinLowerCase {
        /// Fewest lowercase letters.
        count: u32,
    },
    /// [`Constraint::NewOldDifferent`].
    NewOldDifferent,
    /// [`Constraint::NewOldDissimilar`].
    NewOldDissimilar {
        /// Smallest edit distance, in percent of the longer value's length.
        threshold: u32,
    },
    /// [`Constraint::MaxIdenticalSequence`].
    MaxIdenticalSequence {
        /// Length of the shortest run that is refused.
        count: u32,
    },
    /// [`Constraint::MaxIncDecSequence`].
    MaxIncDecSequence {
        /// Length of the shortest run that is refused.
        count: u32,
    },
}

impl ConstraintSpec {
    /// The constraint for a PIN object whose card limits are `format`.
    pub fn resolve(&self, format: &PinFormat) -> Constraint {
        use ConstraintSpec as S;
        match *self {
            S::MinLength { min_length } => Constraint::MinLength {
                min_length: min_length.resolve(format.min_len),
            },
            S::ExactLength { length } => Constraint::ExactLength { length },
            S::MinMaxLength {
                min_length,
                max_length,
            } => Constraint::MinMaxLength {
                min_length: min_length.resolve(format.min_len),
                max_length: max_length.resolve(format.max_len),
            },
            S::Numeric => Constraint::Numeric,
            S::MinDigits { count } => Constraint::MinDigits { count },
            S::MinUpperCase { count } => Constraint::MinUpperCase { count },
            S::MinSpecial { count } => Constraint::MinSpecial { count },
            S::MinLowerCase { count } => Constraint::MinLowerCase { count },
            S::NewOldDifferent => Constraint::NewOldDifferent,
            S::NewOldDissimilar { threshold } => Constraint::NewOldDissimilar { threshold },
            S::MaxIdenticalSequence { count } => Constraint::MaxIdenticalSequence { count },
            S::MaxIncDecSequence { count } => Constraint::MaxIncDecSequence { count },
        }
    }

    /// Problems no card could make right.
    fn validate(&self) -> Result<(), String> {
        use ConstraintSpec as S;
        match *self {
            S::MinMaxLength {
                min_length: Bound::Value(min),
                max_length: Bound::Value(max),
            } if min > max => Err(format!(
                "minMaxLength: minLength {min} is greater than maxLength {max}"
            )),
            S::MinMaxLength {
                max_length: Bound::Value(0),
                ..
            } => Err("minMaxLength: maxLength must be at least 1".into()),
            S::ExactLength { length: 0 } => Err("exactLength: length must be at least 1".into()),
            S::NewOldDissimilar { threshold } if threshold > 100 => Err(format!(
                "newOldDissimilar: threshold is a percentage (0 to 100), not {threshold}"
            )),
            S::MaxIdenticalSequence { count } | S::MaxIncDecSequence { count } if count < 2 => {
                Err(format!(
                    "{}: count must be at least 2 (with {count} no PIN could pass)",
                    self.type_name()
                ))
            }
            _ => Ok(()),
        }
    }

    fn type_name(&self) -> &'static str {
        self.resolve(&PinFormat {
            min_len: 0,
            max_len: 0,
            numeric: false,
            encoding: crate::card::Encoding::Utf8,
            pad: None,
            stored_len: 0,
        })
        .type_name()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    description: Option<String>,
    #[serde(rename = "match")]
    matcher: Option<Spanned<RawMatch>>,
    #[serde(default)]
    pins: BTreeMap<String, Spanned<RawPin>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    profile: Option<Spanned<String>>,
    atr: Option<Spanned<String>>,
    aid: Option<Spanned<String>>,
    label: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPin {
    label: Option<String>,
    try_count_low: Option<u8>,
    /// Parsed one by one, so that each problem points at its own line.
    #[serde(default)]
    constraints: Vec<Spanned<toml::Table>>,
}

/// Which cards a policy is for. Every criterion given must match.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// A card profile's name or an application's id ("piv", "yubikey" …).
    pub profile: Option<String>,
    /// Matched against the ATR as uppercase hex without spaces, ignoring case.
    pub atr: Option<Regex>,
    /// A prefix of the application's AID (the one cardgate selects).
    pub aid: Option<Vec<u8>>,
    /// Matched against the token label.
    pub label: Option<Regex>,
}

/// What a [`Matcher`] looks at.
pub struct CardFacts<'a> {
    /// The card profile that recognised the card.
    pub profile: &'a str,
    /// The application of the PIN object.
    pub application: &'a str,
    /// Uppercase hex, no spaces.
    pub atr: &'a str,
    /// The AID of the PIN object's application.
    pub aid: &'a [u8],
    /// The token label.
    pub label: &'a str,
}

impl Matcher {
    /// Every criterion given matches the card (an empty matcher matches
    /// every card, but a policy file may not have one).
    pub fn matches(&self, card: &CardFacts<'_>) -> bool {
        self.profile
            .as_deref()
            .is_none_or(|p| p == card.profile || p == card.application)
            && self.atr.as_ref().is_none_or(|r| r.is_match(card.atr))
            && self.aid.as_ref().is_none_or(|a| card.aid.starts_with(a))
            && self.label.as_ref().is_none_or(|r| r.is_match(card.label))
    }

    /// How many criteria the matcher has: the more, the more specific.
    pub fn specificity(&self) -> usize {
        usize::from(self.profile.is_some())
            + usize::from(self.atr.is_some())
            + usize::from(self.aid.is_some())
            + usize::from(self.label.is_some())
    }
}

/// What a policy says about one PIN object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PinRule {
    /// Replaces the PIN object's label in its status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `tryCountLow` is true when at most this many tries are left
    /// (default: as soon as the counter is below its maximum).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub try_count_low: Option<u8>,
    /// The constraints, in the order `getConstraints` returns them.
    pub constraints: Vec<ConstraintSpec>,
}

/// Where a policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// Embedded in the binary (from `policies/`).
    Builtin,
    /// Read from this file.
    File(std::path::PathBuf),
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySource::Builtin => f.write_str("builtin"),
            PolicySource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One parsed, valid policy file.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The file name without `.toml`; a file with the same name in a later
    /// layer replaces this one.
    pub name: String,
    /// Where it was read from.
    pub source: PolicySource,
    /// 0 for built-in policies, then 1, 2, … for each directory in order.
    pub layer: usize,
    /// The file's own description of what it is for.
    pub description: Option<String>,
    /// The `[match]` table: which cards it applies to.
    pub matcher: Matcher,
    /// Rules by PIN object id.
    pub pins: BTreeMap<String, PinRule>,
}

impl Policy {
    /// The rule for the PIN object with this id, if the policy has one.
    pub fn pin(&self, id: &str) -> Option<&PinRule> {
        self.pins.get(id)
    }

    /// Parses and validates one policy file. `file` names it in errors.
    pub fn parse(
        name: &str,
        file: &str,
        text: &str,
        source: PolicySource,
        layer: usize,
    ) -> Result<Policy, PolicyError> {
        let err = |span: Option<std::ops::Range<usize>>, message: String| PolicyError {
            file: file.to_string(),
            line: span.map(|s| line_of(text, s.start)),
            message,
        };
        let raw: RawPolicy =
            toml::from_str(text).map_err(|e| err(e.span(), e.message().to_string()))?;
        let Some(raw_match) = raw.matcher else {
            return Err(err(
                None,
                "no [match] table: say which cards the policy is for (profile, atr, aid, label)"
                    .into(),
            ));
        };
        let match_span = raw_match.span();
        let m = raw_match.into_inner();
        let profile = match m.profile {
            None => None,
            Some(p) => {
                let known = super::known_profiles();
                if !known.contains(&p.get_ref().as_str()) {
                    return Err(err(
                        Some(p.span()),
                        format!(
                            "unknown profile \"{}\" (known: {})",
                            p.get_ref(),
                            known.join(", ")
                        ),
                    ));
                }
                Some(p.into_inner())
            }
        };
        let regex =
            |r: Option<Spanned<String>>, what: &str| -> Result<Option<Regex>, PolicyError> {
                r.map(|r| {
                    RegexBuilder::new(r.get_ref())
                        .case_insensitive(what == "atr")
                        .build()
                        .map_err(|e| {
                            err(
                                Some(r.span()),
                                format!("bad {what} regular expression: {}", one_line(&e)),
                            )
                        })
                })
                .transpose()
            };
        let atr = regex(m.atr, "atr")?;
        let label = regex(m.label, "label")?;
        let aid = match m.aid {
            None => None,
            Some(a) => Some(parse_hex(a.get_ref()).ok_or_else(|| {
                err(
                    Some(a.span()),
                    format!("aid \"{}\" is not hexadecimal bytes", a.get_ref()),
                )
            })?),
        };
        let matcher = Matcher {
            profile: profile.clone(),
            atr,
            aid,
            label,
        };
        if matcher.specificity() == 0 {
            return Err(err(
                Some(match_span),
                "[match] is empty: give at least one of profile, atr, aid, label".into(),
            ));
        }
        let known_ids: Option<Vec<&'static str>> = profile.as_deref().map(super::profile_pin_ids);
        let mut pins = BTreeMap::new();
        for (id, raw_pin) in raw.pins {
            let span = raw_pin.span();
            if let Some(known) = &known_ids
                && !known.contains(&id.as_str())
            {
                return Err(err(
                    Some(span),
                    format!(
                        "unknown PIN id \"{id}\" for profile {} (known: {})",
                        profile.as_deref().unwrap_or(""),
                        known.join(", ")
                    ),
                ));
            }
            let raw_pin = raw_pin.into_inner();
            let mut constraints = Vec::with_capacity(raw_pin.constraints.len());
            for (i, c) in raw_pin.constraints.into_iter().enumerate() {
                let span = c.span();
                let context = format!("pins.{id}, constraint {}", i + 1);
                let table = c.into_inner();
                let given: Vec<String> = table.keys().cloned().collect();
                let spec: ConstraintSpec =
                    toml::Value::Table(table)
                        .try_into()
                        .map_err(|e: toml::de::Error| {
                            err(Some(span.clone()), format!("{context}: {}", e.message()))
                        })?;
                // serde cannot refuse stray fields of parameterless types
                // (`numeric`) in an internally tagged enum: compare with
                // the fields the parsed constraint has.
                let known = toml::Value::try_from(&spec)
                    .ok()
                    .and_then(|v| v.as_table().map(|t| t.keys().cloned().collect::<Vec<_>>()))
                    .unwrap_or_default();
                if let Some(stray) = given.iter().find(|k| !known.contains(k)) {
                    return Err(err(
                        Some(span),
                        format!(
                            "{context}: unknown field `{stray}` for type `{}`",
                            spec.type_name()
                        ),
                    ));
                }
                spec.validate()
                    .map_err(|m| err(Some(span), format!("{context}: {m}")))?;
                constraints.push(spec);
            }
            pins.insert(
                id,
                PinRule {
                    label: raw_pin.label,
                    try_count_low: raw_pin.try_count_low,
                    constraints,
                },
            );
        }
        Ok(Policy {
            name: name.to_string(),
            source,
            layer,
            description: raw.description,
            matcher,
            pins,
        })
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn one_line(e: &regex::Error) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
