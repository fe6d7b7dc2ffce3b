//! `getReaders`' arguments: none.

use crate::protocol::{Params, RpcError};

/// `getReaders` takes no arguments.
#[derive(Debug)]
pub(crate) struct GetReaders;

impl GetReaders {
    pub(crate) fn parse(_: &mut Params) -> Result<Self, RpcError> {
        Ok(GetReaders)
    }
}
