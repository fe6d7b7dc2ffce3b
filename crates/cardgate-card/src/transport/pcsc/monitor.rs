//! The reader monitor: one dedicated thread blocked in
//! `SCardGetStatusChange` on the PnP pseudo-reader plus every reader.
//!
//! - Start: `ServiceUp`, then `ReaderAdded` / `CardInserted` for what is
//!   there; or `ServiceDown` once when pcscd is not reachable.
//! - Changes are turned into events by [`super::diff`]; the per-reader event
//!   counter (high 16 bits of `dwEventState`) is fed back as the current state
//!   so a quick remove + insert between two waits still shows up.
//! - Service lost: `CardRemoved`/`ReaderRemoved` for everything known, then
//!   `ServiceDown`; retries with backoff (100 ms doubling to 2 s); on success
//!   `ServiceUp` and a full re-enumeration.
//! - Dropping the guard sets a stop flag, wakes the backoff sleep, cancels the
//!   blocking wait with `SCardCancel` and joins the thread.
//!
//! The wait is infinite: an idle monitor costs no CPU.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use pcsc::{Context, ReaderState, Scope, State};

use super::diff::{ReaderSnapshot, Snapshot, all_removed, diff};
use super::error::is_service_lost;
use super::{hex, pnp};
use crate::transport::{Event, WatchGuard};

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The snapshot of one reader from its reported state, or `None` when pcscd
/// does not know the reader (any more).
pub(crate) fn reader_snapshot(
    state: State,
    event_count: u32,
    atr: &[u8],
) -> Option<ReaderSnapshot> {
    if state.intersects(State::UNKNOWN | State::IGNORE) {
        return None;
    }
    // A mute card answered no ATR: nothing can talk to it.
    let present = state.contains(State::PRESENT) && !state.contains(State::MUTE);
    Some(ReaderSnapshot {
        card: present.then(|| atr.to_vec()),
        event_count: Some(event_count),
    })
}

fn snapshot(states: &[ReaderState]) -> Snapshot {
    states
        .iter()
        .filter(|s| s.name() != pnp())
        .filter_map(|s| {
            let snap = reader_snapshot(s.event_state(), s.event_count(), s.atr())?;
            Some((s.name().to_string_lossy().into_owned(), snap))
        })
        .collect()
}

