//! One file per protocol call: its typed arguments (held by
//! [`crate::protocol::Call`]'s variant), their parsing from the params
//! object (`parse`, with the shared `protocol::Params` readers;
//! `protocol::parse_call` maps each method name to it) and what the daemon
//! does for it (`apply`, called by `server/dispatch.rs`).
//!
//! What several calls share stays where they share it: the PIN-operation
//! job, the consent prompt and the daemon's PIN dialog in
//! `server/operation.rs`; reads shared by every page asking at once and
//! waiting for a reader's worker in `server/dispatch.rs`.

pub mod change;
pub mod check_constraints;
pub mod get_constraints;
pub mod get_pin_status;
pub mod get_readers;
pub mod hello;
pub mod init;
pub mod login;
pub mod logout;
pub mod request_credential;
