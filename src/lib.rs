//! cardgate: smart-card PIN middleware.
//!
//! The daemon and command line on top of the card library
//! (`cardgate-card`: [`apdu`] → [`transport`] → [`card`] profiles →
//! [`pin`] engine enforcing [`policy`]) and the virtual card
//! (`cardgate-vcard`): [`service`] (reader workers) → [`security`],
//! [`protocol`] → [`server`], [`native`] → [`cli`]. See docs/architecture.md.
#![forbid(unsafe_code)]
// Items of private modules are `pub(crate)`: the crate's API is its public
// modules (used by the binary, the tests and the benchmark).
#![warn(unreachable_pub)]
#![warn(missing_docs, rust_2018_idioms, unused_qualifications)]
#![warn(clippy::unwrap_used, clippy::expect_used)]
// Tests may unwrap: a panic there is a failed test, not a crash.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

// The card library (crates/cardgate-card) and the virtual card
// (crates/cardgate-vcard), under the names the daemon's code uses.
pub use cardgate_card::{apdu, card, error, pin, policy, secret, transport};
pub use cardgate_vcard as vcard;

pub mod cli;
pub mod config;
pub mod daemon;
pub mod logging;
pub mod native;
pub mod pinentry;
pub mod protocol;
pub mod security;
pub mod server;
pub mod service;
pub mod settings;
pub mod tls;
