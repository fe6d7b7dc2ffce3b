//! Progressive lockout of wrong PIN submissions, per origin: after
//! `max_failures` consecutive wrong values the origin is locked for a while
//! (`TEMPORARILY_LOCKED` with `retryAfter`), and the failure before that
//! warns how many attempts are left before the lock. A right value resets
//! the count. Modelled on the progressive-lockout error flow users know from
//! banking apps.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Consecutive wrong values before the lock (0 disables throttling).
    pub max_failures: u32,
    pub lock: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_failures: 3,
            lock: Duration::from_secs(300),
        }
    }
}

#[derive(Default)]
struct Entry {
    failures: u32,
    locked_until: Option<Instant>,
}

/// What a wrong value did to the origin's count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Still allowed; this many more wrong values lock the origin.
    Remaining(u32),
    /// This failure locked the origin for that long.
    LockedNow(Duration),
}

pub struct Throttle {
    config: ThrottleConfig,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Self {
        Throttle {
            config,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(retry_after)` while the origin is locked.
    pub fn check(&self, origin: &str, now: Instant) -> Result<(), Duration> {
        let mut entries = self.lock();
        let Some(e) = entries.get_mut(origin) else {
            return Ok(());
        };
        match e.locked_until {
            Some(until) if until > now => Err(until - now),
            Some(_) => {
                // The lock is over: a fresh count (as after the seed's 5 minutes).
                e.locked_until = None;
                e.failures = 0;
                Ok(())
            }
            None => Ok(()),
        }
    }

    pub fn failure(&self, origin: &str, now: Instant) -> Option<AfterFailure> {
        if self.config.max_failures == 0 {
            return None;
        }
        let mut entries = self.lock();
        let e = entries.entry(origin.to_string()).or_default();
        e.failures += 1;
        if e.failures >= self.config.max_failures {
            e.locked_until = Some(now + self.config.lock);
            Some(AfterFailure::LockedNow(self.config.lock))
        } else {
            Some(AfterFailure::Remaining(
                self.config.max_failures - e.failures,
            ))
        }
    }

    pub fn success(&self, origin: &str) {
        self.lock().remove(origin);
    }
}

/// A token bucket limiting one connection's request rate.
pub struct RateLimit {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub fn new(per_second: u32, burst: u32) -> Self {
        RateLimit {
            per_second: per_second as f64,
            burst: burst as f64,
            tokens: burst as f64,
            last: Instant::now(),
        }
    }

    /// Takes one token; `false` when the connection goes too fast.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_the_configured_failures_and_unlocks_later() {
        let t = Throttle::new(ThrottleConfig {
            max_failures: 3,
            lock: Duration::from_secs(300),
        });
        let now = Instant::now();
        assert_eq!(
            t.failure("https://a.example", now),
            Some(AfterFailure::Remaining(2))
        );
        assert_eq!(
            t.failure("https://a.example", now),
            Some(AfterFailure::Remaining(1))
        );
        // Other origins have their own count.
        assert_eq!(
            t.failure("https://b.example", now),
            Some(AfterFailure::Remaining(2))
        );
        assert_eq!(
            t.failure("https://a.example", now),
            Some(AfterFailure::LockedNow(Duration::from_secs(300)))
        );
        assert_eq!(
            t.check("https://a.example", now + Duration::from_secs(10)),
            Err(Duration::from_secs(290))
        );
        assert_eq!(t.check("https://b.example", now), Ok(()));
        assert_eq!(
            t.check("https://a.example", now + Duration::from_secs(301)),
            Ok(())
        );
        assert_eq!(
            t.failure("https://a.example", now),
            Some(AfterFailure::Remaining(2))
        );
        t.success("https://a.example");
        assert_eq!(
            t.failure("https://a.example", now),
            Some(AfterFailure::Remaining(2))
        );
    }

    #[test]
    fn rate_limit_refills() {
        let start = Instant::now();
        let mut r = RateLimit::new(10, 5);
        assert!((0..5).all(|_| r.allow(start)));
        assert!(!r.allow(start));
        assert!(r.allow(start + Duration::from_millis(150)));
    }
}
