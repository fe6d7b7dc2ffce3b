//! What every connection shares: the reader workers, the readers as the
//! monitor reported them, and the channel that pushes notifications.

use crate::card::Token;
use crate::error::Error;
use crate::pin::PinStatus;
use crate::protocol::notification;
use crate::security::origin::OriginGate;
use crate::service::Service;
use crate::transport::{Backend, Event, WatchGuard};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tokio::sync::broadcast;

/// How many notifications a slow client may fall behind before it misses some.
const NOTIFICATION_BACKLOG: usize = 256;

#[derive(Default)]
struct Readers {
    pcsc_up: bool,
    /// Reader name → ATR of the card in it.
    readers: BTreeMap<String, Option<Vec<u8>>>,
}

pub struct Hub {
    pub service: Service,
    notify: broadcast::Sender<Arc<str>>,
    readers: Mutex<Readers>,
    pub op_timeout: Duration,
    /// Who may connect.
    pub gate: OriginGate,
    /// The port the daemon listens on (for the Host check).
    pub port: u16,
    watch: Mutex<Option<Box<dyn WatchGuard>>>,
}

impl Hub {
    /// Starts watching the backend's readers; events are applied by a
    /// thread of their own (it may wait on a card to describe its token).
    pub fn start(
        backend: Arc<dyn Backend>,
        op_timeout: Duration,
        gate: OriginGate,
        port: u16,
    ) -> Arc<Hub> {
        let mut initial = Readers::default();
        if let Ok(list) = backend.list_readers() {
            initial.pcsc_up = true;
            initial.readers = list.into_iter().map(|r| (r.name, r.atr)).collect();
        }
        let (notify, _) = broadcast::channel(NOTIFICATION_BACKLOG);
        let hub = Arc::new(Hub {
            service: Service::new(backend.clone()),
            notify,
            readers: Mutex::new(initial),
            op_timeout,
            gate,
            port,
            watch: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel();
        let weak = Arc::downgrade(&hub);
        std::thread::Builder::new()
            .name("reader events".into())
            .spawn(move || {
                // Ends when the watch guard is dropped (the sender goes away).
                while let Ok(event) = rx.recv() {
                    let Some(hub) = weak.upgrade() else { break };
                    hub.apply(event);
                }
            })
            .expect("spawning the reader event thread");
        *hub.watch.lock().unwrap_or_else(|e| e.into_inner()) = Some(backend.watch(tx));
        hub
    }

    /// Stops watching readers.
    pub fn stop_watching(&self) {
        self.watch.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.notify.subscribe()
    }

    /// Pushes a notification to every connected client.
    pub fn broadcast(&self, method: &str, params: Value) {
        let _ = self
            .notify
            .send(notification(method, params).to_string().into());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Readers> {
        self.readers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn pcsc_up(&self) -> bool {
        self.lock().pcsc_up
    }

    /// The readers now: name and ATR of the card, if any.
    pub fn readers(&self) -> Vec<(String, Option<Vec<u8>>)> {
        self.lock()
            .readers
            .iter()
            .map(|(n, a)| (n.clone(), a.clone()))
            .collect()
    }

    /// Checks that a reader exists before any work is queued for it.
    pub fn check_reader(&self, reader: &str) -> Result<(), Error> {
        let st = self.lock();
        if !st.pcsc_up {
            return Err(Error::NoPcscService);
        }
        match st.readers.get(reader) {
            Some(Some(_)) => Ok(()),
            Some(None) => Err(Error::CardAbsent),
            None => Err(Error::ReaderNotFound(reader.to_string())),
        }
    }

    pub fn health(&self) -> Value {
        let st = self.lock();
        json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "pcsc": if st.pcsc_up { "up" } else { "down" },
            "readers": st.readers.keys().collect::<Vec<_>>(),
        })
    }

    /// True when the event tells nothing new: watchers start by describing
    /// what is already there, which the initial reader list has.
    fn already_known(&self, event: &Event) -> bool {
        let st = self.lock();
        match event {
            Event::ServiceUp => st.pcsc_up,
            Event::ReaderAdded { reader } => st.readers.contains_key(reader),
            Event::CardInserted { reader, atr } => {
                st.readers.get(reader) == Some(&Some(atr.clone()))
            }
            _ => false,
        }
    }

    fn apply(&self, event: Event) {
        tracing::debug!(?event, "reader event");
        if self.already_known(&event) {
            return;
        }
        self.service.handle_event(&event);
        match event {
            Event::ServiceUp => {
                self.lock().pcsc_up = true;
                self.broadcast("serviceChanged", json!({ "pcsc": "up" }));
            }
            Event::ServiceDown => {
                let mut st = self.lock();
                st.pcsc_up = false;
                st.readers.clear();
                drop(st);
                self.broadcast("serviceChanged", json!({ "pcsc": "down" }));
            }
            Event::ReaderAdded { reader } => {
                self.lock().readers.insert(reader.clone(), None);
                self.broadcast("readerAdded", json!({ "reader": reader }));
            }
            Event::ReaderRemoved { reader } => {
                self.lock().readers.remove(&reader);
                self.broadcast("readerRemoved", json!({ "reader": reader }));
            }
            Event::CardInserted { reader, atr } => {
                self.lock()
                    .readers
                    .insert(reader.clone(), Some(atr.clone()));
                let mut params = json!({ "reader": reader, "atr": crate::card::hex(&atr) });
                match self.describe(&reader) {
                    Ok(token) => params["token"] = token,
                    Err(e) => params["error"] = e.to_json(),
                }
                self.broadcast("cardInserted", params);
            }
            Event::CardRemoved { reader } => {
                if let Some(slot) = self.lock().readers.get_mut(&reader) {
                    *slot = None;
                }
                self.broadcast("cardRemoved", json!({ "reader": reader }));
            }
        }
    }

    /// The token on the card in `reader` with every PIN's status (blocking).
    fn describe(&self, reader: &str) -> Result<Value, Error> {
        self.service.with_engine(reader, describe_token)
    }
}

/// The card's token with every PIN's status, as the protocol shows it.
pub fn describe_token(e: &mut crate::pin::Engine) -> Result<Value, Error> {
    let pins = e.statuses()?;
    Ok(token_json(e.token(), &pins))
}

fn token_json(token: &Token, pins: &[PinStatus]) -> Value {
    json!({
        "label": token.label,
        "profile": token.profile.name(),
        "serial": token.serial,
        "protectedAuthPath": false,
        "pins": pins,
    })
}
