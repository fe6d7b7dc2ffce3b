//! `checkConstraints`: whether a new value meets a PIN's policy. Never
//! touches the card: the policy was resolved when it was opened.

use crate::protocol::{Params, RpcError, Target};
use crate::secret::Secret;
use crate::server::caller::{Caller, Outcome};
use crate::server::dispatch::wait;
use crate::server::hub::Hub;
use futures_util::future::BoxFuture;
use serde_json::json;
use std::sync::Arc;

/// `checkConstraints`' arguments: values only compared, never sent.
#[derive(Debug)]
pub struct CheckConstraints {
    pub target: Target,
    /// Empty when absent.
    pub old: Secret,
    pub new: Secret,
}

impl CheckConstraints {
    pub(crate) fn parse(p: &mut Params) -> Result<Self, RpcError> {
        Ok(CheckConstraints {
            target: p.target()?,
            old: p.optional_secret("oldPin")?,
            new: p.secret("newPin")?,
        })
    }

    pub(crate) fn apply(self, hub: &Arc<Hub>, _: &Caller) -> BoxFuture<'static, Outcome> {
        let CheckConstraints { target, old, new } = self;
        let pin = target.pin;
        wait(hub, &target.reader, move |e| {
            Ok(json!(e.check_constraints(&pin, &old, &new)?))
        })
    }
}
