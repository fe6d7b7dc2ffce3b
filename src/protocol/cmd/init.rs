//! `init`'s arguments: a PIN and its new value.

use crate::protocol::{Input, Params, RpcError, Target};

/// `init`'s arguments.
#[derive(Debug)]
pub(crate) struct Init {
    /// The PIN object to set (after a security officer login on it).
    pub target: Target,
    /// The new value (`newValue`).
    pub new: Input,
}

impl Init {
    pub(crate) fn parse(p: &mut Params) -> Result<Self, RpcError> {
        Ok(Init {
            target: p.target()?,
            new: p.input("newValue")?,
        })
    }
}
