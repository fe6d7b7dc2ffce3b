//! The PIN operations (SCWS `Pin.login`, `change`, `init`) with their
//! credentials typed or entered on the pinpad. Every credential the card
//! checks goes through [`Engine::present`]; this file only says which
//! credential, in which command.

use super::pinpad::PadEntry;
use super::present::last_try_guard;
use super::{Engine, Entered, Entry, HeldCode, PinOp, Provenance, Purpose, SiteGate, SoPath};
use crate::apdu::StatusWord;
use crate::apdu::commands;
use crate::card::{Credential, Encoding, PinObject, SoMethod};
use crate::error::Error;
use crate::secret::Secret;
use std::time::Instant;

impl Engine {
    /// Runs a PIN operation. `site` is asked before each credential a site
    /// chose reaches the card, and told the card's verdict.
    pub fn perform(
        &mut self,
        pin_id: &str,
        op: PinOp,
        site: &mut dyn SiteGate,
    ) -> Result<(), Error> {
        self.expire_held_code(Instant::now());
        let pin = self.pin(pin_id)?;
        match op {
            PinOp::Login(entry) => self.login_user(&pin, entry, site),
            PinOp::SoLogin(path, entry) => self.login_so_entry(&pin, path, entry, site),
            PinOp::Change { old, new } => self.change_entry(&pin, old, new, site),
            PinOp::Init(new) => self.init_entry(&pin, new, site),
        }
    }

    fn login_user(
        &mut self,
        pin: &PinObject,
        entry: Entry,
        site: &mut dyn SiteGate,
    ) -> Result<(), Error> {
        let cred = &pin.credential;
        if !cred.verifiable {
            return Err(Error::OperationNotSupported(format!(
                "login with the {}",
                cred.label
            )));
        }
        match self.present_verify(cred, entry, false, Purpose::Login, site)? {
            StatusWord::Ok => {
                self.succeeded(cred);
                self.state(cred).validated = true;
                Ok(())
            }
            sw => Err(self.failed(cred, sw, false)),
        }
    }

    /// VERIFY of `cred` with a typed value or on the pinpad.
    fn present_verify(
        &mut self,
        cred: &Credential,
        entry: Entry,
        so: bool,
        purpose: Purpose,
        site: &mut dyn SiteGate,
    ) -> Result<StatusWord, Error> {
        match entry {
            Entry::Typed(v) => {
                let encoded = encode(cred, &v.value)?;
                let cmd = commands::verify(cred.reference, &encoded);
                self.present(cred, v.from, so, purpose, site, |e| {
                    Ok(e.send(cred, &cmd)?.sw)
                })
            }
            Entry::Pinpad => {
                let (code, request) = self.pinpad_request(PadEntry::Verify, |props, opts| {
                    crate::card::pinpad::verify(cred, props, opts)
                })?;
                self.present(cred, Provenance::Pinpad, so, purpose, site, |e| {
                    e.pinpad_exchange(cred, code, &request)
                })
            }
        }
    }

    /// Security officer login. The admin PIN (OpenPGP PW3) is VERIFYed; a
    /// PIV PUK is checked by changing it to itself (SP 800-73-4 Part 2
    /// §3.2.2) and held for `init`; a code the card cannot check alone
    /// (OpenPGP reset code) is held unchecked, with its provenance, and
    /// checked when `init` sends it. On the pinpad, a code that travels
    /// with the new PIN is typed at `init`.
    fn login_so_entry(
        &mut self,
        pin: &PinObject,
        path: SoPath,
        entry: Entry,
        site: &mut dyn SiteGate,
    ) -> Result<(), Error> {
        let method = so_method(pin, path)?;
        let cred = method.credential().clone();
        match (&method, entry) {
            (SoMethod::VerifyThenReset(_), entry) => {
                let sw = self.present_verify(&cred, entry, true, Purpose::Unblock, site)?;
                self.so_verify_outcome(pin.id, &cred, sw)
            }
            (SoMethod::CodeWithNewPin(_), Entry::Typed(code)) if cred.checked_by_change => {
                let encoded = encode(&cred, &code.value)?;
                let cmd =
                    commands::change_reference_data(cred.change_reference, &encoded, &encoded);
                let sw = self.present(&cred, code.from, true, Purpose::Unblock, site, |e| {
                    Ok(e.send(&cred, &cmd)?.sw)
                })?;
                if sw != StatusWord::Ok {
                    self.held = None;
                    return Err(self.failed(&cred, sw, true));
                }
                self.succeeded(&cred);
                self.hold(pin, method, code);
                Ok(())
            }
            (SoMethod::CodeWithNewPin(_), Entry::Typed(code)) => {
                check_format(&cred, &code.value)?;
                // Said now rather than at init: a blocked code, or one a
                // site may not send.
                let tries = self.usable_counter(&cred, true)?.tries();
                last_try_guard(code.from, tries)?;
                self.hold(pin, method, code);
                Ok(())
            }
            (SoMethod::CodeWithNewPin(_), Entry::Pinpad) => {
                self.usable_counter(&cred, true)?;
                self.pinpad_so = Some((pin.id, path));
                Ok(())
            }
        }
    }

