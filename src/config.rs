//! The daemon's configuration: one TOML file per user
//! (`~/.config/cardgate/config.toml` on Linux) over a system-wide one
//! (`/etc/cardgate/config.toml`), each key taken from the first of: a
//! command-line flag, an environment variable, the user file, the system
//! file, the built-in default. Each key is declared once, in
//! [`Config::load_from`]; every key and its default is documented in
//! `docs/configuration.md` (a test checks the two agree), and `cardgate
//! config show` prints the effective values and where each came from.
//!
//! A file that cannot be used is an error naming the file and line — never
//! a silent default.

use crate::security::lockout::LockoutConfig;
use crate::security::origin::{Origin, OriginsFile};
use crate::settings::{ConsentMode, DEFAULT_OP_TIMEOUT, DEFAULT_PORT, Limits};
use clap::builder::TypedValueParser as _;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The system-wide configuration file (Unix).
pub(crate) const SYSTEM_FILE: &str = "/etc/cardgate/config.toml";
/// Replaces the user configuration file's path.
pub(crate) const CONFIG_ENV: &str = "CARDGATE_CONFIG";
/// Replaces the system configuration file's path (packaging, tests).
pub(crate) const SYSTEM_CONFIG_ENV: &str = "CARDGATE_SYSTEM_CONFIG";
/// Log filter (overrides `log_level`).
pub(crate) const LOG_ENV: &str = "CARDGATE_LOG";

pub(crate) use crate::settings::project_dirs;

/// The user's configuration file: `$CARDGATE_CONFIG`, else `config.toml`
/// in the user's configuration directory.
pub(crate) fn user_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    project_dirs().map(|d| d.config_dir().join("config.toml"))
}

/// The system-wide file: `$CARDGATE_SYSTEM_CONFIG`, else
/// `/etc/cardgate/config.toml` (`%PROGRAMDATA%\cardgate\config.toml` on Windows).
pub(crate) fn system_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(SYSTEM_CONFIG_ENV) {
        return (!p.is_empty()).then(|| PathBuf::from(p));
    }
    if cfg!(windows) {
        return std::env::var_os("PROGRAMDATA")
            .map(|d| PathBuf::from(d).join("cardgate").join("config.toml"));
    }
    Some(PathBuf::from(SYSTEM_FILE))
}

/// The user's data directory (`~/.local/share/cardgate` on Linux): TLS
/// files, the lockout state.
pub(crate) fn data_dir() -> Option<PathBuf> {
    project_dirs().map(|d| d.data_dir().to_path_buf())
}

/// `lockout.toml` in the user's data directory: the per-site lockout state.
pub(crate) fn default_lockout_file() -> Option<PathBuf> {
    data_dir().map(|d| d.join(crate::security::lockout::FILE_NAME))
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// The built-in default.
    Default,
    /// The system configuration file.
    System(PathBuf),
    /// The user's configuration file.
    User(PathBuf),
    /// This environment variable.
    Env(&'static str),
    /// This command-line flag, as it is typed.
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::System(p) => write!(f, "system file {}", p.display()),
            Source::User(p) => write!(f, "user file {}", p.display()),
            Source::Env(v) => write!(f, "environment {v}"),
            Source::Flag(v) => write!(f, "command line {v}"),
        }
    }
}

impl Source {
    /// A one-word name of the source (`default`, `system`, `user`, `env`,
    /// `flag`), without its path or variable.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::System(_) => "system",
            Source::User(_) => "user",
            Source::Env(_) => "env",
            Source::Flag(_) => "flag",
        }
    }
}

/// `[tls]`: wss:// on the daemon's port, with the certificate from
/// `cardgate tls init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    /// Also accept TLS (wss://, https://) on the same port.
    pub enabled: bool,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, mode 0600).
    pub key: PathBuf,
}

