//! Card profiles as data: the TOML format of docs/cards.md, its checks, and
//! what a profile becomes at run time (applications and [`PinObject`]s).
//!
//! A profile says how to recognise a card (ATR, the AIDs its applications
//! answer to) and, per PIN object, its reference, encoding, limits, command
//! forms, how its tries are read without spending one, the status words
//! that differ from ISO 7816-4, and which PIN unblocks it. Profiles are
//! compiled in (`card/profiles/*.toml`), read from `/etc/cardgate/cards/`
//! and from the user's config dir `cards/`; a later layer replaces a
//! profile of the same name.
//!
//! What data cannot say is a named hook in code ([`Hook`]): OpenPGP's
//! serial number and the maximum lengths it announces in DO C4.

use super::{
    Application, Credential, Encoding, PinFormat, PinObject, SoMethod, StatusSource, TriesQuery,
    ValueAt, intern,
};
use crate::apdu::StatusWord;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The environment variable whose directories (separated by `:`) replace
/// the standard ones (the `card_dirs` configuration key reads it too).
pub const PATH_ENV: &str = "CARDGATE_CARDS_PATH";

/// The built-in profiles, in the order they are tried.
const BUILTIN: &[(&str, &str)] = &[
    ("yubikey", include_str!("profiles/yubikey.toml")),
    ("esteid", include_str!("profiles/esteid.toml")),
    ("beid", include_str!("profiles/beid.toml")),
    ("piv", include_str!("profiles/piv.toml")),
    ("openpgp", include_str!("profiles/openpgp.toml")),
    ("iso7816", include_str!("profiles/iso7816.toml")),
];

/// Where a profile came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileSource {
    /// Compiled into cardgate.
    Builtin,
    /// A file (system-wide or the user's).
    File(PathBuf),
}

impl fmt::Display for ProfileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileSource::Builtin => f.write_str("built-in"),
            ProfileSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Why a profile file was refused. The message names the file and the
/// field.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ProfileError {
    /// The file (or built-in profile) it is about.
    pub source_name: String,
    /// What is wrong, naming the field.
    pub message: String,
}

// ---- the file format (docs/cards.md) ------------------------------------

/// One profile file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ProfileFile {
    name: String,
    /// The token's label for cards it recognises (default: the labels of
    /// the applications found).
    label: Option<String>,
    #[serde(default)]
    description: String,
    /// A template is never matched against cards; other profiles build on
    /// its applications (`base`).
    #[serde(default)]
    template: bool,
    #[serde(default)]
    atr: Vec<AtrFile>,
    /// Selecting one application of the card ends the verifications of
    /// the other's specific references (b8 set, ISO 7816-4 §7.5.1; true
    /// for most multi-application cards, and the safe assumption).
    #[serde(default = "yes")]
    select_clears_other: bool,
    #[serde(default, rename = "application")]
    applications: Vec<AppFile>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum AtrFile {
    Exact(String),
    Masked { value: String, mask: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct AppFile {
    id: String,
    label: Option<String>,
    /// `PROFILE` or `PROFILE.APPLICATION`: start from that application;
    /// what this one gives replaces it, PIN by PIN and field by field.
    base: Option<String>,
    aid: Option<String>,
    hook: Option<Hook>,
    /// The PINs come from the card's PKCS#15 description (its AODF); the
    /// `[[application.pin]]` entries patch them by id.
    #[serde(default)]
    pkcs15: bool,
    #[serde(default, rename = "pin")]
    pins: Vec<PinFile>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct PinFile {
    id: String,
    label: Option<String>,
    role: Option<Role>,
    reference: Option<u8>,
    change_reference: Option<u8>,
    /// An AID to select before this PIN's commands (a PIN kept in another
    /// application of the card).
    select: Option<String>,
    unblocked_by: Option<String>,
    unblock: Option<UnblockForm>,
    reset_code: Option<String>,
    hidden: Option<bool>,
    verify: Option<bool>,
    checked_by_change: Option<bool>,
    encoding: Option<Encoding>,
    pad: Option<u8>,
    stored_length: Option<usize>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    chars: Option<Chars>,
    max_tries: Option<u8>,
    logout: Option<LogoutForm>,
    logout_also: Option<Vec<u8>>,
    tries: Option<Vec<TriesFile>>,
    status_words: Option<BTreeMap<String, SwMeaning>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    tag = "source",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    deny_unknown_fields
)]
enum TriesFile {
    EmptyVerify,
    OpenpgpPwStatus {
        index: usize,
    },
    Query {
        apdu: String,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        offset: usize,
        #[serde(default)]
        max_tags: Option<Vec<String>>,
        #[serde(default)]
        max_offset: Option<usize>,
    },
}

/// A PIN object's role (docs/cards.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A user PIN (login).
    User,
    /// A PIN for signatures (a user PIN of its own).
    Signature,
    /// A security officer PIN (admin PIN).
    SecurityOfficer,
    /// An unblocking code (PUK).
    Unblock,
}

/// The RESET RETRY COUNTER form that unblocks a PIN (ISO 7816-4 §11.6.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum UnblockForm {
    /// P1=00: the unblocking code and the new value.
    CodeAndNew,
    /// P1=02: the new value only, after the security officer's VERIFY.
    NewAfterSo,
}

