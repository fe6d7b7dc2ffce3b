//! PIN operations with the PIN typed on a pinpad reader (PC/SC part 10,
//! the SCWS "protected authentication path": `login(null)`,
//! `change(null, null)`, `init(null)`). The daemon never sees the values.
//!
//! - The reader's status words of its own map to stable codes: 6400 →
//!   `PIN_ENTRY_TIMEOUT`, 6401 → `PIN_ENTRY_CANCELLED`, 6402 →
//!   `PIN_MISMATCH`, 6403 → `PIN_LENGTH_INVALID`, 6B80 → `READER_ERROR`.
//!   Nothing reached the card in these cases: no try was spent.
//! - Anything else is the card's answer and maps like every other
//!   operation, with the counter read again after a failure.
//! - A blocked (or not initialized) credential fails before the user is
//!   asked to type anything.
//! - The last try may be spent here: the value comes from the user's
//!   hands on the reader, not from a page (the guard in `guard.rs` is for
//!   page-supplied values only).
//! - PIN policies (constraints) cannot be checked: the daemon never sees
//!   the new value. The reader enforces the card's length limits only.

use super::{Counter, Engine, SoPath};
use crate::apdu::StatusWord;
use crate::card::pinpad::{self, Pinpad, PinpadOptions};
use crate::card::{Credential, PinObject, SoMethod};
use crate::error::Error;
use crate::transport::part10::{self, feature};

/// Which part 10 feature an operation needs.
#[derive(Clone, Copy)]
enum Entry {
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

    /// Changes the pinpad entry options (e.g. the entry timeout).
    pub fn set_pinpad_options(&mut self, options: PinpadOptions) {
        self.pinpad_options = options;
    }

    pub fn pinpad_options(&self) -> PinpadOptions {
        self.pinpad_options
    }

    /// `Pin.login(null, so)`: the PIN (or with `so` the security
    /// officer's credential, default path) is typed on the pinpad.
    pub fn login_pinpad(&mut self, pin_id: &str, so: bool) -> Result<(), Error> {
        if so {
            return self.login_so_pinpad(pin_id, SoPath::Default);
        }
        let pin = self.pin(pin_id)?;
        let cred = &pin.credential;
        if !cred.verifiable {
            return Err(Error::OperationNotSupported(format!(
                "login with the {}",
                cred.label
            )));
        }
        self.check_usable(cred, false)?;
        let code = self.pinpad_code(Entry::Verify)?;
        let props = self.session.pinpad()?.properties.clone();
        let request = pinpad::verify(cred, &props, &self.pinpad_options)?;
        let sw = self.pinpad_exchange(cred, code, &request)?;
        match sw {
            StatusWord::Ok => {
                self.succeeded(cred);
                self.state(cred).validated = true;
                Ok(())
            }
            sw => Err(self.failed(cred, sw, false)),
        }
    }

    /// Security officer login on the pinpad. The admin PIN (OpenPGP PW3)
    /// is verified now. A code that travels with the new PIN (PIV PUK,
    /// OpenPGP reset code) is typed at [`Engine::init_pinpad`] instead:
    /// here it is only checked not to be blocked, and the login is noted
    /// for `init_pinpad` ([`Engine::so_login_is_deferred`] is true for
    /// those; `soValidated` shows it until init or logout).
    pub fn login_so_pinpad(&mut self, pin_id: &str, path: SoPath) -> Result<(), Error> {
        let pin = self.pin(pin_id)?;
        let method = so_method(&pin, path)?;
        let cred = method.credential().clone();
        match method {
            SoMethod::CodeWithNewPin(_) => {
                self.check_usable(&cred, true)?;
                self.pinpad_so = Some((pin.id, path));
                Ok(())
            }
            SoMethod::VerifyThenReset(_) => {
                self.check_usable(&cred, true)?;
                let code = self.pinpad_code(Entry::Verify)?;
                let props = self.session.pinpad()?.properties.clone();
                let request = pinpad::verify(&cred, &props, &self.pinpad_options)?;
                let sw = self.pinpad_exchange(&cred, code, &request)?;
                self.so_verify_outcome(pin.id, &cred, sw)
            }
        }
    }

    /// `Pin.change(null, null)`: the current PIN, the new PIN and its
    /// confirmation are typed on the pinpad (CHANGE REFERENCE DATA).
    pub fn change_pinpad(&mut self, pin_id: &str) -> Result<(), Error> {
        let pin = self.pin(pin_id)?;
        let cred = &pin.credential;
        self.check_usable(cred, false)?;
        let code = self.pinpad_code(Entry::Modify)?;
        let props = self.session.pinpad()?.properties.clone();
        let request = pinpad::change(cred, &props, &self.pinpad_options)?;
        match self.pinpad_exchange(cred, code, &request)? {
            StatusWord::Ok => {
                self.succeeded(cred);
                self.state(cred).to_be_changed = false;
                Ok(())
            }
            sw => Err(self.failed(cred, sw, false)),
        }
    }

