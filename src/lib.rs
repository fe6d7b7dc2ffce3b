//! cardgate: smart-card PIN middleware.
//!
//! Layers, bottom to top: [`apdu`] → [`transport`] → [`card`] (profiles) →
//! [`pin`] (engine) → [`service`] (reader workers) → [`cli`].
#![forbid(unsafe_code)]

pub mod apdu;
pub mod secret;
pub mod transport;
pub mod vcard;
