//! The stable error codes every layer above the transport reports.
//! Documented for users in `docs/errors.md`; the codes never change meaning.

use crate::apdu::StatusWord;
use crate::policy::constraint::Constraint;
use crate::transport::TransportError;
use serde_json::{Value, json};

/// An operation's failure, with a stable string code and its data.
/// Messages never contain PIN values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The card compared the PIN and found it wrong (`63Cx`, `6983`,
    /// `6300`): one try was spent.
    #[error("wrong PIN{}", tries_suffix(*remaining_tries))]
    PinIncorrect {
        /// The card's count after this try; `None` when the card did not
        /// tell and it could not be read, never a guess.
        remaining_tries: Option<u8>,
    },
    /// The PIN's counter was read at 0 before the operation: nothing was
    /// sent.
    #[error("the PIN is blocked")]
    PinBlocked,
    /// The value's length is outside what the card accepts (`6700`,
    /// `6A80`, pinpad `6403`); checked before any APDU where it can be.
    #[error("the PIN must have {min} to {max} characters")]
    PinLengthInvalid {
        /// Fewest bytes the card accepts.
        min: usize,
        /// Most bytes the card accepts.
        max: usize,
    },
    /// The value has characters the card does not accept (PIV PINs are
    /// digits only, SP 800-73-4 Part 2 §2.4.3); no try spent.
    #[error("the PIN may only contain the digits 0-9")]
    PinFormatInvalid,
    /// The new value breaks the PIN policy; checked before any APDU.
    #[error("the new PIN does not meet the PIN policy: {}", describe(failed))]
    ConstraintViolation {
        /// The constraints the value fails, in policy order.
        failed: Vec<Constraint>,
    },
    /// The security officer credential (PIV PUK, OpenPGP admin PIN or
    /// reset code) was wrong: one of its tries was spent.
    #[error("wrong security officer PIN (PUK, admin PIN or reset code){}", tries_suffix(*remaining_tries))]
    SoPinIncorrect {
        /// The SO credential's count after this try, as for
        /// [`Error::PinIncorrect`].
        remaining_tries: Option<u8>,
    },
    /// The SO credential is blocked or not set, as read before: nothing
    /// was sent.
    #[error("the security officer PIN (PUK, admin PIN or reset code) is blocked or not set")]
    SoPinBlocked,
    /// The card has no value set for this PIN yet (`6984`).
    #[error("the PIN is not initialized")]
    PinNotInitialized,
    /// The PIN is right but must be changed before use (`6985` to
    /// VERIFY); no try spent.
    #[error("the PIN must be changed before it can be used")]
    PinToBeChanged,
    /// `init` needs a security officer login first, or the held one
    /// expired (`6982`).
    #[error("the security officer PIN must be verified first")]
    SoLoginRequired,
    /// No PIN object with this id on the card.
    #[error("no PIN object {0:?} on this card")]
    PinNotFound(String),
    /// The card was removed, or its connection lost, during or since the
    /// last operation.
    #[error("the card was removed")]
    CardRemoved,
    /// The reader holds no card.
    #[error("there is no card in the reader")]
    CardAbsent,
    /// No reader by this name.
    #[error("reader {0:?} not found")]
    ReaderNotFound(String),
    /// The PC/SC service (pcscd) is not running.
    #[error("the PC/SC service (pcscd) is not running")]
    NoPcscService,
    /// Another application holds the card exclusively.
    #[error("the card is in use by another application")]
    CardBusy,
    /// No card profile describes this card (docs/cards.md): nothing but
    /// SELECT is sent to it.
    #[error("this card is not supported (ATR {atr}{})", answered(applications))]
    CardNotSupported {
        /// The card's ATR, in hex.
        atr: String,
        /// The well-known applications that answered SELECT.
        applications: Vec<String>,
    },
    /// The card, reader or PIN object cannot do the named operation
    /// (`6A88`, `6A86`, `6D00`).
    #[error("{0} is not supported by this card")]
    OperationNotSupported(String),
    /// The card answered a status word cardgate does not interpret.
    #[error("the card answered {sw}")]
    CardError {
        /// The status word as the card answered it.
        sw: StatusWord,
    },
    /// The reader or PC/SC failed in another way.
    #[error("reader error: {0}")]
    ReaderError(String),
    /// A value a site chose was not sent: the credential has one try left,
    /// or the card does not say how many (`remaining_tries` absent).
    #[error("{}", last_try_message(*remaining_tries))]
    LastTryProtected {
        /// `Some(1)`, or `None` when the card does not show the count.
        remaining_tries: Option<u8>,
    },
    /// The new PIN and its confirmation differ (pinpad 6402). Nothing
    /// reached the card.
    #[error("the new PIN and its confirmation differ")]
    PinMismatch,
    /// Code `TEMPORARILY_LOCKED`: too many consecutive wrong values from
    /// this site, which is locked for a while; nothing was sent.
    #[error("too many wrong PINs from this site; try again in {retry_after} s")]
    TemporarilyLocked {
        /// Seconds until the site may send a value again.
        retry_after: u64,
    },
    /// Code `TEMPORARILY_LOCKED`: the site's values still being checked
    /// by the cards could lock it; nothing was sent.
    #[error(
        "other PIN values from this site are still being checked, and one more wrong value would lock it; try again in {retry_after} s"
    )]
    LockoutInFlight {
        /// Seconds to wait before sending another value.
        retry_after: u64,
    },
    /// The site sent too many wrong values after a temporary lock: it is
    /// locked until the user unlocks it; nothing was sent.
    #[error(
        "too many wrong PINs from this site: it is locked until you unlock it with `cardgate origins unlock {origin}`"
    )]
    SiteLocked {
        /// The locked site's origin, as `cardgate origins unlock` takes it.
        origin: String,
    },
    /// The connection sends requests too fast; the request was not run.
    #[error("too many requests; slow down")]
    RateLimited,
    /// The PIN dialog was asked for but no pinentry program can be run.
    #[error("the PIN dialog cannot be shown: {0}")]
    PinDialogUnavailable(String),
    /// The user cancelled PIN entry (the PIN dialog, or pinpad 6401).
    /// Nothing reached the card.
    #[error("PIN entry was cancelled")]
    PinEntryCancelled,
    /// The user did not finish entering the PIN in time (the PIN
    /// dialog's timeout, or pinpad 6400). Nothing reached the card.
    #[error("PIN entry timed out")]
    PinEntryTimeout,
    /// A `requestCredential` handle that is unknown, already used,
    /// expired or from another connection.
    #[error("this credential handle is unknown, used or expired; call requestCredential again")]
    CredentialHandleInvalid,
}

