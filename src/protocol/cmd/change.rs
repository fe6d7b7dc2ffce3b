//! `change`'s arguments: a PIN, its current value and the new one.

use crate::protocol::{Input, Params, RpcError, Target};

/// `change`'s arguments.
#[derive(Debug)]
pub(crate) struct Change {
    /// The PIN object to change.
    pub target: Target,
    /// The current value (`oldValue`).
    pub old: Input,
    /// The new value (`newValue`).
    pub new: Input,
}

impl Change {
    pub(crate) fn parse(p: &mut Params) -> Result<Self, RpcError> {
        Ok(Change {
            target: p.target()?,
            old: p.input("oldValue")?,
            new: p.input("newValue")?,
        })
    }
}