/// The characters a value may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Chars {
    Digits,
    Any,
}

/// How a PIN's verification is ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LogoutForm {
    /// VERIFY with P1=FF (ISO 7816-4 §11.6.6); a card that refuses it is
    /// reset.
    #[default]
    VerifyFf,
    /// A card reset: the card has no VERIFY P1=FF.
    Reset,
}

/// What a card-specific status word means (docs/cards.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum SwMeaning {
    /// The credential is blocked (ISO: 6983).
    Blocked,
    /// A wrong value, no counter given (ISO: 6300).
    Wrong,
    /// The credential has no value yet (ISO: 6984).
    NotInitialized,
    /// The value must be changed first (ISO: 6985).
    MustChange,
    /// The value's length or format was refused (ISO: 6700 / 6A80).
    BadLength,
    /// Answering CHANGE REFERENCE DATA: the new value is the old one, and
    /// the card refuses it (no ISO status word says so).
    NewSameAsOld,
}

impl SwMeaning {
    /// Every meaning, with its word in `status-words` and the ISO 7816-4
    /// status word of the same meaning (none for `new-same-as-old`): the
    /// one table the file format, patches and `cardgate card show` use.
    const TABLE: [(SwMeaning, &'static str, Option<StatusWord>); 6] = [
        (SwMeaning::Blocked, "blocked", Some(StatusWord::AuthBlocked)),
        (
            SwMeaning::Wrong,
            "wrong",
            Some(StatusWord::VerifyFailedNoInfo),
        ),
        (
            SwMeaning::NotInitialized,
            "not-initialized",
            Some(StatusWord::RefDataNotUsable),
        ),
        (
            SwMeaning::MustChange,
            "must-change",
            Some(StatusWord::ConditionsNotSatisfied),
        ),
        (
            SwMeaning::BadLength,
            "bad-length",
            Some(StatusWord::WrongLength),
        ),
        (SwMeaning::NewSameAsOld, "new-same-as-old", None),
    ];

    /// The ISO 7816-4 status word of the same meaning, if there is one.
    fn iso(self) -> Option<StatusWord> {
        Self::TABLE
            .iter()
            .find(|(m, ..)| *m == self)
            .and_then(|r| r.2)
    }

    /// The meaning an ISO 7816-4 status word stands for.
    fn of_iso(sw: StatusWord) -> Option<SwMeaning> {
        Self::TABLE
            .iter()
            .find(|(.., iso)| *iso == Some(sw))
            .map(|r| r.0)
    }
}

/// The word `status-words` uses for what an ISO 7816-4 status word means
/// (`blocked`, `wrong` …), if it is one a profile can map to.
pub fn status_word_meaning(sw: StatusWord) -> Option<&'static str> {
    let m = SwMeaning::of_iso(sw)?;
    SwMeaning::TABLE.iter().find(|r| r.0 == m).map(|r| r.1)
}

/// The word `status-words` uses for a card's refusal of a new value equal
/// to the old one.
pub const NEW_SAME_AS_OLD: &str = "new-same-as-old";

/// Code for what a profile cannot say as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    /// OpenPGP card 3.4: the serial number from the full AID (DO 4F,
    /// §4.2.1) and the maximum lengths from DO C4 (§4.4.1).
    Openpgp,
}

// ---- the run-time form ---------------------------------------------------

/// An ATR pattern: the card's ATR ANDed with `mask` equals `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtrPattern {
    /// The expected bytes (already masked).
    pub value: Vec<u8>,
    /// Which bits count; all ones for an exact match.
    pub mask: Vec<u8>,
}

impl AtrPattern {
    /// Whether `atr` matches.
    pub fn matches(&self, atr: &[u8]) -> bool {
        atr.len() == self.value.len()
            && atr
                .iter()
                .zip(&self.mask)
                .zip(&self.value)
                .all(|((a, m), v)| a & m == *v)
    }
}

