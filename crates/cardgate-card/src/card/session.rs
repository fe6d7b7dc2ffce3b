//! A connection to a recognised card application.

use super::pinpad::Pinpad;
use super::{Token, hex, openpgp, piv};
use crate::apdu::{Command, Response, StatusWord, commands};
use crate::error::Error;
use crate::transport::part10::{self, Features, PinProperties, feature};
use crate::transport::{self, Transport, TransportError};

/// Owns the transport to one card and the token found on it. Re-selects the
/// application transparently after another application reset the card.
pub struct CardSession {
    transport: Box<dyn Transport>,
    /// The application found on the card and its PIN objects.
    pub token: Token,
    atr: Vec<u8>,
    /// Set when the card was reset under us (every verified state is gone);
    /// cleared by [`CardSession::take_reset`].
    reset_seen: bool,
    /// The reader's PIN entry features, asked once per connection.
    pinpad: Option<Pinpad>,
}

impl CardSession {
    /// Recognises the application on the card: PIV first, then OpenPGP.
    pub fn open(mut transport: Box<dyn Transport>) -> Result<Self, Error> {
        let atr = transport.atr().to_vec();
        let detect = |t: &mut dyn Transport| -> Result<Option<Token>, TransportError> {
            let resp = transport::exchange(t, &commands::select_aid(&commands::PIV_AID))?;
            if resp.sw == StatusWord::Ok {
                return Ok(Some(piv::token(&resp.data)));
            }
            let resp = transport::exchange(t, &commands::select_aid(&commands::OPENPGP_AID))?;
            if resp.sw == StatusWord::Ok {
                return openpgp::token(t).map(Some);
            }
            Ok(None)
        };
        let token = match detect(transport.as_mut()) {
            Ok(Some(token)) => token,
            Ok(None) => return Err(Error::CardNotSupported { atr: hex(&atr) }),
            Err(TransportError::CardReset) => {
                transport.reconnect(false)?;
                detect(transport.as_mut())?
                    .ok_or_else(|| Error::CardNotSupported { atr: hex(&atr) })?
            }
            Err(e) => return Err(e.into()),
        };
        tracing::debug!(profile = token.profile.name(), atr = %hex(&atr), "card recognised");
        Ok(CardSession {
            transport,
            token,
            atr,
            reset_seen: false,
            pinpad: None,
        })
    }

    /// The card's answer to reset, as read at connect.
    pub fn atr(&self) -> &[u8] {
        &self.atr
    }

    /// Sends one command. If another application reset the card, the
    /// command never reached it: reconnect, select our application again
    /// and send it once more.
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
        let resp = transport::exchange(
            self.transport.as_mut(),
            &commands::select_aid(&self.token.aid),
        )?;
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
