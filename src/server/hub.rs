//! What every connection shares: the reader workers (which hold the one
//! list of readers, `service::registry`), the logins, and the channel that
//! pushes notifications. The hub's event thread applies the monitor's
//! events to the service and sends their notifications.

pub(crate) use super::logins::ConnId;
use super::logins::{Logins, logout_all, mask_status};
use crate::card::Token;
use crate::error::Error;
use crate::pin::PinStatus;
use crate::pinentry::PinDialog;
use crate::protocol::notification;
use crate::security::lockout::Lockout;
use crate::security::origin::OriginGate;
use crate::service::Service;
pub(crate) use crate::settings::{ConsentMode, Limits};
use crate::transport::{Backend, Event, WatchGuard};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tokio::sync::broadcast;

/// How many notifications a slow client may fall behind before it misses some.
const NOTIFICATION_BACKLOG: usize = 256;

/// A notification as each connection receives it: `text` for everybody,
/// except the connection that owns the login, which gets `owner_text`
/// (other connections never see `validated: true` of a login not theirs).
pub(crate) struct Note {
    /// The notification as every connection but the owner receives it.
    pub text: String,
    /// The connection that owns the login, and its own text of the
    /// notification.
    pub owner: Option<(ConnId, String)>,
}

impl Note {
    /// The text `conn` receives.
    pub(crate) fn for_conn(&self, conn: ConnId) -> &str {
        match &self.owner {
            Some((owner, text)) if *owner == conn => text,
            _ => &self.text,
        }
    }
}

/// What every connection shares (see the module docs): one per daemon.
pub(crate) struct Hub {
    /// The reader workers and the reader list: all card work is queued
    /// here, and what readers and cards there are is read here.
    pub service: Service,
    notify: broadcast::Sender<Arc<Note>>,
    /// Who owns the login on each card.
    pub logins: Logins,
    /// Wrong PIN values per site ([`Lockout::begin`] before a credential
    /// reaches a card).
    pub lockout: Lockout,
    /// Limits that protect the daemon and the cards from pages.
    pub limits: Limits,
    next_conn: AtomicU64,
    connections: AtomicUsize,
    /// How long a request waits for its card work before it is answered
    /// `TIMEOUT` (the work still completes).
    pub op_timeout: Duration,
    /// Who may connect.
    pub gate: OriginGate,
    /// The port the daemon listens on (for the Host check).
    pub port: u16,
    /// The daemon's own PIN dialog, and the lock that shows one at a time.
    pub dialog: PinDialog,
    /// Held while a dialog is shown, so there is one at a time.
    pub dialog_lock: tokio::sync::Mutex<()>,
    watch: Mutex<Option<Box<dyn WatchGuard>>>,
}

/// What a hub is made of, named (the composition root builds it).
pub(crate) struct HubParts {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) service: Service,
    pub(crate) op_timeout: Duration,
    pub(crate) gate: OriginGate,
    /// The port the daemon listens on (for the Host check).
    pub(crate) port: u16,
    pub(crate) limits: Limits,
    pub(crate) dialog: PinDialog,
}

