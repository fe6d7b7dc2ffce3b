//! The WebSocket protocol: JSON-RPC 2.0 messages (see `docs/protocol.md`).
//!
//! This module reads messages (the JSON-RPC envelope, batches, the shared
//! `Params` readers), maps each method name to its call's own parsing
//! into a typed [`Call`] ([`cmd`], one file per call), and builds
//! responses and notifications; running the calls is the server's job
//! (`server/cmd/`, one file per call with its `apply`).

use crate::error::Error;
use crate::secret::Secret;
use base64::Engine as _;
use cmd::{
    change::Change, check_constraints::CheckConstraints, get_constraints::GetConstraints,
    get_pin_status::GetPinStatus, get_readers::GetReaders, hello::Hello, init::Init, login::Login,
    logout::Logout, request_credential::RequestCredential,
};
use serde_json::{Map, Value, json};

pub(crate) mod cmd;

/// The protocol version this daemon speaks.
pub(crate) const PROTOCOL_VERSION: u64 = 1;

/// The most requests one batch may hold (docs/protocol.md). A bigger batch
/// is answered with a single `INVALID_REQUEST` error (`BATCH_TOO_LARGE`)
/// and none of it runs. The WebSocket and the native-messaging host both
/// parse messages here, so both apply it.
pub(crate) const MAX_BATCH: usize = 64;

/// What a client may rely on.
pub(crate) const CAPABILITIES: &[&str] = &[
    "readers",
    "pinStatus",
    "login",
    "change",
    "init",
    "logout",
    "constraints",
    "events",
    "pinDialog",
    "requestCredential",
];

/// JSON-RPC error codes (JSON-RPC 2.0 §5.1, plus ours in the server range).
pub(crate) mod code {
    /// The frame is not valid JSON.
    pub(crate) const PARSE_ERROR: i64 = -32700;
    /// Not a JSON-RPC 2.0 request object, or a batch too large.
    pub(crate) const INVALID_REQUEST: i64 = -32600;
    /// An unknown method.
    pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
    /// Missing or wrongly typed parameters.
    pub(crate) const INVALID_PARAMS: i64 = -32602;
    /// The operation failed; `data.code` says why (docs/errors.md).
    pub(crate) const OPERATION_FAILED: i64 = -32000;
    /// The operation did not finish within the daemon's time limit; it
    /// still completes on the card.
    pub(crate) const TIMEOUT: i64 = -32001;
    /// The daemon could not build its answer (a bug).
    pub(crate) const INTERNAL_ERROR: i64 = -32603;
}

/// A protocol-level failure: JSON-RPC code, stable string code, message, data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RpcError {
    /// The JSON-RPC error code (one of [`code`]).
    pub code: i64,
    /// `data`: the stable string `code`, the `message`, and any details
    /// (e.g. `remainingTries`).
    pub data: Value,
}

impl RpcError {
    fn new(code: i64, name: &str, message: impl Into<String>) -> Self {
        RpcError {
            code,
            data: json!({ "code": name, "message": message.into() }),
        }
    }

    /// `PARSE_ERROR`: the frame is not valid JSON.
    pub(crate) fn parse(message: impl Into<String>) -> Self {
        Self::new(code::PARSE_ERROR, "PARSE_ERROR", message)
    }

