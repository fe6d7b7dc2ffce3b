//! Transports: how APDUs reach a card.
//!
//! - [`pcsc`]: real readers through the PC/SC service (pcscd).
//! - [`part10`]: PC/SC part 10 pinpad features and PIN entry structures.
//! - simulated readers holding our virtual card, for fast tests and the demo
//!   mode, are in the `cardgate-vcard` crate (`sim`).
//!
//! A [`Backend`] enumerates readers, watches them, and opens a [`Transport`]
//! to the card in one of them. Transports are blocking and owned by exactly
//! one thread (the daemon's reader workers).

pub mod part10;
pub mod pcsc;

use std::sync::mpsc::Sender;

/// One connection to the card in one reader.
pub trait Transport: Send {
    /// Sends a serialized command APDU; returns response data followed by SW1 SW2.
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError>;

    /// Sends a reader control command (e.g. PC/SC part 10 GET_FEATURE_REQUEST).
    fn control(&mut self, code: u32, data: &[u8]) -> Result<Vec<u8>, TransportError>;

    /// Re-establishes the connection. `reset = true` resets the card on
    /// purpose (every verified state is dropped: used for logout); `false`
    /// keeps it (used after another application reset the card).
    fn reconnect(&mut self, reset: bool) -> Result<(), TransportError>;

    /// The card's answer to reset, as seen when the connection was made.
    fn atr(&self) -> &[u8];

    /// Ends the connection without resetting the card, so verified states
    /// survive for the next connection (PC/SC `SCARD_LEAVE_CARD`).
    fn disconnect(self: Box<Self>) {}
}

/// Failures below the APDU level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("the PC/SC service is not running")]
    NoService,
    #[error("reader {0:?} not found")]
    ReaderNotFound(String),
    #[error("no card in the reader")]
    NoCard,
    #[error("the card was removed")]
    CardRemoved,
    /// Another application reset the card; the command was not sent.
    /// Reconnect and select the application again.
    #[error("the card was reset by another application")]
    CardReset,
    #[error("the card is used exclusively by another application")]
    Busy,
    #[error("the reader does not support this feature")]
    Unsupported,
    #[error("the card's response was malformed: {0}")]
    Malformed(String),
    #[error("reader error: {0}")]
    Other(String),
}

impl From<crate::apdu::TruncatedResponse> for TransportError {
    fn from(e: crate::apdu::TruncatedResponse) -> Self {
        TransportError::Malformed(e.to_string())
    }
}

impl From<crate::apdu::EncodeError> for TransportError {
    fn from(e: crate::apdu::EncodeError) -> Self {
        TransportError::Malformed(e.to_string())
    }
}

/// What a backend reports about one reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderInfo {
    pub name: String,
    /// The ATR when a card is present.
    pub atr: Option<Vec<u8>>,
}

/// Reader and card events, in the order they happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The PC/SC service became reachable (readers follow as `ReaderAdded`).
    ServiceUp,
    /// The PC/SC service is gone; every reader is to be considered removed.
    ServiceDown,
    ReaderAdded {
        reader: String,
    },
    ReaderRemoved {
        reader: String,
    },
    CardInserted {
        reader: String,
        atr: Vec<u8>,
    },
    CardRemoved {
        reader: String,
    },
}

/// A source of readers: PC/SC or the in-process simulation.
pub trait Backend: Send + Sync {
    /// The readers present now (with the ATR of any card in them).
    fn list_readers(&self) -> Result<Vec<ReaderInfo>, TransportError>;

    /// Opens a shared connection to the card in `reader`.
    fn connect(&self, reader: &str) -> Result<Box<dyn Transport>, TransportError>;

    /// Starts watching readers; events go to `events` until the returned
    /// guard is dropped. The first events describe the current state
    /// (`ReaderAdded` / `CardInserted` for what is already there).
    fn watch(&self, events: Sender<Event>) -> Box<dyn WatchGuard>;
}

/// Stops a watcher when dropped.
pub trait WatchGuard: Send {}

/// Sends `cmd` over `t`, following 61xx / 6Cxx transparently.
pub fn exchange(
    t: &mut dyn Transport,
    cmd: &crate::apdu::Command,
) -> Result<crate::apdu::Response, TransportError> {
    crate::apdu::exchange(cmd, |bytes| t.transmit(bytes))
}
