//! One file per protocol call: what the daemon does for it (`apply`,
//! called by `server/dispatch.rs`), on the call's typed arguments. Those
//! and their parsing are the protocol layer's, in the file of the same name
//! in [`crate::protocol::cmd`].
//!
//! What several calls share stays where they share it: the PIN-operation
//! job, the consent prompt and the daemon's PIN dialog in
//! `server/operation.rs`; reads shared by every page asking at once and
//! waiting for a reader's worker in `server/dispatch.rs`.

pub(crate) mod change;
pub(crate) mod check_constraints;
pub(crate) mod get_constraints;
pub(crate) mod get_pin_status;
pub(crate) mod get_readers;
pub(crate) mod hello;
pub(crate) mod init;
pub(crate) mod login;
pub(crate) mod logout;
pub(crate) mod request_credential;
