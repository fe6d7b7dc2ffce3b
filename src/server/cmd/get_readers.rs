//! `getReaders`: the readers, their cards and each card's token (PIN
//! objects and their status), read once for every page asking at once.

use crate::protocol::RpcError;
use crate::protocol::cmd::get_readers::GetReaders;
use crate::server::caller::{Caller, Outcome};
use crate::server::dispatch::shared_read;
use crate::server::hub::{Hub, describe_token};
use crate::server::logins::mask_status;
use crate::transport::ReaderInfo;
use futures_util::future::{BoxFuture, FutureExt};
use serde_json::{Value, json};
use std::sync::Arc;

impl GetReaders {
    pub(crate) fn apply(self, hub: &Arc<Hub>, caller: &Caller) -> BoxFuture<'static, Outcome> {
        let me = caller.conn;
        let list = hub.service.reader_list();
        let pcsc = if list.pcsc_up { "up" } else { "down" };
        let pending: Vec<_> = list
            .readers
            .into_iter()
            .map(|ReaderInfo { name, atr }| {
                let token = atr.as_ref().map(|_| {
                    // Shared like a PIN's status (every page asks at load).
                    let read = shared_read(hub, &name, "token", me, describe_token);
                    async move {
                        let (mut token, mine) = read.await?;
                        if !mine && let Some(pins) = token["pins"].as_array_mut() {
                            pins.iter_mut().for_each(mask_status);
                        }
                        Ok::<Value, RpcError>(token)
                    }
                    .boxed()
                });
                (name, atr, token)
            })
            .collect();
        // Every token's job is queued already, each on its reader's worker, so
        // they run concurrently; waiting for them in turn costs nothing more.
        async move {
            let mut readers = Vec::new();
            for (name, atr, token) in pending {
                let mut r = json!({ "name": name, "cardPresent": atr.is_some() });
                if let Some(atr) = &atr {
                    r["atr"] = json!(crate::card::hex(atr));
                }
                if let Some(token) = token {
                    match token.await {
                        Ok(t) => r["token"] = t,
                        Err(e) => r["error"] = e.data,
                    }
                }
                readers.push(r);
            }
            Ok(json!({ "pcsc": pcsc, "readers": readers }))
        }
        .boxed()
    }
}
