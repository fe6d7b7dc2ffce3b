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
    /// The PC/SC service (pcscd) cannot be reached.
    #[error("the PC/SC service is not running")]
    NoService,
    /// No reader by this name.
    #[error("reader {0:?} not found")]
    ReaderNotFound(String),
    /// The reader holds no card.
    #[error("no card in the reader")]
    NoCard,
    /// The card was removed, or the connection to it lost.
    #[error("the card was removed")]
    CardRemoved,
    /// Another application reset the card; the command was not sent.
    /// Reconnect and select the application again.
    #[error("the card was reset by another application")]
    CardReset,
    /// Another application holds the card exclusively.
    #[error("the card is used exclusively by another application")]
    Busy,
    /// The reader does not offer what was asked (e.g. a part 10 control
    /// code).
    #[error("the reader does not support this feature")]
    Unsupported,
    /// A response or command that cannot be read or encoded.
    #[error("the card's response was malformed: {0}")]
    Malformed(String),
    /// Any other failure of the reader or PC/SC.
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
    /// The reader's name, as the backend lists and connects it.
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
    /// A reader was plugged in (or found at start).
    ReaderAdded {
        /// The reader's name.
        reader: String,
    },
    /// A reader was unplugged.
    ReaderRemoved {
        /// The reader's name.
        reader: String,
    },
    /// A card was inserted into a reader.
    CardInserted {
        /// The reader's name.
        reader: String,
        /// The card's answer to reset.
        atr: Vec<u8>,
    },
    /// A card was taken out of a reader.
    CardRemoved {
        /// The reader's name.
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
