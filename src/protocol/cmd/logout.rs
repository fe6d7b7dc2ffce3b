//! `logout`'s arguments: which PIN of which reader.

use crate::protocol::{Params, RpcError, Target};

/// `logout`'s arguments.
#[derive(Debug)]
pub(crate) struct Logout {
    /// The PIN object whose verified state ends.
    pub target: Target,
}

impl Logout {
    pub(crate) fn parse(p: &mut Params) -> Result<Self, RpcError> {
        Ok(Logout {
            target: p.target()?,
        })
    }
}