/// `[pin_dialog]`: the daemon's own PIN dialog (a pinentry program).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PinDialogSettings {
    /// `None`: found like gpg-agent does (PINENTRY_PROGRAM, gpg-agent.conf, PATH).
    pub program: Option<PathBuf>,
    /// How long the user has to answer the dialog.
    pub timeout: Duration,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// TCP port on `127.0.0.1` and `[::1]` (`0`: a free one).
    pub port: u16,
    /// How long a card operation may take before its caller gets
    /// `TIMEOUT` (it still finishes on the card).
    pub op_timeout: Duration,
    /// When socket-activated: exit after this long without a connection
    /// (zero: never).
    pub idle_exit: Duration,
    /// A tracing filter ("warn", "info", "cardgate=debug" …).
    pub log_level: String,
    /// Policy directories replacing the system and user ones (`None`: those).
    pub policy_dirs: Option<Vec<PathBuf>>,
    /// Card profile directories replacing the system and user ones
    /// (`None`: those; docs/cards.md).
    pub card_dirs: Option<Vec<PathBuf>>,
    /// The live allowlist `cardgate origins` edits (`None`: none).
    pub origins_file: Option<PathBuf>,
    /// Fixed origin settings, added to the allowlist file's.
    pub origins: OriginsFile,
    /// Limits that protect the daemon and the cards from pages.
    pub limits: Limits,
    /// `[tls]`: wss:// on the same port.
    pub tls: TlsSettings,
    /// `[pin_dialog]`: the daemon's own PIN dialog.
    pub pin_dialog: PinDialogSettings,
    /// Every key as loaded, in display order.
    pub settings: Vec<Setting>,
    /// The files consulted and whether they exist.
    pub files: Vec<(Source, bool)>,
}

/// One key as loaded: its dotted name, its effective value as
/// `config show` prints it, and where that value came from.
#[derive(Debug, Clone)]
pub(crate) struct Setting {
    /// The dotted key, e.g. `limits.login_idle`.
    pub key: &'static str,
    /// The effective value.
    pub value: toml::Value,
    /// Where the value came from.
    pub source: Source,
}

/// A configuration file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

// ---- the file format --------------------------------------------------------

/// Seconds, as a non-negative integer.
#[derive(Debug, Clone, Copy)]
struct Secs(u64);

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        u64::try_from(n)
            .map(Secs)
            .map_err(|_| serde::de::Error::custom("a number of seconds cannot be negative"))
    }
}

/// Seconds, at least one.
#[derive(Debug, Clone, Copy)]
struct PositiveSecs(u64);

impl<'de> Deserialize<'de> for PositiveSecs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Secs(n) = Secs::deserialize(d)?;
        if n == 0 {
            return Err(serde::de::Error::custom("must be at least 1 second"));
        }
        Ok(PositiveSecs(n))
    }
}

/// A count, at least one.
#[derive(Debug, Clone, Copy)]
struct Positive(u32);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        match u32::try_from(n) {
            Ok(n) if n > 0 => Ok(Positive(n)),
            _ => Err(serde::de::Error::custom(format!(
                "must be between 1 and {}, not {n}",
                u32::MAX
            ))),
        }
    }
}

/// A log filter that tracing accepts.
#[derive(Debug, Clone)]
struct LogLevel(String);

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        check_log_level(&s).map_err(serde::de::Error::custom)?;
        Ok(LogLevel(s))
    }
}

/// Checks a log filter ("warn", "cardgate=debug,info" …).
pub(crate) fn check_log_level(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("the log level is empty (try \"warn\", \"info\" or \"debug\")".into());
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map(|_| ())
        .map_err(|e| format!("{s:?} is not a log level or filter: {e}"))
}

/// An http(s) origin, validated.
#[derive(Debug, Clone)]
struct OriginText(String);

impl<'de> Deserialize<'de> for OriginText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Origin::parse(&s)
            .map(|o| OriginText(o.to_string()))
            .map_err(serde::de::Error::custom)
    }
}

