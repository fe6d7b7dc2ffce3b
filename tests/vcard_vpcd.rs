//! The vpcd client against a tiny fake vpcd (a TcpListener in the test): no
//! pcscd needed. Checks framing (also split across segments), controls,
//! ATR, verified state across resets, reconnection and stop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use cardgate::vcard::vpcd::{self, Event, Options};
use cardgate::vcard::{CardConfig, VirtualCard};

const SELECT_PIV: &[u8] = &[0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08];
const VERIFY_STATUS: &[u8] = &[0x00, 0x20, 0x00, 0x80];
const VERIFY_123456: &[u8] = &[
    0x00, 0x20, 0x00, 0x80, 0x08, b'1', b'2', b'3', b'4', b'5', b'6', 0xFF, 0xFF,
];

fn fast() -> Options {
    Options {
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        poll: Duration::from_millis(20),
        connect_timeout: Duration::from_millis(500),
        ..Options::default()
    }
}

struct Vpcd(TcpStream);

impl Vpcd {
    fn accept(listener: &TcpListener) -> Vpcd {
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    return Vpcd(s);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "the card never connected");
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    fn send(&mut self, payload: &[u8]) {
        let mut frame = (payload.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        self.0.write_all(&frame).unwrap();
    }

    fn recv(&mut self) -> Vec<u8> {
        let mut len = [0u8; 2];
        self.0.read_exact(&mut len).unwrap();
        let mut payload = vec![0u8; usize::from(u16::from_be_bytes(len))];
        self.0.read_exact(&mut payload).unwrap();
        payload
    }

    fn transmit(&mut self, apdu: &[u8]) -> Vec<u8> {
        self.send(apdu);
        self.recv()
    }

    fn sw(&mut self, apdu: &[u8]) -> [u8; 2] {
        let r = self.transmit(apdu);
        [r[r.len() - 2], r[r.len() - 1]]
    }
}

#[test]
fn serves_vpcd_and_reconnects() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let expected_atr = VirtualCard::new(CardConfig::piv()).atr();

    let stop = Arc::new(AtomicBool::new(false));
    let (events_tx, events) = mpsc::channel::<String>();
    let client = {
        let stop = stop.clone();
        thread::spawn(move || {
            let card = VirtualCard::new(CardConfig::piv());
            vpcd::run_with(card, "127.0.0.1", port, &stop, &fast(), |e| {
                let _ = events_tx.send(match e {
                    Event::Connected { addr } => format!("connected {addr}"),
                    Event::Disconnected { .. } => "disconnected".into(),
                    Event::ConnectFailed { .. } => "failed".into(),
                });
            })
        })
    };

    let mut vpcd = Vpcd::accept(&listener);
    assert_eq!(
        events.recv_timeout(Duration::from_secs(5)).unwrap(),
        format!("connected 127.0.0.1:{port}")
    );

    // Controls: power on (no answer), get ATR.
    vpcd.send(&[1]);
    vpcd.send(&[4]);
    assert_eq!(vpcd.recv(), expected_atr);

    // APDUs.
    let apt = vpcd.transmit(SELECT_PIV);
    assert_eq!(&apt[..2], &[0x61, 0x27]);
    assert_eq!(&apt[apt.len() - 2..], &[0x90, 0x00]);
    assert_eq!(vpcd.sw(VERIFY_STATUS), [0x63, 0xC3]);
    assert_eq!(vpcd.sw(VERIFY_123456), [0x90, 0x00]);
    assert_eq!(vpcd.sw(VERIFY_STATUS), [0x90, 0x00]);

