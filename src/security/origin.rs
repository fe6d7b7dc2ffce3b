//! Who may open the WebSocket: the `Host` header must name the daemon
//! itself (against DNS rebinding), and the `Origin` must be on the user's
//! allowlist (WebSockets are not protected by CORS: the daemon is the only gate).
//!
//! Origins are compared exactly after normalisation — lower-case scheme and
//! host, default port dropped — never by suffix or substring.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// A web origin `scheme://host[:port]`, normalised.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Origin {
    /// `http` or `https`, lower-case.
    pub scheme: String,
    /// The host, lower-case.
    pub host: String,
    /// `None` for the scheme's default port.
    pub port: Option<u16>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// Why an origin string was not accepted as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an http(s) origin (scheme://host[:port])")]
pub(crate) struct BadOrigin(pub String);

impl Origin {
    /// Parses and normalises an origin. Only `http` and `https` are origins a
    /// web page can have here; paths, queries, user info and trailing dots
    /// are refused rather than silently dropped.
    pub(crate) fn parse(text: &str) -> Result<Origin, BadOrigin> {
        let bad = || BadOrigin(text.to_string());
        let (scheme, rest) = text.split_once("://").ok_or_else(bad)?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(bad()),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', '\\', ' ']) {
            return Err(bad());
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or_else(bad)?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad());
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(bad)?),
            };
            (format!("[{}]", addr.to_ascii_lowercase()), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
                None => (rest.to_ascii_lowercase(), None),
            }
        };
        let valid_host = !host.is_empty()
            && !host.ends_with('.')
            && !host.starts_with('.')
            && (host.starts_with('[')
                || host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
        if !valid_host || host.contains("..") {
            return Err(bad());
        }
        let port = match port {
            None => None,
            Some(p) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
                match p.parse::<u16>().map_err(|_| bad())? {
                    0 => return Err(bad()),
                    n if n == default_port => None,
                    n => Some(n),
                }
            }
            Some(_) => return Err(bad()),
        };
        Ok(Origin { scheme, host, port })
    }
}

/// The allowlist file (`origins.toml` in the config directory).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginsFile {
    /// Origins allowed to use the daemon, e.g. `"https://bank.example"`.
    #[serde(default)]
    pub allowed: Vec<String>,
    /// Allow `Origin: null` (file:// pages, sandboxed frames). Off by default.
    #[serde(default)]
    pub allow_null_origin: bool,
    /// Allow connections without an Origin header (local tools, not
    /// browsers). Off by default.
    #[serde(default)]
    pub allow_missing_origin: bool,
    /// Origins the user refused at the consent prompt: not asked again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<String>,
}

impl OriginsFile {
    /// Reads the file; a missing file is an empty allowlist, an invalid
    /// origin in it an error.
    pub fn load(path: &Path) -> Result<OriginsFile, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let file: OriginsFile =
                    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                for o in file.allowed.iter().chain(&file.denied) {
                    Origin::parse(o).map_err(|e| format!("{}: {e}", path.display()))?;
                }
                Ok(file)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(OriginsFile::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes the file (creating its directory), replacing the old one
    /// whole.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let text = toml::to_string(self).map_err(|e| e.to_string())?;
        // Write then rename, so a running daemon never reads half a file.
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Why a handshake was refused (logged, and the stable code in the 403 body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The `Host` header does not name this daemon (DNS rebinding).
    BadHost(String),
    /// No `Origin` header, and `allow_missing_origin` is off.
    MissingOrigin,
    /// `Origin: null`, and `allow_null_origin` is off.
    NullOrigin,
    /// The `Origin` is not a valid http(s) origin.
    BadOrigin(String),
    /// The origin is not on the allowlist.
    NotAllowed(Origin),
}

impl Refusal {
    /// The stable code: `HOST_NOT_ALLOWED` for a bad `Host`, otherwise
    /// `ORIGIN_NOT_ALLOWED`.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Refusal::BadHost(_) => "HOST_NOT_ALLOWED",
            _ => "ORIGIN_NOT_ALLOWED",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::BadHost(h) => write!(
                f,
                "Host {h:?} is not this daemon (127.0.0.1, localhost or [::1] with its port)"
            ),
            Refusal::MissingOrigin => f.write_str("no Origin header (allow_missing_origin is off)"),
            Refusal::NullOrigin => f.write_str("Origin null (allow_null_origin is off)"),
            Refusal::BadOrigin(o) => write!(f, "Origin {o:?} is not a valid http(s) origin"),
            Refusal::NotAllowed(o) => write!(
                f,
                "Origin {o} is not on the allowlist (cardgate origins allow {o})"
            ),
        }
    }
}