/// The file's keys and their types. Each field is a key: `pick!` in
/// [`Config::load_from`] gives it its flag, environment variable, default and
/// display (a field nobody picks is an unused-field warning), and
/// `docs/configuration.md` documents it (a test checks).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    port: Option<u16>,
    op_timeout: Option<PositiveSecs>,
    idle_exit: Option<Secs>,
    log_level: Option<LogLevel>,
    policy_dirs: Option<Vec<PathBuf>>,
    card_dirs: Option<Vec<PathBuf>>,
    #[serde(default)]
    origins: FileOrigins,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    tls: FileTls,
    #[serde(default)]
    pin_dialog: FilePinDialog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePinDialog {
    program: Option<PathBuf>,
    timeout: Option<PositiveSecs>,
}

/// `origins.unknown`: "refuse" or "prompt".
#[derive(Debug, Clone, Copy)]
struct Consent(ConsentMode);

/// How `origins.unknown` and `--unknown-origins` spell each [`ConsentMode`].
const CONSENT_NAMES: [(&str, ConsentMode); 2] = [
    ("refuse", ConsentMode::Refuse),
    ("prompt", ConsentMode::Prompt),
];

fn consent_mode(name: &str) -> Option<ConsentMode> {
    CONSENT_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, mode)| *mode)
}