/// One application of a profile, with its PIN objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppProfile {
    /// Its id ("piv", "openpgp", "esteid" …), shown with each PIN.
    pub id: &'static str,
    /// Its name for display.
    pub label: String,
    /// The AID that selects it (and recognises it).
    pub aid: Vec<u8>,
    /// Code run after it is selected.
    pub hook: Option<Hook>,
    /// Its PINs are read from the card's PKCS#15 description, then
    /// patched by `patches`.
    pub pkcs15: bool,
    /// What the profile says of PKCS#15 PINs, by id (e.g. how to read
    /// their tries).
    pub(crate) patches: Vec<PinFile>,
    /// AIDs some of its PINs need selected first (index 1.. of the
    /// application's selections; 0 is `aid`).
    pub extra_selects: Vec<Vec<u8>>,
    /// Its PIN objects, with `app` relative to this application's
    /// selections (0 = `aid`, 1.. = `extra_selects`).
    pub pins: Vec<PinObject>,
}

/// A card profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardProfile {
    /// Its name (unique; a later layer replaces a profile of the same name).
    pub name: String,
    /// The token's label, when the profile gives one.
    pub label: Option<String>,
    /// What it is for.
    pub description: String,
    /// Where it came from.
    pub source: ProfileSource,
    /// Never matched against cards: a base for others.
    pub template: bool,
    /// ATR patterns; empty: recognised by its applications alone.
    pub atr: Vec<AtrPattern>,
    /// Selecting one application ends the verifications of another.
    pub select_clears_other: bool,
    /// Its applications.
    pub applications: Vec<AppProfile>,
}

impl CardProfile {
    /// Whether the card's ATR matches (a profile without patterns matches
    /// every ATR).
    pub fn atr_matches(&self, atr: &[u8]) -> bool {
        self.atr.is_empty() || self.atr.iter().any(|p| p.matches(atr))
    }
}

/// Every card profile in effect: built-ins, then system, then user files.
#[derive(Debug, Clone, Default)]
pub struct ProfileSet {
    profiles: Vec<CardProfile>,
    /// Files that were refused, with why (shown by `cardgate card list`).
    pub errors: Vec<ProfileError>,
}

impl ProfileSet {
    /// The built-in profiles.
    pub fn builtin() -> Self {
        static SET: std::sync::OnceLock<ProfileSet> = std::sync::OnceLock::new();
        SET.get_or_init(ProfileSet::parse_builtin).clone()
    }

    fn parse_builtin() -> Self {
        let mut set = ProfileSet::default();
        for (name, text) in BUILTIN {
            match parse_file(text, &format!("built-in {name}"))
                .and_then(|f| set.build(f, ProfileSource::Builtin))
            {
                Ok(p) => set.insert(p),
                // A built-in profile that does not parse is a bug the
                // unit tests catch; at run time it is left out, loudly.
                Err(e) => {
                    tracing::error!(error = %e, "built-in card profile refused");
                    set.errors.push(e);
                }
            }
        }
        set
    }