/// The origin a connection was accepted for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Peer {
    /// A web page of this origin, on the allowlist.
    Web(Origin),
    /// `Origin: null`, when allowed.
    Null,
    /// No Origin header (a local tool), when allowed.
    Local,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Web(o) => o.fmt(f),
            Peer::Null => f.write_str("null"),
            Peer::Local => f.write_str("(local tool)"),
        }
    }
}

/// What a file the daemon follows live (the allowlist, the lockout state)
/// looked like when it was last read: a change of modification time, size
/// or inode (a save renames a new file in) means it must be read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileState {
    Unread,
    Missing,
    Present {
        modified: Option<SystemTime>,
        len: u64,
        inode: u64,
    },
}

impl FileState {
    pub(crate) fn of(path: &Path) -> FileState {
        match std::fs::metadata(path) {
            Ok(m) => FileState::Present {
                modified: m.modified().ok(),
                len: m.len(),
                inode: inode(&m),
            },
            Err(_) => FileState::Missing,
        }
    }

    /// File times tick coarsely (a few ms): a file read within that tick of
    /// its last change may change again with the same time, size and
    /// (reused) inode. Such a read is not trusted; the next check reads
    /// the file again.
    pub(crate) fn racy(&self, read_at: SystemTime) -> bool {
        match self {
            FileState::Present {
                modified: Some(m), ..
            } => match read_at.duration_since(*m) {
                Ok(age) => age < std::time::Duration::from_millis(100),
                Err(_) => true, // changed after it was read
            },
            FileState::Present { modified: None, .. } => true,
            _ => false,
        }
    }
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// The allowlist file as last read, its origins parsed once (it is
/// consulted on every request).
#[derive(Debug, Default)]
struct Snapshot {
    allowed: Vec<Origin>,
    denied: Vec<Origin>,
    allow_null_origin: bool,
    allow_missing_origin: bool,
}

impl Snapshot {
    fn of(file: &OriginsFile) -> Snapshot {
        let parse = |list: &[String]| list.iter().filter_map(|o| Origin::parse(o).ok()).collect();
        Snapshot {
            allowed: parse(&file.allowed),
            denied: parse(&file.denied),
            allow_null_origin: file.allow_null_origin,
            allow_missing_origin: file.allow_missing_origin,
        }
    }
}

/// The allowlist as the daemon uses it: re-read when the file changes, so
/// `cardgate origins allow|revoke` take effect without a restart.
pub(crate) struct OriginGate {
    path: Option<PathBuf>,
    /// Origins always allowed: the daemon's own pages (the demo).
    own: Vec<Origin>,
    /// Extra settings given in code (tests, `cardgate demo`).
    extra: Snapshot,
    /// The file's state, what it said, and when it was read.
    cached: Mutex<(FileState, Arc<Snapshot>, SystemTime)>,
}

impl OriginGate {
    /// A gate following the allowlist at `path` (none: only `extra`),
    /// with `extra`'s settings added in code.
    pub(crate) fn new(path: Option<PathBuf>, extra: OriginsFile) -> Self {
        OriginGate {
            path,
            own: Vec::new(),
            extra: Snapshot::of(&extra),
            cached: Mutex::new((FileState::Unread, Arc::default(), SystemTime::UNIX_EPOCH)),
        }
    }

