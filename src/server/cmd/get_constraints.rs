//! `getConstraints`: the policy's constraints on a PIN's values.

use crate::protocol::cmd::get_constraints::GetConstraints;
use crate::server::caller::{Caller, Outcome};
use crate::server::dispatch::wait;
use crate::server::hub::Hub;
use futures_util::future::BoxFuture;
use serde_json::json;
use std::sync::Arc;

impl GetConstraints {
    pub(crate) fn apply(self, hub: &Arc<Hub>, _: &Caller) -> BoxFuture<'static, Outcome> {
        let pin = self.target.pin;
        wait(hub, &self.target.reader, move |e| {
            Ok(json!(e.constraints(&pin)?))
        })
    }
}
