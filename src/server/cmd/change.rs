//! `change`: changes a PIN, presenting its current value and the new one.

use crate::protocol::{Input, Params, RpcError, Target};
use crate::server::caller::{Caller, Outcome};
use crate::server::hub::Hub;
use crate::server::operation::{Op, pin_operation};
use futures_util::future::BoxFuture;
use std::sync::Arc;

/// `change`'s arguments.
#[derive(Debug)]
pub struct Change {
    pub target: Target,
    pub old: Input,
    pub new: Input,
}

impl Change {
    pub(crate) fn parse(p: &mut Params) -> Result<Self, RpcError> {
        Ok(Change {
            target: p.target()?,
            old: p.input("oldValue")?,
            new: p.input("newValue")?,
        })
    }

    pub(crate) fn apply(self, hub: &Arc<Hub>, caller: &Caller) -> BoxFuture<'static, Outcome> {
        pin_operation(
            hub,
            caller,
            self.target,
            Op::Change,
            vec![self.old, self.new],
        )
    }
}
