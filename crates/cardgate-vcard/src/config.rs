//! Configuration of a virtual card: profile, initial reference data, retry
//! counters, initial PIN states and the quirks of real cards it imitates.
//!
//! Built in code (`CardConfig::piv()`, `CardConfig::openpgp()`,
//! `CardConfig::for_profile(…)`, then struct update syntax) or loaded from
//! TOML:
//!
//! ```toml
//! profile = "openpgp"          # "piv" | "openpgp" | "yubikey" | "esteid" | "beid" | "pkcs15" | "iso"
//! max_tries = 3                # every retry counter of the card (1..=15)
//! pin_not_initialized = false  # PIV/OpenPGP/YubiKey: user PIN unusable (6984) until RESET RETRY COUNTER
//! pin_must_change = false      # PIV/OpenPGP/YubiKey: user PIN must be changed before use (VERIFY → 6985)
//! start_blocked = false        # user PIN retry counter starts at 0
//! quirks = ["blocked_sw_63c0"] # see `Quirk`
//! atr = "3B 88 80 01 …"        # answer to reset (hex, spaces allowed); default: the profile's own
//! serial = 0x0000CAFE          # OpenPGP and YubiKey: serial number in the OpenPGP AID
//! firmware = "5.4.3"           # YubiKey only: version for GET VERSION; below 5.3.0 no GET METADATA
//!
//! # Initial reference data (factory defaults when absent).
//! # PIV:     pin (6-8 digits, default 123456), puk (8 bytes, default 12345678)
//! # OpenPGP: pw1 (6-127 bytes, default 123456), pw3 (8-127 bytes, default
//! #          12345678), reset_code (8-127 bytes, default: not set)
//! # YubiKey: the PIV keys and the OpenPGP keys above
//! # EstEID:  pin1 (4-12 digits, default 1234), pin2 (5-12 digits, default
//! #          12345), puk (8-12 digits, default 17258403)
//! # Belgian eID: pin (4-12 digits, default 1234)
//! # PKCS#15: pin (4-8 digits, default 123456), puk (4-8 digits, default 12345678)
//! # ISO:     pin (4-8 digits, default 1234), puk (4-8 digits, default 12345678)
//! pw1 = "123456"
//! pw3 = "12345678"
//! ```
//!
//! Unknown keys, and keys another profile has, are rejected.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer};

use crate::secret::Secret;

/// Which card, and so which applications, the virtual card models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// NIST SP 800-73-4 PIV card application.
    Piv,
    /// OpenPGP card application 3.4.
    #[value(name = "openpgp")]
    OpenPgp,
    /// A YubiKey 5: the PIV application (with Yubico's GET METADATA and GET
    /// VERSION extensions) and the OpenPGP application on one card, each
    /// selected by its AID; selecting one drops the verified state of the
    /// other (see the `yubikey` module).
    #[serde(rename = "yubikey")]
    #[value(name = "yubikey")]
    YubiKey,
    /// The Estonian ID card (IDEMIA, 2018 and later): PIN1 and the PUK in
    /// the main application, PIN2 in the QSCD application, tries read by
    /// GET DATA (as web-eid's libelectronic-id and DigiDoc4 send it).
    #[serde(rename = "esteid")]
    #[value(name = "esteid")]
    EstEid,
    /// The Belgian eID (Belpic applet 1.8): one PIN in ISO 9564-1 format 2
    /// blocks, no command to read its tries, no unblocking by software.
    Beid,
    /// A generic PKCS#15 card (ISO/IEC 7816-15) as OpenSC's pkcs15-init
    /// creates it: EF.DIR, EF.ODF, EF.TokenInfo and an AODF describing a
    /// user PIN and its PUK.
    Pkcs15,
    /// A plain ISO/IEC 7816-4 card with one application (AID F0 "cardgate"),
    /// a PIN and a PUK, and nothing else to describe them.
    Iso,
}

impl Profile {
    /// Every profile, in declaration order.
    pub const ALL: [Profile; 7] = [
        Profile::Piv,
        Profile::OpenPgp,
        Profile::YubiKey,
        Profile::EstEid,
        Profile::Beid,
        Profile::Pkcs15,
        Profile::Iso,
    ];

