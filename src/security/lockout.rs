//! The progressive lockout of wrong PIN values, per site (web origin).
//!
//! Wrong values a site sends count as *strikes*; the card's own retry
//! counter is never the only brake. With the default stage size of 3
//! (`limits.max_failures`) and lock of 300 s (`limits.lockout`):
//!
//! | wrong value | what the site is told |
//! |---|---|
//! | 1st | an ordinary failure (`attemptsBeforeLock: 2`) |
//! | 2nd | one more wrong value locks the site for 5 minutes |
//! | 3rd | the site is now locked for 5 minutes |
//! | while locked | every attempt is refused, even the right value, without touching the card |
//! | 4th (after the lock) | an ordinary failure |
//! | 5th | one more wrong value locks the site until the user unlocks it |
//! | 6th | the site is now locked until the user unlocks it (`cardgate origins unlock ORIGIN`) |
//! | then | every attempt is refused until the user unlocks the site |
//!
//! With stage size `n`, the `n`-th wrong value locks for the configured
//! time and the `2n`-th until the user unlocks the site; with
//! `limits.lock_until_unlocked = false` every `n`-th wrong value locks for
//! the configured time instead. `max_failures = 0` turns the lockout off.
//!
//! A right value (only possible while the site is not locked) resets the
//! strikes and the stage: the site starts afresh. So does the user's unlock.
//!
//! The lockout is consulted for each credential right before it is sent
//! to the card ([`Lockout::begin`]) and told the card's verdict
//! ([`Lockout::settle`]). An attempt in flight counts as a strike for
//! `begin` until it is settled, so concurrent attempts of one site (a
//! batch, pipelined frames, parallel connections, several readers) never
//! get more wrong values to the cards than the lock allows.
//!
//! The state is kept in a small TOML file ([`LockoutFile`]) when a store
//! is given: a lock survives the daemon's restart (a temporary lock's end
//! is kept as wall-clock time), and `cardgate origins unlock` (another
//! process) takes effect in a running daemon at its next `begin`: the file
//! is followed live like the origins allowlist. Writes are atomic (a
//! temporary file renamed in), serialised between processes by an advisory
//! lock on `<file>.lock`, and never fail an operation (a warning is logged).

use super::origin::FileState;
use crate::error::Error;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The lockout file's name in the user's data directory.
pub(crate) const FILE_NAME: &str = "lockout.toml";

/// How soon a site refused because of attempts in flight may try again.
pub(crate) const IN_FLIGHT_RETRY: Duration = Duration::from_secs(1);

/// The thresholds (`[limits]` in config.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutConfig {
    /// Wrong values per stage: the last one of a stage locks the site
    /// (`limits.max_failures`; 0 turns the lockout off).
    pub max_failures: u32,
    /// How long a temporary lock lasts (`limits.lockout`).
    pub lock: Duration,
    /// The second lock lasts until the user unlocks the site
    /// (`limits.lock_until_unlocked`); off: every lock is temporary.
    pub lock_until_unlocked: bool,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            max_failures: 3,
            lock: Duration::from_secs(300),
            lock_until_unlocked: true,
        }
    }
}

/// The moment of a call: monotonic time for the locks in this process,
/// wall-clock time for the file (given by tests).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    /// Monotonic time: what the locks in this process are measured by.
    pub instant: Instant,
    /// Wall-clock time: what the lockout file records.
    pub wall: SystemTime,
}

impl Now {
    /// The moment of the call, on both clocks.
    pub(crate) fn current() -> Now {
        Now {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// The moment `d` later.
    #[cfg(test)]
    pub(crate) fn later(self, d: Duration) -> Now {
        Now {
            instant: self.instant + d,
            wall: self.wall + d,
        }
    }

    fn unix(&self) -> Duration {
        self.wall.duration_since(UNIX_EPOCH).unwrap_or_default()
    }
}

/// The card's verdict on a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The card accepted the value: the site starts afresh.
    Right,
    /// The card refused the value: a strike.
    Wrong,
    /// Refused or failed before reaching the card (or not checked by it):
    /// releases the attempt without a strike.
    NotSent,
}

/// Why [`Lockout::begin`] refused to let a credential reach the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Locked for this long still.
    TemporarilyLocked {
        /// How long until the site may try again.
        retry_after: Duration,
    },
    /// Locked until the user unlocks the site.
    LockedUntilUnlocked,
    /// The site's remaining allowance is taken by attempts still in flight.
    InFlight,
}

impl Refusal {
    /// The error the page gets (`TEMPORARILY_LOCKED` or `SITE_LOCKED`).
    pub(crate) fn into_error(self, site: &str) -> Error {
        match self {
            Refusal::TemporarilyLocked { retry_after } => Error::TemporarilyLocked {
                retry_after: ceil_secs(retry_after).max(1),
            },
            Refusal::LockedUntilUnlocked => Error::SiteLocked {
                origin: site.to_string(),
            },
            Refusal::InFlight => Error::LockoutInFlight {
                retry_after: ceil_secs(IN_FLIGHT_RETRY).max(1),
            },
        }
    }
}

