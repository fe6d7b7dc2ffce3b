//! `logout`: `Pin.logout()`, ending the card's login.

use crate::protocol::cmd::logout::Logout;
use crate::server::caller::{Caller, Outcome};
use crate::server::hub::Hub;
use crate::server::operation::{Op, operation};
use futures_util::future::BoxFuture;
use std::sync::Arc;

impl Logout {
    pub(crate) fn apply(self, hub: &Arc<Hub>, caller: &Caller) -> BoxFuture<'static, Outcome> {
        operation(hub, caller, self.target, Op::Logout, None, false)
    }
}
