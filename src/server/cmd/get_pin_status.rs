//! `getPinStatus`: a PIN's status. Pages asking at once share one card
//! read; each sees the login only if it is its own.

use crate::pin::PinStatus;
use crate::protocol::RpcError;
use crate::protocol::cmd::get_pin_status::GetPinStatus;
use crate::server::caller::Caller;
use crate::server::dispatch::shared_read;
use crate::server::hub::Hub;
use crate::server::logins::mask_pin_status;
use std::future::Future;
use std::sync::Arc;

impl GetPinStatus {
    /// Answered as a [`PinStatus`], serialised as it is sent (the hot path).
    pub(crate) fn apply(
        self,
        hub: &Arc<Hub>,
        caller: &Caller,
    ) -> impl Future<Output = Result<PinStatus, RpcError>> + Send + use<> {
        let pin = self.target.pin;
        let read = shared_read(
            hub,
            &self.target.reader,
            &format!("status {pin}"),
            caller.conn,
            move |e| e.status(&pin),
        );
        async move {
            let (mut status, mine) = read.await?;
            if !mine {
                mask_pin_status(&mut status);
            }
            Ok(status)
        }
    }
}
