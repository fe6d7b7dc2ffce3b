//! `login`'s arguments: a PIN and its value, or (with `so` or `soPath`)
//! its security officer's credential.

use crate::pin::SoPath;
use crate::protocol::{Input, Params, RpcError, Target};

/// `login`'s arguments.
#[derive(Debug)]
pub(crate) struct Login {
    /// The PIN object to log in to.
    pub target: Target,
    /// The credential (`value`): the PIN, or with `so` the SO credential.
    pub value: Input,
    /// The security officer's credential (also with `soPath: "resetCode"`).
    pub so: bool,
    /// Which SO credential (`soPath`): the card's default one or the
    /// OpenPGP resetting code.
    pub path: SoPath,
}

impl Login {
    pub(crate) fn parse(p: &mut Params) -> Result<Self, RpcError> {
        let target = p.target()?;
        let so = p.bool_or("so", false)?;
        let path = match p.take("soPath") {
            None | Some(serde_json::Value::Null) => SoPath::Default,
            Some(serde_json::Value::String(s)) if s == "default" => SoPath::Default,
            Some(serde_json::Value::String(s)) if s == "resetCode" => SoPath::ResetCode,
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "soPath must be \"default\" or \"resetCode\"",
                ));
            }
        };
        Ok(Login {
            target,
            value: p.input("value")?,
            so: so || path == SoPath::ResetCode,
            path,
        })
    }
}
