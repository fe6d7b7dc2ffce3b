//! cardgate's card library: everything between a PIN value and a smart
//! card, with no async runtime, HTTP or WebSocket in it.
//!
//! Layers, bottom to top: [`secret`] and [`error`] → [`apdu`] (one function
//! per command, with its spec section) → [`transport`] (the PC/SC backend
//! and the traits a backend implements) → [`card`] (card profiles as data)
//! and [`policy`] (PIN constraints) → [`pin`] (the PIN engine: typed
//! operations, and the one guarded path by which a credential reaches the
//! card).
//!
//! ```no_run
//! use cardgate_card::pin::Engine;
//! use cardgate_card::card::CardSession;
//! use cardgate_card::transport::{Backend, pcsc::PcscBackend};
//!
//! let backend = PcscBackend::new();
//! let reader = &backend.list_readers()?[0].name;
//! let mut engine = Engine::new(CardSession::open(backend.connect(reader)?)?);
//! println!("{:?}", engine.status("pin")?.remaining_tries);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, rust_2018_idioms, unused_qualifications)]
#![warn(clippy::unwrap_used, clippy::expect_used)]
// Tests may unwrap: a panic there is a failed test, not a crash.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod apdu;
pub mod card;
pub mod error;
pub mod pin;
pub mod policy;
pub mod secret;
pub mod transport;