    fn hold(&mut self, pin: &PinObject, method: SoMethod, code: Entered) {
        self.held = Some(HeldCode {
            pin_id: pin.id,
            method,
            code,
            since: Instant::now(),
        });
    }

    /// Records how verifying a PIN object's SO credential went: the SO
    /// login stands, or is gone.
    fn so_verify_outcome(
        &mut self,
        pin_id: &'static str,
        cred: &Credential,
        sw: StatusWord,
    ) -> Result<(), Error> {
        if sw == StatusWord::Ok {
            self.succeeded(cred);
            self.state(cred).validated = true;
            if !self.so_verified.contains(&pin_id) {
                self.so_verified.push(pin_id);
            }
            return Ok(());
        }
        self.so_verified.retain(|id| *id != pin_id);
        Err(self.failed(cred, sw, true))
    }

    /// `Pin.change(old, new)`. Before anything is sent, the current value
    /// is checked against the card's limits (`PIN_LENGTH_INVALID` /
    /// `PIN_FORMAT_INVALID`), then the new value against the policy
    /// (`CONSTRAINT_VIOLATION`). On the pinpad the reader asks for both.
    fn change_entry(
        &mut self,
        pin: &PinObject,
        old: Entry,
        new: Entry,
        site: &mut dyn SiteGate,
    ) -> Result<(), Error> {
        let cred = &pin.credential;
        let sw = match (old, new) {
            (Entry::Typed(old), Entry::Typed(new)) => {
                let old_encoded = encode(cred, &old.value)?;
                self.pin_policy(pin.id)?.enforce(&old.value, &new.value)?;
                let new_encoded = encode(cred, &new.value)?;
                let cmd = commands::change_reference_data(
                    cred.change_reference,
                    &old_encoded,
                    &new_encoded,
                );
                self.present(cred, old.from, false, Purpose::Change, site, |e| {
                    Ok(e.send(cred, &cmd)?.sw)
                })?
            }
            (Entry::Pinpad, Entry::Pinpad) => {
                let (code, request) = self.pinpad_request(PadEntry::Modify, |props, opts| {
                    crate::card::pinpad::change(cred, props, opts)
                })?;
                self.present(
                    cred,
                    Provenance::Pinpad,
                    false,
                    Purpose::Change,
                    site,
                    |e| e.pinpad_exchange(cred, code, &request),
                )?
            }
            _ => {
                return Err(Error::OperationNotSupported(
                    "a change with one value typed and the other on the pinpad".into(),
                ));
            }
        };
        match sw {
            StatusWord::Ok => {
                self.succeeded(cred);
                self.state(cred).to_be_changed = false;
                Ok(())
            }
            // The card's own way of refusing a new value equal to the old
            // one (its profile's `new-same-as-old`): the old value was
            // right, nothing was spent.
            sw if cred.new_same_as_old.contains(&sw.to_u16()) => Err(Error::ConstraintViolation {
                failed: vec![crate::policy::Constraint::NewOldDifferent],
            }),
            sw => Err(self.failed(cred, sw, false)),
        }
    }