    /// A human name: "PIV", "OpenPGP", "YubiKey", "EstEID", "Belgian eID",
    /// "PKCS#15" or "ISO 7816-4".
    pub fn name(self) -> &'static str {
        match self {
            Profile::Piv => "PIV",
            Profile::OpenPgp => "OpenPGP",
            Profile::YubiKey => "YubiKey",
            Profile::EstEid => "EstEID",
            Profile::Beid => "Belgian eID",
            Profile::Pkcs15 => "PKCS#15",
            Profile::Iso => "ISO 7816-4",
        }
    }

    /// The configuration keys holding reference data or settings of this
    /// profile only (the others are refused by [`CardConfig::validate`]).
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Profile::Piv => &["pin", "puk"],
            Profile::OpenPgp => &["pw1", "pw3", "reset_code", "serial"],
            Profile::YubiKey => &[
                "pin",
                "puk",
                "pw1",
                "pw3",
                "reset_code",
                "serial",
                "firmware",
            ],
            Profile::EstEid => &["pin1", "pin2", "puk"],
            Profile::Beid => &["pin"],
            Profile::Pkcs15 | Profile::Iso => &["pin", "puk"],
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
    /// (instead of being a free status query). Also spelled
    /// `empty_verify_counts`.
    #[serde(alias = "empty_verify_counts")]
    #[value(
        name = "empty_verify_spends_try",
        alias = "empty-verify-spends-try",
        alias = "empty_verify_counts",
        alias = "empty-verify-counts"
    )]
    EmptyVerifySpendsTry,
    /// A VERIFY with a wrong value answers 6300 (no counter in the status
    /// word) instead of 63Cx, still spending the try. Applies to every
    /// profile's VERIFY (the empty status query of a card with
    /// `empty_verify_spends_try` too).
    #[serde(rename = "wrong_verify_6300")]
    #[value(name = "wrong_verify_6300", alias = "wrong-verify-6300")]
    WrongVerify6300,
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

/// The YubiKey firmware version GET VERSION reports by default (a YubiKey
/// 5 with GET METADATA, which came with 5.3.0). Its PIV factory defaults
/// are [`PIV_DEFAULT_PIN`] and [`PIV_DEFAULT_PUK`] (Yubico's documentation
/// of the PIV application).
pub const YUBIKEY_DEFAULT_FIRMWARE: [u8; 3] = [5, 4, 3];

/// EstEID PIN1 of the test cards (the Estonian test card documentation's
/// values; a citizen's card comes with values in its PIN envelope).
pub const ESTEID_DEFAULT_PIN1: &str = "1234";
/// EstEID PIN2 of the test cards.
pub const ESTEID_DEFAULT_PIN2: &str = "12345";
/// EstEID PUK of the test cards.
pub const ESTEID_DEFAULT_PUK: &str = "17258403";
/// Belgian eID PIN of the test cards (a citizen chooses it at the
/// municipality).
pub const BEID_DEFAULT_PIN: &str = "1234";
/// PKCS#15 card user PIN (our choice: pkcs15-init asks for it).
pub const PKCS15_DEFAULT_PIN: &str = "123456";
/// PKCS#15 card PUK (our choice).
pub const PKCS15_DEFAULT_PUK: &str = "12345678";
/// ISO card PIN (our choice).
pub const ISO_DEFAULT_PIN: &str = "1234";
/// ISO card PUK (our choice).
pub const ISO_DEFAULT_PUK: &str = "12345678";

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
    /// The answer to reset; `None`: the profile's own (see
    /// [`crate::VirtualCard::atr`]). In TOML a hex string.
    #[serde(default, deserialize_with = "de_hex")]
    pub atr: Option<Vec<u8>>,
    /// OpenPGP and YubiKey: the serial number in the OpenPGP AID.
    #[serde(default)]
    pub serial: Option<u32>,
    /// YubiKey only: the firmware version GET VERSION reports (default
    /// 5.4.3); below 5.3.0 the PIV application has no GET METADATA. In TOML
    /// a string "major.minor.patch".
    #[serde(default, deserialize_with = "de_firmware")]
    pub firmware: Option<[u8; 3]>,
    /// Initial user PIN: PIV and YubiKey 6–8 ASCII digits; Belgian eID 4–12
    /// digits; PKCS#15 and ISO 4–8 digits.
    #[serde(default, deserialize_with = "de_secret")]
    pub pin: Option<Secret>,
    /// Initial PUK: PIV and YubiKey 8 bytes; EstEID 8–12 digits; PKCS#15
    /// and ISO 4–8 digits.
    #[serde(default, deserialize_with = "de_secret")]
    pub puk: Option<Secret>,
    /// EstEID only: initial PIN1 (authentication, 4–12 digits).
    #[serde(default, deserialize_with = "de_secret")]
    pub pin1: Option<Secret>,
    /// EstEID only: initial PIN2 (signing, 5–12 digits).
    #[serde(default, deserialize_with = "de_secret")]
    pub pin2: Option<Secret>,
    /// OpenPGP and YubiKey: initial PW1 (user PIN).
    #[serde(default, deserialize_with = "de_secret")]
    pub pw1: Option<Secret>,
    /// OpenPGP and YubiKey: initial PW3 (admin PIN).
    #[serde(default, deserialize_with = "de_secret")]
    pub pw3: Option<Secret>,
    /// OpenPGP and YubiKey: initial resetting code (not set by default).
    #[serde(default, deserialize_with = "de_secret")]
    pub reset_code: Option<Secret>,
}