    /// Allows the daemon's own pages once its port is known.
    pub(crate) fn set_port(&mut self, port: u16) {
        // http, and https when wss is on: only this daemon serves that port.
        self.own = ["http", "https"]
            .iter()
            .flat_map(|scheme| {
                let default = if *scheme == "http" { 80 } else { 443 };
                ["127.0.0.1", "localhost", "[::1]"]
                    .iter()
                    .map(move |h| Origin {
                        scheme: (*scheme).into(),
                        host: (*h).into(),
                        port: (port != default).then_some(port),
                    })
            })
            .collect();
    }

    /// The file's content now: one `stat` per call, read again only when
    /// the file changed. A file that fails to load keeps the last good
    /// list (rather than open or close everything), with one warning per
    /// change of the file.
    fn current(&self) -> Arc<Snapshot> {
        let Some(path) = &self.path else {
            return Arc::default();
        };
        let state = FileState::of(path);
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if cached.0 != state || cached.0.racy(cached.2) {
            match OriginsFile::load(path) {
                Ok(file) => cached.1 = Arc::new(Snapshot::of(&file)),
                Err(e) => {
                    tracing::warn!(error = %e, "origins file refused; keeping the previous allowlist")
                }
            }
            cached.0 = state;
            cached.2 = SystemTime::now();
        }
        cached.1.clone()
    }

    /// Is `origin` allowed now (own pages, the file, extra settings)?
    pub(crate) fn allows(&self, origin: &Origin) -> bool {
        self.own.contains(origin)
            || self.extra.allowed.contains(origin)
            || self.current().allowed.contains(origin)
    }

    /// Is the peer still allowed (checked again on every request, so a
    /// revocation also ends open connections)?
    pub(crate) fn still_allows(&self, peer: &Peer) -> bool {
        match peer {
            Peer::Web(o) => self.allows(o),
            Peer::Null => self.extra.allow_null_origin || self.current().allow_null_origin,
            Peer::Local => self.extra.allow_missing_origin || self.current().allow_missing_origin,
        }
    }

    /// Was this origin refused at the consent prompt before?
    pub(crate) fn denied(&self, origin: &Origin) -> bool {
        self.current().denied.contains(origin)
    }

    /// Stores the user's consent decision in the allowlist file.
    pub(crate) fn remember(&self, origin: &Origin, allow: bool) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Err("no origins file to remember the decision in".into());
        };
        let mut file = OriginsFile::load(path)?;
        let text = origin.to_string();
        file.allowed.retain(|o| o != &text);
        file.denied.retain(|o| o != &text);
        if allow {
            file.allowed.push(text);
        } else {
            file.denied.push(text);
        }
        file.save(path)
    }

    /// Checks a handshake's `Host` and `Origin` headers.
    pub(crate) fn check(
        &self,
        host: Option<&str>,
        origin: Option<&str>,
        port: u16,
    ) -> Result<Peer, Refusal> {
        let host = host.unwrap_or("");
        if !host_is_us(host, port) {
            return Err(Refusal::BadHost(host.to_string()));
        }
        let peer = match origin {
            None => Peer::Local,
            Some("null") => Peer::Null,
            Some(o) => Peer::Web(Origin::parse(o).map_err(|_| Refusal::BadOrigin(o.to_string()))?),
        };
        if self.still_allows(&peer) {
            return Ok(peer);
        }
        Err(match peer {
            Peer::Web(o) => Refusal::NotAllowed(o),
            Peer::Null => Refusal::NullOrigin,
            Peer::Local => Refusal::MissingOrigin,
        })
    }
}