    /// `Pin.init(new)`: re-initialises (unblocks) the PIN after a SO login.
    /// A typed new value is checked against the policy first (the old value
    /// is unknown: constraints on it hold); a violation sends nothing and
    /// keeps a held PUK / resetting code.
    /// - a held code (PIV PUK, OpenPGP reset code): RESET RETRY COUNTER
    ///   P1=00 with the code, presented with the provenance it came with;
    /// - the admin PIN verified: RESET RETRY COUNTER P1=02;
    /// - on the pinpad after a pinpad SO login with a code: the reader asks
    ///   for the code and the new PIN twice.
    ///
    /// Without a SO login: `SO_LOGIN_REQUIRED`.
    fn init_entry(
        &mut self,
        pin: &PinObject,
        new: Entry,
        site: &mut dyn SiteGate,
    ) -> Result<(), Error> {
        can_be_reinitialised(pin)?;
        let cred = &pin.credential;
        let new = match new {
            Entry::Typed(new) => new,
            Entry::Pinpad => return self.init_on_pinpad(pin, site),
        };
        self.pin_policy(pin.id)?
            .enforce(&Secret::default(), &new.value)?;
        let new_encoded = encode(cred, &new.value)?;
        let held = self
            .held
            .as_ref()
            .filter(|h| h.pin_id == pin.id)
            .map(|h| (h.method.credential().clone(), h.code.clone()));
        if let Some((so_cred, code)) = held {
            let encoded = encode(&so_cred, &code.value)?;
            let cmd = commands::reset_retry_counter(cred.change_reference, &encoded, &new_encoded);
            let sw = self.present(&so_cred, code.from, true, Purpose::Unblock, site, |e| {
                Ok(e.send(cred, &cmd)?.sw)
            })?;
            // Sent: the held code is used up, whatever the card said.
            self.held = None;
            return self.after_reset_with_code(&so_cred, cred, sw);
        }
        if !self.so_verified.contains(&pin.id) {
            return Err(Error::SoLoginRequired);
        }
        let resp = self.send(
            cred,
            &commands::reset_retry_counter_after_so(cred.change_reference, &new_encoded),
        )?;
        self.after_reset_by_so(pin, resp.sw)
    }

    /// `init(null)`: the reader must have a keypad before anything else is
    /// said. The deferred pinpad SO login is used up by the attempt,
    /// whatever its outcome.
    fn init_on_pinpad(&mut self, pin: &PinObject, site: &mut dyn SiteGate) -> Result<(), Error> {
        let cred = &pin.credential;
        let code = self.pinpad_code(PadEntry::Modify)?;
        if let Some((_, path)) = self.pinpad_so.take_if(|(id, _)| *id == pin.id) {
            let SoMethod::CodeWithNewPin(so_cred) = so_method(pin, path)? else {
                return Err(Error::SoLoginRequired);
            };
            let (code, request) = self.pinpad_request(PadEntry::Modify, |props, opts| {
                crate::card::pinpad::unblock(&so_cred, cred, props, opts)
            })?;
            let sw = self.present(
                &so_cred,
                Provenance::Pinpad,
                true,
                Purpose::Unblock,
                site,
                |e| e.pinpad_exchange(cred, code, &request),
            )?;
            return self.after_reset_with_code(&so_cred, cred, sw);
        }
        if !self.so_verified.contains(&pin.id) {
            return Err(Error::SoLoginRequired);
        }
        let (_, request) = self.pinpad_request(PadEntry::Modify, |props, opts| {
            crate::card::pinpad::reset_after_so(cred, props, opts)
        })?;
        let sw = self.pinpad_exchange(cred, code, &request)?;
        self.after_reset_by_so(pin, sw)
    }

    /// The answer to RESET RETRY COUNTER P1=00 with a resetting code.
    fn after_reset_with_code(
        &mut self,
        so_cred: &Credential,
        cred: &Credential,
        sw: StatusWord,
    ) -> Result<(), Error> {
        match sw {
            StatusWord::Ok => {
                self.succeeded(so_cred);
                self.reinitialised(cred);
                Ok(())
            }
            sw => Err(self.failed(so_cred, sw, true)),
        }
    }

