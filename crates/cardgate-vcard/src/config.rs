//! Configuration of a virtual card: profile, initial reference data, retry
//! counters, initial PIN states and the quirks of real cards it imitates.
//!
//! Built in code (`CardConfig::piv()`, `CardConfig::openpgp()`, then struct
//! update syntax) or loaded from TOML:
//!
//! ```toml
//! profile = "openpgp"          # "piv" | "openpgp"
//! max_tries = 3                # every retry counter of the card (1..=15)
//! pin_not_initialized = false  # user PIN unusable (6984) until RESET RETRY COUNTER
//! pin_must_change = false      # user PIN must be changed before use (VERIFY → 6985)
//! start_blocked = false        # user PIN retry counter starts at 0
//! quirks = ["blocked_sw_63c0"] # see `Quirk`
//! serial = 0x0000CAFE          # OpenPGP only: serial number in the AID
//!
//! # Initial reference data (factory defaults when absent).
//! # PIV:     pin (6-8 digits, default 123456), puk (8 bytes, default 12345678)
//! # OpenPGP: pw1 (6-127 bytes, default 123456), pw3 (8-127 bytes, default
//! #          12345678), reset_code (8-127 bytes, default: not set)
//! pw1 = "123456"
//! pw3 = "12345678"
//! ```
//!
//! Unknown keys, and keys of the other profile, are rejected.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer};

use crate::secret::Secret;

/// Which application the card carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// NIST SP 800-73-4 PIV card application.
    Piv,
    /// OpenPGP card application 3.4.
    #[value(name = "openpgp")]
    OpenPgp,
}

impl Profile {
    /// A human name: "PIV" or "OpenPGP".
    pub fn name(self) -> &'static str {
        match self {
            Profile::Piv => "PIV",
            Profile::OpenPgp => "OpenPGP",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Deviations from the specifications seen on real cards. A PIN engine must
/// cope with each of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Quirk {
    /// Answer 63C0 instead of 6983 whenever a reference is blocked.
    #[serde(rename = "blocked_sw_63c0")]
    #[value(name = "blocked_sw_63c0", alias = "blocked-sw-63c0")]
    BlockedSw63c0,
    /// A VERIFY without data is a failed verification: it spends a try
    /// (instead of being a free status query).
    #[value(name = "empty_verify_spends_try", alias = "empty-verify-spends-try")]
    EmptyVerifySpendsTry,
    /// CHANGE REFERENCE DATA with a wrong old value answers 6300 (no
    /// counter in the status word), still decrementing the counter.
    #[serde(rename = "change_wrong_old_6300")]
    #[value(name = "change_wrong_old_6300", alias = "change-wrong-old-6300")]
    ChangeWrongOld6300,
    /// A failed CHANGE REFERENCE DATA leaves an earlier verification of the
    /// PIN in place, so the empty VERIFY after it answers 9000 and hides
    /// the count (seen on a real PIV applet, together with
    /// `change_wrong_old_6300`).
    #[value(
        name = "failed_change_keeps_verification",
        alias = "failed-change-keeps-verification"
    )]
    FailedChangeKeepsVerification,
}

/// Default number of tries of every retry counter.
pub const DEFAULT_MAX_TRIES: u8 = 3;
/// A retry counter must fit in the low nibble of 63Cx.
pub const MAX_MAX_TRIES: u8 = 15;

/// PIV factory defaults (SP 800-73-4 leaves them to the issuer; these are the
/// de-facto ones).
pub const PIV_DEFAULT_PIN: &str = "123456";
/// PIV factory-default PUK, likewise de facto.
pub const PIV_DEFAULT_PUK: &str = "12345678";
/// OpenPGP card 3.4 §4.3 factory default of PW1, the user PIN.
pub const OPENPGP_DEFAULT_PW1: &str = "123456";
/// OpenPGP card 3.4 §4.3 factory default of PW3, the admin PIN.
pub const OPENPGP_DEFAULT_PW3: &str = "12345678";

/// OpenPGP minimum length of PW1 in bytes (OpenPGP card 3.4 §4.3).
pub const OPENPGP_PW1_MIN: usize = 6;
/// OpenPGP minimum length of PW3 in bytes (OpenPGP card 3.4 §4.3).
pub const OPENPGP_PW3_MIN: usize = 8;
/// OpenPGP minimum length of the resetting code in bytes (OpenPGP card
/// 3.4 §4.3).
pub const OPENPGP_RC_MIN: usize = 8;
/// OpenPGP maximum length of every password in bytes, as announced in DO
/// C4 (OpenPGP card 3.4 §4.4.1).
pub const OPENPGP_PW_MAX: usize = 127;

