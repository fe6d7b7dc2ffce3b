//! A token bucket limiting one connection's request rate
//! (`limits.rate_per_second`, `limits.rate_burst`). Wrong PIN values are
//! counted per site by [`super::lockout`].

use std::time::Instant;

/// A token bucket limiting one connection's request rate.
pub(crate) struct RateLimit {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// A full bucket of `burst` tokens, refilled at `per_second`.
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        RateLimit {
            per_second: per_second as f64,
            burst: burst as f64,
            tokens: burst as f64,
            last: Instant::now(),
        }
    }

    /// Takes one token; `false` when the connection goes too fast.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
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
    use std::time::Duration;

    #[test]
    fn rate_limit_refills() {
        let start = Instant::now();
        let mut r = RateLimit::new(10, 5);
        assert!((0..5).all(|_| r.allow(start)));
        assert!(!r.allow(start));
        assert!(r.allow(start + Duration::from_millis(150)));
    }
}
