//! A reader's worker: one thread owns the connection to the reader's card
//! and runs the jobs queued for it one at a time, in order.

use crate::card::{CardSession, ProfileSet};
use crate::error::Error;
use crate::pin::Engine;
use crate::policy::PolicySet;
use crate::transport::Backend;
use std::any::Any;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

pub(super) type Job = Box<dyn FnOnce(&mut Slot) + Send>;

/// What a worker owns: the reader and, once used, the engine for its card.
pub(crate) struct Slot {
    backend: Arc<dyn Backend>,
    reader: String,
    engine: Option<Engine>,
    /// Resolved against each card when its session opens.
    policies: Arc<PolicySet>,
    /// The card profiles a card is recognised with.
    profiles: Arc<ProfileSet>,
    /// The last card no profile described, by its ATR: it is not asked
    /// again (not even SELECTed) until another card is in the reader.
    unsupported: Option<(Vec<u8>, Error)>,
    /// Set when the reader or the PC/SC service went away: what is still
    /// queued fails with this at once, never on a new connection made
    /// after the service came back (a PIN operation its caller has given
    /// up on must not reach the card later).
    retired: Arc<Mutex<Option<Error>>>,
}

impl Slot {
    /// The engine for the card, connecting and recognising it if needed.
    pub(crate) fn engine(&mut self) -> Result<&mut Engine, Error> {
        let engine = match self.engine.take() {
            Some(engine) => engine,
            None => {
                let transport = self.backend.connect(&self.reader)?;
                if let Some((atr, e)) = &self.unsupported
                    && atr.as_slice() == transport.atr()
                {
                    let e = e.clone();
                    transport.disconnect();
                    return Err(e);
                }
                let atr = transport.atr().to_vec();
                match CardSession::open_with(transport, &self.profiles) {
                    Ok(session) => Engine::with_policies(session, &self.policies),
                    Err(e @ Error::CardNotSupported { .. }) => {
                        self.unsupported = Some((atr, e.clone()));
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        Ok(self.engine.insert(engine))
    }

    /// Runs `f` on the card's engine; a lost connection is dropped, so the
    /// next job connects again.
    pub(super) fn run<R>(
        &mut self,
        f: impl FnOnce(&mut Engine) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let gone = lock(&self.retired).clone();
        if let Some(gone) = gone {
            self.drop_connection();
            return Err(gone);
        }
        let result = self.engine().and_then(f);
        if let Err(e) = &result
            && connection_lost(e)
        {
            self.drop_connection();
        }
        result
    }

    /// Forgets the connection (after the card went away): the next
    /// operation connects again.
    pub(crate) fn drop_connection(&mut self) {
        if let Some(engine) = self.engine.take() {
            engine.close();
        }
    }
}

/// A reader's worker thread and its queue.
pub(super) struct Worker {
    jobs: mpsc::Sender<Job>,
    /// Shared with its slot: see `Slot::retired`.
    retired: Arc<Mutex<Option<Error>>>,
    thread: Option<JoinHandle<()>>,
    /// The last job queued, when it is a shared one that has not started:
    /// a request for the same thing queued right behind it joins it.
    pub(super) tail: Option<Tail>,
}

/// A shared job waiting in a worker's queue.
pub(super) struct Tail {
    pub(super) key: String,
    /// A `Batch<R>` for the job's result type.
    pub(super) batch: Arc<dyn Any + Send + Sync>,
}

/// The callers of one shared job: `Some` until the job starts on the card;
/// whoever comes after that needs a fresh answer and queues a new job.
pub(super) type Batch<R> = Mutex<Option<Vec<Waiter<R>>>>;
pub(super) type Waiter<R> = tokio::sync::oneshot::Sender<Result<R, Error>>;

/// Errors after which the connection to the card is not usable any more.
fn connection_lost(e: &Error) -> bool {
    matches!(
        e,
        Error::CardRemoved | Error::CardAbsent | Error::ReaderError(_) | Error::NoPcscService
    )
}

/// What a new worker is made with (the service's, for each reader).
#[derive(Clone)]
pub(super) struct WorkerParts {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) policies: Arc<PolicySet>,
    pub(super) profiles: Arc<ProfileSet>,
}

impl Worker {
    /// Starts the worker of `reader`.
    pub(super) fn spawn(parts: &WorkerParts, reader: &str) -> Worker {
        let (jobs, rx) = mpsc::channel::<Job>();
        let retired = Arc::new(Mutex::new(None));
        let mut slot = Slot {
            backend: parts.backend.clone(),
            reader: reader.to_string(),
            engine: None,
            policies: parts.policies.clone(),
            profiles: parts.profiles.clone(),
            unsupported: None,
            retired: retired.clone(),
        };
        // Like `std::thread::spawn`, a thread the OS refuses is a panic: the
        // reader has no other way to run its jobs.
        #[allow(clippy::expect_used)]
        let thread = std::thread::Builder::new()
            .name(format!("reader {reader}"))
            .spawn(move || {
                loop {
                    // Wake up when a held PUK / resetting code must be wiped.
                    let deadline = slot.engine.as_ref().and_then(Engine::held_code_deadline);
                    let next = match deadline {
                        Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
                        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    };
                    match next {
                        Ok(job) => job(&mut slot),
                        Err(RecvTimeoutError::Timeout) => {
                            if let Some(e) = slot.engine.as_mut() {
                                e.expire_held_code(Instant::now());
                            }
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                slot.drop_connection();
            })
            .expect("spawning a reader worker thread");
        Worker {
            jobs,
            retired,
            thread: Some(thread),
            tail: None,
        }
    }

    /// Queues `job` last; a worker that died (a panic in a job) is
    /// replaced by a fresh one, which runs it.
    pub(super) fn send(&mut self, parts: &WorkerParts, reader: &str, job: Job) {
        self.tail = None;
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            let fresh = Worker::spawn(parts, reader);
            let _ = fresh.jobs.send(job);
            *self = fresh;
        }
    }

    /// Lets the worker end without waiting for it: what is still queued
    /// fails at once with `why`; dropping its queue's sender ends the
    /// thread once the queue is empty (the thread is not joined).
    pub(super) fn retire(self, why: Error) {
        *lock(&self.retired) = Some(why);
    }

    /// Ends the worker once its queue is empty, and waits for it.
    pub(super) fn finish(mut self) {
        drop(self.jobs);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
