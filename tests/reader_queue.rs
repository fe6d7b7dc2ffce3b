//! The reader worker's queue: jobs run one at a time in the order they were
//! queued, and shared reads (a PIN's status) queued back to back run once
//! for all their callers, never across another job.

use cardgate::error::Error;
use cardgate::testing::Service;
use cardgate::vcard::VirtualCard;
use cardgate::vcard::config::CardConfig;
use cardgate::vcard::sim::SimBackend;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tokio::sync::oneshot;

const READER: &str = "Sim Reader 0";

fn service() -> (SimBackend, Service) {
    let sim = SimBackend::new();
    sim.add_reader(READER);
    sim.insert_card(READER, VirtualCard::new(CardConfig::piv()))
        .unwrap();
    let service = Service::new(Arc::new(sim.clone()));
    (sim, service)
}

/// Occupies the reader's worker until the returned sender is used (or
/// dropped), so the jobs queued meanwhile wait behind it.
fn hold_worker(service: &Service) -> mpsc::Sender<()> {
    let (release, held) = mpsc::channel::<()>();
    let (started, is_started) = mpsc::channel();
    drop(service.queue(READER, move |_| {
        started.send(()).unwrap();
        let _ = held.recv();
        Ok(())
    }));
    is_started
        .recv_timeout(Duration::from_secs(5))
        .expect("the worker runs the holding job");
    release
}

fn result<R>(rx: oneshot::Receiver<Result<R, Error>>) -> Result<R, Error> {
    rx.blocking_recv().expect("every caller gets an answer")
}

/// A shared status read that counts how often it really ran on the card.
fn shared_status(
    service: &Service,
    key: &str,
    runs: &Arc<AtomicUsize>,
) -> oneshot::Receiver<Result<Option<u8>, Error>> {
    let runs = runs.clone();
    service.queue_shared(READER, key, move |e| {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok(e.status("pin")?.remaining_tries)
    })
}

#[test]
fn status_reads_queued_back_to_back_share_one_card_read() {
    let (_sim, service) = service();
    let runs = Arc::new(AtomicUsize::new(0));
    let release = hold_worker(&service);
    let waiting: Vec<_> = (0..50)
        .map(|_| shared_status(&service, "status pin", &runs))
        .collect();
    release.send(()).unwrap();
    for rx in waiting {
        assert_eq!(result(rx), Ok(Some(3)));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one read served all 50");
}

#[test]
fn a_job_queued_between_two_reads_keeps_them_apart_and_in_order() {
    let (_sim, service) = service();
    let runs = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    let release = hold_worker(&service);
    let before = shared_status(&service, "status pin", &runs);
    // A wrong PIN between them: the second read must see its effect.
    let log = order.clone();
    let wrong = service.queue(READER, move |e| {
        log.lock().unwrap().push("login");
        e.login("pin", &cardgate::secret::Secret::from("999999"), false)
    });
    let after = shared_status(&service, "status pin", &runs);
    release.send(()).unwrap();
    assert_eq!(result(before), Ok(Some(3)));
    assert!(matches!(
        result(wrong),
        Err(Error::PinIncorrect {
            remaining_tries: Some(2),
            ..
        })
    ));
    assert_eq!(result(after), Ok(Some(2)), "read after the login sees it");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(*order.lock().unwrap(), vec!["login"]);
}

#[test]
fn a_read_already_on_the_card_is_not_joined() {
    let (_sim, service) = service();
    let runs = Arc::new(AtomicUsize::new(0));
    // The first read blocks inside its card work; a caller arriving then
    // must get a read of its own, made after it arrived.
    let (entered, is_entered) = mpsc::channel();
    let (go, wait_go) = mpsc::channel::<()>();
    let counted = runs.clone();
    let first = service.queue_shared(READER, "status pin", move |e| {
        counted.fetch_add(1, Ordering::SeqCst);
        entered.send(()).unwrap();
        let _ = wait_go.recv();
        Ok(e.status("pin")?.remaining_tries)
    });
    is_entered.recv_timeout(Duration::from_secs(5)).unwrap();
    let second = shared_status(&service, "status pin", &runs);
    go.send(()).unwrap();
    assert_eq!(result(first), Ok(Some(3)));
    assert_eq!(result(second), Ok(Some(3)));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn different_reads_are_not_merged() {
    let (_sim, service) = service();
    let runs = Arc::new(AtomicUsize::new(0));
    let release = hold_worker(&service);
    let a = shared_status(&service, "status pin", &runs);
    let b = shared_status(&service, "status puk", &runs);
    let c = shared_status(&service, "status pin", &runs);
    release.send(()).unwrap();
    for rx in [a, b, c] {
        assert_eq!(result(rx), Ok(Some(3)));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3, "pin, puk, pin: three reads");
}

#[test]
fn every_caller_of_a_shared_read_gets_its_error() {
    let (sim, service) = service();
    let runs = Arc::new(AtomicUsize::new(0));
    let release = hold_worker(&service);
    let waiting: Vec<_> = (0..5)
        .map(|_| shared_status(&service, "status pin", &runs))
        .collect();
    sim.remove_card(READER);
    release.send(()).unwrap();
    for rx in waiting {
        let r = result(rx);
        assert!(
            matches!(r, Err(Error::CardRemoved | Error::CardAbsent)),
            "{r:?}"
        );
    }
    // The card is back: the next read connects again and works.
    sim.insert_card(READER, VirtualCard::new(CardConfig::piv()))
        .unwrap();
    assert_eq!(
        result(shared_status(&service, "status pin", &runs)),
        Ok(Some(3))
    );
}

#[test]
fn work_queued_for_a_reader_that_went_away_fails_and_never_reaches_a_card_later() {
    use cardgate::secret::Secret;
    use cardgate::transport::Event;
    let sim = SimBackend::new();
    sim.add_reader("R");
    sim.insert_card("R", VirtualCard::new(CardConfig::piv()))
        .unwrap();
    let service = Service::new(Arc::new(sim.clone()));
    // The worker is busy; a login waits behind it.
    drop(service.queue("R", |_| {
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }));
    let login = service.queue("R", |e| e.login("pin", &Secret::from("000000"), false));
    // The PC/SC service goes away (and comes back with the same card): the
    // waiting login fails instead of running on a new connection later.
    service.handle_event(&Event::ServiceDown);
    let result = login.blocking_recv().unwrap();
    assert_eq!(result, Err(Error::NoPcscService));
    assert_eq!(sim.with_card("R", |c| c.user_pin_tries()), Some(3));
    // A new worker serves the reader as before.
    assert_eq!(
        service
            .with_engine("R", |e| e.status("pin"))
            .unwrap()
            .remaining_tries,
        Some(3)
    );
}
