//! `login`: presents a PIN (or, with `so` or `soPath`, the security
//! officer's credential) and makes the connection the card's login owner.

use crate::protocol::cmd::login::Login;
use crate::server::caller::{Caller, Outcome};
use crate::server::hub::Hub;
use crate::server::operation::{Op, pin_operation};
use futures_util::future::BoxFuture;
use std::sync::Arc;

impl Login {
    pub(crate) fn apply(self, hub: &Arc<Hub>, caller: &Caller) -> BoxFuture<'static, Outcome> {
        let op = Op::Login {
            so: self.so,
            path: self.path,
        };
        pin_operation(hub, caller, self.target, op, vec![self.value])
    }
}
