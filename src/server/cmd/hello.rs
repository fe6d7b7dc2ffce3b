//! `hello`: the protocol version and the daemon's capabilities.

use crate::protocol::cmd::hello::Hello;
use crate::protocol::{CAPABILITIES, PROTOCOL_VERSION, RpcError, code};
use crate::server::caller::Outcome;
use serde_json::json;

impl Hello {
    /// Answers at once: never touches a card.
    pub(crate) fn apply(self) -> Outcome {
        if let Some(p) = self.protocol
            && p != PROTOCOL_VERSION
        {
            return Err(RpcError {
                code: code::OPERATION_FAILED,
                data: json!({
                    "code": "PROTOCOL_UNSUPPORTED",
                    "message": format!("protocol {p} is not supported"),
                    "supported": [PROTOCOL_VERSION],
                }),
            });
        }
        Ok(json!({
            "protocol": PROTOCOL_VERSION,
            "daemon": "cardgate",
            "version": env!("CARGO_PKG_VERSION"),
            "capabilities": CAPABILITIES,
        }))
    }
}
