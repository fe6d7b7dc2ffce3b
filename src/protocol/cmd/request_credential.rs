//! `requestCredential`'s arguments: what the daemon's dialog shows (the
//! page's texts, or with `reader` and `pin` the card's own PIN object).

use crate::protocol::{Params, RpcError};

/// What `requestCredential` shows (SCWS `credentialProperties`,
/// `CredentialState`, reader and card names).
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestCredential {
    /// The page's label for the PIN (`pinLabel`), shown without `reader`
    /// and `pin`.
    pub pin_label: Option<String>,
    /// A message from the page (`error`), shown as the page's, never as the
    /// card's.
    pub error: Option<String>,
    /// The reader's name (`reader`).
    pub reader: Option<String>,
    /// The page's label for the card (`cardLabel`).
    pub card_label: Option<String>,
    /// The PIN object asked for (with `reader`): the dialog then shows the
    /// card's own label and tries, not the page's.
    pub pin: Option<String>,
    /// With `pin`: its security officer's credential is asked for.
    pub so: bool,
}

impl RequestCredential {
    pub(crate) fn parse(p: &mut Params) -> Result<Self, RpcError> {
        // The page's count of tries left (`triesLeft`): checked and
        // accepted for older clients, never shown (it is not the card's).
        p.optional_u64("triesLeft")?;
        Ok(RequestCredential {
            pin_label: p.optional_string("pinLabel")?,
            error: p.optional_string("error")?,
            reader: p.optional_string("reader")?,
            card_label: p.optional_string("cardLabel")?,
            pin: p.optional_string("pin")?,
            so: p.bool_or("so", false)?,
        })
    }
}
