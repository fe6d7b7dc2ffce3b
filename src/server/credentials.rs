//! Per-connection state for PIN entry outside the page: one-time handles
//! from `requestCredential`, and which dialogs' last value was wrong (the
//! next dialog for the same credential says so).

use crate::secret::Secret;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

/// How long a `requestCredential` handle can be used.
pub(super) const HANDLE_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(crate) struct ConnCredentials {
    handles: HashMap<String, (Secret, Instant)>,
    issued: u64,
    /// The dialogs (reader, PIN object, credential asked for) whose value
    /// the card found wrong last time.
    wrong_last_time: HashSet<String>,
    /// The user was asked on this connection whether to unlock its site.
    pub unlock_asked: bool,
}

impl ConnCredentials {
    /// Keeps `pin` under a fresh opaque handle.
    pub(crate) fn issue(&mut self, pin: Secret) -> String {
        let now = Instant::now();
        self.handles
            .retain(|_, (_, at)| now.duration_since(*at) < HANDLE_LIFETIME);
        self.issued += 1;
        // Opaque, and different in every daemon run (RandomState is seeded
        // from the OS). Handles are only valid on their own connection.
        let a = RandomState::new().hash_one(self.issued);
        let b = RandomState::new().hash_one(now);
        let handle = format!("cgh-{a:016x}{b:016x}");
        self.handles.insert(handle.clone(), (pin, now));
        handle
    }

    /// Takes the PIN behind a handle: once, within its lifetime.
    pub(crate) fn take(&mut self, handle: &str) -> Option<Secret> {
        let (pin, at) = self.handles.remove(handle)?;
        (at.elapsed() < HANDLE_LIFETIME).then_some(pin)
    }

    /// Whether the value given in the dialog `key` was wrong last time.
    pub(crate) fn was_wrong(&self, key: &str) -> bool {
        self.wrong_last_time.contains(key)
    }

    pub(crate) fn set_wrong(&mut self, key: &str, wrong: bool) {
        if wrong {
            self.wrong_last_time.insert(key.to_string());
        } else {
            self.wrong_last_time.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_one_time_and_opaque() {
        let mut c = ConnCredentials::default();
        let h1 = c.issue(Secret::from("123456"));
        let h2 = c.issue(Secret::from("123456"));
        assert_ne!(h1, h2);
        assert!(!h1.contains("123456"));
        assert_eq!(c.take(&h1).unwrap().expose(), b"123456");
        assert!(c.take(&h1).is_none());
        assert!(c.take("cgh-made-up").is_none());
    }
}