    /// `INVALID_REQUEST`: not a JSON-RPC 2.0 request object.
    pub(crate) fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_REQUEST, "INVALID_REQUEST", message)
    }

    /// A batch of `size` requests, more than [`MAX_BATCH`].
    pub(crate) fn batch_too_large(size: usize) -> Self {
        let mut e = Self::new(
            code::INVALID_REQUEST,
            "BATCH_TOO_LARGE",
            format!("a batch may hold at most {MAX_BATCH} requests, not {size}; nothing was run"),
        );
        e.data["maxBatch"] = json!(MAX_BATCH);
        e
    }

    /// `METHOD_NOT_FOUND`, naming the method in `data.method`.
    pub(crate) fn method_not_found(method: &str) -> Self {
        let mut e = Self::new(
            code::METHOD_NOT_FOUND,
            "METHOD_NOT_FOUND",
            format!("unknown method {method:?}"),
        );
        e.data["method"] = json!(method);
        e
    }

    /// `INVALID_PARAMS`: missing or wrongly typed parameters.
    pub(crate) fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_PARAMS, "INVALID_PARAMS", message)
    }

    /// The daemon could not build its answer (never expected).
    pub(crate) fn internal(message: &str) -> Self {
        Self::new(code::INTERNAL_ERROR, "INTERNAL_ERROR", message)
    }

    /// `TIMEOUT` after `seconds`: the operation goes on on the card and a
    /// notification reports its outcome.
    pub(crate) fn timeout(seconds: u64) -> Self {
        Self::new(
            code::TIMEOUT,
            "TIMEOUT",
            format!(
                "the operation did not finish within {seconds} s; it completes on the card and a notification reports its outcome"
            ),
        )
    }

    /// `ORIGIN_NOT_ALLOWED`: `origin` may not use the daemon.
    pub(crate) fn origin_not_allowed(origin: &str) -> Self {
        let mut e = Self::new(
            code::OPERATION_FAILED,
            "ORIGIN_NOT_ALLOWED",
            format!("{origin} is not allowed to use the smart card daemon"),
        );
        e.data["origin"] = json!(origin);
        e
    }

    /// The human-readable message in `data` (`"error"` if there is none).
    pub(crate) fn message(&self) -> &str {
        self.data["message"].as_str().unwrap_or("error")
    }
}

impl From<Error> for RpcError {
    fn from(e: Error) -> Self {
        RpcError {
            code: code::OPERATION_FAILED,
            data: e.to_json(),
        }
    }
}

/// Which PIN object of which reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The reader's name.
    pub reader: String,
    /// The PIN object's id within the token (e.g. `pin`, `user`).
    pub pin: String,
}

/// Where a PIN value comes from.
#[derive(Debug)]
pub(crate) enum Input {
    /// Sent by the page (a string or a CredentialValue with data).
    Value(Secret),
    /// A one-time handle from `requestCredential` on the same connection.
    Handle(String),
    /// `false`: the daemon's own PIN dialog asks the user.
    Dialog,
    /// `null` / absent: the reader's pinpad (protected authentication path).
    Pinpad,
}

/// A parsed request: each variant holds its call's typed arguments, defined
/// with the call's parsing in [`cmd`].
#[derive(Debug)]
pub(crate) enum Call {
    /// `hello`: protocol version and capabilities.
    Hello(Hello),
    /// `getReaders`: the readers and their cards.
    GetReaders(GetReaders),
    /// `getPinStatus`: a PIN's state and tries left.
    GetPinStatus(GetPinStatus),
    /// `login`: verify a PIN or its SO credential.
    Login(Login),
    /// `change`: replace a PIN's value.
    Change(Change),
    /// `init`: set a new PIN after an SO login.
    Init(Init),
    /// `requestCredential`: the daemon's PIN dialog, answered with a
    /// one-time handle.
    RequestCredential(RequestCredential),
    /// `logout`: end a PIN's verified state.
    Logout(Logout),
    /// `getConstraints`: a PIN's format constraints.
    GetConstraints(GetConstraints),
    /// `checkConstraints`: values checked against those constraints,
    /// without the card.
    CheckConstraints(CheckConstraints),
}

impl Call {
    /// The reader the call works on, if any.
    pub(crate) fn target(&self) -> Option<&Target> {
        match self {
            Call::Hello(_) | Call::GetReaders(_) | Call::RequestCredential(_) => None,
            Call::GetPinStatus(GetPinStatus { target })
            | Call::Login(Login { target, .. })
            | Call::Change(Change { target, .. })
            | Call::Init(Init { target, .. })
            | Call::Logout(Logout { target })
            | Call::GetConstraints(GetConstraints { target })
            | Call::CheckConstraints(CheckConstraints { target, .. }) => Some(target),
        }
    }
}

