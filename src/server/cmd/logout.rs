//! `logout`: `Pin.logout()`, ending the card's login.

use crate::protocol::{Params, RpcError, Target};
use crate::server::caller::{Caller, Outcome};
use crate::server::hub::Hub;
use crate::server::operation::{Op, operation};
use futures_util::future::BoxFuture;
use std::sync::Arc;

/// `logout`'s arguments.
#[derive(Debug)]
pub struct Logout {
    pub target: Target,
}

impl Logout {
    pub(crate) fn parse(p: &mut Params) -> Result<Self, RpcError> {
        Ok(Logout {
            target: p.target()?,
        })
    }

    pub(crate) fn apply(self, hub: &Arc<Hub>, caller: &Caller) -> BoxFuture<'static, Outcome> {
        operation(hub, caller, self.target, Op::Logout, None, false)
    }
}