/// Default OpenPGP serial number (in the AID, manufacturer FFFF = test card).
pub const DEFAULT_SERIAL: u32 = 0x0000_0001;

/// Configuration of one virtual card. `Debug` never shows the reference data.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardConfig {
    /// The card application: PIV or OpenPGP.
    pub profile: Profile,
    /// Number of tries of every retry counter (user PIN, PUK / PW3, reset code).
    #[serde(default = "default_max_tries")]
    pub max_tries: u8,
    /// The user PIN (PIV 80 / OpenPGP PW1) is not initialized: VERIFY and
    /// CHANGE REFERENCE DATA answer 6984 until RESET RETRY COUNTER sets it.
    #[serde(default)]
    pub pin_not_initialized: bool,
    /// The user PIN must be changed before use: VERIFY with the correct
    /// value answers 6985 and spends no try; a wrong value counts as usual;
    /// a successful CHANGE REFERENCE DATA (or RESET RETRY COUNTER) clears it.
    #[serde(default)]
    pub pin_must_change: bool,
    /// The user PIN starts blocked (retry counter 0).
    #[serde(default)]
    pub start_blocked: bool,
    /// Behaviours of real cards to imitate (see [`Quirk`]).
    #[serde(default)]
    pub quirks: Vec<Quirk>,
    /// OpenPGP only: the serial number in the AID.
    #[serde(default)]
    pub serial: Option<u32>,
    /// PIV only: initial PIN (6–8 ASCII digits).
    #[serde(default, deserialize_with = "de_secret")]
    pub pin: Option<Secret>,
    /// PIV only: initial PUK (8 bytes).
    #[serde(default, deserialize_with = "de_secret")]
    pub puk: Option<Secret>,
    /// OpenPGP only: initial PW1 (user PIN).
    #[serde(default, deserialize_with = "de_secret")]
    pub pw1: Option<Secret>,
    /// OpenPGP only: initial PW3 (admin PIN).
    #[serde(default, deserialize_with = "de_secret")]
    pub pw3: Option<Secret>,
    /// OpenPGP only: initial resetting code (not set by default).
    #[serde(default, deserialize_with = "de_secret")]
    pub reset_code: Option<Secret>,
}

fn default_max_tries() -> u8 {
    DEFAULT_MAX_TRIES
}

fn de_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret::from_string))
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum CardConfigError {
    /// The configuration file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file's path.
        path: String,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The document is not valid TOML or does not fit [`CardConfig`].
    #[error("invalid card configuration: {0}")]
    Toml(String),
    /// The values are inconsistent or out of range (e.g. a PIV PIN that
    /// is not 6 to 8 digits).
    #[error("invalid card configuration: {0}")]
    Invalid(String),
}

impl CardConfig {
    fn base(profile: Profile) -> Self {
        CardConfig {
            profile,
            max_tries: DEFAULT_MAX_TRIES,
            pin_not_initialized: false,
            pin_must_change: false,
            start_blocked: false,
            quirks: Vec::new(),
            serial: None,
            pin: None,
            puk: None,
            pw1: None,
            pw3: None,
            reset_code: None,
        }
    }

    /// A PIV card with factory defaults.
    pub fn piv() -> Self {
        Self::base(Profile::Piv)
    }

    /// An OpenPGP card with factory defaults.
    pub fn openpgp() -> Self {
        Self::base(Profile::OpenPgp)
    }

    /// The factory-default configuration of `profile`.
    pub fn for_profile(profile: Profile) -> Self {
        Self::base(profile)
    }

    /// Adds a quirk (no duplicate).
    pub fn with_quirk(mut self, quirk: Quirk) -> Self {
        if !self.quirks.contains(&quirk) {
            self.quirks.push(quirk);
        }
        self
    }

    /// The card imitates this quirk.
    pub fn has_quirk(&self, quirk: Quirk) -> bool {
        self.quirks.contains(&quirk)
    }