fn default_max_tries() -> u8 {
    DEFAULT_MAX_TRIES
}

fn de_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret::from_string))
}

fn de_hex<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    parse_hex(&text)
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not hex bytes")))
}

fn de_firmware<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 3]>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    parse_firmware(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!("firmware `{text}` is not major.minor.patch"))
    })
}

/// Hex digits, whitespace and `:` ignored, into bytes.
pub fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b':')
        .collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// "5.4.3" into `[5, 4, 3]`.
pub fn parse_firmware(text: &str) -> Option<[u8; 3]> {
    let mut parts = text.trim().split('.').map(|p| p.parse::<u8>().ok());
    let version = [parts.next()??, parts.next()??, parts.next()??];
    parts.next().is_none().then_some(version)
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
            atr: None,
            serial: None,
            firmware: None,
            pin: None,
            puk: None,
            pin1: None,
            pin2: None,
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
        let keys = [
            ("pin", self.pin.is_some()),
            ("puk", self.puk.is_some()),
            ("pin1", self.pin1.is_some()),
            ("pin2", self.pin2.is_some()),
            ("pw1", self.pw1.is_some()),
            ("pw3", self.pw3.is_some()),
            ("reset_code", self.reset_code.is_some()),
            ("serial", self.serial.is_some()),
            ("firmware", self.firmware.is_some()),
        ];
        let allowed = self.profile.keys();
        for (name, set) in keys {
            if set && !allowed.contains(&name) {
                let list: Vec<String> = allowed.iter().map(|k| format!("`{k}`")).collect();
                return bad(format!(
                    "`{name}` is not a setting of a {} card; it has {}",
                    self.profile.name(),
                    list.join(", ")
                ));
            }
        }
        let state_flags = self.pin_not_initialized || self.pin_must_change;
        if state_flags
            && !matches!(
                self.profile,
                Profile::Piv | Profile::OpenPgp | Profile::YubiKey
            )
        {
            return bad(format!(
                "`pin_not_initialized` and `pin_must_change` are not modelled on a {} card",
                self.profile.name()
            ));
        }
        if let Some(atr) = &self.atr
            && (!(2..=33).contains(&atr.len()) || !matches!(atr[0], 0x3B | 0x3F))
        {
            return bad("`atr` must be 2 to 33 bytes starting with 3B or 3F".into());
        }
        let digits = |name: &str, value: &Option<Secret>, min: usize, max: usize| match value {
            Some(v) if !(min..=max).contains(&v.len()) || !v.is_ascii_digits() => bad(format!(
                "`{name}` must be {min} to {max} ASCII digits on a {} card",
                self.profile.name()
            )),
            _ => Ok(()),
        };
        match self.profile {
            Profile::Piv | Profile::YubiKey => {
                digits("pin", &self.pin, 6, 8)?;
                if let Some(puk) = &self.puk
                    && puk.len() != 8
                {
                    return bad("`puk` must be 8 bytes".into());
                }
            }
            Profile::EstEid => {
                digits("pin1", &self.pin1, 4, 12)?;
                digits("pin2", &self.pin2, 5, 12)?;
                digits("puk", &self.puk, 8, 12)?;
            }
            Profile::Beid => digits("pin", &self.pin, 4, 12)?,
            Profile::Pkcs15 | Profile::Iso => {
                digits("pin", &self.pin, 4, 8)?;
                digits("puk", &self.puk, 4, 8)?;
            }
            Profile::OpenPgp => {}
        }
        if matches!(self.profile, Profile::OpenPgp | Profile::YubiKey) {
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