/// One request of a message: its id (absent for a notification) and the
/// parsed call or why it could not be parsed.
#[derive(Debug)]
pub(crate) struct Request {
    /// The request's id; `None` for a notification (no answer is sent).
    pub id: Option<Value>,
    /// The parsed call, or the error to answer with.
    pub call: Result<Call, RpcError>,
}

/// A whole incoming message: a single request or a batch.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A single request object.
    Single(Request),
    /// A batch: an array of requests, answered as an array.
    Batch(Vec<Request>),
    /// The message could not be understood at all; answer with this (id null).
    Invalid(RpcError),
}

/// Parses one text frame. PIN values are moved out of the JSON tree into
/// [`Secret`]s as soon as they are found. A batch is read element by
/// element: past [`MAX_BATCH`] the rest is only checked to be JSON, never
/// built (a 64 KiB frame `[1,1,…]` would be 32,000 values).
pub(crate) fn parse_message(text: &str) -> Incoming {
    // A JSON array starts with `[` after JSON whitespace.
    if !text.trim_start().starts_with('[') {
        return match serde_json::from_str(text) {
            Ok(v) => Incoming::Single(parse_request(v)),
            Err(e) => Incoming::Invalid(RpcError::parse(format!("invalid JSON: {e}"))),
        };
    }
    match serde_json::from_str::<BoundedBatch>(text) {
        Ok(BoundedBatch::Items(items)) if items.is_empty() => {
            Incoming::Invalid(RpcError::invalid_request("empty batch"))
        }
        Ok(BoundedBatch::Items(items)) => {
            Incoming::Batch(items.into_iter().map(parse_request).collect())
        }
        Ok(BoundedBatch::TooLarge(size)) => Incoming::Invalid(RpcError::batch_too_large(size)),
        Err(e) => Incoming::Invalid(RpcError::parse(format!("invalid JSON: {e}"))),
    }
}

/// A JSON array read as a batch: its elements, or only their number when
/// there are more than [`MAX_BATCH`].
enum BoundedBatch {
    Items(Vec<Value>),
    TooLarge(usize),
}

impl<'de> serde::Deserialize<'de> for BoundedBatch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = BoundedBatch;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON array")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<BoundedBatch, A::Error> {
                let mut items = Vec::new();
                while items.len() < MAX_BATCH {
                    match seq.next_element::<Value>()? {
                        Some(v) => items.push(v),
                        None => return Ok(BoundedBatch::Items(items)),
                    }
                }
                // Full: anything more is counted, not kept.
                let mut size = MAX_BATCH;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    size += 1;
                }
                Ok(if size == MAX_BATCH {
                    BoundedBatch::Items(items)
                } else {
                    BoundedBatch::TooLarge(size)
                })
            }
        }
        d.deserialize_seq(Visitor)
    }
}

fn parse_request(value: Value) -> Request {
    let Value::Object(mut obj) = value else {
        return Request {
            id: Some(Value::Null),
            call: Err(RpcError::invalid_request("a request must be a JSON object")),
        };
    };
    let id = match obj.remove("id") {
        None => None,
        Some(id @ (Value::Number(_) | Value::String(_) | Value::Null)) => Some(id),
        Some(_) => {
            return Request {
                id: Some(Value::Null),
                call: Err(RpcError::invalid_request(
                    "id must be a number, a string or null",
                )),
            };
        }
    };
    if obj.get("jsonrpc") != Some(&json!("2.0")) {
        return Request {
            id: Some(id.unwrap_or(Value::Null)),
            call: Err(RpcError::invalid_request("jsonrpc must be \"2.0\"")),
        };
    }
    let Some(Value::String(method)) = obj.remove("method") else {
        return Request {
            id: Some(id.unwrap_or(Value::Null)),
            call: Err(RpcError::invalid_request("method must be a string")),
        };
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Request {
                id,
                call: Err(RpcError::invalid_params("params must be an object")),
            };
        }
    };
    Request {
        id,
        call: parse_call(&method, params),
    }
}

/// Reads typed parameters out of a params object; each call's `parse`
/// ([`cmd`]) takes its own with these.
pub(crate) struct Params(Map<String, Value>);

