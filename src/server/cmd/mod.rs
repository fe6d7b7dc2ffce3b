//! One file per protocol call: what the daemon does for it (`apply`,
//! called by `server/dispatch.rs`), on the call's typed arguments. Those
//! and their parsing are the protocol layer's, in the file of the same name
//! in [`crate::protocol::cmd`].
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
