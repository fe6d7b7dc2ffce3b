//! `hello`'s arguments: the protocol version the client speaks.

use crate::protocol::{Params, RpcError};

/// `hello`'s arguments: the protocol version the client speaks, if it says.
#[derive(Debug)]
pub(crate) struct Hello {
    /// The version the client speaks (`protocol`), if it sends one.
    pub protocol: Option<u64>,
}

impl Hello {
    pub(crate) fn parse(p: &mut Params) -> Result<Self, RpcError> {
        Ok(Hello {
            protocol: p.optional_u64("protocol")?,
        })
    }
}
