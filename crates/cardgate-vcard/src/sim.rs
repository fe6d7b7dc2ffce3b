//! In-process simulated readers holding virtual cards: no pcscd needed.
//!
//! Used by fast tests and by the demo mode. Behaves like PC/SC where it
//! matters to the layers above: a removed card fails with `CardRemoved`
//! until the next connection, a reset by "another application"
//! ([`SimBackend::reset_card`]) fails the next command with `CardReset`,
//! and verified states survive a disconnect.
//!
//! A reader can be a pinpad reader ([`SimBackend::add_pinpad_reader`]):
//! it then answers PC/SC part 10 `control` requests with a scripted user
//! at the keypad (see [`pinpad`]). Other readers answer `control` with
//! `Unsupported`, like vpcd.

pub mod pinpad;

use crate::VirtualCard;
use crate::transport::{Backend, Event, ReaderInfo, Transport, TransportError, WatchGuard};
use pinpad::{Action, PinpadInput, PinpadState, SimPinpad};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default)]
struct Slot {
    name: String,
    card: Option<Arc<Mutex<VirtualCard>>>,
    /// Bumped on every insertion, so a connection to a removed card stays dead.
    insertion: u64,
    /// Bumped when the card is reset by someone else than the connection.
    resets: u64,
    /// Set for a pinpad reader.
    pinpad: Option<PinpadState>,
}

#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    watchers: Vec<(u64, Sender<Event>)>,
    next_watcher: u64,
}

impl State {
    fn slot_mut(&mut self, reader: &str) -> Result<&mut Slot, TransportError> {
        self.slots
            .iter_mut()
            .find(|s| s.name == reader)
            .ok_or_else(|| TransportError::ReaderNotFound(reader.to_string()))
    }

    fn publish(&mut self, event: Event) {
        self.watchers.retain(|(_, w)| w.send(event.clone()).is_ok());
    }
}

/// A set of simulated readers. Cloning shares the same readers.
#[derive(Clone, Default)]
pub struct SimBackend {
    state: Arc<Mutex<State>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the simulation down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimBackend {
    /// A simulation with no reader and no card.
    pub fn new() -> Self {
        Self::default()
    }

    /// Plugs in a reader, empty and without a pinpad; nothing happens if
    /// a reader of that name is there already.
    pub fn add_reader(&self, name: &str) {
        let mut st = lock(&self.state);
        if st.slots.iter().any(|s| s.name == name) {
            return;
        }
        st.slots.push(Slot {
            name: name.to_string(),
            ..Slot::default()
        });
        st.publish(Event::ReaderAdded {
            reader: name.to_string(),
        });
    }

    /// Adds a pinpad reader: PC/SC part 10 features as `pinpad` says, and
    /// a user who types what [`SimBackend::pinpad_input`] scripted.
    pub fn add_pinpad_reader(&self, name: &str, pinpad: SimPinpad) {
        self.add_reader(name);
        if let Ok(slot) = lock(&self.state).slot_mut(name) {
            slot.pinpad = Some(PinpadState::new(pinpad));
        }
    }

    /// Queues what the user does at the pinpad of `reader`, one input per
    /// PIN the reader asks for (VERIFY: one; change: current, new,
    /// confirmation). With nothing queued, an entry times out.
    pub fn pinpad_input(
        &self,
        reader: &str,
        inputs: impl IntoIterator<Item = PinpadInput>,
    ) -> Result<(), TransportError> {
        let mut st = lock(&self.state);
        let pad = st
            .slot_mut(reader)?
            .pinpad
            .as_mut()
            .ok_or(TransportError::Unsupported)?;
        pad.script.extend(inputs);
        Ok(())
    }

    /// How many scripted inputs the user has not used yet.
    pub fn pinpad_pending(&self, reader: &str) -> usize {
        let mut st = lock(&self.state);
        st.slot_mut(reader)
            .ok()
            .and_then(|s| s.pinpad.as_ref())
            .map_or(0, |p| p.script.len())
    }

    /// Every `control` request the pinpad reader received: (code, bytes).
    pub fn pinpad_requests(&self, reader: &str) -> Vec<(u32, Vec<u8>)> {
        let mut st = lock(&self.state);
        st.slot_mut(reader)
            .ok()
            .and_then(|s| s.pinpad.as_ref())
            .map_or_else(Vec::new, |p| p.requests.clone())
    }

    /// Takes the reader away, with the card in it if there is one.
    pub fn remove_reader(&self, name: &str) {
        self.remove_card(name);
        let mut st = lock(&self.state);
        let before = st.slots.len();
        st.slots.retain(|s| s.name != name);
        if st.slots.len() != before {
            st.publish(Event::ReaderRemoved {
                reader: name.to_string(),
            });
        }
    }

    /// Inserts a card (powering it up: verified states start cleared).
    pub fn insert_card(
        &self,
        reader: &str,
        card: impl Into<SimCard>,
    ) -> Result<(), TransportError> {
        let card = card.into();
        let atr = {
            let mut c = lock(&card.0);
            c.reset();
            c.atr()
        };
        let mut st = lock(&self.state);
        let slot = st.slot_mut(reader)?;
        slot.card = Some(card.0);
        slot.insertion += 1;
        st.publish(Event::CardInserted {
            reader: reader.to_string(),
            atr,
        });
        Ok(())
    }

    /// Removes the card and gives it back (its counters intact) for a later
    /// re-insertion, if there was one.
    pub fn remove_card(&self, reader: &str) -> Option<SimCard> {
        let mut st = lock(&self.state);
        let card = st.slot_mut(reader).ok()?.card.take()?;
        st.publish(Event::CardRemoved {
            reader: reader.to_string(),
        });
        Some(SimCard(card))
    }

    /// Resets the card as another application would: open connections see
    /// `CardReset` on their next command.
    pub fn reset_card(&self, reader: &str) -> Result<(), TransportError> {
        let mut st = lock(&self.state);
        let slot = st.slot_mut(reader)?;
        let card = slot.card.clone().ok_or(TransportError::NoCard)?;
        slot.resets += 1;
        drop(st);
        lock(&card).reset();
        Ok(())
    }

    /// Runs `f` on the card in `reader`, e.g. to inspect its counters in a test.
    pub fn with_card<R>(&self, reader: &str, f: impl FnOnce(&mut VirtualCard) -> R) -> Option<R> {
        let card = lock(&self.state).slot_mut(reader).ok()?.card.clone()?;
        let mut guard = lock(&card);
        Some(f(&mut guard))
    }
}

/// A virtual card that can move between simulated readers.
#[derive(Clone)]
pub struct SimCard(Arc<Mutex<VirtualCard>>);

impl From<VirtualCard> for SimCard {
    fn from(card: VirtualCard) -> Self {
        SimCard(Arc::new(Mutex::new(card)))
    }
}

impl SimCard {
    /// Runs `f` on the card, e.g. to inspect its counters in a test.
    pub fn with<R>(&self, f: impl FnOnce(&mut VirtualCard) -> R) -> R {
        f(&mut lock(&self.0))
    }
}

/// Unregisters its watcher when dropped, closing the event channel.
struct SimWatch {
    state: std::sync::Weak<Mutex<State>>,
    id: u64,
}

impl WatchGuard for SimWatch {}

impl Drop for SimWatch {
    fn drop(&mut self) {
        if let Some(state) = self.state.upgrade() {
            lock(&state).watchers.retain(|(id, _)| *id != self.id);
        }
    }
}

impl Backend for SimBackend {
    fn list_readers(&self) -> Result<Vec<ReaderInfo>, TransportError> {
        let st = lock(&self.state);
        Ok(st
            .slots
            .iter()
            .map(|s| ReaderInfo {
                name: s.name.clone(),
                atr: s.card.as_ref().map(|c| lock(c).atr()),
            })
            .collect())
    }

