//! A connection to a recognised card application.

use super::{Token, hex, openpgp, piv};
use crate::apdu::{Command, Response, StatusWord, commands};
use crate::error::Error;
use crate::transport::{self, Transport, TransportError};

/// Owns the transport to one card and the token found on it. Re-selects the
/// application transparently after another application reset the card.
pub struct CardSession {
    transport: Box<dyn Transport>,
    pub token: Token,
    atr: Vec<u8>,
    /// Set when the card was reset under us (every verified state is gone);
    /// cleared by [`CardSession::take_reset`].
    reset_seen: bool,
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
        })
    }

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
