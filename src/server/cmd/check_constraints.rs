//! `checkConstraints`: whether a new value meets a PIN's policy. Never
//! touches the card: the policy was resolved when it was opened.

use crate::protocol::cmd::check_constraints::CheckConstraints;
use crate::server::caller::{Caller, Outcome};
use crate::server::dispatch::wait;
use crate::server::hub::Hub;
use futures_util::future::BoxFuture;
use serde_json::json;
use std::sync::Arc;

impl CheckConstraints {
    pub(crate) fn apply(self, hub: &Arc<Hub>, _: &Caller) -> BoxFuture<'static, Outcome> {
        let CheckConstraints { target, old, new } = self;
        let pin = target.pin;
        wait(hub, &target.reader, move |e| {
            Ok(json!(e.check_constraints(&pin, &old, &new)?))
        })
    }
}