/// The `Host` header names this daemon: a loopback name and its port.
pub(crate) fn host_is_us(host: &str, port: u16) -> bool {
    // Checked on every HTTP request: compared in place, nothing allocated.
    let Some((name, given)) = host.rsplit_once(':') else {
        return false;
    };
    let port_ok = given.parse::<u16>().is_ok_and(|p| p == port)
        && given.bytes().all(|b| b.is_ascii_digit())
        && !given.starts_with('0');
    port_ok
        && ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(s: &str) -> String {
        Origin::parse(s)
            .map(|o| o.to_string())
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn normalises_origins() {
        assert_eq!(o("https://bank.example"), "https://bank.example");
        assert_eq!(o("HTTPS://Bank.Example"), "https://bank.example");
        assert_eq!(o("https://bank.example:443"), "https://bank.example");
        assert_eq!(o("http://bank.example:80"), "http://bank.example");
        assert_eq!(o("https://bank.example:8443"), "https://bank.example:8443");
        assert_eq!(o("http://[::1]:8080"), "http://[::1]:8080");
        assert_eq!(o("https://bank.example/"), "https://bank.example");
        for bad in [
            "file://",
            "null",
            "bank.example",
            "ftp://bank.example",
            "https://bank.example.",
            "https://bank.example/path",
            "https://user@bank.example",
            "https://bank.example:0",
            "https://bank.example:99999",
            "https://bank.example:",
            "https://[::1",
            "https://bank..example",
            "https://",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_header_must_be_ours() {
        assert!(host_is_us("127.0.0.1:27183", 27183));
        assert!(host_is_us("LOCALHOST:27183", 27183));
        assert!(host_is_us("[::1]:27183", 27183));
        assert!(!host_is_us("127.0.0.1", 27183));
        assert!(!host_is_us("localhost.:27183", 27183));
        assert!(!host_is_us("evil.test:27183", 27183));
        assert!(!host_is_us("127.0.0.1:80", 27183));
        assert!(!host_is_us("127.0.0.1:027183", 27183));
        assert!(!host_is_us("127.0.0.1:+27183", 27183));
        assert!(!host_is_us("127.0.0.1:27183:27183", 27183));
        assert!(!host_is_us("[::1]", 27183));
        assert!(!host_is_us(":27183", 27183));
        assert!(!host_is_us("", 27183));
    }

    fn web(s: &str) -> Peer {
        Peer::Web(Origin::parse(s).unwrap())
    }

    #[test]
    fn the_gate_follows_the_file_as_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("origins.toml");
        let gate = OriginGate::new(Some(path.clone()), OriginsFile::default());
        let bank = web("https://bank.example");
        // No file: nothing but the daemon's own pages.
        assert!(!gate.still_allows(&bank));
        assert!(!gate.still_allows(&Peer::Local));
        let mut file = OriginsFile {
            allowed: vec!["https://bank.example".into()],
            ..OriginsFile::default()
        };
        file.save(&path).unwrap();
        assert!(gate.still_allows(&bank), "an allow takes effect at once");
        assert!(!gate.still_allows(&web("https://shop.example")));
        file.allowed.clear();
        file.denied = vec!["https://bank.example".into()];
        file.save(&path).unwrap();
        assert!(
            !gate.still_allows(&bank),
            "a revocation takes effect at once"
        );
        assert!(gate.denied(&Origin::parse("https://bank.example").unwrap()));
        // A broken file keeps the last good list; a fixed one is read again.
        file.allowed = vec!["https://shop.example".into()];
        file.save(&path).unwrap();
        assert!(gate.still_allows(&web("https://shop.example")));
        std::fs::write(&path, "allowed = [\"not an origin\"]\n").unwrap();
        assert!(gate.still_allows(&web("https://shop.example")));
        file.allow_missing_origin = true;
        file.save(&path).unwrap();
        assert!(gate.still_allows(&Peer::Local));
        std::fs::remove_file(&path).unwrap();
        assert!(
            !gate.still_allows(&web("https://shop.example")),
            "file gone"
        );
        assert!(!gate.still_allows(&Peer::Local));
    }

    #[test]
    fn extra_settings_and_own_pages_need_no_file() {
        let mut gate = OriginGate::new(
            None,
            OriginsFile {
                allowed: vec!["https://Bank.Example:443".into()],
                allow_null_origin: true,
                ..OriginsFile::default()
            },
        );
        gate.set_port(27183);
        assert!(gate.still_allows(&web("https://bank.example")));
        assert!(gate.still_allows(&Peer::Null));
        assert!(!gate.still_allows(&Peer::Local));
        assert!(gate.still_allows(&web("http://127.0.0.1:27183")));
        assert!(!gate.still_allows(&web("http://127.0.0.1:27184")));
    }
}