/// What a wrong value did to the site (stable codes the page sees, see
/// [`Notice::annotate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notice {
    /// An ordinary failure: this many more wrong values lock the site.
    Failed {
        /// Wrong values left before the site locks.
        attempts_before_lock: u32,
    },
    /// One more wrong value locks the site for this long.
    OneMoreLocksFor(Duration),
    /// One more wrong value locks the site until the user unlocks it.
    OneMoreLocksUntilUnlocked,
    /// The site is locked now, for this long.
    LockedFor(Duration),
    /// The site is locked now, until the user unlocks it.
    LockedUntilUnlocked,
}

impl Notice {
    /// `data.lockout`: absent for an ordinary failure.
    pub(crate) fn code(&self) -> Option<&'static str> {
        match self {
            Notice::Failed { .. } => None,
            Notice::OneMoreLocksFor(_) | Notice::OneMoreLocksUntilUnlocked => {
                Some("ONE_MORE_LOCKS")
            }
            Notice::LockedFor(_) => Some("LOCKED_FOR"),
            Notice::LockedUntilUnlocked => Some("LOCKED_UNTIL_UNLOCKED"),
        }
    }

    /// Wrong values left before the next lock (none once locked).
    pub(crate) fn attempts_before_lock(&self) -> Option<u32> {
        match self {
            Notice::Failed {
                attempts_before_lock,
            } => Some(*attempts_before_lock),
            Notice::OneMoreLocksFor(_) | Notice::OneMoreLocksUntilUnlocked => Some(1),
            Notice::LockedFor(_) | Notice::LockedUntilUnlocked => None,
        }
    }

    /// What to add to the wrong-PIN message (none for an ordinary failure).
    pub(crate) fn message_suffix(&self, site: &str) -> Option<String> {
        match self {
            Notice::Failed { .. } => None,
            Notice::OneMoreLocksFor(d) => Some(format!(
                "; one more wrong value locks this site for {}",
                describe(*d)
            )),
            Notice::OneMoreLocksUntilUnlocked => {
                Some("; one more wrong value locks this site until you unlock it".into())
            }
            Notice::LockedFor(d) => Some(format!("; this site is now locked for {}", describe(*d))),
            Notice::LockedUntilUnlocked => Some(format!(
                "; this site is now locked until you unlock it with `cardgate origins unlock {site}`"
            )),
        }
    }

    /// Adds the stable fields to a wrong-PIN error's `data`: `lockout`
    /// (`ONE_MORE_LOCKS`, `LOCKED_FOR`, `LOCKED_UNTIL_UNLOCKED`; absent for
    /// an ordinary failure), `attemptsBeforeLock` (until locked),
    /// `lockedFor` (seconds, when locked now for a while), `nextLockFor`
    /// (seconds) or `nextLockUntilUnlocked: true` with `ONE_MORE_LOCKS`,
    /// and the message's suffix.
    pub(crate) fn annotate(&self, data: &mut Value, site: &str) {
        if !data.is_object() {
            *data = json!({});
        }
        if let Some(code) = self.code() {
            data["lockout"] = json!(code);
        }
        if let Some(n) = self.attempts_before_lock() {
            data["attemptsBeforeLock"] = json!(n);
        }
        match self {
            Notice::LockedFor(d) => data["lockedFor"] = json!(ceil_secs(*d)),
            Notice::OneMoreLocksFor(d) => data["nextLockFor"] = json!(ceil_secs(*d)),
            Notice::OneMoreLocksUntilUnlocked => data["nextLockUntilUnlocked"] = json!(true),
            Notice::Failed { .. } | Notice::LockedUntilUnlocked => {}
        }
        if let Some(suffix) = self.message_suffix(site) {
            let message = data["message"].as_str().unwrap_or("wrong PIN").to_string();
            data["message"] = json!(message + &suffix);
        }
    }
}

/// A site's lock, as [`Lockout::state`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// Locked for this long still.
    For(Duration),
    /// Locked until the user unlocks the site.
    UntilUnlocked,
}

impl Lock {
    /// What an attempt of the site meets while this lock holds.
    pub(crate) fn refusal(self) -> Refusal {
        match self {
            Lock::For(retry_after) => Refusal::TemporarilyLocked { retry_after },
            Lock::UntilUnlocked => Refusal::LockedUntilUnlocked,
        }
    }
}

/// A site's lockout state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SiteState {
    /// Consecutive wrong values.
    pub strikes: u32,
    /// Attempts begun and not yet settled (in this process).
    pub in_flight: u32,
    /// The site's lock, if it is locked.
    pub lock: Option<Lock>,
}

/// One credential from a site about to be sent to a card. Settle it with
/// the card's verdict; dropped unsettled it counts as a wrong value.
#[must_use = "settle the attempt with the card's verdict; dropped, it counts as a wrong value"]
#[derive(Debug)]
pub(crate) struct Attempt {
    /// `None` once settled, or when the lockout is off.
    lockout: Option<Lockout>,
    site: String,
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some(lockout) = self.lockout.take() {
            tracing::warn!(
                site = %self.site,
                "a PIN attempt was dropped without the card's verdict; counted as a wrong value"
            );
            lockout.settle_site(&self.site, Verdict::Wrong, Now::current());
        }
    }
}