impl Params {
    /// A parameter as sent, taken out of the object (`None`: absent).
    pub(crate) fn take(&mut self, name: &str) -> Option<Value> {
        self.0.remove(name)
    }

    pub(crate) fn string(&mut self, name: &str) -> Result<String, RpcError> {
        match self.0.remove(name) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(RpcError::invalid_params(format!("{name} must be a string"))),
            None => Err(RpcError::invalid_params(format!(
                "missing parameter {name}"
            ))),
        }
    }

    pub(crate) fn bool_or(&mut self, name: &str, default: bool) -> Result<bool, RpcError> {
        match self.0.remove(name) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(b),
            Some(_) => Err(RpcError::invalid_params(format!(
                "{name} must be a boolean"
            ))),
        }
    }

    pub(crate) fn target(&mut self) -> Result<Target, RpcError> {
        Ok(Target {
            reader: self.string("reader")?,
            pin: self.string("pin")?,
        })
    }

    pub(crate) fn optional_string(&mut self, name: &str) -> Result<Option<String>, RpcError> {
        match self.0.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(RpcError::invalid_params(format!("{name} must be a string"))),
        }
    }

    /// A number when present: absent and `null` are `None`.
    pub(crate) fn optional_u64(&mut self, name: &str) -> Result<Option<u64>, RpcError> {
        match self.0.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| RpcError::invalid_params(format!("{name} must be a number"))),
        }
    }

    /// Where a value comes from: a string or CredentialValue (the page), a
    /// CredentialValue with a `handle` (requestCredential), `false` (the
    /// daemon's dialog), `null` or absent (the pinpad).
    pub(crate) fn input(&mut self, name: &str) -> Result<Input, RpcError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(Input::Pinpad),
            Some(Value::Bool(false)) => Ok(Input::Dialog),
            Some(Value::Object(cred)) if cred.contains_key("handle") => match cred.get("handle") {
                Some(Value::String(h)) => Ok(Input::Handle(h.clone())),
                _ => Err(RpcError::invalid_params(format!(
                    "{name}.handle must be a string"
                ))),
            },
            _ => self.secret(name).map(Input::Value),
        }
    }

    /// A PIN value: a string, or a CredentialValue `{type:"pin", data:base64}`.
    /// Error messages name the parameter, never its content.
    pub(crate) fn secret(&mut self, name: &str) -> Result<Secret, RpcError> {
        match self.0.remove(name) {
            Some(Value::String(s)) => Ok(Secret::from_string(s)),
            Some(Value::Object(mut cred)) => {
                match cred.get("type") {
                    Some(Value::String(t)) if t == "pin" => {}
                    Some(Value::String(_)) => {
                        return Err(
                            Error::OperationNotSupported("biometric credentials".into()).into()
                        );
                    }
                    _ => {
                        return Err(RpcError::invalid_params(format!(
                            "{name}.type must be \"pin\""
                        )));
                    }
                }
                let Some(Value::String(mut data)) = cred.remove("data") else {
                    return Err(RpcError::invalid_params(format!(
                        "{name}.data must be a base64 string"
                    )));
                };
                let decoded = base64::engine::general_purpose::STANDARD.decode(data.as_bytes());
                zeroize::Zeroize::zeroize(&mut data);
                decoded.map(Secret::new).map_err(|_| {
                    RpcError::invalid_params(format!("{name}.data is not valid base64"))
                })
            }
            Some(Value::Bool(false)) | Some(Value::Null) | None => Err(
                Error::OperationNotSupported("PIN entry by the daemon's dialog or a pinpad".into())
                    .into(),
            ),
            Some(_) => Err(RpcError::invalid_params(format!(
                "{name} must be a string or a CredentialValue"
            ))),
        }
    }

    /// A value only used for comparisons (checkConstraints): empty when absent.
    pub(crate) fn optional_secret(&mut self, name: &str) -> Result<Secret, RpcError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(Secret::default()),
            _ => self.secret(name),
        }
    }
}

