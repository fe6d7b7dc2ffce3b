//! Reader workers: one thread per reader owns the connection to its card
//! and runs operations one at a time, in the order they were asked for.
//! Blocking PC/SC calls never run on the caller's thread.

mod registry;
mod worker;

use crate::card::ProfileSet;
use crate::error::Error;
use crate::pin::Engine;
use crate::policy::PolicySet;
use crate::transport::{Backend, Event, ReaderInfo};
#[cfg_attr(feature = "test-support", visibility::make(pub))]
pub(crate) use registry::ReaderList;
use registry::{Change, Registry};
use std::sync::{Arc, Mutex};
pub(crate) use worker::Slot;
use worker::{Batch, Job, Tail, Worker, WorkerParts, lock};

/// The readers of one backend and their workers.
#[cfg_attr(feature = "test-support", visibility::make(pub))]
pub(crate) struct Service {
    /// The readers, each with its worker: the one reader list
    /// ([`registry`]).
    readers: Mutex<Registry>,
    /// What each new worker is made with.
    parts: WorkerParts,
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
            readers: Mutex::new(Registry::default()),
            parts: WorkerParts {
                backend,
                policies,
                profiles: Arc::new(ProfileSet::builtin()),
            },
        }
    }

    /// Recognises cards with `profiles` (e.g. [`ProfileSet::load`] of the
    /// standard directories) instead of the built-in ones.
    #[cfg_attr(feature = "test-support", visibility::make(pub))]
    pub(crate) fn with_profiles(mut self, profiles: Arc<ProfileSet>) -> Self {
        self.parts.profiles = profiles;
        self
    }

    /// The readers the backend lists now (the command line's view; the
    /// daemon reads its registry, [`Service::reader_list`]).
    pub(crate) fn readers(&self) -> Result<Vec<ReaderInfo>, Error> {
        Ok(self.parts.backend.list_readers()?)
    }

    /// Fills the reader registry with the backend's readers as they are
    /// now; the daemon does this before it watches them.
    #[cfg_attr(feature = "test-support", visibility::make(pub))]
    pub(crate) fn load_readers(&self) {
        let list = self.parts.backend.list_readers().ok();
        self.lock().load(list);
    }

    /// The readers as the registry lists them (kept up to date by
    /// [`Service::handle_event`]).
    #[cfg_attr(feature = "test-support", visibility::make(pub))]
    pub(crate) fn reader_list(&self) -> ReaderList {
        self.lock().list()
    }

    /// Checks, in the registry, that work may be queued for `reader`: the
    /// PC/SC service is up, the reader is there and holds a card.
    pub(crate) fn check_reader(&self, reader: &str) -> Result<(), Error> {
        self.lock().check(reader)
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
        let mut readers = self.lock();
        let worker = self.worker(&mut readers, reader);
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
        worker.send(
            &self.parts,
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

    /// Applies a reader event to the registry, then to the workers: a
    /// removed card or reader drops the connection (and every login and
    /// held code with it), a removed reader's worker retires. Never waits
    /// for a worker: one busy with a long operation (a PIN typed on a
    /// pinpad) must not hold up the events of the other readers. `false`
    /// when the event told nothing new (watchers start by describing what
    /// is there already); nothing changed then.
    #[cfg_attr(feature = "test-support", visibility::make(pub))]
    pub(crate) fn handle_event(&self, event: &Event) -> bool {
        let mut readers = self.lock();
        match readers.apply(event) {
            Change::None => return false,
            Change::Listed => {}
            Change::Reconnect(reader) => {
                if let Some(worker) = readers.get_mut(&reader).and_then(|r| r.worker.as_mut()) {
                    worker.send(&self.parts, &reader, Box::new(Slot::drop_connection));
                }
            }
            Change::Retire(gone) => {
                drop(readers);
                for (worker, why) in gone {
                    worker.retire(why);
                }
            }
        }
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        lock(&self.readers)
    }

    fn has_worker(&self, reader: &str) -> bool {
        self.lock()
            .get_mut(reader)
            .is_some_and(|r| r.worker.is_some())
    }

    fn submit(&self, reader: &str, job: Job) {
        let mut readers = self.lock();
        self.worker(&mut readers, reader)
            .send(&self.parts, reader, job);
    }

    /// The worker of `reader`, started if it has none.
    fn worker<'a>(&self, readers: &'a mut Registry, reader: &str) -> &'a mut Worker {
        readers
            .entry(reader)
            .worker
            .get_or_insert_with(|| Worker::spawn(&self.parts, reader))
    }
}

impl Drop for Service {
    /// Ends every connection, leaving the cards' verified states alone.
    fn drop(&mut self) {
        let workers = self.lock().take_workers();
        workers.into_iter().for_each(Worker::finish);
    }
}
