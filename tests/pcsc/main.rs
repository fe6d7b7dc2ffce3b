//! Integration tests on the real pcscd + vpcd (+ our virtual card process).
//!
//! One binary, custom harness (libtest-mimic), tests run serially: they share
//! one pcscd and two vpcd slots. `main` uses the running pcscd or starts one,
//! and stops what it started even when tests fail.
//!
//! Some tests run in a child process (this binary again, selected by the
//! `CARDGATE_PCSC_TEST_CHILD` variable) because libpcsclite reads
//! `PCSCLITE_CSOCK_NAME` once per process.

mod browser;
#[path = "../common/fake_pinentry.rs"]
mod fake_pinentry;
mod harness;
#[path = "../common/net.rs"]
mod net;
mod pin_ops;
mod policy;
mod server;
mod torture;
mod try_safety;
#[path = "../common/ws_client.rs"]
mod ws_client;

use std::process::{Command, ExitCode};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cardgate::transport::pcsc::PcscBackend;
use cardgate::transport::{Backend, Event, Transport, TransportError};
use harness::*;
use libtest_mimic::{Arguments, Failed, Trial};

const CHILD_VAR: &str = "CARDGATE_PCSC_TEST_CHILD";
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    // `CARDGATE_TEST_LOG=cardgate=debug` shows the backend's events on stderr.
    if std::env::var_os("CARDGATE_TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("CARDGATE_TEST_LOG"))
            .with_writer(std::io::stderr)
            .try_init();
    }
    if let Ok(mode) = std::env::var(CHILD_VAR) {
        return run_child(&mode);
    }
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);

    let pcscd = match Pcscd::ensure() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pcsc tests: no usable pcscd: {e}");
            return ExitCode::FAILURE;
        }
    };
    if pcscd.started_here() {
        eprintln!("pcsc tests: started pcscd (pid {:?})", pcscd.pid());
    }

    let private = PrivatePcscd::supported();
    let mut tests = vec![
        Trial::test("readers_listed", readers_listed),
        Trial::test(
            "watch_reports_current_readers",
            watch_reports_current_readers,
        ),
        Trial::test("monitor_idles_without_cpu", monitor_idles_without_cpu),
        Trial::test("connect_unknown_reader", connect_unknown_reader),
        Trial::test("no_service_when_pcscd_unreachable", no_service_in_child),
        Trial::test("card_insert_transmit_remove", card_insert_transmit_remove),
        Trial::test("card_on_other_slot", card_on_other_slot),
        Trial::test("reconnect_reset_and_leave", reconnect_reset_and_leave),
        Trial::test(
            "reset_busy_and_control_errors",
            reset_busy_and_control_errors,
        ),
        Trial::test("quick_reinsert_gives_removed_then_inserted", quick_reinsert),
    ];
    tests.extend(pin_ops::tests());
    tests.extend(policy::tests());
    tests.extend(server::tests());
    tests.extend(browser::tests());
    tests.extend(torture::tests());
    tests.extend(try_safety::tests());
    let recovery = Trial::test("service_loss_and_recovery", service_loss_in_child);
    // CI runs as root: there the recovery test must run, never be skipped.
    tests.push(if private || std::env::var_os("CI").is_some() {
        recovery
    } else {
        recovery.with_ignored_flag(true)
    });
    if !private {
        eprintln!("pcsc tests: service_loss_and_recovery ignored: `unshare -m` not permitted");
    }

    let conclusion = libtest_mimic::run(&args, tests);
    drop(pcscd);
    conclusion.exit_code()
}

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(msg().into()) }
}

// ---------------------------------------------------------------- readers

fn readers_listed() -> Result<(), Failed> {
    let readers = PcscBackend::new().list_readers()?;
    for name in [READER_0, READER_1] {
        check(readers.iter().any(|r| r.name == name), || {
            format!("{name} not in {readers:?}")
        })?;
    }
    Ok(())
}

