//! cardgate: smart-card PIN middleware.
//!
//! Layers, bottom to top: [`apdu`] → [`transport`] → [`card`] (profiles) →
//! [`pin`] (engine, enforcing [`policy`]) → [`service`] (reader workers) → [`cli`].
#![forbid(unsafe_code)]

pub mod apdu;
pub mod card;
pub mod cli;
pub mod config;
pub mod error;
pub mod logging;
pub mod native;
pub mod pin;
pub mod pinentry;
pub mod policy;
pub mod protocol;
pub mod secret;
pub mod security;
pub mod server;
pub mod service;
pub mod tls;
pub mod transport;
pub mod vcard;