impl<'de> Deserialize<'de> for Consent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        consent_mode(&name).map(Consent).ok_or_else(|| {
            serde::de::Error::custom(format!("{name:?}: expected \"refuse\" or \"prompt\""))
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOrigins {
    file: Option<PathBuf>,
    allowed: Option<Vec<OriginText>>,
    allow_null_origin: Option<bool>,
    allow_missing_origin: Option<bool>,
    unknown: Option<Consent>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    login_idle: Option<PositiveSecs>,
    max_failures: Option<u32>,
    lockout: Option<PositiveSecs>,
    lock_until_unlocked: Option<bool>,
    lockout_file: Option<PathBuf>,
    rate_per_second: Option<Positive>,
    rate_burst: Option<Positive>,
    max_connections: Option<Positive>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    enabled: Option<bool>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str::<FileConfig>(text).map_err(|e| {
        let (line, column) = match e.span() {
            Some(span) => {
                let (l, c) = line_col(text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError {
            file: path.to_path_buf(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })
}

/// Reads one file; a missing file is `None`.
fn read_file(path: &Path) -> Result<Option<FileConfig>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_file(path, &text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            message: format!("cannot read: {e}"),
        }),
    }
}

/// `~/x` → the home directory's `x`; other paths as they are.
fn expand(path: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~")
        && let Some(home) = directories::BaseDirs::new()
    {
        return home.home_dir().join(rest);
    }
    path.to_path_buf()
}

/// Values given on the command line (highest precedence). The flags of
/// `cardgate serve` and `cardgate demo` are declared here, once: the doc
/// comments are their help, and `config show` names them as clap spells
/// them ([`Overrides::flag`]).
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct Overrides {
    /// Port on 127.0.0.1 and [::1] (default: `port` in config.toml, 27183).
    #[arg(long)]
    pub port: Option<u16>,
    /// Seconds a card operation may take before its caller gets TIMEOUT
    /// (default: `op_timeout`, 30).
    #[arg(long, value_name = "SECONDS")]
    pub op_timeout: Option<u64>,
    /// The origins allowlist (default: `origins.file`, origins.toml in the
    /// user's config directory; managed with `cardgate origins`).
    #[arg(long, value_name = "FILE")]
    pub origins_file: Option<PathBuf>,
    /// When socket-activated, exit after this many seconds without a
    /// connection; 0 never (default: `idle_exit`, 600).
    #[arg(long, value_name = "SECONDS")]
    pub idle_exit: Option<u64>,
    /// The pinentry program for the daemon's PIN dialog (default:
    /// `pin_dialog.program`, else found like gpg-agent does:
    /// PINENTRY_PROGRAM, gpg-agent.conf, PATH).
    #[arg(long, value_name = "PROGRAM")]
    pub pinentry: Option<PathBuf>,
    /// Seconds the user has to answer the PIN dialog (default:
    /// `pin_dialog.timeout`, 60).
    #[arg(long, value_name = "SECONDS")]
    pub pin_timeout: Option<u64>,
    /// Pages from origins not on the allowlist: refuse them, or ask the user
    /// (allow once / always / deny) through the PIN dialog program
    /// (default: `origins.unknown`, refuse).
    #[arg(
        long,
        value_parser = clap::builder::PossibleValuesParser::new(CONSENT_NAMES.map(|(n, _)| n))
            .try_map(|n| consent_mode(&n).ok_or("expected refuse or prompt")),
    )]
    pub unknown_origins: Option<ConsentMode>,
    /// -v / -vv (a global flag of the command line): a log level.
    #[arg(skip)]
    pub log_level: Option<String>,
    /// --config (a global flag of the command line): the user file to read
    /// instead of the standard one.
    #[arg(skip)]
    pub user_file: Option<PathBuf>,
}

impl Overrides {
    /// The flag that sets the field `field`, as it is typed
    /// (`--op-timeout`), from its declaration above.
    fn flag(field: &str) -> String {
        use clap::Args;
        let command = Overrides::augment_args(clap::Command::new("serve"));
        let long = command
            .get_arguments()
            .find(|a| a.get_id() == field)
            .and_then(|a| a.get_long());
        match long {
            Some(long) => format!("--{long}"),
            None => format!("--{field}"),
        }
    }
}

impl Config {
    /// The configuration from the standard files, the environment and `flags`.
    pub(crate) fn load(flags: &Overrides) -> Result<Config, ConfigError> {
        let user = flags.user_file.clone().or_else(user_file);
        Config::load_from(system_file().as_deref(), user.as_deref(), flags)
    }

    /// The configuration from the given files (either may be absent).
    pub(crate) fn load_from(
        system: Option<&Path>,
        user: Option<&Path>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut files = Vec::new();
        let sys = match system {
            Some(p) => {
                let f = read_file(p)?;
                files.push((Source::System(p.to_path_buf()), f.is_some()));
                f.map(|f| (Source::System(p.to_path_buf()), f))
            }
            None => None,
        };
        let usr = match user {
            Some(p) => {
                let f = read_file(p)?;
                files.push((Source::User(p.to_path_buf()), f.is_some()));
                f.map(|f| (Source::User(p.to_path_buf()), f))
            }
            None => None,
        };
        // Highest precedence first.
        let layers: Vec<&(Source, FileConfig)> = usr.iter().chain(sys.iter()).collect();
        let mut settings = Vec::new();

        // Each key once: its place in the file (the `File*` structs above, a
        // field path such as `limits.rate_burst`, which is also its name), the
        // flag and environment variable that can set it, how the file's value
        // becomes the setting's, its default, and how `config show` prints
        // it. The first of flag, environment, user file, system file, default
        // that gives a value wins. The order here is `config show`'s order.
        macro_rules! pick {
            ($field:ident, $($rest:tt)*) => {
                pick!(@key stringify!($field), |f| f.$field.as_ref(), $($rest)*)
            };
            ($section:ident . $field:ident, $($rest:tt)*) => {
                pick!(
                    @key concat!(stringify!($section), ".", stringify!($field)),
                    |f| f.$section.$field.as_ref(),
                    $($rest)*
                )
            };
            (@flag $name:expr) => { $name };
            // `flag: None`: no flag sets the key.
            (@flag) => { String::new() };
            (@key $key:expr, |$f:ident| $in_file:expr,
                flag: $flag:expr $(=> $flag_name:expr)?,
                env: $env:expr,
                file: |$v:ident| $from_file:expr,
                default: $default:expr,
                show: |$s:ident| $show:expr $(,)?
            ) => {{
                let from_layers = || {
                    layers.iter().find_map(|(src, $f)| {
                        $in_file.map(|$v| ($from_file, src.clone()))
                    })
                };
                let (value, source) = if let Some(v) = $flag {
                    (v, Source::Flag(pick!(@flag $($flag_name)?)))
                } else if let Some((v, var)) = $env {
                    (v, Source::Env(var))
                } else if let Some((v, src)) = from_layers() {
                    (v, src)
                } else {
                    ($default, Source::Default)
                };
                let shown = {
                    let $s = &value;
                    $show
                };
                settings.push(Setting {
                    key: $key,
                    value: shown,
                    source,
                });
                value
            }};
        }

        use toml::Value as V;
        let show_path = |p: &Path| V::String(p.display().to_string());
        let show_optional_path =
            |p: &Option<PathBuf>| p.as_deref().map_or(V::String(String::new()), show_path);
        let show_secs = |s: &u64| V::Integer(*s as i64);

        let port = pick!(port,
            flag: flags.port => Overrides::flag("port"),
            env: None,
            file: |v| *v,
            default: DEFAULT_PORT,
            show: |v| V::Integer((*v).into()),
        );
        let op_timeout = pick!(op_timeout,
            flag: flags.op_timeout.map(|s| s.max(1)) => Overrides::flag("op_timeout"),
            env: None,
            file: |v| v.0,
            default: DEFAULT_OP_TIMEOUT.as_secs(),
            show: |v| show_secs(v),
        );
        let idle_exit = pick!(idle_exit,
            flag: flags.idle_exit => Overrides::flag("idle_exit"),
            env: None,
            file: |v| v.0,
            default: DEFAULT_IDLE_EXIT.as_secs(),
            show: |v| show_secs(v),
        );
        let log_env = match std::env::var(LOG_ENV) {
            Ok(v) if !v.is_empty() => {
                check_log_level(&v).map_err(|m| ConfigError {
                    file: PathBuf::from(format!("${LOG_ENV}")),
                    line: None,
                    column: None,
                    message: m,
                })?;
                Some((v, LOG_ENV))
            }
            _ => None,
        };
        let log_level = pick!(log_level,
            // The global `-v` of the command line (`-vv`: trace).
            flag: flags.log_level.clone() => "-v".to_string(),
            env: log_env,
            file: |v| v.0.clone(),
            default: "warn".to_string(),
            show: |v| V::String(v.clone()),
        );
        let policy_env = std::env::var_os(crate::policy::PATH_ENV).map(|list| {
            (
                Some(
                    std::env::split_paths(&list)
                        .filter(|p| !p.as_os_str().is_empty())
                        .collect::<Vec<_>>(),
                ),
                crate::policy::PATH_ENV,
            )
        });
        let policy_dirs = pick!(policy_dirs,
            flag: None,
            env: policy_env,
            file: |v| Some(v.iter().map(|p| expand(p)).collect()),
            default: None,
            show: |v| match v {
                Some(d) => V::Array(d.iter().map(|p| show_path(p)).collect()),
                None => V::Array(
                    crate::policy::PolicySources::standard_dirs()
                        .dirs
                        .iter()
                        .map(|d| show_path(&d.path))
                        .collect(),
                ),
            },
        );

        let cards_env = std::env::var_os(crate::card::profile::PATH_ENV).map(|list| {
            (
                Some(
                    std::env::split_paths(&list)
                        .filter(|p| !p.as_os_str().is_empty())
                        .collect::<Vec<_>>(),
                ),
                crate::card::profile::PATH_ENV,
            )
        });
        let card_dirs = pick!(card_dirs,
            flag: None,
            env: cards_env,
            file: |v| Some(v.iter().map(|p| expand(p)).collect()),
            default: None,
            show: |v| V::Array(
                v.clone()
                    .unwrap_or_else(crate::card::ProfileSet::standard_dirs)
                    .iter()
                    .map(|p| show_path(p))
                    .collect(),
            ),
        );

        let default_origins = project_dirs().map(|d| d.config_dir().join("origins.toml"));
        let origins_file = pick!(origins.file,
            flag: flags.origins_file.clone().map(Some) => Overrides::flag("origins_file"),
            env: None,
            // An empty path: no allowlist file at all.
            file: |v| (!v.as_os_str().is_empty()).then(|| expand(v)),
            default: default_origins,
            show: |v| show_optional_path(v),
        );
        let allowed = pick!(origins.allowed,
            flag: None,
            env: None,
            file: |v| v.iter().map(|o| o.0.clone()).collect::<Vec<_>>(),
            default: Vec::new(),
            show: |v| V::Array(v.iter().cloned().map(V::String).collect()),
        );
        let allow_null_origin = pick!(origins.allow_null_origin,
            flag: None,
            env: None,
            file: |v| *v,
            default: false,
            show: |v| V::Boolean(*v),
        );
        let allow_missing_origin = pick!(origins.allow_missing_origin,
            flag: None,
            env: None,
            file: |v| *v,
            default: false,
            show: |v| V::Boolean(*v),
        );
        let consent = pick!(origins.unknown,
            flag: flags.unknown_origins => Overrides::flag("unknown_origins"),
            env: None,
            file: |v| v.0,
            default: ConsentMode::Refuse,
            show: |v| V::String(
                match v {
                    ConsentMode::Refuse => "refuse",
                    ConsentMode::Prompt => "prompt",
                }
                .into(),
            ),
        );

        let dl = Limits::default();
        let login_idle = pick!(limits.login_idle,
            flag: None,
            env: None,
            file: |v| v.0,
            default: dl.login_idle.as_secs(),
            show: |v| show_secs(v),
        );
        let max_failures = pick!(limits.max_failures,
            flag: None,
            env: None,
            file: |v| *v,
            default: dl.lockout.max_failures,
            show: |v| V::Integer((*v).into()),
        );
        let lockout = pick!(limits.lockout,
            flag: None,
            env: None,
            file: |v| v.0,
            default: dl.lockout.lock.as_secs(),
            show: |v| show_secs(v),
        );
        let lock_until_unlocked = pick!(limits.lock_until_unlocked,
            flag: None,
            env: None,
            file: |v| *v,
            default: dl.lockout.lock_until_unlocked,
            show: |v| V::Boolean(*v),
        );
        let lockout_file = pick!(limits.lockout_file,
            flag: None,
            env: None,
            // An empty path: kept in memory only (lost at exit).
            file: |v| (!v.as_os_str().is_empty()).then(|| expand(v)),
            default: default_lockout_file(),
            show: |v| show_optional_path(v),
        );
        let rate_per_second = pick!(limits.rate_per_second,
            flag: None,
            env: None,
            file: |v| v.0,
            default: dl.rate_per_second,
            show: |v| V::Integer((*v).into()),
        );
        let rate_burst = pick!(limits.rate_burst,
            flag: None,
            env: None,
            file: |v| v.0,
            default: dl.rate_burst,
            show: |v| V::Integer((*v).into()),
        );
        let max_connections = pick!(limits.max_connections,
            flag: None,
            env: None,
            file: |v| v.0 as usize,
            default: dl.max_connections,
            show: |v| V::Integer(*v as i64),
        );

        let tls_dir = data_dir().map(|d| d.join("tls")).unwrap_or_default();
        let tls_enabled = pick!(tls.enabled,
            flag: None,
            env: None,
            file: |v| *v,
            default: false,
            show: |v| V::Boolean(*v),
        );
        let cert = pick!(tls.cert,
            flag: None,
            env: None,
            file: |v| expand(v),
            default: tls_dir.join("cert.pem"),
            show: |v| show_path(v),
        );
        let key = pick!(tls.key,
            flag: None,
            env: None,
            file: |v| expand(v),
            default: tls_dir.join("key.pem"),
            show: |v| show_path(v),
        );

        let pin_program = pick!(pin_dialog.program,
            flag: flags.pinentry.clone().map(Some) => Overrides::flag("pinentry"),
            env: None,
            // An empty path: find one.
            file: |v| (!v.as_os_str().is_empty()).then(|| expand(v)),
            default: None,
            show: |v| show_optional_path(v),
        );
        let pin_timeout = pick!(pin_dialog.timeout,
            flag: flags.pin_timeout.map(|s| s.max(1)) => Overrides::flag("pin_timeout"),
            env: None,
            file: |v| v.0,
            default: crate::pinentry::DEFAULT_TIMEOUT.as_secs(),
            show: |v| show_secs(v),
        );

        Ok(Config {
            port,
            op_timeout: Duration::from_secs(op_timeout),
            idle_exit: Duration::from_secs(idle_exit),
            log_level,
            policy_dirs,
            card_dirs,
            origins_file,
            origins: OriginsFile {
                allowed,
                allow_null_origin,
                allow_missing_origin,
                ..OriginsFile::default()
            },
            limits: Limits {
                login_idle: Duration::from_secs(login_idle),
                lockout: LockoutConfig {
                    max_failures,
                    lock: Duration::from_secs(lockout),
                    lock_until_unlocked,
                },
                lockout_file,
                rate_per_second,
                rate_burst,
                max_connections,
                consent,
            },
            tls: TlsSettings {
                enabled: tls_enabled,
                cert,
                key,
            },
            pin_dialog: PinDialogSettings {
                program: pin_program,
                timeout: Duration::from_secs(pin_timeout),
            },
            settings,
            files,
        })
    }

    /// Where a key's value came from.
    pub(crate) fn source(&self, key: &str) -> Option<&Source> {
        self.settings
            .iter()
            .find(|s| s.key == key)
            .map(|s| &s.source)
    }

    /// The policy directories to load, lowest precedence first.
    pub(crate) fn policy_sources(&self) -> crate::policy::PolicySources {
        use crate::policy::{DirKind, PolicyDir, PolicySources};
        match &self.policy_dirs {
            None => PolicySources::standard_dirs(),
            Some(dirs) => PolicySources {
                builtin: true,
                dirs: dirs
                    .iter()
                    .map(|p| PolicyDir {
                        kind: DirKind::Custom,
                        path: p.clone(),
                    })
                    .collect(),
            },
        }
    }

    /// The card profiles in effect: the built-in ones, then those of the
    /// configured directories (a file that is refused is skipped with a
    /// warning).
    pub(crate) fn card_profiles(&self) -> crate::card::ProfileSet {
        let dirs = self
            .card_dirs
            .clone()
            .unwrap_or_else(crate::card::ProfileSet::standard_dirs);
        crate::card::ProfileSet::load(&dirs)
    }

    /// Each key's effective value as TOML, in display order.
    pub(crate) fn values(&self) -> Vec<(&'static str, toml::Value)> {
        self.settings
            .iter()
            .map(|s| (s.key, s.value.clone()))
            .collect()
    }
}

/// How long a socket-activated daemon waits without a connection before it
/// exits (systemd starts it again on the next connection).
pub(crate) const DEFAULT_IDLE_EXIT: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn line_and_column() {
        assert_eq!(line_col("a\nbc\nd", 0), (1, 1));
        assert_eq!(line_col("a\nbc\nd", 3), (2, 2));
        assert_eq!(line_col("a\nbc\nd", 5), (3, 1));
    }

    #[test]
    fn user_over_system_over_default() {
        let dir = tempfile::tempdir().unwrap();
        let sys = write(
            dir.path(),
            "sys.toml",
            "port = 1111\nop_timeout = 5\n[limits]\nrate_burst = 7\n",
        );
        let usr = write(
            dir.path(),
            "usr.toml",
            "port = 2222\n[tls]\nenabled = true\n",
        );
        let c = Config::load_from(Some(&sys), Some(&usr), &Overrides::default()).unwrap();
        assert_eq!(c.port, 2222);
        assert_eq!(c.source("port"), Some(&Source::User(usr.clone())));
        assert_eq!(c.op_timeout, Duration::from_secs(5));
        assert_eq!(c.source("op_timeout"), Some(&Source::System(sys.clone())));
        assert_eq!(c.limits.rate_burst, 7);
        assert_eq!(c.limits.rate_per_second, 50);
        assert_eq!(c.source("limits.rate_per_second"), Some(&Source::Default));
        assert!(c.tls.enabled);
        let flags = Overrides {
            port: Some(3333),
            op_timeout: Some(9),
            origins_file: Some("/o.toml".into()),
            pinentry: Some("/bin/pinentry".into()),
            log_level: Some("debug".into()),
            ..Overrides::default()
        };
        let c = Config::load_from(Some(&sys), Some(&usr), &flags).unwrap();
        assert_eq!(c.port, 3333);
        // Each flag is named as it is typed.
        for (key, flag) in [
            ("port", "--port"),
            ("op_timeout", "--op-timeout"),
            ("origins.file", "--origins-file"),
            ("pin_dialog.program", "--pinentry"),
            ("log_level", "-v"),
        ] {
            assert_eq!(c.source(key), Some(&Source::Flag(flag.into())), "{key}");
        }
    }

    #[test]
    fn bad_files_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("port = 27183\nprot = 1\n", 2, "unknown field `prot`"),
            ("port = 70000\n", 1, "invalid value"),
            ("port = \"x\"\n", 1, "invalid type"),
            ("op_timeout = 0\n", 1, "at least 1 second"),
            ("idle_exit = -1\n", 1, "cannot be negative"),
            ("\n\nlog_level = \"cardgate=loud\"\n", 3, "not a log level"),
            (
                "[origins]\nallowed = [\"https://ok.example\", \"bank.example\"]\n",
                2,
                "not an http(s) origin",
            ),
            ("[limits]\nrate_burst = 0\n", 2, "between 1 and"),
            ("[tls]\nenabled = yes\n", 2, ""),
            (
                "[origins]\nunknown = \"ask\"\n",
                2,
                "expected \"refuse\" or \"prompt\"",
            ),
            ("[pin_dialog]\ntimeout = 0\n", 2, "at least 1 second"),
            ("[limits]\nlock_until_unlocked = 1\n", 2, "invalid type"),
            ("port = 1\nport = 2\n", 2, "duplicate key"),
        ];
        for (text, line, needle) in cases {
            let p = write(dir.path(), "bad.toml", text);
            let e = Config::load_from(None, Some(&p), &Overrides::default()).unwrap_err();
            assert_eq!(e.file, p, "{text}");
            assert_eq!(e.line, Some(line), "{text}: {e}");
            assert!(e.message.contains(needle), "{text}: {e}");
        }
    }

    /// The rows of the keys table in docs/configuration.md: each key and
    /// its documented default, in the table's order.
    fn documented_keys() -> Vec<(String, String)> {
        let doc = include_str!("../docs/configuration.md");
        let keys = doc.split("\n## Keys\n").nth(1).expect("a Keys section");
        let table = keys
            .lines()
            .skip_while(|l| !l.starts_with("| key |"))
            .skip(2) // the header and its separator
            .take_while(|l| l.starts_with('|'));
        table
            .map(|row| {
                let cells: Vec<&str> = row.split(" | ").collect();
                let unquote = |c: &str| c.trim_matches(['|', ' ', '`']).to_string();
                (unquote(cells[0]), unquote(cells[1]))
            })
            .collect()
    }

    #[test]
    fn docs_list_every_key_and_no_other() {
        let c = Config::load_from(None, None, &Overrides::default()).unwrap();
        let loaded: Vec<&str> = c.settings.iter().map(|s| s.key).collect();
        let documented = documented_keys();
        let names: Vec<&str> = documented.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, loaded, "docs/configuration.md's keys table");
        // Defaults that do not depend on the user's directories are
        // written as config show prints them.
        for (key, doc_default) in &documented {
            let s = c.settings.iter().find(|s| s.key == key).unwrap();
            if s.source == Source::Default && !doc_default.contains('/') {
                assert_eq!(*doc_default, s.value.to_string(), "default of {key}");
            }
        }
    }

    #[test]
    fn missing_files_are_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load_from(
            Some(&dir.path().join("none.toml")),
            Some(&dir.path().join("nope.toml")),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.port, DEFAULT_PORT);
        assert!(c.settings.iter().all(|s| s.source == Source::Default
            || (s.key == "log_level" && matches!(s.source, Source::Env(_)))
            || (s.key == "policy_dirs" && matches!(s.source, Source::Env(_)))
            || (s.key == "card_dirs" && matches!(s.source, Source::Env(_)))));
        assert_eq!(c.files.len(), 2);
        assert!(c.files.iter().all(|(_, exists)| !exists));
    }
}
