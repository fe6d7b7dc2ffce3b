//! The reader registry: the one list of readers the daemon keeps — which
//! readers the backend reported, whether a card is in each and its ATR,
//! whether the PC/SC service is up — together with each reader's worker.
//! The reader event thread changes it ([`super::Service::handle_event`]);
//! everything else reads it: `getReaders`, `/health`, the check before a
//! request is queued, the logout at shutdown. A worker is an entry's, so
//! it cannot outlive its reader: the entry that loses its reader retires
//! its worker under the same lock.

use super::worker::Worker;
use crate::error::Error;
use crate::transport::{Event, ReaderInfo};
use std::collections::BTreeMap;

/// The readers and their workers (behind the service's lock).
#[derive(Default)]
pub(super) struct Registry {
    /// Whether the PC/SC service is running, as last reported.
    pcsc_up: bool,
    /// Reader name → its entry.
    readers: BTreeMap<String, Reader>,
}

/// One reader's entry.
#[derive(Default)]
pub(super) struct Reader {
    /// Reported by the backend (at start or by an event). An entry not
    /// listed exists only for its worker: a reader named directly (the
    /// command line, a test) on a service that watches nothing, or named
    /// by a request as its reader went away.
    listed: bool,
    /// The ATR of the card in the reader; `None` when it is empty.
    atr: Option<Vec<u8>>,
    /// Its worker, from the first job queued for it until the reader goes
    /// away.
    pub(super) worker: Option<Worker>,
}

/// The readers as the registry lists them.
#[cfg_attr(feature = "test-support", visibility::make(pub))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReaderList {
    /// Whether the PC/SC service is running.
    pub pcsc_up: bool,
    /// The readers by name, each with the ATR of its card if one is in it.
    pub readers: Vec<ReaderInfo>,
}

/// What an event asks of the workers, once the list is up to date.
pub(super) enum Change {
    /// Nothing: the event told nothing new.
    None,
    /// The list changed; the workers have nothing to do.
    Listed,
    /// The reader's card changed: its worker (if any) forgets the
    /// connection.
    Reconnect(String),
    /// The readers went away: their workers are retired with the error.
    Retire(Vec<(Worker, Error)>),
}

impl Registry {
    /// Takes the backend's list as it is now (`None`: no PC/SC service).
    /// Watching starts after this: its first events, describing what is
    /// already there, then tell nothing new.
    pub(super) fn load(&mut self, list: Option<Vec<ReaderInfo>>) {
        let Some(list) = list else { return };
        self.pcsc_up = true;
        for r in list {
            let entry = self.readers.entry(r.name).or_default();
            entry.listed = true;
            entry.atr = r.atr;
        }
    }

    /// Updates the list after an event, and says what the workers must do.
    pub(super) fn apply(&mut self, event: &Event) -> Change {
        match event {
            Event::ServiceUp => {
                if self.pcsc_up {
                    return Change::None;
                }
                self.pcsc_up = true;
                Change::Listed
            }
            Event::ServiceDown => {
                self.pcsc_up = false;
                let gone = std::mem::take(&mut self.readers);
                Change::Retire(
                    gone.into_values()
                        .filter_map(|r| r.worker)
                        .map(|w| (w, Error::NoPcscService))
                        .collect(),
                )
            }
            Event::ReaderAdded { reader } => {
                let entry = self.readers.entry(reader.clone()).or_default();
                if entry.listed {
                    return Change::None;
                }
                entry.listed = true;
                Change::Listed
            }
            Event::ReaderRemoved { reader } => Change::Retire(
                self.readers
                    .remove(reader)
                    .and_then(|r| r.worker)
                    .map(|w| (w, Error::ReaderNotFound(reader.clone())))
                    .into_iter()
                    .collect(),
            ),
            Event::CardInserted { reader, atr } => {
                let entry = self.readers.entry(reader.clone()).or_default();
                if entry.listed && entry.atr.as_ref() == Some(atr) {
                    return Change::None;
                }
                entry.listed = true;
                entry.atr = Some(atr.clone());
                Change::Reconnect(reader.clone())
            }
            Event::CardRemoved { reader } => {
                if let Some(entry) = self.readers.get_mut(reader) {
                    entry.atr = None;
                }
                Change::Reconnect(reader.clone())
            }
        }
    }

    /// The readers listed, in name order.
    pub(super) fn list(&self) -> ReaderList {
        ReaderList {
            pcsc_up: self.pcsc_up,
            readers: self
                .readers
                .iter()
                .filter(|(_, r)| r.listed)
                .map(|(name, r)| ReaderInfo {
                    name: name.clone(),
                    atr: r.atr.clone(),
                })
                .collect(),
        }
    }

    /// Whether work may be queued for `reader`: the service is up, the
    /// reader listed, a card in it.
    pub(super) fn check(&self, reader: &str) -> Result<(), Error> {
        if !self.pcsc_up {
            return Err(Error::NoPcscService);
        }
        match self.readers.get(reader).filter(|r| r.listed) {
            Some(Reader { atr: Some(_), .. }) => Ok(()),
            Some(_) => Err(Error::CardAbsent),
            None => Err(Error::ReaderNotFound(reader.to_string())),
        }
    }

    /// The entry of `reader`, if it has one.
    pub(super) fn get_mut(&mut self, reader: &str) -> Option<&mut Reader> {
        self.readers.get_mut(reader)
    }

    /// The entry of `reader`, made (not listed) if it has none.
    pub(super) fn entry(&mut self, reader: &str) -> &mut Reader {
        self.readers.entry(reader.to_string()).or_default()
    }

    /// Every worker, taking them out of their entries.
    pub(super) fn take_workers(&mut self) -> Vec<Worker> {
        self.readers
            .values_mut()
            .filter_map(|r| r.worker.take())
            .collect()
    }
}
