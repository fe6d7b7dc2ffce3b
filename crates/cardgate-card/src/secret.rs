//! Secret values (PINs, PUKs, reset codes) typed as such: zeroized on drop,
//! redacted in `Debug`, never `Display`ed, never serialized.

use std::fmt;
use zeroize::{Zeroize, Zeroizing};

/// A PIN-like secret. The bytes are wiped from memory when the value is dropped.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Takes ownership of the bytes (moved, not copied).
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(Zeroizing::new(bytes))
    }

    /// Takes ownership of a string's bytes (the string's buffer is moved, not copied).
    pub fn from_string(s: String) -> Self {
        Secret::new(s.into_bytes())
    }

    /// The raw bytes, for building an APDU. Keep the borrow short.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No bytes at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of Unicode scalar values, or `None` if the bytes are not UTF-8.
    pub fn char_count(&self) -> Option<usize> {
        std::str::from_utf8(&self.0).ok().map(|s| s.chars().count())
    }

    /// Every byte is an ASCII digit 0-9 (true for an empty value).
    pub fn is_ascii_digits(&self) -> bool {
        self.0.iter().all(u8::is_ascii_digit)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s.as_bytes().to_vec())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Zeroize for Secret {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::from("123456");
        let shown = format!("{s:?}");
        assert!(!shown.contains("123456"));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn counts_unicode_scalars() {
        assert_eq!(Secret::from("aé€").char_count(), Some(3));
        assert_eq!(Secret::new(vec![0xff]).char_count(), None);
        assert!(Secret::from("0123").is_ascii_digits());
        assert!(!Secret::from("12a").is_ascii_digits());
    }
}
