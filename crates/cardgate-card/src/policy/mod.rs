//! PIN format policies: the constraints of SCWS `Pin.getConstraints()` /
//! `Pin.checkConstraints()`, the policy files that give them per card, and
//! the effective policy of a card's PIN objects.
//!
//! Policies come in layers: the ones embedded in the binary (`policies/`),
//! then the system directory, then the user's configuration directory. A
//! file in a later layer with the same name replaces the earlier one; the
//! others add to the set. For each PIN object the most specific matching
//! policy that mentions it wins (see `docs/policies.md`). The card's own
//! limits always apply, with or without a policy.

pub mod constraint;
pub mod file;

pub use constraint::{Constraint, check_all};
pub use file::{
    Bound, CardFacts, ConstraintSpec, Matcher, PinRule, Policy, PolicyError, PolicySource,
};

use crate::card::{PinFormat, ProfileSet, Token, hex};
use crate::error::Error;
use crate::secret::Secret;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The policies embedded in the binary: (name, TOML text).
pub const BUILTIN: &[(&str, &str)] = &[
    ("piv", include_str!("../../../../policies/piv.toml")),
    ("openpgp", include_str!("../../../../policies/openpgp.toml")),
];

/// The system-wide policy directory.
pub const SYSTEM_DIR: &str = "/etc/cardgate/policies";

/// When set, a list of directories (separated like `PATH`) used instead of
/// the system and user directories. Empty: built-in policies only.
pub const PATH_ENV: &str = "CARDGATE_POLICY_PATH";

/// What kind of directory a policy directory is (for display).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DirKind {
    /// [`SYSTEM_DIR`], for every user of the machine.
    System,
    /// The user's own configuration directory.
    User,
    /// From `CARDGATE_POLICY_PATH` or given explicitly.
    Custom,
}

/// One directory of policy files, one layer of precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDir {
    /// Which kind of directory it is.
    pub kind: DirKind,
    /// Where it is; it may not exist.
    pub path: PathBuf,
}

/// Where policies are loaded from, lowest precedence first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySources {
    /// The built-in policies are loaded first (layer 0).
    pub builtin: bool,
    /// The directories, each a layer above the one before it.
    pub dirs: Vec<PolicyDir>,
}

impl PolicySources {
    /// Built-in, then `/etc/cardgate/policies`, then the user's
    /// configuration directory (`~/.config/cardgate/policies` on Linux) —
    /// or, when `CARDGATE_POLICY_PATH` is set, built-in then its directories.
    pub fn standard() -> Self {
        if let Some(list) = std::env::var_os(PATH_ENV) {
            let dirs = std::env::split_paths(&list)
                .filter(|p| !p.as_os_str().is_empty())
                .map(|path| PolicyDir {
                    kind: DirKind::Custom,
                    path,
                })
                .collect();
            return PolicySources {
                builtin: true,
                dirs,
            };
        }
        PolicySources::standard_dirs()
    }

    /// Built-in, then `/etc/cardgate/policies`, then the user's directory,
    /// whatever the environment says.
    pub fn standard_dirs() -> Self {
        let mut dirs = vec![PolicyDir {
            kind: DirKind::System,
            path: PathBuf::from(SYSTEM_DIR),
        }];
        if let Some(user) = user_dir() {
            dirs.push(PolicyDir {
                kind: DirKind::User,
                path: user,
            });
        }
        PolicySources {
            builtin: true,
            dirs,
        }
    }

    /// Only the embedded policies: what tests and `Service::new` use.
    pub fn builtin_only() -> Self {
        PolicySources {
            builtin: true,
            dirs: Vec::new(),
        }
    }

    /// Adds a directory after (with precedence over) the current ones.
    pub fn with_dir(mut self, kind: DirKind, path: impl Into<PathBuf>) -> Self {
        self.dirs.push(PolicyDir {
            kind,
            path: path.into(),
        });
        self
    }
}

/// The user's policy directory: `<config dir>/policies` per `directories`.
pub fn user_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("org", "cardgate", "cardgate")
        .map(|d| d.config_dir().join("policies"))
}

/// The policies in force, after same-name replacement.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    policies: Vec<Policy>,
}

impl PolicySet {
    /// No policy at all: only the cards' own limits apply.
    pub fn empty() -> Self {
        PolicySet::default()
    }

    /// The embedded policies.
    pub fn builtin() -> Self {
        static BUILTIN_SET: OnceLock<Vec<Policy>> = OnceLock::new();
        let policies = BUILTIN_SET.get_or_init(|| {
            BUILTIN
                .iter()
                .map(|(name, text)| {
                    Policy::parse(
                        name,
                        &format!("builtin:{name}"),
                        text,
                        PolicySource::Builtin,
                        0,
                    )
                    .unwrap_or_else(|e| panic!("embedded policy is invalid: {e}"))
                })
                .collect()
        });
        PolicySet {
            policies: policies.clone(),
        }
    }