    /// The built-in profiles, then every `*.toml` in each directory in
    /// order (later ones replace earlier ones of the same name). A file
    /// that is refused is reported in [`ProfileSet::errors`] and skipped.
    pub fn load(dirs: &[PathBuf]) -> Self {
        let mut set = ProfileSet::builtin();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            files.sort();
            for path in files {
                match set.load_file(&path) {
                    Ok(p) => set.insert(p),
                    Err(e) => {
                        tracing::warn!(error = %e, "card profile refused");
                        set.errors.push(e);
                    }
                }
            }
        }
        set
    }

    /// The built-in profiles and those of the standard directories.
    pub fn load_standard() -> Self {
        ProfileSet::load(&ProfileSet::standard_dirs())
    }

    /// The standard directories: `/etc/cardgate/cards` and the user's
    /// config dir `cards/`; [`PATH_ENV`] (directories separated by `:`)
    /// replaces them.
    pub fn standard_dirs() -> Vec<PathBuf> {
        if let Some(path) = std::env::var_os(PATH_ENV) {
            return std::env::split_paths(&path)
                .filter(|p| !p.as_os_str().is_empty())
                .collect();
        }
        let mut dirs = vec![PathBuf::from("/etc/cardgate/cards")];
        if let Some(p) = directories::ProjectDirs::from("", "", "cardgate") {
            dirs.push(p.config_dir().join("cards"));
        }
        dirs
    }

    /// Reads and checks one profile file against this set (its `base`
    /// applications come from here); does not add it.
    pub fn load_file(&self, path: &Path) -> Result<CardProfile, ProfileError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ProfileError {
            source_name: name.clone(),
            message: format!("cannot read: {e}"),
        })?;
        let file = parse_file(&text, &name)?;
        self.build(file, ProfileSource::File(path.to_path_buf()))
    }

    /// Adds a profile, replacing one of the same name.
    pub fn insert(&mut self, profile: CardProfile) {
        if let Some(old) = self.profiles.iter_mut().find(|p| p.name == profile.name) {
            *old = profile;
        } else {
            self.profiles.push(profile);
        }
    }

    /// Every profile, in the order cards are matched against them.
    pub fn profiles(&self) -> impl Iterator<Item = &CardProfile> {
        // Profiles naming ATRs first (a file from a later layer before a
        // built-in one), then those recognised by their AIDs alone.
        let mut ordered: Vec<&CardProfile> = self.profiles.iter().collect();
        ordered.sort_by_key(|p| (p.atr.is_empty(), matches!(p.source, ProfileSource::Builtin)));
        ordered.into_iter()
    }

    /// The profile with this name.
    pub fn get(&self, name: &str) -> Option<&CardProfile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    fn base_app(&self, base: &str, app_id: &str, source: &str) -> Result<AppFile, ProfileError> {
        let (profile, app) = base.split_once('.').unwrap_or((base, app_id));
        let err = |m: String| ProfileError {
            source_name: source.to_string(),
            message: m,
        };
        let p = BUILTIN
            .iter()
            .find(|(n, _)| *n == profile)
            .map(|(n, text)| parse_file(text, &format!("built-in {n}")))
            .transpose()?
            .ok_or_else(|| err(format!("base `{base}`: no built-in profile `{profile}`")))?;
        p.applications
            .into_iter()
            .find(|a| a.id == app)
            .ok_or_else(|| {
                err(format!(
                    "base `{base}`: profile `{profile}` has no application `{app}`"
                ))
            })
    }

    fn build(&self, file: ProfileFile, source: ProfileSource) -> Result<CardProfile, ProfileError> {
        let src = match &source {
            ProfileSource::Builtin => format!("built-in {}", file.name),
            ProfileSource::File(p) => p.display().to_string(),
        };
        let err = |m: String| ProfileError {
            source_name: src.clone(),
            message: m,
        };
        if file.name.is_empty()
            || !file
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err(format!(
                "name `{}`: letters, digits, - and _ only",
                file.name
            )));
        }
        let atr = file
            .atr
            .iter()
            .map(|a| atr_pattern(a).map_err(|m| err(format!("atr: {m}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if file.applications.is_empty() {
            return Err(err("no [[application]]".into()));
        }
        let mut applications = Vec::new();
        let mut ids = HashSet::new();
        for app in &file.applications {
            let merged = match &app.base {
                Some(base) => merge_app(self.base_app(base, &app.id, &src)?, app.clone()),
                None => app.clone(),
            };
            let built =
                build_app(&merged).map_err(|m| err(format!("application `{}`: {m}", app.id)))?;
            for pin in &built.pins {
                if !ids.insert(pin.id) {
                    return Err(err(format!(
                        "PIN id `{}` is used twice on the card; ids must differ across applications",
                        pin.id
                    )));
                }
            }
            applications.push(built);
        }
        Ok(CardProfile {
            name: file.name,
            label: file.label,
            description: file.description,
            source,
            template: file.template,
            atr,
            select_clears_other: file.select_clears_other,
            applications,
        })
    }
}

fn parse_file(text: &str, source: &str) -> Result<ProfileFile, ProfileError> {
    toml::from_str(text).map_err(|e| ProfileError {
        source_name: source.to_string(),
        message: e.to_string().trim_end().to_string(),
    })
}

/// Hex bytes, spaces and colons allowed ("A0 00 00 03 08").
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    if !digits.len().is_multiple_of(2) || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("`{s}` is not hex bytes"));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

fn atr_pattern(a: &AtrFile) -> Result<AtrPattern, String> {
    let (value, mask) = match a {
        AtrFile::Exact(v) => {
            let v = parse_hex(v)?;
            let m = vec![0xFF; v.len()];
            (v, m)
        }
        AtrFile::Masked { value, mask } => (parse_hex(value)?, parse_hex(mask)?),
    };
    if value.len() < 2 || value.len() > 33 {
        return Err("an ATR is 2 to 33 bytes".into());
    }
    if mask.len() != value.len() {
        return Err("mask and value differ in length".into());
    }
    let value = value.iter().zip(&mask).map(|(v, m)| v & m).collect();
    Ok(AtrPattern { value, mask })
}

/// `over` on top of `base`: fields `over` gives replace, PINs are matched
/// by id, new PINs are added.
fn merge_app(base: AppFile, over: AppFile) -> AppFile {
    let mut pins = base.pins;
    for p in over.pins {
        match pins.iter_mut().find(|b| b.id == p.id) {
            Some(b) => *b = merge_pin(b.clone(), p),
            None => pins.push(p),
        }
    }
    AppFile {
        id: over.id,
        label: over.label.or(base.label),
        base: None,
        aid: over.aid.or(base.aid),
        hook: over.hook.or(base.hook),
        pkcs15: over.pkcs15 || base.pkcs15,
        pins,
    }
}

