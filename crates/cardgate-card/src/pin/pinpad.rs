//! PIN entry on a pinpad reader (PC/SC part 10, the SCWS "protected
//! authentication path": `login(null)`, `change(null, null)`,
//! `init(null)`). The daemon never sees the values; the operations
//! themselves are in `ops.rs`, and a pinpad entry reaches the card through
//! the same guarded path as a typed value (`present.rs`).
//!
//! - The reader's status words of its own map to stable codes: 6400 →
//!   `PIN_ENTRY_TIMEOUT`, 6401 → `PIN_ENTRY_CANCELLED`, 6402 →
//!   `PIN_MISMATCH`, 6403 → `PIN_LENGTH_INVALID`, 6B80 → `READER_ERROR`.
//!   Nothing reached the card in these cases: no try was spent.
//! - Anything else is the card's answer and maps like every other
//!   operation.
//! - A blocked (or not initialized) credential fails before the user is
//!   asked to type anything.
//! - The last try may be spent here: the value comes from the user's
//!   hands on the reader, not from a page.
//! - PIN policies (constraints) cannot be checked: the daemon never sees
//!   the new value. The reader enforces the card's length limits only.

use super::Engine;
use crate::apdu::StatusWord;
use crate::card::Credential;
use crate::card::pinpad::{self, Pinpad, PinpadOptions};
use crate::error::Error;
use crate::transport::part10::{self, PinProperties, feature};

/// Which part 10 feature an operation needs.
#[derive(Clone, Copy)]
pub(super) enum PadEntry {
    Verify,
    Modify,
}

impl Engine {
    /// True when the card's reader has a keypad for PIN entry
    /// (`FEATURE_VERIFY_PIN_DIRECT`): `Token.protectedAuthPath`.
    /// Asked of the reader once per connection.
    pub fn has_pinpad(&mut self) -> bool {
        self.session.pinpad().is_ok_and(Pinpad::can_verify)
    }

    /// What the reader offers for PIN entry (features and properties).
    pub fn pinpad(&mut self) -> Result<Pinpad, Error> {
        self.session.pinpad().cloned()
    }

    /// The control code of the feature, or `OPERATION_NOT_SUPPORTED`.
    pub(super) fn pinpad_code(&mut self, entry: PadEntry) -> Result<u32, Error> {
        let (tag, what) = match entry {
            PadEntry::Verify => (feature::VERIFY_PIN_DIRECT, "PIN entry on the reader"),
            PadEntry::Modify => (
                feature::MODIFY_PIN_DIRECT,
                "changing a PIN on the reader's keypad",
            ),
        };
        self.session
            .pinpad()?
            .features
            .code(tag)
            .ok_or_else(|| Error::OperationNotSupported(what.into()))
    }

    /// The control code and the structure for an entry on the pinpad.
    pub(super) fn pinpad_request(
        &mut self,
        entry: PadEntry,
        build: impl FnOnce(&PinProperties, &PinpadOptions) -> Result<pinpad::Request, Error>,
    ) -> Result<(u32, pinpad::Request), Error> {
        let code = self.pinpad_code(entry)?;
        let props = self.session.pinpad()?.properties.clone();
        Ok((code, build(&props, &self.pinpad_options)?))
    }

    /// Hands a structure to the reader and waits for the user. Returns the
    /// card's status word; the reader's own ones become errors.
    pub(super) fn pinpad_exchange(
        &mut self,
        cred: &Credential,
        code: u32,
        request: &pinpad::Request,
    ) -> Result<StatusWord, Error> {
        let answer = self
            .session
            .ensure_selected(cred.app)
            .and_then(|()| self.session.control(code, &request.structure));
        if self.session.take_reset() {
            self.forget_verified();
        }
        for app in self.session.take_left() {
            self.forget_verified_in(app);
        }
        let answer = answer?;
        let [.., sw1, sw2] = answer[..] else {
            return Err(Error::ReaderError(
                "the pinpad reader answered without a status word".into(),
            ));
        };
        match u16::from_be_bytes([sw1, sw2]) {
            part10::sw::TIMEOUT => Err(Error::PinEntryTimeout),
            part10::sw::CANCELLED => Err(Error::PinEntryCancelled),
            part10::sw::NEW_PINS_DIFFER => Err(Error::PinMismatch),
            part10::sw::WRONG_LENGTH => Err(Error::PinLengthInvalid {
                min: request.min_len,
                max: request.max_len,
            }),
            part10::sw::BAD_STRUCTURE => Err(Error::ReaderError(
                "the reader rejected the PIN entry request (6B80)".into(),
            )),
            sw => Ok(cred.normalise(StatusWord::from_u16(sw))),
        }
    }
}