// ---- the file ---------------------------------------------------------------

/// The lockout file: the sites with strikes or a lock.
///
/// ```toml
/// [sites."https://bank.example"]
/// strikes = 3                 # consecutive wrong values
/// locked_until = 1767225900   # a temporary lock's end (Unix time, seconds)
///
/// [sites."https://shop.example"]
/// strikes = 6
/// locked_until_unlocked = true
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LockoutFile {
    /// The sites with strikes or a lock, by origin.
    #[serde(default)]
    pub sites: BTreeMap<String, StoredSite>,
}

/// One site in the lockout file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredSite {
    /// Consecutive wrong values.
    #[serde(default)]
    pub strikes: u32,
    /// A temporary lock's end, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<u64>,
    /// Locked until the user unlocks the site.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub locked_until_unlocked: bool,
}

const FILE_HEADER: &str = "\
# cardgate's progressive lockout of wrong PIN values, per site (web origin).
# Written by the daemon; `cardgate origins unlock ORIGIN` lifts a lock.
";

impl LockoutFile {
    /// Reads the file; a missing file is an empty one.
    pub(crate) fn load(path: &Path) -> Result<LockoutFile, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LockoutFile::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes the file atomically: a temporary file renamed in, so a
    /// reader never sees half a file.
    pub(crate) fn save(&self, path: &Path) -> Result<(), String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let text = toml::to_string(self).map_err(|e| e.to_string())?;
        let tmp = sibling(path, &format!("{}.tmp", std::process::id()));
        std::fs::write(&tmp, format!("{FILE_HEADER}\n{text}"))
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("{}: {e}", path.display())
        })
    }
}

/// `path` with `.suffix` added to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

/// Holds the advisory lock that serialises read-change-write cycles of the
/// file between processes (the daemon, the native host, the CLI) until
/// dropped. `None` when it cannot be had (then the cycle runs unguarded).
fn lock_store(path: &Path) -> Option<std::fs::File> {
    let lock_path = sibling(path, "lock");
    if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .and_then(|f| f.lock().map(|()| f));
    match file {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(file = %lock_path.display(), error = %e, "cannot lock the lockout file");
            None
        }
    }
}

// ---- the state --------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Locked {
    #[default]
    No,
    /// Until `at`; `unix` is the end as written to the file.
    Until {
        at: Instant,
        unix: u64,
    },
    UntilUnlocked,
}

#[derive(Debug, Clone, Copy, Default)]
struct Site {
    strikes: u32,
    locked: Locked,
    in_flight: u32,
}

impl Site {
    /// The lock in force. A temporary lock that is over stays recorded
    /// (as in the file) but locks nothing; the strikes stay, so the next
    /// lock comes sooner.
    fn lock(&self, now: Now) -> Option<Lock> {
        match self.locked {
            Locked::No => None,
            Locked::Until { at, .. } if at <= now.instant => None,
            Locked::Until { at, .. } => Some(Lock::For(at - now.instant)),
            Locked::UntilUnlocked => Some(Lock::UntilUnlocked),
        }
    }

    /// What the file keeps of it (`None`: nothing).
    fn stored(&self) -> Option<StoredSite> {
        if self.strikes == 0 && self.locked == Locked::No {
            return None;
        }
        Some(StoredSite {
            strikes: self.strikes,
            locked_until: match self.locked {
                Locked::Until { unix, .. } => Some(unix),
                _ => None,
            },
            locked_until_unlocked: self.locked == Locked::UntilUnlocked,
        })
    }

    fn is_empty(&self) -> bool {
        self.stored().is_none() && self.in_flight == 0
    }
}

struct Sites {
    map: HashMap<String, Site>,
    /// The file as last read or written, and when (real time).
    file: FileState,
    read_at: SystemTime,
}

struct Shared {
    config: LockoutConfig,
    store: Option<PathBuf>,
    sites: Mutex<Sites>,
}

/// The per-site progressive lockout, shared by every reader worker.
/// Cloning it shares the state.
#[derive(Clone)]
pub(crate) struct Lockout {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Lockout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lockout")
            .field("config", &self.shared.config)
            .field("store", &self.shared.store)
            .finish_non_exhaustive()
    }
}

impl Lockout {
    /// A lockout keeping its state in `store` (`None`: in memory only).
    pub(crate) fn new(config: LockoutConfig, store: Option<PathBuf>) -> Lockout {
        Lockout {
            shared: Arc::new(Shared {
                config,
                store,
                sites: Mutex::new(Sites {
                    map: HashMap::new(),
                    file: FileState::Unread,
                    read_at: UNIX_EPOCH,
                }),
            }),
        }
    }

    /// The file the state is kept in.
    pub(crate) fn store(&self) -> Option<&Path> {
        self.shared.store.as_deref()
    }

