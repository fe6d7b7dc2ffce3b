//! `hello`: the protocol version and the daemon's capabilities.

use crate::protocol::{CAPABILITIES, PROTOCOL_VERSION, Params, RpcError, code};
use crate::server::caller::Outcome;
use serde_json::json;

/// `hello`'s arguments: the protocol version the client speaks, if it says.
#[derive(Debug)]
pub struct Hello {
    pub protocol: Option<u64>,
}

impl Hello {
    pub(crate) fn parse(p: &mut Params) -> Result<Self, RpcError> {
        Ok(Hello {
            protocol: p.optional_u64("protocol")?,
        })
    }

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