    /// The answer to RESET RETRY COUNTER P1=02 after the admin PIN.
    fn after_reset_by_so(&mut self, pin: &PinObject, sw: StatusWord) -> Result<(), Error> {
        match sw {
            StatusWord::Ok => {
                self.reinitialised(&pin.credential);
                Ok(())
            }
            StatusWord::SecurityNotSatisfied => {
                self.so_verified.retain(|id| *id != pin.id);
                Err(Error::SoLoginRequired)
            }
            sw => Err(super::present::map_other(sw, &pin.credential)),
        }
    }

    /// What a PIN dialog for `asking` should show, read from the card now;
    /// refused before anyone is asked when the credential that would be
    /// checked is blocked, or when `init` has no SO login to use.
    pub fn dialog_facts(&mut self, pin_id: &str, asking: Asking) -> Result<DialogFacts, Error> {
        self.expire_held_code(Instant::now());
        let pin = self.pin(pin_id)?;
        let card = self.token().label.clone();
        let (label, tries) = match asking {
            Asking::Own => {
                let t = self.usable_counter(&pin.credential, false)?.tries();
                (pin.credential.label.clone(), t)
            }
            Asking::So(path) => {
                let cred = so_method(&pin, path)?.credential().clone();
                let t = self.usable_counter(&cred, true)?.tries();
                (cred.label, t)
            }
            Asking::New => {
                can_be_reinitialised(&pin)?;
                let held = self
                    .held
                    .as_ref()
                    .filter(|h| h.pin_id == pin.id)
                    .map(|h| (h.method.credential().clone(), h.code.from));
                match held {
                    // The held code is what the card will check: the user is
                    // not asked for a new PIN that could not be used.
                    Some((so_cred, from)) => {
                        let tries = self.usable_counter(&so_cred, true)?.tries();
                        last_try_guard(from, tries)?;
                    }
                    None if self.so_verified.contains(&pin.id) => {}
                    None => return Err(Error::SoLoginRequired),
                }
                (pin.credential.label.clone(), None)
            }
        };
        Ok(DialogFacts { card, label, tries })
    }
}

/// Which credential a PIN dialog asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asking {
    /// The PIN object's own value (login, change).
    Own,
    /// Its security officer's credential through this path.
    So(SoPath),
    /// A new value for it (init).
    New,
}

/// What a PIN dialog shows, from the card.
#[derive(Debug, Clone)]
pub struct DialogFacts {
    /// The token's label, naming the card.
    pub card: String,
    /// The label of the credential asked for (PIN, PUK, admin PIN, …).
    pub label: String,
    /// The tries left of the credential asked for, when the card says.
    pub tries: Option<u8>,
}

/// `init` needs a security officer: a PIN object without one (a PUK, an
/// admin PIN) cannot be re-initialised.
fn can_be_reinitialised(pin: &PinObject) -> Result<(), Error> {
    if pin.so.is_none() && pin.reset_code.is_none() {
        return Err(Error::OperationNotSupported(format!(
            "init of the {}",
            pin.credential.label
        )));
    }
    Ok(())
}

/// The SO method of a PIN object through `path`.
pub(super) fn so_method(pin: &PinObject, path: SoPath) -> Result<SoMethod, Error> {
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

/// Checks a value against the limits the card imposes, before any APDU.
pub fn check_format(cred: &Credential, value: &Secret) -> Result<(), Error> {
    let f = &cred.format;
    if f.numeric && !value.is_ascii_digits() {
        return Err(Error::PinFormatInvalid);
    }
    if value.len() < f.min_len || value.len() > f.max_len {
        return Err(Error::PinLengthInvalid {
            min: f.min_len,
            max: f.max_len,
        });
    }
    if f.encoding == Encoding::Ascii && !value.expose().is_ascii() {
        return Err(Error::PinFormatInvalid);
    }
    if f.stored_len > 0 && value.len() > f.stored_len {
        return Err(Error::PinLengthInvalid {
            min: f.min_len,
            max: f.max_len,
        });
    }
    if f.pad.is_some_and(|p| value.expose().contains(&p)) {
        // The padding byte: a value containing it would be ambiguous.
        return Err(Error::PinFormatInvalid);
    }
    Ok(())
}

/// Checks and encodes a value for an APDU, as its profile says.
fn encode(cred: &Credential, value: &Secret) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
    check_format(cred, value)?;
    Ok(crate::card::pin_block(&cred.format, value))
}