    fn guard(&self) -> MutexGuard<'_, Sites> {
        self.shared.sites.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Right before a site's credential is sent to a card: refused while
    /// the site is locked, or while its strikes and the attempts in flight
    /// already reach the next lock. The attempt counts as a strike for
    /// other `begin`s until it is settled.
    pub(crate) fn begin(&self, site: &str, now: Now) -> Result<Attempt, Refusal> {
        let n = self.shared.config.max_failures;
        if n == 0 {
            return Ok(Attempt {
                lockout: None,
                site: site.to_string(),
            });
        }
        let mut sites = self.guard();
        self.refresh(&mut sites, now);
        let entry = sites.map.entry(site.to_string()).or_default();
        let next_lock = (entry.strikes / n).saturating_add(1).saturating_mul(n);
        let result = match entry.lock(now) {
            Some(Lock::UntilUnlocked) => Err(Refusal::LockedUntilUnlocked),
            Some(Lock::For(retry_after)) => Err(Refusal::TemporarilyLocked { retry_after }),
            None if entry.strikes.saturating_add(entry.in_flight) >= next_lock => {
                Err(Refusal::InFlight)
            }
            None => {
                entry.in_flight += 1;
                Ok(Attempt {
                    lockout: Some(self.clone()),
                    site: site.to_string(),
                })
            }
        };
        if entry.is_empty() {
            sites.map.remove(site);
        }
        result
    }

    /// The card's verdict on an attempt; a wrong value returns the
    /// [`Notice`] for the response. A right value resets the site's
    /// strikes and stage (it cannot come while the site is locked, except
    /// for a lock another process set meanwhile, which stays).
    pub(crate) fn settle(
        &self,
        mut attempt: Attempt,
        verdict: Verdict,
        now: Now,
    ) -> Option<Notice> {
        let lockout = attempt.lockout.take()?;
        debug_assert!(Arc::ptr_eq(&lockout.shared, &self.shared));
        lockout.settle_site(&attempt.site, verdict, now)
    }

    fn settle_site(&self, site: &str, verdict: Verdict, now: Now) -> Option<Notice> {
        let mut sites = self.guard();
        // Another process may change the file: read, change, write under its
        // lock (not needed for a right value of a site with nothing stored).
        let may_write = match verdict {
            Verdict::NotSent => false,
            Verdict::Wrong => true,
            Verdict::Right => {
                self.refresh(&mut sites, now);
                sites.map.get(site).is_some_and(|s| s.stored().is_some())
            }
        };
        let _guard = if may_write {
            self.store().and_then(lock_store)
        } else {
            None
        };
        self.refresh(&mut sites, now);
        let entry = sites.map.entry(site.to_string()).or_default();
        entry.in_flight = entry.in_flight.saturating_sub(1);
        let before = entry.stored();
        let notice = match verdict {
            Verdict::NotSent => None,
            Verdict::Right => {
                if entry.lock(now).is_none() {
                    entry.strikes = 0;
                    entry.locked = Locked::No;
                }
                None
            }
            Verdict::Wrong => Some(self.strike(entry, now)),
        };
        let changed = entry.stored() != before;
        if entry.is_empty() {
            sites.map.remove(site);
        }
        if changed && let Err(e) = self.save(&mut sites) {
            tracing::warn!(error = %e, "the lockout state could not be saved");
        }
        notice
    }

    /// Counts a wrong value; locks the site at the end of a stage.
    fn strike(&self, entry: &mut Site, now: Now) -> Notice {
        let c = self.shared.config;
        match entry.lock(now) {
            // Locked meanwhile by another process: no further strike.
            Some(Lock::For(d)) => return Notice::LockedFor(d),
            Some(Lock::UntilUnlocked) => return Notice::LockedUntilUnlocked,
            None => {}
        }
        let n = c.max_failures.max(1);
        entry.strikes = entry.strikes.saturating_add(1);
        let k = entry.strikes;
        let until_unlocked = |k: u32| c.lock_until_unlocked && k >= n.saturating_mul(2);
        if k.is_multiple_of(n) {
            if until_unlocked(k) {
                entry.locked = Locked::UntilUnlocked;
                Notice::LockedUntilUnlocked
            } else {
                entry.locked = Locked::Until {
                    at: now.instant + c.lock,
                    unix: ceil_secs(now.unix() + c.lock),
                };
                Notice::LockedFor(c.lock)
            }
        } else {
            match n - k % n {
                1 if until_unlocked(k.saturating_add(1)) => Notice::OneMoreLocksUntilUnlocked,
                1 => Notice::OneMoreLocksFor(c.lock),
                left => Notice::Failed {
                    attempts_before_lock: left,
                },
            }
        }
    }

