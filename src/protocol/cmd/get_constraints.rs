//! `getConstraints`' arguments: which PIN of which reader.

use crate::protocol::{Params, RpcError, Target};

/// `getConstraints`'s arguments.
#[derive(Debug)]
pub(crate) struct GetConstraints {
    /// The PIN object whose constraints are asked for.
    pub target: Target,
}

impl GetConstraints {
    pub(crate) fn parse(p: &mut Params) -> Result<Self, RpcError> {
        Ok(GetConstraints {
            target: p.target()?,
        })
    }
}
