//! Reader workers: one thread per reader owns the connection to its card
//! and runs operations one at a time, in the order they were asked for.
//! Blocking PC/SC calls never run on the caller's thread.

use crate::card::{CardSession, ProfileSet};
use crate::error::Error;
use crate::pin::Engine;
use crate::policy::PolicySet;
use crate::transport::{Backend, Event, ReaderInfo};
use std::any::Any;
use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

type Job = Box<dyn FnOnce(&mut Slot) + Send>;

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
    fn run<R>(&mut self, f: impl FnOnce(&mut Engine) -> Result<R, Error>) -> Result<R, Error> {
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

struct Worker {
    jobs: mpsc::Sender<Job>,
    /// Shared with its slot: see `Slot::retired`.
    retired: Arc<Mutex<Option<Error>>>,
    thread: Option<JoinHandle<()>>,
    /// The last job queued, when it is a shared one that has not started:
    /// a request for the same thing queued right behind it joins it.
    tail: Option<Tail>,
}

/// A shared job waiting in a worker's queue.
struct Tail {
    key: String,
    /// A `Batch<R>` for the job's result type.
    batch: Arc<dyn Any + Send + Sync>,
}

/// The callers of one shared job: `Some` until the job starts on the card;
/// whoever comes after that needs a fresh answer and queues a new job.
type Batch<R> = Mutex<Option<Vec<Waiter<R>>>>;
type Waiter<R> = tokio::sync::oneshot::Sender<Result<R, Error>>;

/// The readers of one backend and their workers.
#[cfg_attr(feature = "test-support", visibility::make(pub))]
pub(crate) struct Service {
    backend: Arc<dyn Backend>,
    workers: Mutex<HashMap<String, Worker>>,
    policies: Arc<PolicySet>,
    profiles: Arc<ProfileSet>,
}

/// Errors after which the connection to the card is not usable any more.
fn connection_lost(e: &Error) -> bool {
    matches!(
        e,
        Error::CardRemoved | Error::CardAbsent | Error::ReaderError(_) | Error::NoPcscService
    )
}

impl Service {
    /// A service enforcing the built-in policies only (independent of the
    /// machine's policy directories: what tests use).
    #[cfg_attr(feature = "test-support", visibility::make(pub))]
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Self {
        Service::with_policies(backend, Arc::new(PolicySet::builtin()))
    }

    /// A service enforcing `policies` (e.g. [`PolicySet::load_standard`]).
    /// Each card's effective policy is resolved when its session opens.
    #[cfg_attr(feature = "test-support", visibility::make(pub))]
    pub(crate) fn with_policies(backend: Arc<dyn Backend>, policies: Arc<PolicySet>) -> Self {
        Service {
            backend,
            workers: Mutex::new(HashMap::new()),
            policies,
            profiles: Arc::new(ProfileSet::builtin()),
        }
    }

    /// Recognises cards with `profiles` (e.g. [`ProfileSet::load`] of the
    /// standard directories) instead of the built-in ones.
    #[cfg_attr(feature = "test-support", visibility::make(pub))]
    pub(crate) fn with_profiles(mut self, profiles: Arc<ProfileSet>) -> Self {
        self.profiles = profiles;
        self
    }

    /// The readers the backend lists now.
    pub(crate) fn readers(&self) -> Result<Vec<ReaderInfo>, Error> {
        Ok(self.backend.list_readers()?)
    }

    /// Picks a reader: by exact name, else by a unique case-insensitive part
    /// of its name; with no name, the first reader holding a card.
    #[cfg_attr(feature = "test-support", visibility::make(pub))]
    pub(crate) fn resolve_reader(&self, wanted: Option<&str>) -> Result<String, Error> {
        let readers = self.readers()?;
        match wanted {
            Some(w) => {
                if let Some(r) = readers.iter().find(|r| r.name == w) {
                    return Ok(r.name.clone());
                }
                let lw = w.to_lowercase();
                let matches: Vec<_> = readers
                    .iter()
                    .filter(|r| r.name.to_lowercase().contains(&lw))
                    .collect();
                match matches.as_slice() {
                    [one] => Ok(one.name.clone()),
                    _ => Err(Error::ReaderNotFound(w.to_string())),
                }
            }
            None => {
                if readers.is_empty() {
                    return Err(Error::ReaderNotFound("no reader is connected".into()));
                }
                readers
                    .iter()
                    .find(|r| r.atr.is_some())
                    .map(|r| r.name.clone())
                    .ok_or(Error::CardAbsent)
            }
        }
    }

    /// Runs `f` with the engine of the card in `reader`, on that reader's
    /// worker, after every operation queued before it.
    #[cfg_attr(feature = "test-support", visibility::make(pub))]
    pub(crate) fn with_engine<R, F>(&self, reader: &str, f: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(&mut Engine) -> Result<R, Error> + Send + 'static,
    {
        self.queue(reader, f)
            .blocking_recv()
            .unwrap_or_else(|_| Err(Error::ReaderError("the reader worker stopped".into())))
    }

    /// Queues `f` on the reader's worker now (so operations keep the order in
    /// which they were queued) and returns where its result will arrive.
    /// Dropping the receiver does not cancel the operation: it always runs
    /// to the end on the card.
    #[cfg_attr(feature = "test-support", visibility::make(pub))]
    pub(crate) fn queue<R, F>(
        &self,
        reader: &str,
        f: F,
    ) -> tokio::sync::oneshot::Receiver<Result<R, Error>>
    where
        R: Send + 'static,
        F: FnOnce(&mut Engine) -> Result<R, Error> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(
            reader,
            Box::new(move |slot: &mut Slot| {
                let _ = tx.send(slot.run(f));
            }),
        );
        rx
    }

    /// Like [`Service::queue`], for a read that changes nothing on the card
    /// (a PIN's status): when the job queued last on this reader is a
    /// `key` job that has not started, this call waits for that job's
    /// result instead of queueing another one. Its card read starts after
    /// every caller arrived, so each gets an answer as fresh as its own
    /// would be, and arrival order holds (nothing was queued in between).
    /// A thousand pages asking at once cost one APDU, not a thousand.
    #[cfg_attr(feature = "test-support", visibility::make(pub))]
    pub(crate) fn queue_shared<R, F>(
        &self,
        reader: &str,
        key: &str,
        f: F,
    ) -> tokio::sync::oneshot::Receiver<Result<R, Error>>
    where
        R: Clone + Send + 'static,
        F: FnOnce(&mut Engine) -> Result<R, Error> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut workers = self.lock();
        let worker = self.worker(&mut workers, reader);
        if let Some(tail) = &worker.tail
            && tail.key == key
            && let Some(batch) = tail.batch.downcast_ref::<Batch<R>>()
            && let Some(waiters) = lock(batch).as_mut()
        {
            waiters.push(tx);
            return rx;
        }
        let batch: Arc<Batch<R>> = Arc::new(Mutex::new(Some(vec![tx])));
        let job_batch = batch.clone();
        self.send(
            worker,
            reader,
            Box::new(move |slot: &mut Slot| {
                // From here on, newcomers queue a job of their own.
                let waiters = lock(&job_batch).take().unwrap_or_default();
                let result = slot.run(f);
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }),
        );
        worker.tail = Some(Tail {
            key: key.to_string(),
            batch,
        });
        rx
    }

    /// Runs `f` with the engine of the card in `reader`, then `then` with
    /// its result, both on that reader's worker after everything queued
    /// before it. Nobody waits: the caller goes on at once.
    pub(crate) fn queue_then<R, F, T>(&self, reader: &str, f: F, then: T)
    where
        R: Send + 'static,
        F: FnOnce(&mut Engine) -> Result<R, Error> + Send + 'static,
        T: FnOnce(Result<R, Error>) + Send + 'static,
    {
        self.submit(reader, Box::new(move |slot: &mut Slot| then(slot.run(f))));
    }

    /// Runs `f` on the reader's worker once everything queued before it is
    /// done, without touching the card; at once when the reader has no
    /// worker (nothing is queued for it).
    pub(crate) fn after_queued(&self, reader: &str, f: impl FnOnce() + Send + 'static) {
        if self.has_worker(reader) {
            self.submit(reader, Box::new(move |_: &mut Slot| f()));
        } else {
            f();
        }
    }

    /// Updates workers after a reader event: a removed card or reader drops
    /// the connection (and every login and held code with it). Never waits
    /// for a worker: one busy with a long operation (a PIN typed on a
    /// pinpad) must not hold up the events of the other readers.
    #[cfg_attr(feature = "test-support", visibility::make(pub))]
    pub(crate) fn handle_event(&self, event: &Event) {
        match event {
            Event::CardRemoved { reader } | Event::CardInserted { reader, .. } => {
                if self.has_worker(reader) {
                    self.submit(reader, Box::new(Slot::drop_connection));
                }
            }
            Event::ReaderRemoved { reader } => {
                self.retire_worker(reader, Error::ReaderNotFound(reader.clone()))
            }
            Event::ServiceDown => {
                let names: Vec<String> = self.lock().keys().cloned().collect();
                for name in names {
                    self.retire_worker(&name, Error::NoPcscService);
                }
            }
            Event::ReaderAdded { .. } | Event::ServiceUp => {}
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Worker>> {
        lock(&self.workers)
    }

    fn has_worker(&self, reader: &str) -> bool {
        self.lock().contains_key(reader)
    }

    fn submit(&self, reader: &str, job: Job) {
        let mut workers = self.lock();
        let worker = self.worker(&mut workers, reader);
        self.send(worker, reader, job);
    }

    fn worker<'a>(&self, workers: &'a mut HashMap<String, Worker>, reader: &str) -> &'a mut Worker {
        workers.entry(reader.to_string()).or_insert_with(|| {
            spawn_worker(
                self.backend.clone(),
                self.policies.clone(),
                self.profiles.clone(),
                reader,
            )
        })
    }

    /// Queues `job` last on `worker` (with the workers' lock held, so the
    /// queue order is the order of the calls).
    fn send(&self, worker: &mut Worker, reader: &str, job: Job) {
        worker.tail = None;
        if let Err(mpsc::SendError(job)) = worker.jobs.send(job) {
            // The worker died (a panic in a job): start a fresh one.
            let fresh = spawn_worker(
                self.backend.clone(),
                self.policies.clone(),
                self.profiles.clone(),
                reader,
            );
            let _ = fresh.jobs.send(job);
            *worker = fresh;
        }
    }

    /// Lets a worker end without waiting for it: what is still queued
    /// fails at once with `why`; dropping its queue's sender ends the
    /// thread once the queue is empty (the thread is not joined).
    fn retire_worker(&self, reader: &str, why: Error) {
        if let Some(w) = self.lock().remove(reader) {
            *lock(&w.retired) = Some(why);
        }
    }
}

impl Drop for Service {
    /// Ends every connection, leaving the cards' verified states alone.
    fn drop(&mut self) {
        let workers: Vec<Worker> = self.lock().drain().map(|(_, w)| w).collect();
        workers.into_iter().for_each(finish);
    }
}

fn finish(mut w: Worker) {
    drop(w.jobs);
    if let Some(t) = w.thread.take() {
        let _ = t.join();
    }
}

fn spawn_worker(
    backend: Arc<dyn Backend>,
    policies: Arc<PolicySet>,
    profiles: Arc<ProfileSet>,
    reader: &str,
) -> Worker {
    let (jobs, rx) = mpsc::channel::<Job>();
    let retired = Arc::new(Mutex::new(None));
    let mut slot = Slot {
        backend,
        reader: reader.to_string(),
        engine: None,
        policies,
        profiles,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