/// Which call a method name is, parsed by that call's own `parse`.
fn parse_call(method: &str, params: Map<String, Value>) -> Result<Call, RpcError> {
    let p = &mut Params(params);
    Ok(match method {
        "hello" => Call::Hello(Hello::parse(p)?),
        "getReaders" => Call::GetReaders(GetReaders::parse(p)?),
        "getPinStatus" => Call::GetPinStatus(GetPinStatus::parse(p)?),
        "login" => Call::Login(Login::parse(p)?),
        "change" => Call::Change(Change::parse(p)?),
        "init" => Call::Init(Init::parse(p)?),
        "logout" => Call::Logout(Logout::parse(p)?),
        "requestCredential" => Call::RequestCredential(RequestCredential::parse(p)?),
        "getConstraints" => Call::GetConstraints(GetConstraints::parse(p)?),
        "checkConstraints" => Call::CheckConstraints(CheckConstraints::parse(p)?),
        other => return Err(RpcError::method_not_found(other)),
    })
}

/// An error response.
pub(crate) fn error(id: Value, e: &RpcError) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": e.code, "message": e.message(), "data": e.data },
    })
}

/// A success response as text, serialised straight from `result` (no
/// intermediate JSON tree: on the hot path that tree cost more than
/// everything else the daemon does for a status read).
pub(crate) fn result_text(id: &Value, result: &impl serde::Serialize) -> String {
    #[derive(serde::Serialize)]
    struct Success<'a, R> {
        jsonrpc: &'static str,
        id: &'a Value,
        result: &'a R,
    }
    serde_json::to_string(&Success {
        jsonrpc: "2.0",
        id,
        result,
    })
    .unwrap_or_else(|e| error_text(id, &RpcError::internal(&e.to_string())))
}

/// An error response as text; the same object as [`error`].
pub(crate) fn error_text(id: &Value, e: &RpcError) -> String {
    error(id.clone(), e).to_string()
}

