//! `init`: sets a new PIN (unblocking it) after a security officer login.

use crate::protocol::cmd::init::Init;
use crate::server::caller::{Caller, Outcome};
use crate::server::hub::Hub;
use crate::server::operation::{Op, pin_operation};
use futures_util::future::BoxFuture;
use std::sync::Arc;

impl Init {
    pub(crate) fn apply(self, hub: &Arc<Hub>, caller: &Caller) -> BoxFuture<'static, Outcome> {
        pin_operation(hub, caller, self.target, Op::Init, vec![self.new])
    }
}
