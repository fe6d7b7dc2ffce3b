//! One file per protocol call: its typed arguments (held by [`super::Call`]'s
//! variant) and their parsing from the params object (`parse`, with the
//! shared `Params` readers; `parse_call` maps each method
//! name to it). Pure protocol: what the daemon does for a call (`apply`) is
//! the server's, in `server/cmd/` under the same file name.

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