    /// The user lifts the site's lock (temporary or until unlocked) and
    /// its strikes: the site starts afresh. `Ok(false)` when there was
    /// nothing to lift; `Err` when the file could not be written (the lock
    /// is lifted in this process anyway).
    pub(crate) fn unlock(&self, site: &str) -> Result<bool, String> {
        let now = Now::current();
        let mut sites = self.guard();
        let _guard = self.store().and_then(lock_store);
        self.refresh(&mut sites, now);
        let Some(entry) = sites.map.get_mut(site) else {
            return Ok(false);
        };
        let had = entry.stored().is_some();
        entry.strikes = 0;
        entry.locked = Locked::No;
        if entry.is_empty() {
            sites.map.remove(site);
        }
        if had {
            self.save(&mut sites)?;
        }
        Ok(had)
    }

    /// A site's state now (from the file as it is now).
    pub(crate) fn state(&self, site: &str, now: Now) -> SiteState {
        let mut sites = self.guard();
        self.refresh(&mut sites, now);
        sites
            .map
            .get(site)
            .map(|s| SiteState {
                strikes: s.strikes,
                in_flight: s.in_flight,
                lock: s.lock(now),
            })
            .unwrap_or_default()
    }

    /// Every site with strikes, a lock or attempts in flight, by name.
    pub(crate) fn sites(&self, now: Now) -> Vec<(String, SiteState)> {
        let mut sites = self.guard();
        self.refresh(&mut sites, now);
        let mut out: Vec<(String, SiteState)> = sites
            .map
            .iter()
            .map(|(k, s)| {
                let state = SiteState {
                    strikes: s.strikes,
                    in_flight: s.in_flight,
                    lock: s.lock(now),
                };
                (k.clone(), state)
            })
            .filter(|(_, s)| *s != SiteState::default())
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Reads the file again when it changed (one `stat` otherwise). A file
    /// that cannot be read keeps the state as it was, with a warning.
    fn refresh(&self, sites: &mut Sites, now: Now) {
        let Some(path) = self.store() else {
            return;
        };
        let state = FileState::of(path);
        if sites.file == state && !sites.file.racy(sites.read_at) {
            return;
        }
        match LockoutFile::load(path) {
            Ok(file) => self.adopt(sites, file, now),
            Err(e) => {
                tracing::warn!(error = %e, "lockout file refused; keeping the state as it was")
            }
        }
        sites.file = state;
        sites.read_at = SystemTime::now();
    }

    /// Takes the file's state; the attempts in flight stay this process's.
    fn adopt(&self, sites: &mut Sites, file: LockoutFile, now: Now) {
        let mut map = HashMap::with_capacity(file.sites.len());
        for (key, stored) in file.sites {
            let old = sites.map.get(&key).copied().unwrap_or_default();
            let locked = if stored.locked_until_unlocked {
                Locked::UntilUnlocked
            } else if let Some(unix) = stored.locked_until {
                match old.locked {
                    // As this process set it: keep its exact end.
                    Locked::Until { at, unix: u } if u == unix => Locked::Until { at, unix },
                    _ => {
                        // Never longer than a lock lasts (a clock set back).
                        let left = Duration::from_secs(unix)
                            .saturating_sub(now.unix())
                            .min(self.shared.config.lock);
                        if left.is_zero() {
                            Locked::No
                        } else {
                            Locked::Until {
                                at: now.instant + left,
                                unix,
                            }
                        }
                    }
                }
            } else {
                Locked::No
            };
            map.insert(
                key,
                Site {
                    strikes: stored.strikes,
                    locked,
                    in_flight: old.in_flight,
                },
            );
        }
        for (key, old) in &sites.map {
            if old.in_flight > 0 && !map.contains_key(key) {
                map.insert(
                    key.clone(),
                    Site {
                        in_flight: old.in_flight,
                        ..Site::default()
                    },
                );
            }
        }
        sites.map = map;
    }

    fn save(&self, sites: &mut Sites) -> Result<(), String> {
        let Some(path) = self.store() else {
            return Ok(());
        };
        let file = LockoutFile {
            sites: sites
                .map
                .iter()
                .filter_map(|(k, s)| s.stored().map(|st| (k.clone(), st)))
                .collect(),
        };
        let result = file.save(path);
        sites.file = FileState::of(path);
        sites.read_at = SystemTime::now();
        result
    }
}

/// Whole seconds, rounded up (a lock is never shortened).
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// "5 minutes", "1 minute", "90 s".
fn describe(d: Duration) -> String {
    match ceil_secs(d) {
        60 => "1 minute".into(),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "https://bank.example";

    fn lockout(max_failures: u32, store: Option<PathBuf>) -> Lockout {
        Lockout::new(
            LockoutConfig {
                max_failures,
                ..LockoutConfig::default()
            },
            store,
        )
    }

    fn wrong(l: &Lockout, now: Now) -> Result<Notice, Refusal> {
        let a = l.begin(SITE, now)?;
        Ok(l.settle(a, Verdict::Wrong, now).expect("a notice"))
    }

    fn right(l: &Lockout, now: Now) -> Result<(), Refusal> {
        let a = l.begin(SITE, now)?;
        assert_eq!(l.settle(a, Verdict::Right, now), None);
        Ok(())
    }

    const FIVE_MIN: Duration = Duration::from_secs(300);

    #[test]
    fn escalates_as_the_seed_flow() {
        let l = lockout(3, None);
        let t0 = Now::current();
        // 1st: ordinary.
        let n1 = wrong(&l, t0).unwrap();
        assert_eq!(
            n1,
            Notice::Failed {
                attempts_before_lock: 2
            }
        );
        assert_eq!(n1.code(), None);
        // 2nd: one more locks for 5 minutes.
        let n2 = wrong(&l, t0).unwrap();
        assert_eq!(n2, Notice::OneMoreLocksFor(FIVE_MIN));
        assert_eq!(n2.code(), Some("ONE_MORE_LOCKS"));
        // 3rd: locked for 5 minutes.
        let n3 = wrong(&l, t0).unwrap();
        assert_eq!(n3, Notice::LockedFor(FIVE_MIN));
        assert_eq!(n3.code(), Some("LOCKED_FOR"));
        // While locked every attempt is refused, even the right value.
        let t1 = t0.later(Duration::from_secs(10));
        assert_eq!(
            right(&l, t1),
            Err(Refusal::TemporarilyLocked {
                retry_after: Duration::from_secs(290)
            })
        );
        assert_eq!(
            l.state(SITE, t1),
            SiteState {
                strikes: 3,
                in_flight: 0,
                lock: Some(Lock::For(Duration::from_secs(290)))
            }
        );
        // After the lock: 4th ordinary, 5th warns, 6th locks until unlocked.
        let t2 = t0.later(FIVE_MIN);
        let n4 = wrong(&l, t2).unwrap();
        assert_eq!(
            n4,
            Notice::Failed {
                attempts_before_lock: 2
            }
        );
        let n5 = wrong(&l, t2).unwrap();
        assert_eq!(n5, Notice::OneMoreLocksUntilUnlocked);
        assert_eq!(n5.code(), Some("ONE_MORE_LOCKS"));
        let n6 = wrong(&l, t2).unwrap();
        assert_eq!(n6, Notice::LockedUntilUnlocked);
        assert_eq!(n6.code(), Some("LOCKED_UNTIL_UNLOCKED"));
        // Then every attempt is refused, whenever.
        let t3 = t2.later(Duration::from_secs(365 * 24 * 3600));
        assert_eq!(right(&l, t3), Err(Refusal::LockedUntilUnlocked));
        assert_eq!(wrong(&l, t3), Err(Refusal::LockedUntilUnlocked));
        assert_eq!(l.state(SITE, t3).lock, Some(Lock::UntilUnlocked));
        // Other sites are not affected.
        assert!(l.begin("https://shop.example", t3).is_ok());
        // The user unlocks it: a fresh start.
        assert_eq!(l.unlock(SITE), Ok(true));
        assert_eq!(l.unlock(SITE), Ok(false));
        assert_eq!(
            wrong(&l, t3),
            Ok(Notice::Failed {
                attempts_before_lock: 2
            })
        );
    }

    #[test]
    fn a_right_value_starts_afresh() {
        let l = lockout(3, None);
        let t0 = Now::current();
        wrong(&l, t0).unwrap();
        wrong(&l, t0).unwrap();
        right(&l, t0).unwrap();
        assert_eq!(l.state(SITE, t0), SiteState::default());
        assert!(l.sites(t0).is_empty());
        // Also after a lock: the stage goes back to the first.
        for _ in 0..3 {
            wrong(&l, t0).unwrap();
        }
        let t1 = t0.later(FIVE_MIN);
        right(&l, t1).unwrap();
        wrong(&l, t1).unwrap();
        assert_eq!(wrong(&l, t1), Ok(Notice::OneMoreLocksFor(FIVE_MIN)));
        assert_eq!(wrong(&l, t1), Ok(Notice::LockedFor(FIVE_MIN)));
    }

    #[test]
    fn generalises_with_the_stage_size_and_the_switch() {
        let t = Now::current();
        let l = lockout(1, None);
        assert_eq!(wrong(&l, t), Ok(Notice::LockedFor(FIVE_MIN)));
        assert_eq!(
            wrong(&l, t.later(FIVE_MIN)),
            Ok(Notice::LockedUntilUnlocked)
        );
        let l = lockout(4, None);
        let notices: Vec<_> = (0..4).map(|_| wrong(&l, t).unwrap()).collect();
        assert_eq!(
            notices,
            [
                Notice::Failed {
                    attempts_before_lock: 3
                },
                Notice::Failed {
                    attempts_before_lock: 2
                },
                Notice::OneMoreLocksFor(FIVE_MIN),
                Notice::LockedFor(FIVE_MIN),
            ]
        );
        // Without the permanent stage every stage ends in a timed lock.
        let l = Lockout::new(
            LockoutConfig {
                max_failures: 2,
                lock: Duration::from_secs(60),
                lock_until_unlocked: false,
            },
            None,
        );
        let mut t = t;
        for _ in 0..4 {
            assert_eq!(
                wrong(&l, t),
                Ok(Notice::OneMoreLocksFor(Duration::from_secs(60)))
            );
            assert_eq!(wrong(&l, t), Ok(Notice::LockedFor(Duration::from_secs(60))));
            t = t.later(Duration::from_secs(60));
        }
        // 0: off.
        let l = lockout(0, None);
        for _ in 0..10 {
            let a = l.begin(SITE, t).unwrap();
            assert_eq!(l.settle(a, Verdict::Wrong, t), None);
        }
        assert_eq!(l.state(SITE, t), SiteState::default());
    }

    #[test]
    fn attempts_in_flight_hold_the_allowance() {
        let l = lockout(3, None);
        let t = Now::current();
        wrong(&l, t).unwrap();
        wrong(&l, t).unwrap();
        // 2 strikes: one attempt may be in flight, not two.
        let a = l.begin(SITE, t).unwrap();
        assert_eq!(l.begin(SITE, t).unwrap_err(), Refusal::InFlight);
        assert_eq!(l.state(SITE, t).in_flight, 1);
        // NotSent releases it without a strike.
        assert_eq!(l.settle(a, Verdict::NotSent, t), None);
        assert_eq!(l.state(SITE, t).strikes, 2);
        let a = l.begin(SITE, t).unwrap();
        assert_eq!(
            l.settle(a, Verdict::Wrong, t),
            Some(Notice::LockedFor(FIVE_MIN))
        );
        // From scratch: three may be in flight at once, the fourth waits.
        let l = lockout(3, None);
        let held: Vec<Attempt> = (0..3).map(|_| l.begin(SITE, t).unwrap()).collect();
        assert_eq!(l.begin(SITE, t).unwrap_err(), Refusal::InFlight);
        let notices: Vec<_> = held
            .into_iter()
            .map(|a| l.settle(a, Verdict::Wrong, t).unwrap())
            .collect();
        assert_eq!(notices[2], Notice::LockedFor(FIVE_MIN));
    }

    #[test]
    fn a_dropped_attempt_counts_as_wrong() {
        let l = lockout(3, None);
        let t = Now::current();
        drop(l.begin(SITE, t).unwrap());
        assert_eq!(
            l.state(SITE, t),
            SiteState {
                strikes: 1,
                in_flight: 0,
                lock: None
            }
        );
    }

    #[test]
    fn concurrent_threads_never_get_more_than_the_allowance_through() {
        for strikes_before in 0..3 {
            let l = lockout(3, None);
            let t = Now::current();
            for _ in 0..strikes_before {
                wrong(&l, t).unwrap();
            }
            let barrier = Arc::new(std::sync::Barrier::new(8));
            let sent = Arc::new(std::sync::atomic::AtomicU32::new(0));
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let (l, barrier, sent) = (l.clone(), barrier.clone(), sent.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        for _ in 0..20 {
                            if let Ok(a) = l.begin(SITE, t) {
                                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                std::thread::yield_now();
                                let _ = l.settle(a, Verdict::Wrong, Now::current());
                            }
                        }
                    })
                })
                .collect();
            for th in threads {
                th.join().unwrap();
            }
            // Only up to the lock: 3 - strikes_before wrong values reached the cards.
            assert_eq!(
                sent.load(std::sync::atomic::Ordering::SeqCst),
                3 - strikes_before
            );
            let s = l.state(SITE, t);
            assert_eq!((s.strikes, s.in_flight), (3, 0));
            assert!(matches!(s.lock, Some(Lock::For(_))));
        }
    }

    #[test]
    fn locks_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join(FILE_NAME);
        let t0 = Now::current();
        let l = lockout(3, Some(path.clone()));
        for _ in 0..3 {
            wrong(&l, t0).unwrap();
        }
        drop(l);
        // A new daemon: the 5-minute lock is still on (wall clock).
        let l = lockout(3, Some(path.clone()));
        let t1 = t0.later(Duration::from_secs(60));
        match l.begin(SITE, t1) {
            Err(Refusal::TemporarilyLocked { retry_after }) => {
                assert!(retry_after <= Duration::from_secs(241), "{retry_after:?}");
                assert!(retry_after >= Duration::from_secs(239), "{retry_after:?}");
            }
            other => panic!("{other:?}"),
        }
        // After it the stage goes on: 5th warns, 6th locks until unlocked.
        let t2 = t0.later(FIVE_MIN + Duration::from_secs(1));
        wrong(&l, t2).unwrap();
        assert_eq!(wrong(&l, t2), Ok(Notice::OneMoreLocksUntilUnlocked));
        assert_eq!(wrong(&l, t2), Ok(Notice::LockedUntilUnlocked));
        drop(l);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("locked_until_unlocked = true"), "{text}");
        let file = LockoutFile::load(&path).unwrap();
        assert_eq!(file.sites[SITE].strikes, 6);
        // Locked until unlocked across restarts, whatever the time.
        let l = lockout(3, Some(path.clone()));
        let t3 = t2.later(Duration::from_secs(30 * 24 * 3600));
        assert_eq!(right(&l, t3), Err(Refusal::LockedUntilUnlocked));
        assert_eq!(l.sites(t3).len(), 1);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
    }

    #[test]
    fn an_unlock_from_another_process_is_seen_at_the_next_begin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let t = Now::current();
        let daemon = lockout(3, Some(path.clone()));
        for _ in 0..3 {
            wrong(&daemon, t).unwrap();
        }
        let t = t.later(FIVE_MIN);
        for _ in 0..3 {
            wrong(&daemon, t).unwrap();
        }
        // Another site in flight in the daemon while the file changes.
        let other = daemon.begin("https://shop.example", t).unwrap();
        assert_eq!(right(&daemon, t), Err(Refusal::LockedUntilUnlocked));
        // The CLI: another instance over the same file.
        let cli = lockout(3, Some(path.clone()));
        assert_eq!(cli.state(SITE, t).lock, Some(Lock::UntilUnlocked));
        assert_eq!(cli.unlock(SITE), Ok(true));
        assert_eq!(right(&daemon, t), Ok(()));
        assert_eq!(daemon.state("https://shop.example", t).in_flight, 1);
        assert_eq!(
            daemon.settle(other, Verdict::Wrong, t),
            Some(Notice::Failed {
                attempts_before_lock: 2
            })
        );
        // And the daemon's strikes reach the CLI's view.
        assert_eq!(cli.state("https://shop.example", t).strikes, 1);
        // A broken file keeps the state as it was.
        std::fs::write(&path, "sites = 3\n").unwrap();
        assert_eq!(daemon.state("https://shop.example", t).strikes, 1);
    }

    #[test]
    fn a_temporary_lock_is_lifted_by_unlock_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let t = Now::current();
        let daemon = lockout(3, Some(path.clone()));
        for _ in 0..3 {
            wrong(&daemon, t).unwrap();
        }
        assert!(matches!(
            daemon.begin(SITE, t),
            Err(Refusal::TemporarilyLocked { .. })
        ));
        assert_eq!(lockout(3, Some(path)).unlock(SITE), Ok(true));
        assert_eq!(
            wrong(&daemon, t),
            Ok(Notice::Failed {
                attempts_before_lock: 2
            })
        );
    }

    #[test]
    fn notices_and_refusals_in_the_response() {
        let mut data = json!({ "code": "PIN_INCORRECT", "message": "wrong PIN, 7 tries left" });
        Notice::Failed {
            attempts_before_lock: 2,
        }
        .annotate(&mut data, SITE);
        assert_eq!(
            data,
            json!({ "code": "PIN_INCORRECT", "message": "wrong PIN, 7 tries left", "attemptsBeforeLock": 2 })
        );
        let mut data = json!({ "message": "wrong PIN" });
        Notice::OneMoreLocksFor(FIVE_MIN).annotate(&mut data, SITE);
        assert_eq!(data["lockout"], "ONE_MORE_LOCKS");
        assert_eq!(data["attemptsBeforeLock"], 1);
        assert_eq!(data["nextLockFor"], 300);
        assert_eq!(
            data["message"],
            "wrong PIN; one more wrong value locks this site for 5 minutes"
        );
        let mut data = json!({ "message": "wrong PIN" });
        Notice::OneMoreLocksUntilUnlocked.annotate(&mut data, SITE);
        assert_eq!(data["nextLockUntilUnlocked"], true);
        assert_eq!(data["attemptsBeforeLock"], 1);
        let mut data = json!({ "message": "wrong PIN" });
        Notice::LockedFor(FIVE_MIN).annotate(&mut data, SITE);
        assert_eq!(data["lockout"], "LOCKED_FOR");
        assert_eq!(data["lockedFor"], 300);
        assert!(data.get("attemptsBeforeLock").is_none());
        assert_eq!(
            data["message"],
            "wrong PIN; this site is now locked for 5 minutes"
        );
        let mut data = json!({ "message": "wrong PIN" });
        Notice::LockedUntilUnlocked.annotate(&mut data, SITE);
        assert_eq!(data["lockout"], "LOCKED_UNTIL_UNLOCKED");
        assert!(
            data["message"]
                .as_str()
                .unwrap()
                .ends_with("`cardgate origins unlock https://bank.example`")
        );

        let e = Refusal::TemporarilyLocked {
            retry_after: Duration::from_millis(1500),
        }
        .into_error(SITE);
        assert_eq!(e.code(), "TEMPORARILY_LOCKED");
        assert_eq!(e.to_json()["retryAfter"], 2);
        let e = Refusal::InFlight.into_error(SITE);
        assert_eq!(e.code(), "TEMPORARILY_LOCKED");
        assert_eq!(e.to_json()["retryAfter"], 1);
        let e = Refusal::LockedUntilUnlocked.into_error(SITE);
        assert_eq!(e.code(), "SITE_LOCKED");
        assert!(
            e.to_string()
                .contains("cardgate origins unlock https://bank.example"),
            "{e}"
        );
        assert_eq!(describe(Duration::from_secs(90)), "90 s");
        assert_eq!(describe(Duration::from_secs(60)), "1 minute");
    }
}