fn describe(failed: &[Constraint]) -> String {
    failed
        .iter()
        .map(Constraint::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

fn last_try_message(tries: Option<u8>) -> &'static str {
    match tries {
        Some(_) => {
            "only one try is left: it is kept for the PIN dialog or the pinpad, not for values sent by a web page"
        }
        None => {
            "the card does not say how many tries are left, so a value sent by a web page is not risked: use the PIN dialog or the pinpad"
        }
    }
}

fn tries_suffix(tries: Option<u8>) -> String {
    match tries {
        Some(0) => "; it is now blocked".to_string(),
        Some(1) => ", 1 try left".to_string(),
        Some(n) => format!(", {n} tries left"),
        None => String::new(),
    }
}

impl Error {
    /// The stable code, as in `docs/errors.md`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::PinIncorrect { .. } => "PIN_INCORRECT",
            Error::PinBlocked => "PIN_BLOCKED",
            Error::PinLengthInvalid { .. } => "PIN_LENGTH_INVALID",
            Error::PinFormatInvalid => "PIN_FORMAT_INVALID",
            Error::ConstraintViolation { .. } => "CONSTRAINT_VIOLATION",
            Error::SoPinIncorrect { .. } => "SO_PIN_INCORRECT",
            Error::SoPinBlocked => "SO_PIN_BLOCKED",
            Error::PinNotInitialized => "PIN_NOT_INITIALIZED",
            Error::PinToBeChanged => "PIN_TO_BE_CHANGED",
            Error::SoLoginRequired => "SO_LOGIN_REQUIRED",
            Error::PinNotFound(_) => "PIN_NOT_FOUND",
            Error::CardRemoved => "CARD_REMOVED",
            Error::CardAbsent => "CARD_ABSENT",
            Error::ReaderNotFound(_) => "READER_NOT_FOUND",
            Error::NoPcscService => "NO_PCSC_SERVICE",
            Error::CardBusy => "CARD_BUSY",
            Error::CardNotSupported { .. } => "CARD_NOT_SUPPORTED",
            Error::OperationNotSupported(_) => "OPERATION_NOT_SUPPORTED",
            Error::CardError { .. } => "CARD_ERROR",
            Error::ReaderError(_) => "READER_ERROR",
            Error::LastTryProtected { .. } => "LAST_TRY_PROTECTED",
            Error::PinMismatch => "PIN_MISMATCH",
            Error::TemporarilyLocked { .. } | Error::LockoutInFlight { .. } => "TEMPORARILY_LOCKED",
            Error::SiteLocked { .. } => "SITE_LOCKED",
            Error::RateLimited => "RATE_LIMITED",
            Error::PinDialogUnavailable(_) => "PIN_DIALOG_UNAVAILABLE",
            Error::PinEntryCancelled => "PIN_ENTRY_CANCELLED",
            Error::PinEntryTimeout => "PIN_ENTRY_TIMEOUT",
            Error::CredentialHandleInvalid => "CREDENTIAL_HANDLE_INVALID",
        }
    }

    /// The try count this error reports, if any: the count after a wrong
    /// value, 0 for a blocked credential.
    pub fn remaining_tries(&self) -> Option<u8> {
        match self {
            Error::PinIncorrect { remaining_tries } | Error::SoPinIncorrect { remaining_tries } => {
                *remaining_tries
            }
            Error::PinBlocked | Error::SoPinBlocked => Some(0),
            Error::LastTryProtected { remaining_tries } => *remaining_tries,
            _ => None,
        }
    }

    /// Machine-readable details: `{"code": …, "message": …, …}`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({ "code": self.code(), "message": self.to_string() });
        let extra = match self {
            Error::PinIncorrect {
                remaining_tries: Some(n),
            }
            | Error::SoPinIncorrect {
                remaining_tries: Some(n),
            } => json!({ "remainingTries": n }),
            Error::PinBlocked | Error::SoPinBlocked => json!({ "remainingTries": 0 }),
            Error::PinLengthInvalid { min, max } => json!({ "minLength": min, "maxLength": max }),
            Error::ConstraintViolation { failed } => json!({ "constraints": failed }),
            Error::PinNotFound(id) => json!({ "pin": id }),
            Error::ReaderNotFound(r) => json!({ "reader": r }),
            Error::CardNotSupported { atr, applications } => {
                json!({ "atr": atr, "applications": applications })
            }
            Error::OperationNotSupported(op) => json!({ "operation": op }),
            Error::CardError { sw } => json!({ "sw": sw.to_string() }),
            Error::LastTryProtected {
                remaining_tries: Some(n),
            } => json!({ "remainingTries": n }),
            Error::TemporarilyLocked { retry_after } => json!({ "retryAfter": retry_after }),
            Error::LockoutInFlight { retry_after } => {
                json!({ "retryAfter": retry_after, "inFlight": true })
            }
            Error::SiteLocked { origin } => json!({ "origin": origin }),
            _ => json!({}),
        };
        if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), extra) {
            obj.extend(extra);
        }
        v
    }
}