/// A notification pushed by the daemon.
pub(crate) fn notification(method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "method": method, "params": params })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pin::SoPath;

    fn single(text: &str) -> Request {
        match parse_message(text) {
            Incoming::Single(r) => r,
            other => panic!("not a single request: {other:?}"),
        }
    }

    fn err_code(text: &str) -> i64 {
        match parse_message(text) {
            Incoming::Invalid(e) => e.code,
            Incoming::Single(r) => r.call.unwrap_err().code,
            Incoming::Batch(_) => panic!("batch"),
        }
    }

    #[test]
    fn parses_calls() {
        let r = single(
            r#"{"jsonrpc":"2.0","id":3,"method":"login","params":{"reader":"R","pin":"pin","value":"123456"}}"#,
        );
        assert_eq!(r.id, Some(json!(3)));
        match r.call.unwrap() {
            Call::Login(Login {
                target,
                value,
                so,
                path,
            }) => {
                assert_eq!(
                    target,
                    Target {
                        reader: "R".into(),
                        pin: "pin".into()
                    }
                );
                assert!(matches!(value, Input::Value(v) if v.expose() == b"123456"));
                assert!(!so);
                assert_eq!(path, SoPath::Default);
            }
            other => panic!("{other:?}"),
        }
        let r = single(
            r#"{"jsonrpc":"2.0","id":"a","method":"login","params":{"reader":"R","pin":"user","value":{"type":"pin","data":"MTIzNDU2"},"soPath":"resetCode"}}"#,
        );
        match r.call.unwrap() {
            Call::Login(Login {
                value, so, path, ..
            }) => {
                assert!(matches!(value, Input::Value(v) if v.expose() == b"123456"));
                assert!(so);
                assert_eq!(path, SoPath::ResetCode);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            single(r#"{"jsonrpc":"2.0","id":1,"method":"getReaders"}"#).call,
            Ok(Call::GetReaders(_))
        ));
    }

    #[test]
    fn refuses_bad_messages_with_the_right_codes() {
        assert_eq!(err_code("{not json"), code::PARSE_ERROR);
        assert_eq!(err_code("[]"), code::INVALID_REQUEST);
        assert_eq!(
            err_code(r#"{"id":1,"method":"hello"}"#),
            code::INVALID_REQUEST
        );
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":{},"method":"hello"}"#),
            code::INVALID_REQUEST
        );
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":1,"method":5}"#),
            code::INVALID_REQUEST
        );
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":1,"method":"fly"}"#),
            code::METHOD_NOT_FOUND
        );
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":1,"method":"login","params":[1]}"#),
            code::INVALID_PARAMS
        );
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":1,"method":"login","params":{"reader":"R"}}"#),
            code::INVALID_PARAMS
        );
        assert_eq!(
            err_code(
                r#"{"jsonrpc":"2.0","id":1,"method":"login","params":{"reader":"R","pin":"p","value":7}}"#
            ),
            code::INVALID_PARAMS
        );
        assert_eq!(
            err_code(
                r#"{"jsonrpc":"2.0","id":1,"method":"login","params":{"reader":"R","pin":"p","value":{"type":"pin","data":"@@"}}}"#
            ),
            code::INVALID_PARAMS
        );
        // false: the daemon's dialog; null / absent: the pinpad; a handle.
        let login = |v: &str| {
            single(&format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"login","params":{{"reader":"R","pin":"p"{v}}}}}"#
            ))
            .call
        };
        assert!(matches!(
            login(r#","value":false"#),
            Ok(Call::Login(Login {
                value: Input::Dialog,
                ..
            }))
        ));
        assert!(matches!(
            login(r#","value":null"#),
            Ok(Call::Login(Login {
                value: Input::Pinpad,
                ..
            }))
        ));
        assert!(matches!(
            login(""),
            Ok(Call::Login(Login {
                value: Input::Pinpad,
                ..
            }))
        ));
        assert!(matches!(
            login(r#","value":{"type":"pin","handle":"cgh-1"}"#),
            Ok(Call::Login(Login { value: Input::Handle(h), .. })) if h == "cgh-1"
        ));
        assert_eq!(
            login(r#","value":true"#).unwrap_err().code,
            code::INVALID_PARAMS
        );
    }

    #[test]
    fn errors_never_echo_the_pin() {
        let r = single(
            r#"{"jsonrpc":"2.0","id":1,"method":"login","params":{"reader":"R","pin":"p","value":{"type":"pin","data":"987654!!"}}}"#,
        );
        let e = r.call.unwrap_err();
        assert!(!error(json!(1), &e).to_string().contains("987654"));
    }

    #[test]
    fn batches_keep_their_order() {
        match parse_message(
            r#"[{"jsonrpc":"2.0","id":1,"method":"hello"},5,{"jsonrpc":"2.0","method":"getReaders"}]"#,
        ) {
            Incoming::Batch(items) => {
                assert_eq!(items.len(), 3);
                assert_eq!(items[0].id, Some(json!(1)));
                assert!(items[1].call.is_err());
                assert_eq!(items[2].id, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_batch_holds_at_most_max_batch_requests() {
        let hello = r#"{"jsonrpc":"2.0","id":1,"method":"hello"}"#;
        let batch = |n: usize| format!(" \n[{}]", vec![hello; n].join(","));
        assert!(
            matches!(parse_message(&batch(MAX_BATCH)), Incoming::Batch(b) if b.len() == MAX_BATCH)
        );
        let too_large = |text: &str| match parse_message(text) {
            Incoming::Invalid(e) => {
                assert_eq!(e.code, code::INVALID_REQUEST);
                assert_eq!(e.data["code"], "BATCH_TOO_LARGE");
                assert_eq!(e.data["maxBatch"], MAX_BATCH);
            }
            other => panic!("{other:?}"),
        };
        too_large(&batch(MAX_BATCH + 1));
        // 64 KiB of `[1,1,…]`: counted, not built.
        too_large(&format!("[{}1]", "1,".repeat(32 * 1024)));
        // Past the maximum the text must still be JSON.
        let broken = format!("[{}1,]", "1,".repeat(100));
        assert!(
            matches!(parse_message(&broken), Incoming::Invalid(e) if e.code == code::PARSE_ERROR)
        );
        assert!(
            matches!(parse_message("[]"), Incoming::Invalid(e) if e.code == code::INVALID_REQUEST)
        );
    }
}
