//! `checkConstraints`' arguments: a PIN and the values to check against
//! its policy.

use crate::protocol::{Params, RpcError, Target};
use crate::secret::Secret;

/// `checkConstraints`' arguments: values only compared, never sent.
#[derive(Debug)]
pub(crate) struct CheckConstraints {
    /// The PIN object whose policy the values are checked against.
    pub target: Target,
    /// Empty when absent.
    pub old: Secret,
    /// The proposed new value (`newPin`).
    pub new: Secret,
}

impl CheckConstraints {
    pub(crate) fn parse(p: &mut Params) -> Result<Self, RpcError> {
        Ok(CheckConstraints {
            target: p.target()?,
            old: p.optional_secret("oldPin")?,
            new: p.secret("newPin")?,
        })
    }
}