fn merge_pin(b: PinFile, o: PinFile) -> PinFile {
    macro_rules! pick {
        ($($f:ident),*) => { PinFile { id: o.id, $($f: o.$f.or(b.$f)),* } };
    }
    pick!(
        label,
        role,
        reference,
        change_reference,
        select,
        unblocked_by,
        unblock,
        reset_code,
        hidden,
        verify,
        checked_by_change,
        encoding,
        pad,
        stored_length,
        min_length,
        max_length,
        chars,
        max_tries,
        logout,
        logout_also,
        tries,
        status_words
    )
}

fn build_app(app: &AppFile) -> Result<AppProfile, String> {
    if app.id.is_empty()
        || !app
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err("id: letters, digits and - only".into());
    }
    let aid = parse_hex(app.aid.as_deref().ok_or("`aid` is missing")?)
        .map_err(|e| format!("aid: {e}"))?;
    if aid.len() < 5 || aid.len() > 16 {
        return Err("aid: an AID is 5 to 16 bytes (ISO 7816-4 §8.2.1.2)".into());
    }
    if app.pkcs15 {
        // Patches of the PINs the card will describe: checked now, applied
        // once the card's AODF is read.
        for p in &app.pins {
            if let Some(t) = &p.tries {
                for source in t {
                    tries_source(source).map_err(|m| format!("PIN `{}`: {m}", p.id))?;
                }
            }
        }
        return Ok(AppProfile {
            id: intern(&app.id),
            label: app.label.clone().unwrap_or_else(|| app.id.clone()),
            aid,
            hook: app.hook,
            pkcs15: true,
            patches: app.pins.clone(),
            extra_selects: Vec::new(),
            pins: Vec::new(),
        });
    }
    if app.pins.is_empty() {
        return Err("no [[application.pin]]".into());
    }
    let mut extra_selects: Vec<Vec<u8>> = Vec::new();
    let mut creds: Vec<(&PinFile, Credential)> = Vec::new();
    for p in &app.pins {
        let sel = match &p.select {
            None => 0,
            Some(s) => {
                let a = parse_hex(s).map_err(|e| format!("PIN `{}`: select: {e}", p.id))?;
                match extra_selects.iter().position(|x| *x == a) {
                    Some(i) => i + 1,
                    None => {
                        extra_selects.push(a);
                        extra_selects.len()
                    }
                }
            }
        };
        let cred = build_credential(p, sel).map_err(|m| format!("PIN `{}`: {m}", p.id))?;
        creds.push((p, cred));
    }
    let find = |id: &str, of: &str, field: &str| -> Result<Credential, String> {
        creds
            .iter()
            .find(|(p, _)| p.id == id)
            .map(|(_, c)| c.clone())
            .ok_or_else(|| format!("PIN `{of}`: {field} `{id}` is not a PIN of this application"))
    };
    let mut pins = Vec::new();
    for (p, cred) in &creds {
        if p.hidden == Some(true) {
            continue;
        }
        let so = match &p.unblocked_by {
            None => None,
            Some(by) => {
                let c = find(by, &p.id, "unblocked-by")?;
                Some(match p.unblock.unwrap_or(UnblockForm::CodeAndNew) {
                    UnblockForm::CodeAndNew => SoMethod::CodeWithNewPin(c),
                    UnblockForm::NewAfterSo => SoMethod::VerifyThenReset(c),
                })
            }
        };
        let reset_code = match &p.reset_code {
            None => None,
            Some(by) => Some(SoMethod::CodeWithNewPin(find(by, &p.id, "reset-code")?)),
        };
        if p.unblocked_by.as_deref() == Some(p.id.as_str()) {
            return Err(format!("PIN `{}` cannot unblock itself", p.id));
        }
        pins.push(PinObject {
            id: intern(&p.id),
            app: 0,
            credential: cred.clone(),
            so,
            reset_code,
        });
    }
    if pins.is_empty() {
        return Err("every PIN is hidden".into());
    }
    // The default PIN first: the first user PIN.
    if let Some(i) = pins.iter().position(|p| p.credential.role == Role::User) {
        let first = pins.remove(i);
        pins.insert(0, first);
    }
    Ok(AppProfile {
        id: intern(&app.id),
        label: app.label.clone().unwrap_or_else(|| app.id.clone()),
        aid,
        hook: app.hook,
        pkcs15: false,
        patches: Vec::new(),
        extra_selects,
        pins,
    })
}

