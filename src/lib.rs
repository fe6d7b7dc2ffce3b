//! cardgate: smart-card PIN middleware.
//!
//! The daemon and command line on top of the card library
//! (`cardgate-card`: [`apdu`] → [`transport`] → [`card`] profiles →
//! [`pin`] engine enforcing [`policy`]) and the virtual card
//! (`cardgate-vcard`, [`vcard`]). The `cardgate` binary is [`main`]; a
//! program may also run the daemon itself: [`Server::start`] with a
//! [`ServerConfig`]. The layers are described in docs/architecture.md.
#![forbid(unsafe_code)]
// Every module is private and its items `pub(crate)`: the crate's API is
// what this file re-exports (and, for the crate's own tests and benchmark,
// `testing` behind the `test-support` feature).
#![warn(unreachable_pub)]
#![warn(missing_docs, rust_2018_idioms, unused_qualifications)]
#![warn(clippy::unwrap_used, clippy::expect_used)]
// Tests may unwrap: a panic there is a failed test, not a crash.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

// The card library (crates/cardgate-card) and the virtual card
// (crates/cardgate-vcard), under the names the daemon's code uses.
pub use cardgate_card::{apdu, card, error, pin, policy, secret, transport};
pub use cardgate_vcard as vcard;

mod cli;
mod config;
mod daemon;
mod logging;
mod native;
mod pinentry;
mod protocol;
mod security;
mod server;
mod service;
mod settings;
mod tls;

// The daemon's API: the command line, and the daemon to embed with its
// settings.
pub use cli::main;
pub use pinentry::PinDialog;
pub use security::lockout::LockoutConfig;
pub use security::origin::OriginsFile;
pub use server::{Server, ServerConfig};
pub use settings::{ConsentMode, DEFAULT_OP_TIMEOUT, DEFAULT_PORT, Limits};

#[cfg(feature = "test-support")]
pub mod testing;