    /// Parses and validates a TOML document.
    pub fn from_toml_str(text: &str) -> Result<Self, CardConfigError> {
        let config: CardConfig =
            toml::from_str(text).map_err(|e| CardConfigError::Toml(e.message().to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, CardConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| CardConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        // The file may hold PINs: wipe our copy of the text once parsed.
        let text = zeroize::Zeroizing::new(text);
        Self::from_toml_str(&text)
    }

    /// Checks ranges, formats and that no setting of the other profile is given.
    pub fn validate(&self) -> Result<(), CardConfigError> {
        let bad = |m: String| Err(CardConfigError::Invalid(m));
        if !(1..=MAX_MAX_TRIES).contains(&self.max_tries) {
            return bad(format!(
                "max_tries must be 1..={MAX_MAX_TRIES}, got {}",
                self.max_tries
            ));
        }
        match self.profile {
            Profile::Piv => {
                for (name, set) in [
                    ("pw1", self.pw1.is_some()),
                    ("pw3", self.pw3.is_some()),
                    ("reset_code", self.reset_code.is_some()),
                    ("serial", self.serial.is_some()),
                ] {
                    if set {
                        return bad(format!(
                            "`{name}` is an OpenPGP setting; a PIV card has `pin` and `puk`"
                        ));
                    }
                }
                if let Some(pin) = &self.pin
                    && (!(6..=8).contains(&pin.len()) || !pin.is_ascii_digits())
                {
                    return bad("`pin` must be 6 to 8 ASCII digits".into());
                }
                if let Some(puk) = &self.puk
                    && puk.len() != 8
                {
                    return bad("`puk` must be 8 bytes".into());
                }
            }
            Profile::OpenPgp => {
                for (name, set) in [("pin", self.pin.is_some()), ("puk", self.puk.is_some())] {
                    if set {
                        return bad(format!(
                            "`{name}` is a PIV setting; an OpenPGP card has `pw1`, `pw3` and `reset_code`"
                        ));
                    }
                }
                for (name, value, min) in [
                    ("pw1", &self.pw1, OPENPGP_PW1_MIN),
                    ("pw3", &self.pw3, OPENPGP_PW3_MIN),
                    ("reset_code", &self.reset_code, OPENPGP_RC_MIN),
                ] {
                    if let Some(v) = value
                        && !(min..=OPENPGP_PW_MAX).contains(&v.len())
                    {
                        return bad(format!(
                            "`{name}` must be {min} to {OPENPGP_PW_MAX} bytes (UTF-8)"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = CardConfig::piv();
        assert_eq!(c.profile, Profile::Piv);
        assert_eq!(c.max_tries, 3);
        assert!(c.validate().is_ok());
        assert!(CardConfig::openpgp().validate().is_ok());
    }

    #[test]
    fn parses_a_full_file() {
        let c = CardConfig::from_toml_str(
            r#"
            profile = "openpgp"
            max_tries = 5
            pin_must_change = true
            quirks = ["blocked_sw_63c0", "change_wrong_old_6300"]
            serial = 0xCAFE
            pw1 = "654321"
            reset_code = "abcdefgh"
            "#,
        )
        .unwrap();
        assert_eq!(c.profile, Profile::OpenPgp);
        assert_eq!(c.max_tries, 5);
        assert!(c.pin_must_change);
        assert!(c.has_quirk(Quirk::BlockedSw63c0));
        assert!(!c.has_quirk(Quirk::EmptyVerifySpendsTry));
        assert_eq!(c.serial, Some(0xCAFE));
        assert_eq!(c.pw1.as_ref().unwrap().expose(), b"654321");
        assert!(!format!("{c:?}").contains("654321"));
    }

    #[test]
    fn rejects_unknown_keys_and_values() {
        let e = CardConfig::from_toml_str("profile = \"piv\"\npin_tries = 3\n").unwrap_err();
        assert!(e.to_string().contains("pin_tries"), "{e}");
        let e = CardConfig::from_toml_str("profile = \"piv\"\nquirks = [\"nope\"]\n").unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let e = CardConfig::from_toml_str("profile = \"gids\"\n").unwrap_err();
        assert!(e.to_string().contains("gids"), "{e}");
        assert!(CardConfig::from_toml_str("max_tries = 3\n").is_err());
    }

    #[test]
    fn rejects_invalid_values() {
        for text in [
            "profile = \"piv\"\nmax_tries = 0",
            "profile = \"piv\"\nmax_tries = 16",
            "profile = \"piv\"\npin = \"12345\"",
            "profile = \"piv\"\npin = \"12345a\"",
            "profile = \"piv\"\npuk = \"1234567\"",
            "profile = \"piv\"\npw1 = \"123456\"",
            "profile = \"openpgp\"\npin = \"123456\"",
            "profile = \"openpgp\"\npw1 = \"12345\"",
            "profile = \"openpgp\"\npw3 = \"1234567\"",
            "profile = \"openpgp\"\nreset_code = \"1234567\"",
        ] {
            assert!(CardConfig::from_toml_str(text).is_err(), "{text}");
        }
    }
}