fn watch_reports_current_readers() -> Result<(), Failed> {
    let (tx, rx) = mpsc::channel();
    let guard = PcscBackend::new().watch(tx);
    let first = rx.recv_timeout(EVENT_TIMEOUT)?;
    check(first == Event::ServiceUp, || {
        format!("first event {first:?}")
    })?;
    for name in [READER_0, READER_1] {
        wait_for_event(
            &rx,
            EVENT_TIMEOUT,
            |e| matches!(e, Event::ReaderAdded { reader } if reader == name),
        )?;
    }
    let start = Instant::now();
    drop(guard);
    check(start.elapsed() < Duration::from_secs(1), || {
        format!("stopping the monitor took {:?}", start.elapsed())
    })
}

/// CPU time (user + system, in clock ticks) of this process's threads
/// named `name`.
fn thread_cpu_ticks(name: &str) -> Option<u64> {
    let mut total = None;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path();
        let comm = std::fs::read_to_string(path.join("comm")).ok()?;
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).ok()?;
        // Fields after the parenthesized command name; utime, stime are
        // fields 14 and 15 (1-based) of the whole line.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?;
        total = Some(total.unwrap_or(0) + ticks);
    }
    total
}

fn monitor_idles_without_cpu() -> Result<(), Failed> {
    let (tx, rx) = mpsc::channel();
    let guard = PcscBackend::new().watch(tx);
    wait_for_event(
        &rx,
        EVENT_TIMEOUT,
        |e| matches!(e, Event::ReaderAdded { reader } if reader == READER_1),
    )?;
    // Let the initial burst settle.
    std::thread::sleep(Duration::from_millis(300));
    let before = thread_cpu_ticks("pcsc-monitor").ok_or("monitor thread not found")?;
    std::thread::sleep(Duration::from_secs(2));
    let after = thread_cpu_ticks("pcsc-monitor").ok_or("monitor thread not found")?;
    // 100 ticks/s: a polling loop would burn several ticks in 2 s.
    check(after - before <= 1, || {
        format!("idle monitor used {} ticks in 2 s", after - before)
    })?;
    let start = Instant::now();
    drop(guard);
    check(start.elapsed() < Duration::from_secs(1), || {
        format!("stopping the monitor took {:?}", start.elapsed())
    })?;
    check(thread_cpu_ticks("pcsc-monitor").is_none(), || {
        "monitor thread still running".into()
    })
}

fn connect_unknown_reader() -> Result<(), Failed> {
    match PcscBackend::new().connect("No Such Reader 00 00") {
        Err(TransportError::ReaderNotFound(name)) if name == "No Such Reader 00 00" => Ok(()),
        Err(e) => Err(format!("unexpected error {e:?}").into()),
        Ok(_) => Err("connected to a reader that does not exist".into()),
    }
}

// ------------------------------------------------------ child processes

fn run_child(mode: &str) -> ExitCode {
    let result = match mode {
        "no-service" => child_no_service(),
        "service-recovery" => child_service_recovery(),
        "torture" => torture::child(),
        other => Err(format!("unknown child mode {other}").into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("child {mode}: {}", e.message().unwrap_or("failed"));
            ExitCode::FAILURE
        }
    }
}