impl From<TransportError> for Error {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::NoService => Error::NoPcscService,
            TransportError::ReaderNotFound(r) => Error::ReaderNotFound(r),
            TransportError::NoCard => Error::CardAbsent,
            // A reset that could not be recovered from means the card went away.
            TransportError::CardRemoved | TransportError::CardReset => Error::CardRemoved,
            TransportError::Busy => Error::CardBusy,
            TransportError::Unsupported => {
                Error::OperationNotSupported("this reader feature".into())
            }
            TransportError::Malformed(m) | TransportError::Other(m) => Error::ReaderError(m),
        }
    }
}

/// ", applications: PIV, OATH" or nothing.
fn answered(applications: &[String]) -> String {
    if applications.is_empty() {
        String::new()
    } else {
        format!("; applications: {}", applications.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_data_are_stable() {
        let e = Error::PinIncorrect {
            remaining_tries: Some(2),
        };
        assert_eq!(e.code(), "PIN_INCORRECT");
        assert_eq!(e.to_string(), "wrong PIN, 2 tries left");
        assert_eq!(e.to_json()["remainingTries"], 2);
        assert_eq!(Error::PinBlocked.to_json()["remainingTries"], 0);
        let sw = Error::CardError {
            sw: StatusWord::from_u16(0x6A81),
        };
        assert_eq!(sw.to_json()["sw"], "6A81");
        assert_eq!(
            Error::from(TransportError::NoService).code(),
            "NO_PCSC_SERVICE"
        );
        assert_eq!(Error::from(TransportError::NoCard).code(), "CARD_ABSENT");
        let v = Error::ConstraintViolation {
            failed: vec![
                Constraint::MinMaxLength {
                    min_length: 6,
                    max_length: 8,
                },
                Constraint::Numeric,
            ],
        };
        assert_eq!(v.code(), "CONSTRAINT_VIOLATION");
        assert_eq!(
            v.to_json()["constraints"],
            json!([{"type": "minMaxLength", "minLength": 6, "maxLength": 8}, {"type": "numeric"}])
        );
        assert_eq!(
            v.to_string(),
            "the new PIN does not meet the PIN policy: 6 to 8 characters; digits 0-9 only"
        );
        assert_eq!(
            Error::from(TransportError::CardRemoved).code(),
            "CARD_REMOVED"
        );
        assert_eq!(Error::PinEntryTimeout.code(), "PIN_ENTRY_TIMEOUT");
        assert_eq!(Error::PinEntryCancelled.code(), "PIN_ENTRY_CANCELLED");
        assert_eq!(Error::PinMismatch.code(), "PIN_MISMATCH");
        assert_eq!(
            Error::PinMismatch.to_json(),
            json!({"code": "PIN_MISMATCH", "message": "the new PIN and its confirmation differ"})
        );
    }
}