    /// Loads every source. Files that cannot be used are left out and
    /// returned as errors; they never stop the others from loading. A
    /// directory that does not exist is skipped silently.
    pub fn load(sources: &PolicySources) -> (PolicySet, Vec<PolicyError>) {
        let mut set = if sources.builtin {
            PolicySet::builtin()
        } else {
            PolicySet::empty()
        };
        let mut errors = Vec::new();
        for (i, dir) in sources.dirs.iter().enumerate() {
            for item in read_dir(&dir.path) {
                match item.and_then(|path| load_file(&path, i + 1)) {
                    Ok(policy) => set.insert(policy),
                    Err(e) => errors.push(e),
                }
            }
        }
        (set, errors)
    }

    /// [`PolicySet::load`] of [`PolicySources::standard`], logging a
    /// warning for each file left out. For the daemon and the CLI.
    pub fn load_standard() -> PolicySet {
        let (set, errors) = PolicySet::load(&PolicySources::standard());
        for e in errors {
            tracing::warn!("policy file ignored: {e}");
        }
        set
    }

    /// Adds a policy, replacing one of the same name.
    pub fn insert(&mut self, policy: Policy) {
        if let Some(old) = self.policies.iter_mut().find(|p| p.name == policy.name) {
            tracing::debug!(name = %policy.name, replaced = %old.source, by = %policy.source, "policy overridden");
            *old = policy;
        } else {
            self.policies.push(policy);
        }
    }

    /// Parses a policy from text and adds it (tests, tools).
    pub fn insert_str(&mut self, name: &str, text: &str, layer: usize) -> Result<(), PolicyError> {
        let policy = Policy::parse(name, name, text, PolicySource::Builtin, layer)?;
        self.insert(policy);
        Ok(())
    }

    /// Every loaded policy, a replaced one in its replacement's place.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// The effective policy of every PIN object of a card.
    pub fn resolve(&self, token: &Token, atr: &[u8]) -> CardPolicy {
        let atr = hex(atr);
        let pins = token
            .pins
            .iter()
            .map(|pin| {
                let app = token.application_of(pin);
                let facts = CardFacts {
                    profile: &token.profile,
                    application: app.id,
                    atr: &atr,
                    aid: &app.aid,
                    label: &token.label,
                };
                let best = self
                    .policies
                    .iter()
                    .filter(|p| p.pins.contains_key(pin.id) && p.matcher.matches(&facts))
                    .max_by(|a, b| precedence(a).cmp(&precedence(b)));
                let format = &pin.credential.format;
                let policy = match best {
                    None => PinPolicy::card_limits(format),
                    Some(p) => PinPolicy::from_rule(p, &p.pins[pin.id], format),
                };
                (pin.id.to_string(), policy)
            })
            .collect();
        CardPolicy { pins }
    }
}

/// Which of two matching policies wins: the more specific; then the later
/// layer; then the name sorting last.
fn precedence(p: &Policy) -> (usize, usize, &str) {
    (p.matcher.specificity(), p.layer, &p.name)
}

fn read_dir(dir: &Path) -> Vec<Result<PathBuf, PolicyError>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            return vec![Err(PolicyError {
                file: dir.display().to_string(),
                line: None,
                message: format!("cannot read the directory: {e}"),
            })];
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && !p.is_dir())
        .collect();
    paths.sort();
    paths.into_iter().map(Ok).collect()
}

/// Reads and parses one policy file; its name is the file name without `.toml`.
pub fn load_file(path: &Path, layer: usize) -> Result<Policy, PolicyError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
        file: file.clone(),
        line: None,
        message: format!("cannot read the file: {e}"),
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Policy::parse(
        &name,
        &file,
        &text,
        PolicySource::File(path.to_path_buf()),
        layer,
    )
}

/// The constraints a card imposes on a PIN object by itself: its length
/// limits (`exactLength` when min = max) and `numeric` for digit-only PINs.
pub fn card_constraints(format: &PinFormat) -> Vec<Constraint> {
    let mut out = Vec::new();
    let min = u32::try_from(format.min_len).unwrap_or(u32::MAX);
    let max = u32::try_from(format.max_len).unwrap_or(u32::MAX);
    out.push(if min == max {
        Constraint::ExactLength { length: min }
    } else {
        Constraint::MinMaxLength {
            min_length: min,
            max_length: max,
        }
    });
    if format.numeric {
        out.push(Constraint::Numeric);
    }
    out
}

