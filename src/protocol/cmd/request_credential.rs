//! `requestCredential`'s arguments: what the daemon's dialog shows (the
//! page's texts, or with `reader` and `pin` the card's own PIN object).

use crate::protocol::{Params, RpcError};

/// What `requestCredential` shows (SCWS `credentialProperties`,
/// `CredentialState`, reader and card names).
#[derive(Debug, Clone, Default)]
pub struct RequestCredential {
    pub pin_label: Option<String>,
    pub tries_left: Option<u64>,
    pub error: Option<String>,
    pub reader: Option<String>,
    pub card_label: Option<String>,
    /// The PIN object asked for (with `reader`): the dialog then shows the
    /// card's own label and tries, not the page's.
    pub pin: Option<String>,
    /// With `pin`: its security officer's credential is asked for.
    pub so: bool,
}

impl RequestCredential {
    pub(crate) fn parse(p: &mut Params) -> Result<Self, RpcError> {
        Ok(RequestCredential {
            pin_label: p.optional_string("pinLabel")?,
            tries_left: p.optional_u64("triesLeft")?,
            error: p.optional_string("error")?,
            reader: p.optional_string("reader")?,
            card_label: p.optional_string("cardLabel")?,
            pin: p.optional_string("pin")?,
            so: p.bool_or("so", false)?,
        })
    }
}
