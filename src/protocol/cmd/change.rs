//! `change`'s arguments: a PIN, its current value and the new one.

use crate::protocol::{Input, Params, RpcError, Target};

/// `change`'s arguments.
#[derive(Debug)]
pub struct Change {
    pub target: Target,
    pub old: Input,
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
