//! PC/SC backend (pcscd through the `pcsc` crate).
//!
//! - [`PcscBackend`] lists readers, opens connections and starts the reader
//!   monitor (`monitor.rs`).
//! - [`PcscTransport`] is one shared connection to one card.
//!
//! Traps of the `pcsc` crate handled here: dropping a `pcsc::Card` resets the
//! card (we always disconnect with `LeaveCard` ourselves), and `transmit`
//! panics on a connection without an active protocol (we only connect in
//! shared mode and check the protocol).

mod diff;
mod error;
mod monitor;

pub use diff::{ReaderSnapshot, Snapshot, diff};

use std::ffi::{CStr, CString};
use std::sync::Mutex;
use std::sync::mpsc::Sender;
use std::time::Duration;

use pcsc::{Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State};

use self::error::{is_service_lost, map_card_error, map_connect_error, map_service_error};
use super::{Backend, Event, ReaderInfo, Transport, TransportError, WatchGuard};

/// Readers and cards through the PC/SC service.
///
/// A context for listing readers is cached and re-established transparently
/// after pcscd restarted. Each connection gets a context of its own: pcsc-lite
/// serializes all calls made through one context, so sharing one would make
/// reader workers wait for each other.
pub struct PcscBackend {
    context: Mutex<Option<Context>>,
}

impl Default for PcscBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl PcscBackend {
    /// Does not contact pcscd yet: the service may be started later.
    pub fn new() -> Self {
        PcscBackend {
            context: Mutex::new(None),
        }
    }

    /// Runs `f` with the cached context, establishing it if needed. When the
    /// context turns out stale (pcscd restarted or stopped), it is dropped and
    /// `f` is tried once more with a fresh one.
    fn with_context<T>(
        &self,
        f: impl Fn(&Context) -> Result<T, pcsc::Error>,
    ) -> Result<T, pcsc::Error> {
        let mut fresh = false;
        loop {
            let ctx = {
                let mut slot = self.context.lock().unwrap_or_else(|p| p.into_inner());
                match slot.as_ref() {
                    Some(ctx) => ctx.clone(),
                    None => {
                        let ctx = Context::establish(Scope::User)?;
                        fresh = true;
                        *slot = Some(ctx.clone());
                        ctx
                    }
                }
            };
            match f(&ctx) {
                Err(e) if is_service_lost(e) => {
                    tracing::debug!(error = %e, "PC/SC context lost, dropping it");
                    *self.context.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    if fresh {
                        return Err(e);
                    }
                    fresh = true;
                }
                other => return other,
            }
        }
    }
}

/// The reader's current state as a [`ReaderInfo`], or `None` when pcscd no
/// longer knows the reader.
fn reader_info(state: &ReaderState) -> Option<ReaderInfo> {
    let snap = monitor::reader_snapshot(state.event_state(), state.event_count(), state.atr())?;
    Some(ReaderInfo {
        name: state.name().to_string_lossy().into_owned(),
        atr: snap.card,
    })
}

impl Backend for PcscBackend {
    fn list_readers(&self) -> Result<Vec<ReaderInfo>, TransportError> {
        self.with_context(|ctx| {
            // A reader can vanish between listing and asking its state: list
            // again a few times rather than fail.
            let mut attempts = 0;
            loop {
                attempts += 1;
                let names = ctx.list_readers_owned()?;
                if names.is_empty() {
                    return Ok(Vec::new());
                }
                let mut states: Vec<ReaderState> = names
                    .into_iter()
                    .map(|n| ReaderState::new(n, State::UNAWARE))
                    .collect();
                match ctx.get_status_change(Duration::ZERO, &mut states) {
                    Ok(()) | Err(pcsc::Error::Timeout) => {
                        return Ok(states.iter().filter_map(reader_info).collect());
                    }
                    Err(pcsc::Error::UnknownReader) if attempts < 3 => continue,
                    Err(e) => return Err(e),
                }
            }
        })
        .map_err(map_service_error)
    }

    fn connect(&self, reader: &str) -> Result<Box<dyn Transport>, TransportError> {
        Ok(Box::new(PcscTransport::connect(reader)?))
    }

    fn watch(&self, events: Sender<Event>) -> Box<dyn WatchGuard> {
        Box::new(monitor::Monitor::start(events))
    }
}

/// One shared connection to the card in one reader.
///
/// Ending it (by [`Transport::disconnect`] or by dropping it) leaves the card
/// as it is, so verified PINs survive; the card is only ever reset through
/// `reconnect(true)`.
pub struct PcscTransport {
    /// Always `Some` until the connection is ended.
    card: Option<pcsc::Card>,
    reader: String,
    atr: Vec<u8>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for PcscTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscTransport")
            .field("reader", &self.reader)
            .field("atr", &self.atr)
            .finish_non_exhaustive()
    }
}