fn build_credential(p: &PinFile, select: usize) -> Result<Credential, String> {
    if p.id.is_empty() || !p.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err("id: letters, digits and - only".into());
    }
    let reference = p.reference.ok_or("`reference` is missing")?;
    let encoding = p.encoding.unwrap_or(Encoding::Ascii);
    let numeric = match p.chars {
        Some(Chars::Digits) => true,
        Some(Chars::Any) => false,
        None => matches!(encoding, Encoding::Bcd | Encoding::Format2),
    };
    if !numeric && matches!(encoding, Encoding::Bcd | Encoding::Format2) {
        return Err("chars: BCD and format-2 values are digits".into());
    }
    let min_len = p.min_length.ok_or("`min-length` is missing")?;
    let max_len = p.max_length.ok_or("`max-length` is missing")?;
    if min_len == 0 || min_len > max_len {
        return Err(format!(
            "min-length {min_len} and max-length {max_len}: need 1 ≤ min ≤ max"
        ));
    }
    let stored_len = p.stored_length.unwrap_or(0);
    let needed = match encoding {
        Encoding::Ascii | Encoding::Utf8 => max_len,
        Encoding::Bcd => max_len.div_ceil(2),
        Encoding::Format2 => 8,
    };
    if encoding == Encoding::Format2 && (max_len > 14 || stored_len != 8) {
        return Err("format-2: at most 14 digits in an 8-byte block (stored-length = 8)".into());
    }
    if stored_len != 0 && stored_len < needed {
        return Err(format!(
            "stored-length {stored_len} cannot hold max-length {max_len} in this encoding"
        ));
    }
    if p.pad.is_some() && stored_len == 0 {
        return Err("pad needs stored-length".into());
    }
    if max_len > 127 {
        return Err("max-length: at most 127".into());
    }
    let status = match &p.tries {
        None => Vec::new(),
        Some(list) => list
            .iter()
            .map(tries_source)
            .collect::<Result<Vec<_>, _>>()?,
    };
    let mut sw_map = Vec::new();
    let mut new_same_as_old = Vec::new();
    for (k, v) in p.status_words.iter().flatten() {
        let b = parse_hex(k).map_err(|e| format!("status-words: {e}"))?;
        let [hi, lo] = b[..] else {
            return Err(format!("status-words: `{k}` is not two bytes"));
        };
        if hi == 0x90 && lo == 0 {
            return Err("status-words: 9000 always means success".into());
        }
        let raw = u16::from_be_bytes([hi, lo]);
        match v.iso() {
            Some(sw) => sw_map.push((raw, sw)),
            None => new_same_as_old.push(raw),
        }
    }
    let role = p.role.unwrap_or(Role::User);
    let max_tries = p.max_tries.unwrap_or(3);
    if max_tries == 0 || max_tries > 15 {
        return Err("max-tries: 1 to 15".into());
    }
    Ok(Credential {
        label: p.label.clone().unwrap_or_else(|| p.id.clone()),
        role,
        app: select,
        reference,
        change_reference: p.change_reference.unwrap_or(reference),
        format: PinFormat {
            min_len,
            max_len,
            numeric,
            encoding,
            pad: p.pad.or(match encoding {
                Encoding::Bcd | Encoding::Format2 => Some(0xFF),
                _ => None,
            }),
            stored_len,
        },
        status,
        verifiable: p.verify.unwrap_or(true),
        default_max_tries: max_tries,
        checked_by_change: p.checked_by_change.unwrap_or(false),
        logout: p.logout.unwrap_or_default(),
        logout_also: p.logout_also.clone().unwrap_or_default(),
        sw_map,
        new_same_as_old,
    })
}

fn tag_path(tags: &[String]) -> Result<Vec<u32>, String> {
    tags.iter()
        .map(|t| {
            let b = parse_hex(t)?;
            if b.is_empty() || b.len() > 3 {
                return Err(format!("tag `{t}`: one to three bytes"));
            }
            Ok(b.iter().fold(0u32, |n, x| (n << 8) | u32::from(*x)))
        })
        .collect()
}

fn tries_source(t: &TriesFile) -> Result<StatusSource, String> {
    Ok(match t {
        TriesFile::EmptyVerify => StatusSource::EmptyVerify,
        TriesFile::OpenpgpPwStatus { index } => {
            if !(4..=6).contains(index) {
                return Err("tries: openpgp-pw-status index is 4, 5 or 6".into());
            }
            StatusSource::OpenPgpPwStatus {
                tries_index: *index,
            }
        }
        TriesFile::Query {
            apdu,
            tags,
            offset,
            max_tags,
            max_offset,
        } => {
            let apdu = parse_hex(apdu).map_err(|e| format!("tries: apdu: {e}"))?;
            crate::apdu::commands::read_only_query(&apdu)
                .map_err(|e| format!("tries: apdu: {e}"))?;
            let tries = ValueAt {
                tags: tag_path(tags)?,
                offset: *offset,
            };
            let max = match (max_tags, max_offset) {
                (None, None) => None,
                (t, o) => Some(ValueAt {
                    tags: match t {
                        Some(t) => tag_path(t)?,
                        None => tries.tags.clone(),
                    },
                    offset: o.unwrap_or(0),
                }),
            };
            StatusSource::Query(Box::new(TriesQuery { apdu, tries, max }))
        }
    })
}

