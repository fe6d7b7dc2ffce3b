//! `change`: changes a PIN, presenting its current value and the new one.

use crate::protocol::cmd::change::Change;
use crate::server::caller::{Caller, Outcome};
use crate::server::hub::Hub;
use crate::server::operation::{Op, pin_operation};
use futures_util::future::BoxFuture;
use std::sync::Arc;

impl Change {
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