/// A stop flag with an interruptible sleep.
#[derive(Default)]
struct Stop {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Stop {
    fn set(&self) {
        *self.flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    fn is_set(&self) -> bool {
        *self.flag.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleeps for `d` unless stopped first; returns whether stopped.
    fn sleep(&self, d: Duration) -> bool {
        let guard = self.flag.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .cv
            .wait_timeout_while(guard, d, |stopped| !*stopped)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }
}

/// Shared between the guard and the thread.
struct Shared {
    stop: Stop,
    /// The context the thread is currently waiting on, for `cancel()`.
    context: Mutex<Option<Context>>,
}

/// The running monitor; dropping it stops the thread.
pub(crate) struct Monitor {
    shared: Arc<Shared>,
    /// Disconnected when the thread has ended.
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl WatchGuard for Monitor {}

impl Monitor {
    pub(crate) fn start(events: Sender<Event>) -> Monitor {
        let shared = Arc::new(Shared {
            stop: Stop::default(),
            context: Mutex::new(None),
        });
        let (done_tx, done) = mpsc::channel::<()>();
        let thread_shared = Arc::clone(&shared);
        // Fails only when the OS cannot create a thread at all, where
        // `std::thread::spawn` panics as well; `Backend::watch` has no
        // error path to report it on.
        #[allow(clippy::expect_used)]
        let thread = std::thread::Builder::new()
            .name("pcsc-monitor".into())
            .spawn(move || {
                let _done = done_tx; // dropped when the thread ends
                run(&thread_shared, &events);
                tracing::debug!("PC/SC monitor stopped");
            })
            .expect("spawning the PC/SC monitor thread");
        Monitor {
            shared,
            done,
            thread: Some(thread),
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.shared.stop.set();
        // `SCardCancel` only interrupts a wait already in progress; one sent
        // just before the thread enters the wait is lost. So cancel again
        // until the thread is gone (normally the first one does it).
        loop {
            let ctx = self
                .shared
                .context
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(ctx) = ctx {
                let _ = ctx.cancel();
            }
            match self.done.recv_timeout(Duration::from_millis(50)) {
                Err(RecvTimeoutError::Timeout) => continue,
                _ => break,
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why a session on one context ended.
enum End {
    /// Stop requested, or nobody listens any more.
    Stopped,
    /// pcscd went away.
    ServiceLost,
}

fn send(events: &Sender<Event>, ev: Event) -> Result<(), ()> {
    match &ev {
        Event::CardInserted { reader, atr } => {
            tracing::debug!(reader, atr = %hex(atr), "card inserted")
        }
        other => tracing::debug!(event = ?other, "reader event"),
    }
    events.send(ev).map_err(|_| ())
}

fn run(shared: &Shared, events: &Sender<Event>) {
    let mut backoff = BACKOFF_MIN;
    // Whether ServiceDown was already sent for the current outage.
    let mut down_reported = false;
    loop {
        if shared.stop.is_set() {
            return;
        }
        match Context::establish(Scope::User) {
            Ok(ctx) => {
                *shared.context.lock().unwrap_or_else(|p| p.into_inner()) = Some(ctx.clone());
                let end = session(shared, events, &ctx, &mut backoff);
                *shared.context.lock().unwrap_or_else(|p| p.into_inner()) = None;
                match end {
                    End::Stopped => return,
                    End::ServiceLost => {
                        if send(events, Event::ServiceDown).is_err() {
                            return;
                        }
                        down_reported = true;
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, retry_in = ?backoff, "PC/SC service not reachable");
                if !down_reported {
                    if send(events, Event::ServiceDown).is_err() {
                        return;
                    }
                    down_reported = true;
                }
            }
        }
        if shared.stop.sleep(backoff) {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Watches readers through `ctx` until stopped or the service is lost.
/// On service loss, every known reader has been reported removed.
fn session(shared: &Shared, events: &Sender<Event>, ctx: &Context, backoff: &mut Duration) -> End {
    if send(events, Event::ServiceUp).is_err() {
        return End::Stopped;
    }
    let lost = |known: &Snapshot| {
        for ev in all_removed(known) {
            if send(events, ev).is_err() {
                return End::Stopped;
            }
        }
        End::ServiceLost
    };
    let mut known = Snapshot::new();
    let mut states = vec![ReaderState::new(pnp(), State::UNAWARE)];
    loop {
        if shared.stop.is_set() {
            return End::Stopped;
        }
        let names = match ctx.list_readers_owned() {
            Ok(names) => names,
            Err(e) if is_service_lost(e) => {
                tracing::debug!(error = %e, "PC/SC service lost");
                return lost(&known);
            }
            Err(e) => {
                tracing::warn!(error = %e, "listing readers failed");
                if shared.stop.sleep(*backoff) {
                    return End::Stopped;
                }
                *backoff = (*backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        // Follow the reader list, keeping the known state of each reader.
        states.retain(|s| s.name() == pnp() || names.iter().any(|n| n.as_c_str() == s.name()));
        for name in names {
            if !states.iter().any(|s| s.name() == name.as_c_str()) {
                states.push(ReaderState::new(name, State::UNAWARE));
            }
        }
        match ctx.get_status_change(None, &mut states) {
            Ok(()) => {
                *backoff = BACKOFF_MIN;
                let new = snapshot(&states);
                for ev in diff(&known, &new) {
                    if send(events, ev).is_err() {
                        return End::Stopped;
                    }
                }
                known = new;
                for s in &mut states {
                    // Includes the event counter: pcscd then wakes us for
                    // any insertion/removal after this point.
                    s.sync_current_state();
                }
            }
            Err(pcsc::Error::Cancelled | pcsc::Error::Timeout) => {}
            // A reader vanished between listing and waiting: list again.
            Err(pcsc::Error::UnknownReader) => {}
            Err(e) if is_service_lost(e) => {
                tracing::debug!(error = %e, "PC/SC service lost");
                return lost(&known);
            }
            Err(e) => {
                tracing::warn!(error = %e, "waiting for reader changes failed");
                if shared.stop.sleep(*backoff) {
                    return End::Stopped;
                }
                *backoff = (*backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_of_reader_states() {
        assert_eq!(
            reader_snapshot(State::UNKNOWN | State::CHANGED, 0, &[]),
            None
        );
        assert_eq!(reader_snapshot(State::IGNORE, 0, &[]), None);
        assert_eq!(
            reader_snapshot(State::EMPTY, 2, &[]),
            Some(ReaderSnapshot {
                card: None,
                event_count: Some(2)
            })
        );
        assert_eq!(
            reader_snapshot(State::PRESENT | State::INUSE, 3, &[0x3B, 0x80]),
            Some(ReaderSnapshot {
                card: Some(vec![0x3B, 0x80]),
                event_count: Some(3)
            })
        );
        assert_eq!(
            reader_snapshot(State::PRESENT | State::MUTE, 1, &[]),
            Some(ReaderSnapshot {
                card: None,
                event_count: Some(1)
            })
        );
    }

    #[test]
    fn stop_interrupts_sleep() {
        let stop = Arc::new(Stop::default());
        let s2 = Arc::clone(&stop);
        let t = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let stopped = s2.sleep(Duration::from_secs(30));
            (stopped, start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(20));
        stop.set();
        let (stopped, elapsed) = t.join().unwrap();
        assert!(stopped);
        assert!(elapsed < Duration::from_secs(5));
        assert!(stop.sleep(Duration::from_secs(30)));
    }
}
