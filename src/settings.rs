//! The daemon's settings types and defaults: what the configuration file
//! fills in and the daemon reads. A leaf: the configuration and the server
//! both use it, neither is used by it.

use crate::security::lockout::LockoutConfig;
use std::path::PathBuf;
use std::time::Duration;

/// The daemon's documented default port.
pub const DEFAULT_PORT: u16 = 27183;
/// How long one card operation may take before its caller gets `TIMEOUT`.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(30);

/// The directories of this user's cardgate files.
pub(crate) fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("org", "cardgate", "cardgate")
}

/// `origins.toml` in the user's configuration directory.
pub(crate) fn default_origins_file() -> Option<PathBuf> {
    project_dirs().map(|d| d.config_dir().join("origins.toml"))
}

/// What happens when a page from an origin not on the allowlist connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsentMode {
    /// 403 `ORIGIN_NOT_ALLOWED`.
    #[default]
    Refuse,
    /// Ask the user through the PIN dialog program: allow once, always, deny.
    Prompt,
}

/// Limits that protect the daemon and the cards from pages.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A login ends when its connection sent nothing for this long.
    pub login_idle: Duration,
    /// The per-site progressive lockout of wrong PIN values.
    pub lockout: LockoutConfig,
    /// Where the lockout state is kept across restarts (`None`: in memory).
    pub lockout_file: Option<PathBuf>,
    /// Requests per second per connection, and the burst allowed.
    pub rate_per_second: u32,
    /// Requests a connection may send at once.
    pub rate_burst: u32,
    /// Open connections at most (then HTTP 503 `TOO_MANY_CONNECTIONS`).
    pub max_connections: usize,
    /// Unknown origins: refuse, or ask the user.
    pub consent: ConsentMode,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            login_idle: Duration::from_secs(300),
            lockout: LockoutConfig::default(),
            lockout_file: None,
            rate_per_second: 50,
            rate_burst: 100,
            max_connections: 1024,
            consent: ConsentMode::Refuse,
        }
    }
}
