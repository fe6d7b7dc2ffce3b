//! `getPinStatus`' arguments: which PIN of which reader.

use crate::protocol::{Params, RpcError, Target};

/// `getPinStatus`'s arguments: which PIN of which reader.
#[derive(Debug)]
pub(crate) struct GetPinStatus {
    /// The PIN object whose status is asked for.
    pub target: Target,
}

impl GetPinStatus {
    pub(crate) fn parse(p: &mut Params) -> Result<Self, RpcError> {
        Ok(GetPinStatus {
            target: p.target()?,
        })
    }
}