    /// `Pin.init(null)`: re-initialises (unblocks) the PIN with values
    /// typed on the pinpad, after a security officer login on it:
    /// - the admin PIN (OpenPGP PW3) verified ([`Engine::login_so_pinpad`]
    ///   or [`Engine::login_so`]): the new PIN twice (RESET RETRY COUNTER
    ///   P1=02);
    /// - a deferred pinpad SO login ([`Engine::login_so_pinpad`] with the
    ///   PIV PUK or OpenPGP reset code): the code, then the new PIN twice
    ///   (RESET RETRY COUNTER P1=00).
    ///
    /// Without either: `SO_LOGIN_REQUIRED`. The deferred login is used up
    /// by the attempt, whatever its outcome (like a held PUK).
    pub fn init_pinpad(&mut self, pin_id: &str) -> Result<(), Error> {
        let pin = self.pin(pin_id)?;
        if pin.so.is_none() && pin.reset_code.is_none() {
            return Err(Error::OperationNotSupported(format!(
                "init of the {}",
                pin.credential.label
            )));
        }
        let cred = &pin.credential;
        let deferred = self.pinpad_so.take_if(|(id, _)| *id == pin.id);
        if let Some((_, path)) = deferred {
            let SoMethod::CodeWithNewPin(so_cred) = so_method(&pin, path)? else {
                return Err(Error::SoLoginRequired);
            };
            self.check_usable(&so_cred, true)?;
            let code = self.pinpad_code(Entry::Modify)?;
            let props = self.session.pinpad()?.properties.clone();
            let request = pinpad::unblock(&so_cred, cred, &props, &self.pinpad_options)?;
            return match self.pinpad_exchange(&so_cred, code, &request)? {
                StatusWord::Ok => {
                    self.succeeded(&so_cred);
                    self.reinitialised(cred);
                    Ok(())
                }
                sw => Err(self.failed(&so_cred, sw, true)),
            };
        }
        if !self.so_verified.contains(&pin.id) {
            return Err(Error::SoLoginRequired);
        }
        let code = self.pinpad_code(Entry::Modify)?;
        let props = self.session.pinpad()?.properties.clone();
        let request = pinpad::reset_after_so(cred, &props, &self.pinpad_options)?;
        match self.pinpad_exchange(cred, code, &request)? {
            StatusWord::Ok => {
                self.reinitialised(cred);
                Ok(())
            }
            StatusWord::SecurityNotSatisfied => {
                self.so_verified.retain(|id| *id != pin.id);
                Err(Error::SoLoginRequired)
            }
            sw => Err(super::map_other(sw, cred)),
        }
    }

    // ---- helpers ----------------------------------------------------------

    /// The control code of the feature, or `OPERATION_NOT_SUPPORTED`.
    fn pinpad_code(&mut self, entry: Entry) -> Result<u32, Error> {
        let (tag, what) = match entry {
            Entry::Verify => (feature::VERIFY_PIN_DIRECT, "PIN entry on the reader"),
            Entry::Modify => (
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

    /// Fails before the user types anything when the credential cannot be
    /// used: blocked, or not initialized.
    fn check_usable(&mut self, cred: &Credential, so: bool) -> Result<(), Error> {
        match self.read_counter(cred)? {
            Counter::Blocked if so => Err(Error::SoPinBlocked),
            Counter::Blocked => Err(Error::PinBlocked),
            Counter::NotInitialized if so => Err(Error::SoPinBlocked),
            Counter::NotInitialized => Err(Error::PinNotInitialized),
            Counter::Tries { .. } | Counter::Unknown => Ok(()),
        }
    }

    /// Hands a structure to the reader and waits for the user. Returns the
    /// card's status word; the reader's own ones become errors.
    fn pinpad_exchange(
        &mut self,
        cred: &Credential,
        code: u32,
        request: &pinpad::Request,
    ) -> Result<StatusWord, Error> {
        // A try may be spent: the status-query detector must not compare
        // across this.
        self.state(cred).last_query = None;
        let answer = self.session.control(code, &request.structure);
        if self.session.take_reset() {
            self.forget_verified();
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
            sw => Ok(StatusWord::from_u16(sw)),
        }
    }
}

/// The SO method of a PIN object through `path`.
fn so_method(pin: &PinObject, path: SoPath) -> Result<SoMethod, Error> {
    match path {
        SoPath::Default => pin.so.clone(),
        SoPath::ResetCode => pin.reset_code.clone(),
    }
    .ok_or_else(|| {
        Error::OperationNotSupported(match path {
            SoPath::Default => format!("security officer login for the {}", pin.credential.label),
            SoPath::ResetCode => format!("a resetting code for the {}", pin.credential.label),
        })
    })
}