    fn connect(&self, reader: &str) -> Result<Box<dyn Transport>, TransportError> {
        let mut st = lock(&self.state);
        let slot = st.slot_mut(reader)?;
        let card = slot.card.clone().ok_or(TransportError::NoCard)?;
        let atr = lock(&card).atr();
        Ok(Box::new(SimTransport {
            state: self.state.clone(),
            reader: reader.to_string(),
            insertion: slot.insertion,
            resets: slot.resets,
            card,
            atr,
        }))
    }

    fn watch(&self, events: Sender<Event>) -> Box<dyn WatchGuard> {
        let mut st = lock(&self.state);
        for s in &st.slots {
            let _ = events.send(Event::ReaderAdded {
                reader: s.name.clone(),
            });
            if let Some(card) = &s.card {
                let _ = events.send(Event::CardInserted {
                    reader: s.name.clone(),
                    atr: lock(card).atr(),
                });
            }
        }
        st.next_watcher += 1;
        let id = st.next_watcher;
        st.watchers.push((id, events));
        Box::new(SimWatch {
            state: Arc::downgrade(&self.state),
            id,
        })
    }
}

/// A connection to a simulated card.
pub struct SimTransport {
    state: Arc<Mutex<State>>,
    reader: String,
    insertion: u64,
    resets: u64,
    card: Arc<Mutex<VirtualCard>>,
    atr: Vec<u8>,
}

impl SimTransport {
    /// Fails like PC/SC would when the card is gone or was reset by someone else.
    fn check(&mut self) -> Result<(), TransportError> {
        let mut st = lock(&self.state);
        let slot = st
            .slot_mut(&self.reader)
            .map_err(|_| TransportError::CardRemoved)?;
        if slot.card.is_none() || slot.insertion != self.insertion {
            return Err(TransportError::CardRemoved);
        }
        if slot.resets != self.resets {
            return Err(TransportError::CardReset);
        }
        Ok(())
    }
}

impl Transport for SimTransport {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.check()?;
        Ok(lock(&self.card).process(apdu))
    }

    fn control(&mut self, code: u32, data: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.check()?;
        let action = {
            let mut st = lock(&self.state);
            let slot = st
                .slot_mut(&self.reader)
                .map_err(|_| TransportError::CardRemoved)?;
            match slot.pinpad.as_mut() {
                Some(pad) => pad.handle(code, data),
                None => Action::Unsupported,
            }
        };
        match action {
            Action::Answer(bytes) => Ok(bytes),
            Action::Unsupported => Err(TransportError::Unsupported),
            Action::SendToCard(apdu) => Ok(lock(&self.card).process(&apdu)),
        }
    }

    fn reconnect(&mut self, reset: bool) -> Result<(), TransportError> {
        let mut st = lock(&self.state);
        let slot = st
            .slot_mut(&self.reader)
            .map_err(|_| TransportError::CardRemoved)?;
        if slot.card.is_none() || slot.insertion != self.insertion {
            return Err(TransportError::CardRemoved);
        }
        if reset {
            // Our own reset: other connections see it as a reset by someone else.
            slot.resets += 1;
            lock(&self.card).reset();
        }
        self.resets = slot.resets;
        Ok(())
    }

    fn atr(&self) -> &[u8] {
        &self.atr
    }
}