/// Applies a profile's patches to PIN objects read from the card (a
/// PKCS#15 application): each patch replaces the fields it gives of the
/// PIN with its id, checked as a profile's PIN is. A patch naming a PIN
/// the card does not have is skipped.
pub(crate) fn patch_pins(pins: &mut [PinObject], patches: &[PinFile]) -> Result<(), String> {
    for patch in patches {
        let Some(pin) = pins.iter_mut().find(|p| p.id == patch.id) else {
            tracing::debug!(pin = %patch.id, "the card has no such PIN; patch skipped");
            continue;
        };
        let merged = merge_pin(pin_file_of(pin.id, &pin.credential), patch.clone());
        let cred = build_credential(&merged, pin.credential.app)
            .map_err(|m| format!("PIN `{}`: {m}", patch.id))?;
        pin.credential = cred;
    }
    // Unblocking credentials are copies: take the patched ones.
    let creds: Vec<Credential> = pins.iter().map(|p| p.credential.clone()).collect();
    for pin in pins.iter_mut() {
        for m in [pin.so.as_mut(), pin.reset_code.as_mut()]
            .into_iter()
            .flatten()
        {
            let (SoMethod::CodeWithNewPin(c) | SoMethod::VerifyThenReset(c)) = m;
            if let Some(patched) = creds
                .iter()
                .find(|x| x.app == c.app && x.reference == c.reference)
            {
                *c = patched.clone();
            }
        }
    }
    Ok(())
}

/// A tag as a profile spells it: its bytes in hex.
fn tag_hex(tag: u32) -> String {
    match tag {
        0..=0xFF => format!("{tag:02X}"),
        0x100..=0xFFFF => format!("{tag:04X}"),
        _ => format!("{tag:06X}"),
    }
}

/// A credential as a profile would spell it (what a patch starts from).
fn pin_file_of(id: &str, c: &Credential) -> PinFile {
    PinFile {
        id: id.to_string(),
        label: Some(c.label.clone()),
        role: Some(c.role),
        reference: Some(c.reference),
        change_reference: Some(c.change_reference),
        verify: Some(c.verifiable),
        checked_by_change: Some(c.checked_by_change),
        encoding: Some(c.format.encoding),
        pad: c.format.pad.filter(|_| c.format.stored_len > 0),
        stored_length: (c.format.stored_len > 0).then_some(c.format.stored_len),
        min_length: Some(c.format.min_len),
        max_length: Some(c.format.max_len),
        chars: Some(if c.format.numeric {
            Chars::Digits
        } else {
            Chars::Any
        }),
        max_tries: Some(c.default_max_tries),
        logout: Some(c.logout),
        logout_also: Some(c.logout_also.clone()),
        tries: Some(
            c.status
                .iter()
                .map(|s| match s {
                    StatusSource::EmptyVerify => TriesFile::EmptyVerify,
                    StatusSource::OpenPgpPwStatus { tries_index } => TriesFile::OpenpgpPwStatus {
                        index: *tries_index,
                    },
                    StatusSource::Query(q) => TriesFile::Query {
                        apdu: super::hex(&q.apdu),
                        tags: q.tries.tags.iter().map(|t| tag_hex(*t)).collect(),
                        offset: q.tries.offset,
                        max_tags: q
                            .max
                            .as_ref()
                            .map(|m| m.tags.iter().map(|t| tag_hex(*t)).collect()),
                        max_offset: q.max.as_ref().map(|m| m.offset),
                    },
                })
                .collect(),
        ),
        status_words: Some(
            c.sw_map
                .iter()
                .filter_map(|(raw, sw)| Some((format!("{raw:04X}"), SwMeaning::of_iso(*sw)?)))
                .chain(
                    c.new_same_as_old
                        .iter()
                        .map(|raw| (format!("{raw:04X}"), SwMeaning::NewSameAsOld)),
                )
                .collect(),
        ),
        // Unblocking links stay those of the card.
        select: None,
        unblocked_by: None,
        unblock: None,
        reset_code: None,
        hidden: None,
    }
}