/// Runs this binary again in `mode` with `env`.
fn run_in_child(mode: &str, env: &[(&str, &str)]) -> Result<(), Failed> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .env(CHILD_VAR, mode)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()?;
    check(out.status.success(), || {
        format!(
            "child {mode} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn no_service_in_child() -> Result<(), Failed> {
    run_in_child(
        "no-service",
        &[("PCSCLITE_CSOCK_NAME", "/nonexistent/socket")],
    )
}

/// With `PCSCLITE_CSOCK_NAME` pointing nowhere.
fn child_no_service() -> Result<(), Failed> {
    let backend = PcscBackend::new();
    let listed = backend.list_readers();
    check(listed == Err(TransportError::NoService), || {
        format!("list_readers gave {listed:?}")
    })?;
    match backend.connect(READER_1) {
        Err(TransportError::NoService) => {}
        Err(e) => return Err(format!("connect gave {e:?}").into()),
        Ok(_) => return Err("connect succeeded without pcscd".into()),
    }
    let (tx, rx) = mpsc::channel();
    let guard = backend.watch(tx);
    let first = rx.recv_timeout(EVENT_TIMEOUT)?;
    check(first == Event::ServiceDown, || {
        format!("first event {first:?}")
    })?;
    // Retries go on in the background, but ServiceDown is said once.
    let more = collect_events(&rx, Duration::from_millis(700));
    check(more.is_empty(), || format!("more events: {more:?}"))?;
    let start = Instant::now();
    drop(guard);
    check(start.elapsed() < Duration::from_secs(1), || {
        format!("stopping the monitor took {:?}", start.elapsed())
    })
}

fn service_loss_in_child() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let sock = dir.path().join("run").join("pcscd.comm");
    run_in_child(
        "service-recovery",
        &[
            ("PCSCLITE_CSOCK_NAME", sock.to_str().ok_or("path")?),
            ("CARDGATE_PRIVATE_BASE", dir.path().to_str().ok_or("path")?),
        ],
    )
}

/// Talks only to a private pcscd (see [`PrivatePcscd`]) that it stops and
/// starts again.
fn child_service_recovery() -> Result<(), Failed> {
    let base = std::env::var("CARDGATE_PRIVATE_BASE")?;
    // vpcd ports 35967/35968: away from the shared pcscd's 35963/35964.
    let mut pcscd = PrivatePcscd::new(std::path::Path::new(&base), 0x8C7F)?;
    let backend = PcscBackend::new();
    let (tx, rx) = mpsc::channel();
    let guard = backend.watch(tx);

    let first = rx.recv_timeout(EVENT_TIMEOUT)?;
    check(first == Event::ServiceDown, || {
        format!("first event {first:?}")
    })?;
    check(
        backend.list_readers() == Err(TransportError::NoService),
        || "list_readers without service".into(),
    )?;

    for round in 0..2 {
        pcscd.start()?;
        let up = wait_for_event(&rx, EVENT_TIMEOUT, |e| *e != Event::ServiceDown)?;
        check(up == Event::ServiceUp, || {
            format!("round {round}: got {up:?}")
        })?;
        let mut added = Vec::new();
        for _ in 0..2 {
            match rx.recv_timeout(EVENT_TIMEOUT)? {
                Event::ReaderAdded { reader } => added.push(reader),
                other => return Err(format!("round {round}: got {other:?}").into()),
            }
        }
        added.sort();
        check(added == [READER_0, READER_1], || {
            format!("round {round}: added {added:?}")
        })?;
        // The cached context follows the restart transparently.
        let readers = backend.list_readers()?;
        check(readers.len() == 2, || format!("round {round}: {readers:?}"))?;

        pcscd.stop();
        let mut gone = Vec::new();
        for _ in 0..2 {
            match rx.recv_timeout(EVENT_TIMEOUT)? {
                Event::ReaderRemoved { reader } => gone.push(reader),
                other => return Err(format!("round {round}: got {other:?}").into()),
            }
        }
        gone.sort();
        check(gone == [READER_0, READER_1], || {
            format!("round {round}: removed {gone:?}")
        })?;
        let down = rx.recv_timeout(EVENT_TIMEOUT)?;
        check(down == Event::ServiceDown, || {
            format!("round {round}: got {down:?}")
        })?;
        check(
            backend.list_readers() == Err(TransportError::NoService),
            || format!("round {round}: list_readers after stop"),
        )?;
    }
    let start = Instant::now();
    drop(guard);
    check(start.elapsed() < Duration::from_secs(1), || {
        format!("stopping the monitor took {:?}", start.elapsed())
    })
}

// ------------------------------------------------------------ card tests
//
// These need `cardgate vcard --profile piv|openpgp --port N` (a card process
// speaking the vpcd protocol); they are ignored until that subcommand exists.

/// SELECT the PIV application (SP 800-73-4 part 2, 3.1.1).
const SELECT_PIV: [u8; 11] = [
    0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00,
];
/// VERIFY PIV application PIN with the factory default 123456, FF-padded.
const VERIFY_PIV_DEFAULT: [u8; 13] = [
    0x00, 0x20, 0x00, 0x80, 0x08, b'1', b'2', b'3', b'4', b'5', b'6', 0xFF, 0xFF,
];
/// VERIFY without data: the PIN's status, without spending a try.
const VERIFY_PIV_STATUS: [u8; 4] = [0x00, 0x20, 0x00, 0x80];

fn sw(resp: &[u8]) -> u16 {
    let n = resp.len();
    u16::from_be_bytes([resp[n - 2], resp[n - 1]])
}

/// Sends `apdu`, fails unless the status word is `want`.
fn expect_sw(t: &mut dyn Transport, apdu: &[u8], want: u16) -> Result<Vec<u8>, Failed> {
    let resp = t.transmit(apdu)?;
    check(resp.len() >= 2 && sw(&resp) == want, || {
        format!("expected SW {want:04X}, got {resp:02X?}")
    })?;
    Ok(resp)
}

/// Starts a card process in `port` and waits for its insertion; returns it
/// with the ATR from the event.
fn insert_card(
    rx: &mpsc::Receiver<Event>,
    profile: &str,
    port: u16,
) -> Result<(VirtualCardProcess, Vec<u8>), Failed> {
    let card = VirtualCardProcess::spawn(profile, port, &[])?;
    let reader = card.reader();
    let ev = wait_for_event(
        rx,
        EVENT_TIMEOUT,
        |e| matches!(e, Event::CardInserted { reader: r, .. } if r == reader),
    )?;
    let Event::CardInserted { atr, .. } = ev else {
        unreachable!()
    };
    Ok((card, atr))
}

/// A monitor whose initial events (both readers, no card in `port`'s
/// reader) have been consumed.
fn watch_with_empty(
    backend: &PcscBackend,
    port: u16,
) -> Result<
    (
        Box<dyn cardgate::transport::WatchGuard>,
        mpsc::Receiver<Event>,
    ),
    Failed,
> {
    let reader = reader_for_port(port);
    let (tx, rx) = mpsc::channel();
    let guard = backend.watch(tx);
    let mut initial = collect_events(&rx, Duration::from_millis(500));
    check(
        initial.contains(&Event::ReaderAdded {
            reader: reader.into(),
        }),
        || format!("initial events {initial:?}"),
    )?;
    let holds_card = |events: &[Event]| {
        events.iter().fold(false, |card, e| match e {
            Event::CardInserted { reader: r, .. } if r == reader => true,
            Event::CardRemoved { reader: r } if r == reader => false,
            _ => card,
        })
    };
    if holds_card(&initial) {
        // The previous test's card may still be on its way out (~0.2 s).
        let _ = wait_for_event(&rx, Duration::from_secs(5), |e| {
            *e == Event::CardRemoved {
                reader: reader.into(),
            }
        })
        .map(|e| initial.push(e));
    }
    check(!holds_card(&initial), || {
        format!("{reader} holds a card (another process?): {initial:?}")
    })?;
    Ok((guard, rx))
}

fn card_insert_transmit_remove() -> Result<(), Failed> {
    let backend = PcscBackend::new();
    let (_guard, rx) = watch_with_empty(&backend, PORT_1)?;
    let (mut card, atr) = insert_card(&rx, "piv", PORT_1)?;
    check(!atr.is_empty(), || "empty ATR in CardInserted".into())?;

    let listed = backend.list_readers()?;
    let info = listed
        .iter()
        .find(|r| r.name == READER_1)
        .ok_or("reader not listed")?;
    check(info.atr.as_deref() == Some(&atr[..]), || {
        format!("list_readers ATR {:?} vs event {atr:02X?}", info.atr)
    })?;

    let mut t = backend.connect(READER_1)?;
    check(t.atr() == atr, || format!("transport ATR {:02X?}", t.atr()))?;
    expect_sw(t.as_mut(), &SELECT_PIV, 0x9000)?;

    card.kill();
    wait_for_event(&rx, EVENT_TIMEOUT, |e| {
        *e == Event::CardRemoved {
            reader: READER_1.into(),
        }
    })?;
    match t.transmit(&SELECT_PIV) {
        Err(TransportError::CardRemoved) => {}
        other => return Err(format!("transmit after removal gave {other:?}").into()),
    }
    match backend.connect(READER_1) {
        Err(TransportError::NoCard) => Ok(()),
        Err(e) => Err(format!("connect to empty reader gave {e:?}").into()),
        Ok(_) => Err("connected to an empty reader".into()),
    }
}

fn card_on_other_slot() -> Result<(), Failed> {
    // Slot 1 may still be settling from the previous test (vpcd needs ~2 s
    // before the same slot takes a new card): the other slot works now.
    let backend = PcscBackend::new();
    let (_guard, rx) = watch_with_empty(&backend, PORT_0)?;
    let (mut card, atr) = insert_card(&rx, "openpgp", PORT_0)?;
    let mut t = backend.connect(READER_0)?;
    check(t.atr() == atr, || format!("transport ATR {:02X?}", t.atr()))?;
    // SELECT OpenPGP application (OpenPGP card 3.4, 7.2.1).
    let select = [
        0x00, 0xA4, 0x04, 0x00, 0x06, 0xD2, 0x76, 0x00, 0x01, 0x24, 0x01, 0x00,
    ];
    expect_sw(t.as_mut(), &select, 0x9000)?;
    t.disconnect();
    card.kill();
    wait_for_event(&rx, EVENT_TIMEOUT, |e| {
        *e == Event::CardRemoved {
            reader: READER_0.into(),
        }
    })?;
    Ok(())
}

fn reconnect_reset_and_leave() -> Result<(), Failed> {
    let backend = PcscBackend::new();
    // The slot used by card_insert_transmit_remove may refuse a new card for
    // ~2 s after the last one left: wait until a card shows up.
    let (_guard, rx) = watch_with_empty(&backend, PORT_1)?;
    let (_card, _atr) = poll_insert(&rx, "piv", PORT_1)?;

    let mut t = backend.connect(READER_1)?;
    expect_sw(t.as_mut(), &SELECT_PIV, 0x9000)?;
    expect_sw(t.as_mut(), &VERIFY_PIV_DEFAULT, 0x9000)?;
    expect_sw(t.as_mut(), &VERIFY_PIV_STATUS, 0x9000)?;

    // Ending a connection leaves the card as it is: still verified.
    t.disconnect();
    let mut t = backend.connect(READER_1)?;
    expect_sw(t.as_mut(), &SELECT_PIV, 0x9000)?;
    expect_sw(t.as_mut(), &VERIFY_PIV_STATUS, 0x9000)?;
    drop(t);
    let mut t = backend.connect(READER_1)?;
    expect_sw(t.as_mut(), &SELECT_PIV, 0x9000)?;
    expect_sw(t.as_mut(), &VERIFY_PIV_STATUS, 0x9000)?;

    // reconnect(false) keeps it too.
    t.reconnect(false)?;
    expect_sw(t.as_mut(), &SELECT_PIV, 0x9000)?;
    expect_sw(t.as_mut(), &VERIFY_PIV_STATUS, 0x9000)?;

    // reconnect(true) resets the card: no longer verified (63Cx: tries left).
    t.reconnect(true)?;
    check(!t.atr().is_empty(), || "no ATR after reset".into())?;
    expect_sw(t.as_mut(), &SELECT_PIV, 0x9000)?;
    let resp = t.transmit(&VERIFY_PIV_STATUS)?;
    check(sw(&resp) & 0xFFF0 == 0x63C0, || {
        format!("after reset, PIN status {resp:02X?}")
    })?;
    t.disconnect();
    Ok(())
}

fn reset_busy_and_control_errors() -> Result<(), Failed> {
    let backend = PcscBackend::new();
    let (_guard, rx) = watch_with_empty(&backend, PORT_1)?;
    let (_card, _atr) = poll_insert(&rx, "piv", PORT_1)?;

    // Another connection resets the card: ours gets CardReset (the APDU was
    // not sent) until it reconnects.
    let mut a = backend.connect(READER_1)?;
    let mut b = backend.connect(READER_1)?;
    expect_sw(a.as_mut(), &SELECT_PIV, 0x9000)?;
    b.reconnect(true)?;
    match a.transmit(&SELECT_PIV) {
        Err(TransportError::CardReset) => {}
        other => return Err(format!("after a foreign reset: {other:?}").into()),
    }
    a.reconnect(false)?;
    expect_sw(a.as_mut(), &SELECT_PIV, 0x9000)?;

    // vpcd has no pinpad: GET_FEATURE_REQUEST is unsupported.
    let get_feature_request = 0x4200_0D48; // SCARD_CTL_CODE(3400) on Linux
    match a.control(get_feature_request, &[]) {
        Err(TransportError::Unsupported) => {}
        other => return Err(format!("GET_FEATURE_REQUEST gave {other:?}").into()),
    }
    a.disconnect();
    b.disconnect();

    // Another application holds the card exclusively: Busy.
    let ctx = pcsc::Context::establish(pcsc::Scope::User)?;
    let name = std::ffi::CString::new(READER_1)?;
    let exclusive = ctx.connect(&name, pcsc::ShareMode::Exclusive, pcsc::Protocols::ANY)?;
    let busy = backend.connect(READER_1).err();
    // Leave the card as it is (dropping a pcsc::Card would reset it).
    exclusive
        .disconnect(pcsc::Disposition::LeaveCard)
        .map_err(|(_, e)| e)?;
    check(busy == Some(TransportError::Busy), || {
        format!("connect while held exclusively gave {busy:?}")
    })?;
    backend.connect(READER_1)?.disconnect();
    Ok(())
}

/// Killing the card process and starting a new one at once in the same slot,
/// while a connection is open (as a reader worker holds one): CardRemoved,
/// then CardInserted, never a lost removal; the old connection fails with
/// CardRemoved and a new one reaches the new card.
///
/// vpcd caveat: with *no* connection open, such an immediate swap can be
/// invisible to pcscd itself (vpcd reports "present" while a socket is
/// connected and keeps the old ATR), so no PC/SC client can see it.
fn quick_reinsert() -> Result<(), Failed> {
    let backend = PcscBackend::new();
    let (_guard, rx) = watch_with_empty(&backend, PORT_1)?;
    let (mut card, _atr) = poll_insert(&rx, "piv", PORT_1)?;
    let mut old = backend.connect(READER_1)?;
    expect_sw(old.as_mut(), &SELECT_PIV, 0x9000)?;
    card.kill();
    // The new process retries until vpcd takes it.
    let _card = VirtualCardProcess::spawn("openpgp", PORT_1, &[])?;
    let removed = Event::CardRemoved {
        reader: READER_1.into(),
    };
    let first = wait_for_event(&rx, Duration::from_secs(20), |e| {
        *e == removed || matches!(e, Event::CardInserted { .. })
    })?;
    check(first == removed, || format!("first card event {first:?}"))?;
    wait_for_event(
        &rx,
        Duration::from_secs(20),
        |e| matches!(e, Event::CardInserted { reader, .. } if reader == READER_1),
    )?;
    match old.transmit(&SELECT_PIV) {
        Err(TransportError::CardRemoved) => {}
        other => return Err(format!("old connection gave {other:?}").into()),
    }
    let mut t = backend.connect(READER_1)?;
    let select_openpgp = [
        0x00, 0xA4, 0x04, 0x00, 0x06, 0xD2, 0x76, 0x00, 0x01, 0x24, 0x01, 0x00,
    ];
    expect_sw(t.as_mut(), &select_openpgp, 0x9000)?;
    t.disconnect();
    Ok(())
}

/// Like [`insert_card`], restarting the card process until vpcd takes it
/// (the same slot refuses a new card for a moment after a removal).
fn poll_insert(
    rx: &mpsc::Receiver<Event>,
    profile: &str,
    port: u16,
) -> Result<(VirtualCardProcess, Vec<u8>), Failed> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let card = VirtualCardProcess::spawn(profile, port, &[])?;
        let reader = card.reader();
        match wait_for_event(
            rx,
            Duration::from_secs(3),
            |e| matches!(e, Event::CardInserted { reader: r, .. } if r == reader),
        ) {
            Ok(Event::CardInserted { atr, .. }) => return Ok((card, atr)),
            _ if Instant::now() < deadline => continue,
            Ok(_) => unreachable!(),
            Err(e) => return Err(e.into()),
        }
    }
}