    // A frame split over several segments, with pauses longer than the poll.
    let mut frame = (VERIFY_STATUS.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(VERIFY_STATUS);
    for part in [&frame[..1], &frame[1..3], &frame[3..]] {
        vpcd.0.write_all(part).unwrap();
        vpcd.0.flush().unwrap();
        thread::sleep(Duration::from_millis(60));
    }
    assert_eq!(vpcd.recv(), vec![0x90, 0x00]);

    // Two frames in one segment.
    let mut two = frame.clone();
    two.extend_from_slice(&frame);
    vpcd.0.write_all(&two).unwrap();
    assert_eq!(vpcd.recv(), vec![0x90, 0x00]);
    assert_eq!(vpcd.recv(), vec![0x90, 0x00]);

    // Malformed APDU inside a valid frame.
    assert_eq!(vpcd.transmit(&[0x00, 0x20]), vec![0x67, 0x00]);
    // An empty frame and an unknown control are ignored.
    vpcd.send(&[]);
    vpcd.send(&[9]);

    // Reset control: verified state and selection dropped.
    vpcd.send(&[2]);
    assert_eq!(vpcd.sw(VERIFY_STATUS), [0x69, 0x85]);
    vpcd.transmit(SELECT_PIV);
    assert_eq!(vpcd.sw(VERIFY_STATUS), [0x63, 0xC3]);

    // Power off / on drops it too.
    assert_eq!(vpcd.sw(VERIFY_123456), [0x90, 0x00]);
    vpcd.send(&[0]);
    vpcd.send(&[1]);
    vpcd.transmit(SELECT_PIV);
    assert_eq!(vpcd.sw(VERIFY_STATUS), [0x63, 0xC3]);

    // Spend a try, verify, then drop the connection: the card is removed.
    assert_eq!(vpcd.sw(VERIFY_123456), [0x90, 0x00]);
    let wrong = [
        0x00, 0x20, 0x00, 0x80, 0x08, b'0', b'0', b'0', b'0', b'0', b'0', 0xFF, 0xFF,
    ];
    assert_eq!(vpcd.sw(&wrong), [0x63, 0xC2]);
    drop(vpcd);
    assert_eq!(
        events.recv_timeout(Duration::from_secs(5)).unwrap(),
        "disconnected"
    );

    // It comes back as the same card (counter kept), freshly reset.
    let mut vpcd = Vpcd::accept(&listener);
    assert!(
        events
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .starts_with("connected")
    );
    vpcd.send(&[4]);
    assert_eq!(vpcd.recv(), expected_atr);
    assert_eq!(vpcd.sw(VERIFY_STATUS), [0x69, 0x85]);
    vpcd.transmit(SELECT_PIV);
    assert_eq!(vpcd.sw(VERIFY_STATUS), [0x63, 0xC2]);

    // Stop: the client returns the card promptly, even mid-connection.
    let asked = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let mut card = client.join().unwrap();
    assert!(asked.elapsed() < Duration::from_secs(2));
    card.process(SELECT_PIV);
    assert_eq!(card.process(VERIFY_STATUS), vec![0x63, 0xC2]);
}

#[test]
fn waits_for_vpcd_to_listen() {
    // A port nobody listens on yet.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (events_tx, events) = mpsc::channel::<bool>();
    let client = {
        let stop = stop.clone();
        thread::spawn(move || {
            vpcd::run_with(
                VirtualCard::new(CardConfig::openpgp()),
                "127.0.0.1",
                port,
                &stop,
                &fast(),
                |e| {
                    let _ = events_tx.send(matches!(e, Event::Connected { .. }));
                },
            )
        })
    };
    // At least two failed attempts first.
    assert!(!events.recv_timeout(Duration::from_secs(5)).unwrap());
    assert!(!events.recv_timeout(Duration::from_secs(5)).unwrap());

    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let mut vpcd = Vpcd::accept(&listener);
    while !events.recv_timeout(Duration::from_secs(5)).unwrap() {}
    vpcd.send(&[4]);
    assert_eq!(vpcd.recv(), VirtualCard::new(CardConfig::openpgp()).atr());
    let select = [
        0x00, 0xA4, 0x04, 0x00, 0x06, 0xD2, 0x76, 0x00, 0x01, 0x24, 0x01,
    ];
    assert_eq!(vpcd.transmit(&select), vec![0x90, 0x00]);
    assert_eq!(
        vpcd.transmit(&[0x00, 0xCA, 0x00, 0xC4, 0x00]),
        vec![0x00, 0x7F, 0x7F, 0x7F, 0x03, 0x00, 0x03, 0x90, 0x00]
    );

    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
}

#[test]
fn stops_while_vpcd_is_absent() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        thread::spawn(move || {
            vpcd::run(
                VirtualCard::new(CardConfig::piv()),
                "127.0.0.1",
                port,
                &stop,
            )
        })
    };
    thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let card = client.join().unwrap();
    assert!(asked.elapsed() < Duration::from_secs(2));
    assert_eq!(card.profile(), cardgate::vcard::Profile::Piv);
}

#[test]
fn counters_are_stored_before_the_answer() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("counters");
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (stop, state) = (stop.clone(), state.clone());
        thread::spawn(move || {
            let options = Options {
                state: Some(state),
                ..fast()
            };
            vpcd::run_with(
                VirtualCard::new(CardConfig::piv()),
                "127.0.0.1",
                port,
                &stop,
                &options,
                |_| {},
            )
        })
    };
    let mut vpcd = Vpcd::accept(&listener);
    vpcd.transmit(SELECT_PIV);
    assert_eq!(vpcd.sw(VERIFY_STATUS), [0x63, 0xC3]);
    // Nothing changed yet: no file.
    assert!(!state.exists());
    let wrong = [
        0x00, 0x20, 0x00, 0x80, 0x08, b'0', b'0', b'0', b'0', b'0', b'0', 0xFF, 0xFF,
    ];
    assert_eq!(vpcd.sw(&wrong), [0x63, 0xC2]);
    // The answer came after the counter was stored.
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        "pin 2 1\npuk 3 0\n"
    );
    assert_eq!(vpcd.sw(VERIFY_123456), [0x90, 0x00]);
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        "pin 3 1\npuk 3 0\n"
    );
    stop.store(true, Ordering::Relaxed);
    drop(vpcd);
    client.join().unwrap();
}