/// The run-time applications of a profile's applications that answered,
/// in card order: each application's own selection first, then the
/// extra selections its PINs need. PIN objects' `app` indexes point into
/// the returned list.
pub fn assemble(answered: &[&AppProfile]) -> (Vec<Application>, Vec<PinObject>) {
    let mut apps = Vec::new();
    let mut pins = Vec::new();
    for a in answered {
        let base = apps.len();
        apps.push(Application {
            id: a.id,
            label: a.label.clone(),
            aid: a.aid.clone(),
            serial: None,
            hook: a.hook,
        });
        for extra in &a.extra_selects {
            apps.push(Application {
                id: a.id,
                label: a.label.clone(),
                aid: extra.clone(),
                serial: None,
                hook: None,
            });
        }
        for p in &a.pins {
            let mut p = p.clone();
            p.app = base + p.credential.app;
            p.credential.app = p.app;
            let fix = |m: &mut SoMethod| match m {
                SoMethod::CodeWithNewPin(c) | SoMethod::VerifyThenReset(c) => c.app += base,
            };
            if let Some(m) = p.so.as_mut() {
                fix(m);
            }
            if let Some(m) = p.reset_code.as_mut() {
                fix(m);
            }
            pins.push(p);
        }
    }
    (apps, pins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_parse() {
        let set = ProfileSet::builtin();
        assert!(set.errors.is_empty(), "{:?}", set.errors);
        for (name, _) in BUILTIN {
            assert!(set.get(name).is_some(), "{name}");
        }
        let yk = set.get("yubikey").unwrap();
        let ids: Vec<&str> = yk
            .applications
            .iter()
            .flat_map(|a| a.pins.iter().map(|p| p.id))
            .collect();
        assert_eq!(ids, ["pin", "puk", "user", "admin"]);
    }

    #[test]
    fn status_word_meanings_are_spelled_as_the_format_reads_them() {
        #[derive(Deserialize)]
        struct One {
            m: SwMeaning,
        }
        for (meaning, word, _) in SwMeaning::TABLE {
            let one: One = toml::from_str(&format!("m = \"{word}\"")).unwrap();
            assert_eq!(one.m, meaning, "{word}");
        }
        assert_eq!(
            status_word_meaning(StatusWord::AuthBlocked),
            Some("blocked")
        );
        assert_eq!(status_word_meaning(StatusWord::Ok), None);
    }

    #[test]
    fn atr_masks() {
        let p = atr_pattern(&AtrFile::Masked {
            value: "3B 8F 01".into(),
            mask: "FF F0 FF".into(),
        })
        .unwrap();
        assert!(p.matches(&[0x3B, 0x85, 0x01]));
        assert!(!p.matches(&[0x3B, 0x85, 0x02]));
        assert!(!p.matches(&[0x3B, 0x85]));
    }

    fn check(text: &str) -> Result<CardProfile, ProfileError> {
        let set = ProfileSet::builtin();
        set.build(parse_file(text, "t")?, ProfileSource::Builtin)
    }

    #[test]
    fn a_user_profile_builds_on_the_iso_template() {
        let p = check(
            r#"
            name = "acme"
            atr = ["3B 02 14 50"]
            [[application]]
            id = "acme"
            base = "iso7816.iso"
            aid = "F0 01 02 03 04"
            [[application.pin]]
            id = "pin"
            reference = 0x01
            "#,
        )
        .unwrap();
        let pin = &p.applications[0].pins[0];
        assert_eq!(pin.credential.reference, 0x01);
        assert_eq!(p.applications[0].aid, [0xF0, 1, 2, 3, 4]);
        // The rest comes from the template.
        assert!(pin.so.is_some());
    }

    #[test]
    fn refuses_with_the_field_named() {
        for (text, needle) in [
            ("name = 'x'", "no [[application]]"),
            ("name = 'x y'\n[[application]]\nid='a'", "name"),
            (
                "name='x'\n[[application]]\nid='a'\naid='A000000308'\n[[application.pin]]\nid='p'\nreference=1\nmin-length=4\nmax-length=8\nencoding='format2'\nstored-length=8\nchars='any'",
                "chars",
            ),
            (
                "name='x'\n[[application]]\nid='a'\naid='A000000308'\n[[application.pin]]\nid='p'\nreference=1\nmin-length=4\nmax-length=8\n[[application.pin.tries]]\nsource='query'\napdu='00200081'",
                "apdu",
            ),
            (
                "name='x'\n[[application]]\nid='a'\naid='A000000308'\n[[application.pin]]\nid='p'\nreference=1\nmin-length=4\nmax-length=8\nunblocked-by='q'",
                "unblocked-by `q`",
            ),
            ("name='x'\nbogus=1", "bogus"),
        ] {
            let e = check(text).unwrap_err();
            assert!(e.message.contains(needle), "{needle}: {e}");
        }
    }
}
