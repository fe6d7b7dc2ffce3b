//! The SCWS `Pin` status properties.

use super::{CounterView, StateView};
use crate::card::PinObject;
use serde::Serialize;

/// Every status property of `SCWS.Pin`, plus the object's id and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PinStatus {
    /// The PIN object's id on the token (`pin`, `user`, …).
    pub id: String,
    /// The id of the card application it belongs to (`piv`, `openpgp` …).
    pub application: String,
    /// The credential's label, for display.
    pub label: String,
    /// The PIN has a value (the card did not answer 6984).
    pub initialized: bool,
    /// The PIN must be changed before use (the card answered 6985).
    pub to_be_changed: bool,
    /// The try counter is at 0.
    pub blocked: bool,
    /// An unsuccessful attempt has been made: the counter is below its maximum.
    pub try_count_low: bool,
    /// Only one attempt left.
    pub last_try: bool,
    /// Absent when the card does not tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_tries: Option<u8>,
    /// The larger of the profile's default try count and the most tries
    /// this card has shown.
    pub max_tries: u8,
    /// The PIN is verified on the card, as far as the engine has seen
    /// (never while blocked).
    pub validated: bool,
    /// The security officer is logged in for `init` (PUK or reset code held,
    /// or admin PIN verified).
    pub so_validated: bool,
    /// Fewest bytes the card accepts.
    pub min_length: usize,
    /// Most bytes the card accepts.
    pub max_length: usize,
    /// Digits 0-9 only.
    pub numeric: bool,
}

impl PinStatus {
    pub(crate) fn build(
        pin: &PinObject,
        application: &str,
        st: &StateView,
        c: CounterView,
        so_validated: bool,
    ) -> Self {
        let cred = &pin.credential;
        let max_tries = st.max_seen.max(cred.default_max_tries);
        let blocked = c.blocked;
        PinStatus {
            id: pin.id.to_string(),
            application: application.to_string(),
            label: cred.label.clone(),
            initialized: !(c.not_initialized || st.not_initialized),
            to_be_changed: st.to_be_changed,
            blocked,
            try_count_low: c.tries.is_some_and(|t| t < max_tries),
            last_try: c.tries == Some(1),
            remaining_tries: c.tries,
            max_tries,
            validated: st.validated && !blocked,
            so_validated,
            min_length: cred.format.min_len,
            max_length: cred.format.max_len,
            numeric: cred.format.numeric,
        }
    }
}
