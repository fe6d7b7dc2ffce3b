//! `getConstraints`: the policy's constraints on a PIN's values.

use crate::protocol::{Params, RpcError, Target};
use crate::server::caller::{Caller, Outcome};
use crate::server::dispatch::wait;
use crate::server::hub::Hub;
use futures_util::future::BoxFuture;
use serde_json::json;
use std::sync::Arc;

/// `getConstraints`'s arguments.
#[derive(Debug)]
pub struct GetConstraints {
    pub target: Target,
}

impl GetConstraints {
    pub(crate) fn parse(p: &mut Params) -> Result<Self, RpcError> {
        Ok(GetConstraints {
            target: p.target()?,
        })
    }

    pub(crate) fn apply(self, hub: &Arc<Hub>, _: &Caller) -> BoxFuture<'static, Outcome> {
        let pin = self.target.pin;
        wait(hub, &self.target.reader, move |e| {
            Ok(json!(e.constraints(&pin)?))
        })
    }
}
