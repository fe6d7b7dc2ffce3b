//! One file per protocol call: its typed arguments (held by [`super::Call`]'s
//! variant) and their parsing from the params object (`parse`, with the
//! shared `Params` readers; `parse_call` maps each method
//! name to it). Pure protocol: what the daemon does for a call (`apply`) is
//! the server's, in `server/cmd/` under the same file name.

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
