//! `init`: sets a new PIN (unblocking it) after a security officer login.

use crate::protocol::{Input, Params, RpcError, Target};
use crate::server::caller::{Caller, Outcome};
use crate::server::hub::Hub;
use crate::server::operation::{Op, pin_operation};
use futures_util::future::BoxFuture;
use std::sync::Arc;

/// `init`'s arguments.
#[derive(Debug)]
pub struct Init {
    pub target: Target,
    pub new: Input,
}

impl Init {
    pub(crate) fn parse(p: &mut Params) -> Result<Self, RpcError> {
        Ok(Init {
            target: p.target()?,
            new: p.input("newValue")?,
        })
    }

    pub(crate) fn apply(self, hub: &Arc<Hub>, caller: &Caller) -> BoxFuture<'static, Outcome> {
        pin_operation(hub, caller, self.target, Op::Init, vec![self.new])
    }
}
