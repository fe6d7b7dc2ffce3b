//! A connection to a recognised card application.

use super::pinpad::Pinpad;
use super::{ProfileSet, Token, hex, recognise};
use crate::apdu::{Command, Response, StatusWord, commands};
use crate::error::Error;
use crate::transport::part10::{self, Features, PinProperties, feature};
use crate::transport::{self, Transport, TransportError};

/// Owns the transport to one card and the token found on it. Selects the
/// application each command is for, and selects it again after another
/// application reset the card.
pub struct CardSession {
    transport: Box<dyn Transport>,
    /// The card's applications and their PIN objects.
    pub token: Token,
    atr: Vec<u8>,
    /// Set when the card was reset under us (every verified state is gone);
    /// cleared by [`CardSession::take_reset`].
    reset_seen: bool,
    /// The application selected now (index in `token.applications`).
    selected: Option<usize>,
    /// An application left for another whose verifications the card
    /// ended; cleared by [`CardSession::take_left`].
    left: Vec<usize>,
    /// The reader's PIN entry features, asked once per connection.
    pinpad: Option<Pinpad>,
}

impl CardSession {
    /// Recognises the card with the built-in profiles.
    pub fn open(transport: Box<dyn Transport>) -> Result<Self, Error> {
        CardSession::open_with(transport, &ProfileSet::builtin())
    }

    /// Recognises the card with `profiles` (see [`super::recognise`]).
    pub fn open_with(
        mut transport: Box<dyn Transport>,
        profiles: &ProfileSet,
    ) -> Result<Self, Error> {
        let atr = transport.atr().to_vec();
        let token = recognise(transport.as_mut(), profiles)?;
        tracing::debug!(profile = %token.profile, atr = %hex(&atr), "card recognised");
        Ok(CardSession {
            transport,
            token,
            atr,
            reset_seen: false,
            selected: None,
            left: Vec::new(),
            pinpad: None,
        })
    }

    /// The card's answer to reset, as read at connect.
    pub fn atr(&self) -> &[u8] {
        &self.atr
    }

    /// Sends one command to an application of the card, selecting it
    /// first when another one is selected.
    pub fn send_in(&mut self, app: usize, cmd: &Command) -> Result<Response, Error> {
        self.ensure_selected(app)?;
        self.send(cmd)
    }

    /// Selects an application of the card unless it is selected already
    /// (before a reader's own command, such as a pinpad entry, for it).
    pub fn ensure_selected(&mut self, app: usize) -> Result<(), Error> {
        if self.selected != Some(app) {
            self.select(app)?;
        }
        Ok(())
    }

    fn select(&mut self, app: usize) -> Result<(), Error> {
        let aid = self
            .token
            .applications
            .get(app)
            .map(|a| a.aid.clone())
            .ok_or_else(|| {
                Error::OperationNotSupported("an application this card does not have".into())
            })?;
        let previous = self.selected.take();
        let resp = self.send(&commands::select_aid(&aid))?;
        if resp.sw != StatusWord::Ok {
            return Err(Error::CardError { sw: resp.sw });
        }
        self.selected = Some(app);
        if let Some(prev) = previous
            && self.token.select_clears_other
            && self.token.applications[prev].aid != aid
        {
            self.left.push(prev);
        }
        Ok(())
    }

    /// The applications left for another since the last call, whose
    /// verifications the card ended.
    pub fn take_left(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.left)
    }

    /// Sends one command to the application selected now. If another
    /// application reset the card, the command never reached it:
    /// reconnect, select our application again and send it once more.
    pub fn send(&mut self, cmd: &Command) -> Result<Response, Error> {
        match transport::exchange(self.transport.as_mut(), cmd) {
            Err(TransportError::CardReset) => {
                tracing::debug!("card was reset by another application; selecting again");
                self.reset_seen = true;
                self.transport.reconnect(false)?;
                self.reselect()?;
                Ok(transport::exchange(self.transport.as_mut(), cmd)?)
            }
            other => Ok(other?),
        }
    }

    /// Sends a reader control command (PC/SC `SCardControl`), with the same
    /// recovery as [`CardSession::send`] when another application reset
    /// the card first.
    pub fn control(&mut self, code: u32, data: &[u8]) -> Result<Vec<u8>, Error> {
        match self.transport.control(code, data) {
            Err(TransportError::CardReset) => {
                self.reset_seen = true;
                self.transport.reconnect(false)?;
                self.reselect()?;
                Ok(self.transport.control(code, data)?)
            }
            other => Ok(other?),
        }
    }

    /// The reader's PIN entry features (PC/SC part 10), detected on first
    /// use and kept for the connection. A reader without part 10 support
    /// (`control` unsupported or failing, e.g. vpcd) has none; only a
    /// card that went away is an error.
    pub fn pinpad(&mut self) -> Result<&Pinpad, Error> {
        let pinpad = match self.pinpad.take() {
            Some(known) => known,
            None => {
                let detected = self.detect_pinpad()?;
                tracing::debug!(
                    verify = detected.can_verify(),
                    modify = detected.can_modify(),
                    "reader PIN entry features"
                );
                detected
            }
        };
        Ok(self.pinpad.insert(pinpad))
    }

    fn detect_pinpad(&mut self) -> Result<Pinpad, Error> {
        let features = match self.control(part10::GET_FEATURE_REQUEST, &[]) {
            Ok(answer) => Features::parse(&answer),
            Err(e @ (Error::CardRemoved | Error::CardAbsent | Error::NoPcscService)) => {
                return Err(e);
            }
            Err(e) => {
                tracing::debug!(error = %e, "no PC/SC part 10 features");
                return Ok(Pinpad::default());
            }
        };
        let mut properties = PinProperties::default();
        // GET_TLV_PROPERTIES (§2.6.14) is the richer of the two; the
        // older IFD_PIN_PROPERTIES (§2.6.8) fills what it lacks.
        if let Some(code) = features.code(feature::GET_TLV_PROPERTIES) {
            match self.control(code, &[]) {
                Ok(answer) => properties.merge(PinProperties::parse_tlv(&answer)),
                Err(e) => tracing::debug!(error = %e, "GET_TLV_PROPERTIES failed"),
            }
        }
        if let Some(code) = features.code(feature::IFD_PIN_PROPERTIES) {
            match self.control(code, &[]) {
                Ok(answer) => {
                    if let Some(p) = PinProperties::parse_ifd(&answer) {
                        properties.merge(p);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "IFD_PIN_PROPERTIES failed"),
            }
        }
        Ok(Pinpad {
            features,
            properties,
        })
    }

    /// Resets the card on purpose (drops every verified state), then selects
    /// our application again.
    pub fn reset_card(&mut self) -> Result<(), Error> {
        self.transport.reconnect(true)?;
        self.reset_seen = true;
        self.reselect()
    }

    fn reselect(&mut self) -> Result<(), Error> {
        let Some(app) = self
            .selected
            .or((!self.token.applications.is_empty()).then_some(0))
        else {
            return Ok(());
        };
        let aid = self.token.applications[app].aid.clone();
        let resp = transport::exchange(self.transport.as_mut(), &commands::select_aid(&aid))?;
        if resp.sw != StatusWord::Ok {
            return Err(Error::CardError { sw: resp.sw });
        }
        Ok(())
    }

    /// True once after the card was reset (by us or someone else).
    pub fn take_reset(&mut self) -> bool {
        std::mem::take(&mut self.reset_seen)
    }

    /// Ends the connection, leaving the card's verified states as they are.
    pub fn close(self) {
        self.transport.disconnect();
    }
}