/// Whether `list` already enforces the card constraint `card` (or something
/// at least as strict), so it need not be added again.
fn implied(list: &[Constraint], card: &Constraint, format: &PinFormat) -> bool {
    let (min, max) = (format.min_len as u64, format.max_len as u64);
    let within = |a: u32, b: u32| u64::from(a) >= min && u64::from(b) <= max;
    match card {
        Constraint::Numeric => list.contains(&Constraint::Numeric),
        _ => list.iter().any(|c| match *c {
            Constraint::ExactLength { length } => within(length, length),
            Constraint::MinMaxLength {
                min_length,
                max_length,
            } => within(min_length, max_length),
            _ => false,
        }),
    }
}

/// The effective policy of one PIN object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PinPolicy {
    /// What `getConstraints` returns: the policy's constraints in order,
    /// then the card's own limits unless the policy already implies them.
    pub constraints: Vec<Constraint>,
    /// The label the policy gives the PIN object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `tryCountLow` is true when at most this many tries are left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub try_count_low: Option<u8>,
    /// The policy used (absent: only the card's limits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Where that policy comes from: `builtin` or its file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl PinPolicy {
    /// No policy file: the card's limits only.
    pub fn card_limits(format: &PinFormat) -> Self {
        PinPolicy {
            constraints: card_constraints(format),
            label: None,
            try_count_low: None,
            policy: None,
            source: None,
        }
    }

    fn from_rule(policy: &Policy, rule: &PinRule, format: &PinFormat) -> Self {
        let mut constraints: Vec<Constraint> = Vec::new();
        for spec in &rule.constraints {
            let c = spec.resolve(format);
            if !constraints.contains(&c) {
                constraints.push(c);
            }
        }
        for card in card_constraints(format) {
            if !implied(&constraints, &card, format) {
                constraints.push(card);
            }
        }
        PinPolicy {
            constraints,
            label: rule.label.clone(),
            try_count_low: rule.try_count_low,
            policy: Some(policy.name.clone()),
            source: Some(policy.source.to_string()),
        }
    }

    /// `checkConstraints(old, new)`: one boolean per constraint, in order.
    /// `old` may be empty (unknown).
    pub fn check(&self, old: &Secret, new: &Secret) -> Vec<bool> {
        check_all(&self.constraints, old, new)
    }

    /// The constraints `new` breaks, in order.
    pub fn failed(&self, old: &Secret, new: &Secret) -> Vec<Constraint> {
        constraint::failed(&self.constraints, old, new)
    }

    /// `Ok` when every constraint holds, else `CONSTRAINT_VIOLATION` with
    /// the broken ones.
    pub fn enforce(&self, old: &Secret, new: &Secret) -> Result<(), Error> {
        let failed = self.failed(old, new);
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Error::ConstraintViolation { failed })
        }
    }
}

/// The effective policy of each PIN object of one card, resolved when the
/// card session opens.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CardPolicy {
    pins: Vec<(String, PinPolicy)>,
}

impl CardPolicy {
    /// The effective policy of the PIN object with this id.
    pub fn pin(&self, id: &str) -> Option<&PinPolicy> {
        self.pins.iter().find(|(i, _)| i == id).map(|(_, p)| p)
    }

    /// Each PIN object's id with its effective policy, in token order.
    pub fn pins(&self) -> impl Iterator<Item = (&str, &PinPolicy)> {
        self.pins.iter().map(|(i, p)| (i.as_str(), p))
    }
}

/// The token a built-in profile presents when its card reports nothing
/// special (default limits): for checking policies without a card.
pub fn offline_token(profile: &str) -> Option<Token> {
    ProfileSet::builtin().offline_token(profile)
}

/// What a policy's `profile` may name: a built-in card profile or one of
/// their applications.
pub fn known_profiles() -> Vec<&'static str> {
    let set = ProfileSet::builtin();
    let mut names: Vec<&'static str> = Vec::new();
    for p in set.profiles() {
        for name in
            std::iter::once(crate::card::intern(&p.name)).chain(p.applications.iter().map(|a| a.id))
        {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.push("pkcs15");
    names
}

/// The PIN ids of a profile (or of every application with that id).
pub fn profile_pin_ids(profile: &str) -> Vec<&'static str> {
    let set = ProfileSet::builtin();
    if let Some(t) = set.offline_token(profile) {
        return t.pins.iter().map(|p| p.id).collect();
    }
    let mut ids: Vec<&'static str> = Vec::new();
    for p in set.profiles() {
        for a in p.applications.iter().filter(|a| a.id == profile) {
            for pin in &a.pins {
                if !ids.contains(&pin.id) {
                    ids.push(pin.id);
                }
            }
        }
    }
    ids
}