impl Hub {
    /// Starts watching the backend's readers; events are applied by a
    /// thread of their own, which never waits for a card. Fails when that
    /// thread cannot be started.
    pub(crate) fn start(parts: HubParts) -> std::io::Result<Arc<Hub>> {
        let HubParts {
            backend,
            service,
            op_timeout,
            gate,
            port,
            limits,
            dialog,
        } = parts;
        // The readers as they are now; the watch's first events, which
        // describe them again, then tell nothing new.
        service.load_readers();
        let (notify, _) = broadcast::channel(NOTIFICATION_BACKLOG);
        let hub = Arc::new(Hub {
            service,
            notify,
            logins: Logins::default(),
            lockout: Lockout::new(limits.lockout, limits.lockout_file.clone()),
            limits,
            next_conn: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            op_timeout,
            gate,
            port,
            dialog,
            dialog_lock: tokio::sync::Mutex::new(()),
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
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start the reader event thread: {e}"),
                )
            })?;
        *hub.watch.lock().unwrap_or_else(|e| e.into_inner()) = Some(backend.watch(tx));
        Ok(hub)
    }

    /// Stops watching readers.
    pub(crate) fn stop_watching(&self) {
        self.watch.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// A receiver of every notification from now on (one per connection).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Note>> {
        self.notify.subscribe()
    }

    /// Pushes a notification to every connected client.
    pub(crate) fn broadcast(&self, method: &str, params: Value) {
        self.notifier().send(method, params);
    }

    /// Pushes a PIN status: the owner of the login sees it as it is, the
    /// others with `validated` / `soValidated` false.
    pub(crate) fn broadcast_pin(
        &self,
        reader: &str,
        pin: &str,
        status: &PinStatus,
        owner: Option<ConnId>,
    ) {
        let mut params = json!({ "reader": reader, "pin": pin, "status": status });
        let owner_text = notification("pinStateChanged", params.clone()).to_string();
        mask_status(&mut params["status"]);
        let text = notification("pinStateChanged", params).to_string();
        let _ = self.notify.send(Arc::new(Note {
            text,
            owner: owner.map(|o| (o, owner_text)),
        }));
    }

    // ---- connections and their logins -----------------------------------

    /// Registers a new connection; `None` when the connection cap is reached.
    pub(crate) fn open_connection(&self) -> Option<ConnId> {
        let n = self.connections.fetch_add(1, Ordering::SeqCst);
        if n >= self.limits.max_connections {
            self.connections.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(self.next_conn.fetch_add(1, Ordering::SeqCst))
    }

    /// How many connections are open.
    pub(crate) fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Ends a connection: its logins end on the cards.
    pub(crate) fn close_connection(&self, conn: ConnId) {
        self.end_logins_of(conn);
        self.connections.fetch_sub(1, Ordering::SeqCst);
    }

    /// Logs out, on every card, the logins `conn` made (connection closed,
    /// idle too long). Queued behind the readers' pending work.
    pub(crate) fn end_logins_of(&self, conn: ConnId) {
        for reader in self.logins.release_all_of(conn) {
            tracing::debug!(
                conn,
                reader,
                "ending the login of a closed or idle connection"
            );
            // Fire and forget: the worker runs it in order; nobody waits.
            drop(self.service.queue(&reader, logout_all));
        }
    }

    /// The `/health` answer: status, version, PC/SC state and reader names.
    pub(crate) fn health(&self) -> Value {
        let list = self.service.reader_list();
        json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "pcsc": if list.pcsc_up { "up" } else { "down" },
            "readers": list.readers.iter().map(|r| &r.name).collect::<Vec<_>>(),
        })
    }

    /// Applies a reader event. Never waits for a card: what needs one (a
    /// new card's token) runs on that reader's worker, and a reader's card
    /// notifications go out from its worker too, in the order of its
    /// events; a worker busy with a long operation delays only its own
    /// reader's notifications.
    fn apply(&self, event: Event) {
        tracing::debug!(?event, "reader event");
        if let Event::ReaderRemoved { reader } = &event {
            // After whatever is still queued for it, before it retires (a
            // removed reader is always news).
            let notify = self.notifier();
            let params = json!({ "reader": reader });
            self.service
                .after_queued(reader, move || notify.send("readerRemoved", params));
        }
        // The reader list and the workers.
        if !self.service.handle_event(&event) {
            return;
        }
        match event {
            Event::ServiceUp => self.broadcast("serviceChanged", json!({ "pcsc": "up" })),
            Event::ServiceDown => self.broadcast("serviceChanged", json!({ "pcsc": "down" })),
            Event::ReaderAdded { reader } => {
                self.broadcast("readerAdded", json!({ "reader": reader }));
            }
            Event::ReaderRemoved { .. } => {}
            Event::CardInserted { reader, atr } => {
                let mut params = json!({ "reader": reader, "atr": crate::card::hex(&atr) });
                let notify = self.notifier();
                self.service
                    .queue_then(&reader, describe_token, move |token| {
                        match token {
                            Ok(token) => params["token"] = token,
                            Err(e) => params["error"] = e.to_json(),
                        }
                        notify.send("cardInserted", params);
                    });
            }
            Event::CardRemoved { reader } => {
                let notify = self.notifier();
                let params = json!({ "reader": reader });
                self.service
                    .after_queued(&reader, move || notify.send("cardRemoved", params));
            }
        }
    }

    /// Sends notifications without holding the hub (a worker's job must not
    /// keep it alive).
    fn notifier(&self) -> Notifier {
        Notifier(self.notify.clone())
    }
}

/// Pushes notifications to every connected client.
struct Notifier(broadcast::Sender<Arc<Note>>);

impl Notifier {
    fn send(&self, method: &str, params: Value) {
        let text = notification(method, params).to_string();
        let _ = self.0.send(Arc::new(Note { text, owner: None }));
    }
}

/// The card's token with every PIN's status, as the protocol shows it.
pub(crate) fn describe_token(e: &mut crate::pin::Engine) -> Result<Value, Error> {
    let pins = e.statuses()?;
    // The reader's keypad (PC/SC part 10 VERIFY_PIN_DIRECT), asked once
    // per connection: `login(null)` / `change(null, null)` use it.
    let pinpad = e.has_pinpad();
    Ok(token_json(e.token(), &pins, pinpad))
}

fn token_json(token: &Token, pins: &[PinStatus], protected_auth_path: bool) -> Value {
    json!({
        "label": token.label,
        "profile": token.profile,
        "serial": token.serial(),
        "applications": token.applications.iter().enumerate()
            .filter(|(i, a)| !token.applications[..*i].iter().any(|b| b.id == a.id))
            .map(|(_, a)| json!({
                "id": a.id,
                "label": a.label,
                "aid": crate::card::hex(&a.aid),
            }))
            .collect::<Vec<_>>(),
        "protectedAuthPath": protected_auth_path,
        "pins": pins,
    })
}