impl PcscTransport {
    /// Connects to the card in `reader` in shared mode, T=0 or T=1, through
    /// a context of its own.
    pub fn connect(reader: &str) -> Result<Self, TransportError> {
        let name =
            CString::new(reader).map_err(|_| TransportError::ReaderNotFound(reader.to_owned()))?;
        let ctx = Context::establish(Scope::User).map_err(map_service_error)?;
        let card = ctx
            .connect(&name, ShareMode::Shared, Protocols::ANY)
            .map_err(|e| map_connect_error(e, reader))?;
        let mut t = PcscTransport {
            card: Some(card),
            reader: reader.to_owned(),
            atr: Vec::new(),
            buf: vec![0; pcsc::MAX_BUFFER_SIZE_EXTENDED],
        };
        t.refresh_status()?;
        tracing::debug!(reader, atr = %hex(&t.atr), "connected");
        Ok(t)
    }

    /// The reader this connection goes to.
    pub fn reader(&self) -> &str {
        &self.reader
    }

    fn card(&self) -> Result<&pcsc::Card, TransportError> {
        // Only `None` after disconnect/drop, which consume `self`.
        self.card
            .as_ref()
            .ok_or_else(|| TransportError::Other("connection already ended".into()))
    }

    /// Reads the ATR and checks that a protocol is active (`pcsc::Card::
    /// transmit` panics otherwise).
    fn refresh_status(&mut self) -> Result<(), TransportError> {
        let status = self.card()?.status2_owned().map_err(map_card_error)?;
        if status.protocol2().is_none() {
            return Err(TransportError::Other(
                "no active protocol on the connection".into(),
            ));
        }
        self.atr = status.atr().to_vec();
        Ok(())
    }

    /// Ends the connection leaving the card as it is.
    fn end(&mut self) {
        let Some(card) = self.card.take() else { return };
        match card.disconnect(Disposition::LeaveCard) {
            Ok(()) => tracing::debug!(reader = %self.reader, "disconnected"),
            Err((card, e)) => {
                tracing::debug!(reader = %self.reader, error = %e, "disconnect failed");
                if is_service_lost(e) {
                    // The handle is dead anyway: dropping it cannot reset
                    // the card, and releases the context.
                    drop(card);
                } else {
                    // Dropping a `pcsc::Card` disconnects with ResetCard,
                    // which would log the user out behind our back. Leak the
                    // handle instead: pcscd frees it when this process ends.
                    std::mem::forget(card);
                }
            }
        }
    }
}

impl Transport for PcscTransport {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let card = self.card.as_ref().ok_or(TransportError::CardRemoved)?;
        match card.transmit(apdu, &mut self.buf) {
            Ok(resp) => Ok(resp.to_vec()),
            Err(e) => {
                // Never log the APDU: it may carry a PIN.
                tracing::debug!(reader = %self.reader, error = %e, "transmit failed");
                Err(map_card_error(e))
            }
        }
    }

    fn control(&mut self, code: u32, data: &[u8]) -> Result<Vec<u8>, TransportError> {
        let card = self.card.as_ref().ok_or(TransportError::CardRemoved)?;
        match card.control(code.into(), data, &mut self.buf) {
            Ok(resp) => Ok(resp.to_vec()),
            Err(e) => {
                tracing::debug!(reader = %self.reader, code, error = %e, "control failed");
                Err(map_card_error(e))
            }
        }
    }

    fn reconnect(&mut self, reset: bool) -> Result<(), TransportError> {
        let disposition = if reset {
            Disposition::ResetCard
        } else {
            Disposition::LeaveCard
        };
        let card = self.card.as_mut().ok_or(TransportError::CardRemoved)?;
        card.reconnect(ShareMode::Shared, Protocols::ANY, disposition)
            .map_err(|e| {
                tracing::debug!(reader = %self.reader, reset, error = %e, "reconnect failed");
                map_card_error(e)
            })?;
        self.refresh_status()?;
        tracing::debug!(reader = %self.reader, reset, atr = %hex(&self.atr), "reconnected");
        Ok(())
    }

    fn atr(&self) -> &[u8] {
        &self.atr
    }

    fn disconnect(mut self: Box<Self>) {
        self.end();
    }
}

impl Drop for PcscTransport {
    fn drop(&mut self) {
        self.end();
    }
}

/// Upper-case hex for logs (ATRs and reader states only, never APDUs).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The name of the PnP pseudo-reader.
pub(crate) fn pnp() -> &'static CStr {
    pcsc::PNP_NOTIFICATION()
}
