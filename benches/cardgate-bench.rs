//! `cargo bench --bench cardgate-bench [-- --quick] [-- --shared]`
//!
//! cardgate against raw PC/SC on a real pcscd + vpcd + our virtual card
//! process (TCP_NODELAY and TCP_QUICKACK on), every comparison measured in
//! the same run so machine noise cancels. Method and results:
//! docs/performance.md.
//!
//! - latency: raw `SCardTransmit` of the status VERIFY vs `getPinStatus`
//!   over the WebSocket vs `login`, interleaved one by one;
//! - 1,000 concurrent WebSocket clients (connect, read status, disconnect),
//!   repeated, with the daemon's RSS after each round;
//! - card removal / insertion: the daemon's notification vs a raw PC/SC
//!   watcher blocked in `SCardGetStatusChange`;
//! - cold start to listening (sd_notify READY), idle CPU with two readers
//!   (/proc/PID/stat utime+stime), RSS at idle;
//! - soak: mixed clients and operations with the RSS sampled every second
//!   and a least-squares slope.
//!
//! By default (as root) everything runs on a private pcscd of its own
//! (`unshare -m`, vpcd ports 35990/35991) so it never disturbs the
//! machine's pcscd or the tests; `--shared` uses the running pcscd and the
//! standard vpcd slots 35963/35964 instead.
#![forbid(unsafe_code)]

#[path = "../tests/pcsc/harness.rs"]
mod harness;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use harness::{PrivatePcscd, VirtualCardProcess, poll};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const CHILD_VAR: &str = "CARDGATE_BENCH_CHILD";
/// Set when this binary runs as the reference WebSocket server.
const BARE_VAR: &str = "CARDGATE_BENCH_BARE";
/// vpcd ports of the private pcscd (0x8CA6 = 35990, and 35991).
const PRIVATE_PORT: u16 = 0x8CA6;
const SHARED_PORT: u16 = 35963;

type Res<T> = Result<T, String>;

struct Opts {
    quick: bool,
    /// Parts to run (`--only latency,clients,connected,notify,idle,soak`);
    /// all by default.
    only: Option<Vec<String>>,
    shared: bool,
    latency_iters: usize,
    clients: usize,
    client_rounds: usize,
    /// Further burst rounds against the daemon alone, for the RSS series.
    rss_rounds: usize,
    notify_cycles: usize,
    idle: Duration,
    soak: Duration,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |a: &str| args.iter().any(|x| x == a);
    let quick = has("--quick") || std::env::var_os("CARDGATE_BENCH_QUICK").is_some();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').map(str::to_string).collect());
    Opts {
        quick,
        only,
        shared: has("--shared"),
        latency_iters: if quick { 1000 } else { 5000 },
        clients: value("--clients").map_or(1000, |n| n.max(1) as usize),
        client_rounds: value("--rounds").map_or(if quick { 3 } else { 10 }, |n| n.max(1) as usize),
        rss_rounds: value("--rss-rounds").map_or(if quick { 7 } else { 30 }, |n| n as usize),
        notify_cycles: if quick { 3 } else { 8 },
        idle: Duration::from_secs(value("--idle").unwrap_or(if quick { 10 } else { 60 })),
        soak: Duration::from_secs(value("--soak").unwrap_or(if quick { 20 } else { 180 })),
    }
}

impl Opts {
    fn runs(&self, part: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|p| p == part))
    }
}

fn main() -> ExitCode {
    if std::env::var_os(BARE_VAR).is_some() {
        return report(bare::serve());
    }
    let o = opts();
    if let Ok(port) = std::env::var(CHILD_VAR) {
        let port = port.parse().unwrap_or(PRIVATE_PORT);
        return report(run(&o, port));
    }
    if o.shared || !PrivatePcscd::supported() {
        if !o.shared {
            eprintln!("(no `unshare -m` here: using the running pcscd and vpcd slots 35963/35964)");
        }
        if let Err(e) = harness::Pcscd::ensure().map(std::mem::forget) {
            eprintln!("no pcscd: {e}");
            return ExitCode::FAILURE;
        }
        return report(run(&o, SHARED_PORT));
    }
    // A pcscd of our own; this binary runs again as its client, since
    // libpcsclite reads PCSCLITE_CSOCK_NAME once per process.
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("tempdir: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut pcscd = match PrivatePcscd::new(dir.path(), PRIVATE_PORT) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("private pcscd: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = pcscd.start() {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    let status = std::env::current_exe().and_then(|exe| {
        Command::new(exe)
            .args(std::env::args().skip(1))
            .env(CHILD_VAR, PRIVATE_PORT.to_string())
            .env("PCSCLITE_CSOCK_NAME", pcscd.socket())
            .status()
    });
    pcscd.stop();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("benchmark failed: {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cannot run the benchmark: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report(r: Res<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------- statistics

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The q-quantile (nearest rank) of `v`, in ms.
fn pct(v: &[Duration], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort();
    if s.is_empty() {
        return f64::NAN;
    }
    let i = ((s.len() - 1) as f64 * q).round() as usize;
    ms(s[i])
}

/// Least-squares slope of `(x, y)`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}

// ------------------------------------------------------- the daemon process

type Daemon = harness::DaemonProcess;

/// The daemon's configuration for the benchmark: local tools (no Origin)
/// allowed, request rate limits out of the way (the latency loop sends
/// thousands of requests per second on one connection), no lockout.
fn write_config(dir: &Path) -> Res<PathBuf> {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        "port = 0\nlog_level = \"warn\"\npolicy_dirs = []\n\
         [origins]\nfile = \"\"\nallow_missing_origin = true\n\
         [limits]\nrate_per_second = 1000000\nrate_burst = 1000000\nmax_failures = 0\n",
    )
    .map_err(|e| e.to_string())?;
    Ok(path)
}

/// Starts `cardgate serve` and waits for its sd_notify READY (sent once
/// the sockets accept connections); returns it and the time from spawn
/// to READY. `CARDGATE_BENCH_WRAP="valgrind --tool=callgrind"` runs the
/// kept daemon under a profiler (its timings then mean nothing).
fn start_daemon(dir: &Path, config: &Path, wrapped: bool) -> Res<(Daemon, Duration)> {
    let wrap: Vec<String> = std::env::var("CARDGATE_BENCH_WRAP")
        .ok()
        .filter(|_| wrapped)
        .map(|w| w.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let d = Daemon::spawn(dir, config, &wrap, Stdio::null())?;
    let t = d.ready_after;
    Ok((d, t))
}

// ------------------------------------------------------------ raw PC/SC

/// A raw PC/SC connection to the card, as an application without cardgate
/// would have it.
struct Raw {
    card: Option<pcsc::Card>,
    buf: Vec<u8>,
}

const SELECT_PIV: [u8; 10] = [0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08];
const VERIFY_STATUS: [u8; 4] = [0x00, 0x20, 0x00, 0x80];
const VERIFY_RIGHT: [u8; 13] = [
    0x00, 0x20, 0x00, 0x80, 0x08, b'1', b'2', b'3', b'4', b'5', b'6', 0xFF, 0xFF,
];

impl Raw {
    fn connect(reader: &str) -> Res<Raw> {
        let ctx = pcsc::Context::establish(pcsc::Scope::User).map_err(|e| e.to_string())?;
        let name = CString::new(reader).map_err(|e| e.to_string())?;
        let card = ctx
            .connect(&name, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
            .map_err(|e| format!("raw connect: {e}"))?;
        let mut raw = Raw {
            card: Some(card),
            buf: vec![0; 300],
        };
        raw.sw(&SELECT_PIV)?;
        Ok(raw)
    }

    fn sw(&mut self, apdu: &[u8]) -> Res<u16> {
        let card = self.card.as_ref().ok_or("no card")?;
        let r = card
            .transmit(apdu, &mut self.buf)
            .map_err(|e| format!("raw transmit: {e}"))?;
        Ok(u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]]))
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // Leave the card as it is (dropping a pcsc::Card resets it).
        if let Some(card) = self.card.take() {
            let _ = card.disconnect(pcsc::Disposition::LeaveCard);
        }
    }
}

fn wait_present(reader: &str, present: bool, timeout: Duration) -> Res<()> {
    let backend = cardgate::transport::pcsc::PcscBackend::new();
    use cardgate::transport::Backend;
    poll(timeout, || {
        let readers = backend.list_readers().ok()?;
        let r = readers.iter().find(|r| r.name == reader)?;
        (r.atr.is_some() == present).then_some(())
    })
    .ok_or_else(|| format!("{reader}: card present={present} not seen within {timeout:?}"))
}

/// A raw PC/SC watcher: a thread blocked in `SCardGetStatusChange` on one
/// reader, sending (when, card present) for every change.
struct Watcher {
    ctx: pcsc::Context,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(reader: &str, tx: std::sync::mpsc::Sender<(Instant, bool)>) -> Res<Watcher> {
        let ctx = pcsc::Context::establish(pcsc::Scope::User).map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let name = CString::new(reader).map_err(|e| e.to_string())?;
        let (c, s) = (ctx.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut states = [pcsc::ReaderState::new(name, pcsc::State::UNAWARE)];
            let mut present = None;
            while !s.load(Ordering::SeqCst) {
                match c.get_status_change(None, &mut states) {
                    Ok(()) => {
                        let now = Instant::now();
                        let p = states[0].event_state().contains(pcsc::State::PRESENT)
                            && !states[0].event_state().contains(pcsc::State::MUTE);
                        if present != Some(p) {
                            if present.is_some() {
                                let _ = tx.send((now, p));
                            }
                            present = Some(p);
                        }
                        states[0].sync_current_state();
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        Ok(Watcher {
            ctx,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            while !t.is_finished() {
                let _ = self.ctx.cancel();
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------- WebSocket

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn ws_connect(port: u16) -> Res<Ws> {
    // A read buffer the size of the daemon's: the library's 128 KiB,
    // zero-filled per connection, made the clients the costliest part of
    // the 1,000-client run.
    let config = WebSocketConfig::default().read_buffer_size(1024);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(
        format!("ws://127.0.0.1:{port}/ws"),
        Some(config),
        true,
    )
    .await
    .map_err(|e| format!("ws connect: {e}"))?;
    Ok(ws)
}

/// Sends a request and waits for its response (skipping notifications).
async fn call(ws: &mut Ws, id: u64, method: &str, params: &Value) -> Res<Value> {
    let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    ws.send(Message::text(req.to_string()))
        .await
        .map_err(|e| format!("ws send: {e}"))?;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| format!("{method}: no response in 30 s"))?
            .ok_or("connection closed")?
            .map_err(|e| format!("ws read: {e}"))?;
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?;
            if v.get("id") == Some(&json!(id)) {
                return Ok(v);
            }
        }
    }
}

async fn call_ok(ws: &mut Ws, id: u64, method: &str, params: &Value) -> Res<Value> {
    let v = call(ws, id, method, params).await?;
    if v.get("error").is_some() {
        return Err(format!("{method} failed: {v}"));
    }
    Ok(v)
}

// -------------------------------------------------------------- the run

fn run(o: &Opts, port0: u16) -> Res<()> {
    let port1 = port0 + 1;
    let (reader0, reader1) = reader_names(port0);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = write_config(dir.path())?;
    println!(
        "cardgate-bench{}: pcscd {}, readers {reader0:?} (PIV) and {reader1:?} (OpenPGP)",
        if o.quick { " --quick" } else { "" },
        if port0 == SHARED_PORT {
            "(shared)"
        } else {
            "(private)"
        },
    );
    let _ = wait_present(&reader0, false, Duration::from_secs(10));
    let card0 = VirtualCardProcess::spawn("piv", port0, &["--max-tries", "15"])?;
    let mut card1 = Some(VirtualCardProcess::spawn("openpgp", port1, &[])?);
    wait_present(&reader0, true, Duration::from_secs(15))?;
    wait_present(&reader1, true, Duration::from_secs(15))?;

    // Cold start, 20 times; the last daemon stays for the rest.
    let mut starts = Vec::new();
    let mut daemon = None;
    for n in 0..20 {
        let (d, t) = start_daemon(dir.path(), &config, n == 19)?;
        starts.push(t);
        if n < 19 {
            drop(d);
        } else {
            daemon = Some(d);
        }
    }
    let mut daemon = daemon.ok_or("no daemon")?;
    println!(
        "\ncold start to listening (spawn → sd_notify READY, 20 starts): p50 {:.1} ms, max {:.1} ms  [target < 50 ms: {}]",
        pct(&starts, 0.5),
        pct(&starts, 1.0),
        verdict(pct(&starts, 0.5) < 50.0)
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;

    // Let the daemon describe both cards, then measure it at rest.
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle = daemon.rss_kib()?;
    println!(
        "RSS at idle (two readers, two cards): {:.1} MB  [target < 10 MB: {}]",
        rss_idle as f64 / 1024.0,
        verdict(rss_idle < 10 * 1024)
    );

    if o.runs("latency") {
        rt.block_on(latency(o, &daemon, &reader0))?;
    }
    if o.runs("clients") || o.runs("connected") {
        rt.block_on(many_clients(o, &daemon, &reader0))?;
    }
    if o.runs("notify") {
        rt.block_on(notifications(o, &daemon, &reader1, port1, &mut card1))?;
    }
    if o.runs("idle") {
        idle_cpu(o, &rt, &daemon)?;
    }
    if o.runs("soak") {
        rt.block_on(soak(o, &daemon, &reader0, &reader1))?;
    }

    if !daemon.alive() {
        return Err("the daemon died".into());
    }
    daemon.stop();
    drop(card0);
    drop(card1);
    Ok(())
}

fn reader_names(port0: u16) -> (String, String) {
    // vpcd names its readers after the FRIENDLYNAME and slot, whatever the port.
    let _ = port0;
    (harness::READER_0.to_string(), harness::READER_1.to_string())
}

/// Raw VERIFY status vs getPinStatus vs login, interleaved one by one.
async fn latency(o: &Opts, daemon: &Daemon, reader: &str) -> Res<()> {
    let mut raw = Raw::connect(reader)?;
    let mut ws = ws_connect(daemon.port).await?;
    // The floor of any WebSocket round trip on this machine, measured in
    // the same rounds: the reference server answers without a card.
    let bare = bare::Process::spawn()?;
    let mut reference = ws_connect(bare.port).await?;
    let status = json!({"reader": reader, "pin": "pin"});
    let login = json!({"reader": reader, "pin": "pin", "value": "123456"});
    let (mut t_raw, mut t_raw_login, mut t_status, mut t_login, mut t_ref) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut id = 0;
    // Warm up: connections, caches, the card's state.
    for _ in 0..200 {
        id += 1;
        call_ok(&mut ws, id, "getPinStatus", &status).await?;
        call_ok(&mut reference, id, "getPinStatus", &status).await?;
        raw.sw(&VERIFY_STATUS)?;
    }
    let cpu0 = harness::cpu_ns(daemon.pid())?;
    for _ in 0..o.latency_iters {
        let t = Instant::now();
        raw.sw(&VERIFY_STATUS)?;
        t_raw.push(t.elapsed());

        id += 1;
        let t = Instant::now();
        call_ok(&mut ws, id, "getPinStatus", &status).await?;
        t_status.push(t.elapsed());

        // What the daemon sends to the card for a login from a page: the
        // guard's status query, then VERIFY (its answer is the new status).
        let t = Instant::now();
        raw.sw(&VERIFY_STATUS)?;
        if raw.sw(&VERIFY_RIGHT)? != 0x9000 {
            return Err("raw VERIFY failed".into());
        }
        t_raw_login.push(t.elapsed());

        id += 1;
        let t = Instant::now();
        call_ok(&mut ws, id, "login", &login).await?;
        t_login.push(t.elapsed());

        let t = Instant::now();
        call_ok(&mut reference, id, "getPinStatus", &status).await?;
        t_ref.push(t.elapsed());
    }
    let cpu = harness::cpu_ns(daemon.pid())? - cpu0;
    let row = |name: &str, v: &[Duration]| {
        println!(
            "  {name:<44} p50 {:>6.3} ms  p99 {:>6.3} ms",
            pct(v, 0.5),
            pct(v, 0.99)
        )
    };
    println!(
        "\nlatency, {} interleaved rounds (one card, one WebSocket connection):",
        o.latency_iters
    );
    row("raw SCardTransmit VERIFY status (1 APDU)", &t_raw);
    row("getPinStatus over the WebSocket (1 APDU)", &t_status);
    row("raw status+VERIFY (2 APDUs)", &t_raw_login);
    row("login over the WebSocket (2 APDUs)", &t_login);
    row("reference WebSocket server (no card)", &t_ref);
    let o50 = pct(&t_status, 0.5) - pct(&t_raw, 0.5);
    let o99 = pct(&t_status, 0.99) - pct(&t_raw, 0.99);
    let l50 = pct(&t_login, 0.5) - pct(&t_raw_login, 0.5);
    let l99 = pct(&t_login, 0.99) - pct(&t_raw_login, 0.99);
    println!(
        "  daemon overhead, getPinStatus: p50 {o50:.3} ms, p99 {o99:.3} ms  [target p50 < 0.2, p99 < 1: {}]",
        verdict(o50 < 0.2 && o99 < 1.0)
    );
    println!(
        "  daemon overhead, login:        p50 {l50:.3} ms, p99 {l99:.3} ms  [target p50 < 0.2, p99 < 1: {}]",
        verdict(l50 < 0.2 && l99 < 1.0)
    );
    // The same overheads as the median of each round's own difference
    // (the two sides of a round ran a fraction of a millisecond apart, so
    // a slow moment of the machine hits both).
    let paired = |a: &[Duration], b: &[Duration]| {
        let mut d: Vec<f64> = a.iter().zip(b).map(|(x, y)| ms(*x) - ms(*y)).collect();
        d.sort_by(f64::total_cmp);
        let at = |q: f64| d[((d.len() - 1) as f64 * q).round() as usize];
        (at(0.5), at(0.99))
    };
    let (ps50, ps99) = paired(&t_status, &t_raw);
    let (pl50, pl99) = paired(&t_login, &t_raw_login);
    println!(
        "  paired per round (median and p99 of daemon − raw): getPinStatus {ps50:.3} / {ps99:.3} ms, login {pl50:.3} / {pl99:.3} ms"
    );
    let r50 = pct(&t_ref, 0.5);
    println!(
        "  of which one WebSocket round trip (reference p50 {r50:.3} ms): the daemon's own work is p50 {:.3} ms (getPinStatus), {:.3} ms (login)",
        o50 - r50,
        l50 - r50
    );
    // Not timed, so not disturbed by the machine's other work: what the
    // daemon spends per call, its reader thread's PC/SC calls included.
    println!(
        "  daemon CPU per call (getPinStatus and login alternating): {:.1} µs",
        cpu as f64 / 1e3 / (2 * o.latency_iters) as f64
    );
    call_ok(&mut ws, id + 1, "logout", &status).await?;
    let _ = ws.close(None).await;
    let _ = reference.close(None).await;
    Ok(())
}

/// One client: connect, read the PIN status, disconnect. Returns the time
/// from the start of the TCP connect to the response.
async fn one_client(port: u16, params: Arc<Value>) -> Res<(Duration, Duration)> {
    let t = Instant::now();
    let mut ws = ws_connect(port).await?;
    let connected = t.elapsed();
    call_ok(&mut ws, 1, "getPinStatus", &params).await?;
    let elapsed = t.elapsed();
    let _ = ws.close(None).await;
    // Wait for the server's close frame: the connection is really over.
    while let Some(Ok(_)) = ws.next().await {}
    Ok((elapsed, elapsed - connected))
}

/// A server the clients run against, and how to read its CPU time.
struct Served {
    name: &'static str,
    port: u16,
    pid: u32,
}

/// One round's numbers.
struct Round {
    times: Vec<Duration>,
    /// The request part (after the handshake).
    requests: Vec<Duration>,
    errors: Vec<String>,
    wall: Duration,
    server_cpu_ns: u64,
    clients_cpu_ns: u64,
    machine_busy: f64,
}

impl Round {
    fn cpu(&self, clients: usize) -> String {
        format!(
            "CPU: server {:.0} ms ({:.0} µs per client), clients {:.0} ms, machine busy {:.0} %",
            self.server_cpu_ns as f64 / 1e6,
            self.server_cpu_ns as f64 / 1e3 / clients as f64,
            self.clients_cpu_ns as f64 / 1e6,
            self.machine_busy,
        )
    }
}

/// Runs `f` while measuring the CPU of the server, of this process (the
/// clients) and the machine's busy share of its cores (pcscd, the card,
/// the kernel's loopback TCP included).
async fn measured<F, T>(server: &Served, f: F) -> Res<(T, Duration, u64, u64, f64)>
where
    F: std::future::Future<Output = T>,
{
    let me = std::process::id();
    let (s0, c0, m0) = (
        harness::cpu_ns(server.pid)?,
        harness::cpu_ns(me)?,
        harness::machine_jiffies()?,
    );
    let start = Instant::now();
    let out = f.await;
    let wall = start.elapsed();
    let (s1, c1, m1) = (
        harness::cpu_ns(server.pid)?,
        harness::cpu_ns(me)?,
        harness::machine_jiffies()?,
    );
    let busy = 100.0 * (m1.0 - m0.0) as f64 / (m1.1 - m0.1).max(1) as f64;
    Ok((out, wall, s1 - s0, c1 - c0, busy))
}

/// The burst: every client connects, reads the status and disconnects,
/// all started in the same instant.
async fn burst_round(o: &Opts, server: &Served, params: &Arc<Value>) -> Res<Round> {
    let run = async {
        let tasks: Vec<_> = (0..o.clients)
            .map(|_| tokio::spawn(one_client(server.port, params.clone())))
            .collect();
        let mut r = (Vec::new(), Vec::new(), Vec::new());
        for t in tasks {
            match t.await {
                Ok(Ok((d, s))) => {
                    r.0.push(d);
                    r.1.push(s);
                }
                Ok(Err(e)) => r.2.push(e),
                Err(e) => r.2.push(e.to_string()),
            }
        }
        r
    };
    let ((times, requests, errors), wall, server_cpu_ns, clients_cpu_ns, machine_busy) =
        measured(server, run).await?;
    Ok(Round {
        times,
        requests,
        errors,
        wall,
        server_cpu_ns,
        clients_cpu_ns,
        machine_busy,
    })
}

/// Connected clients: every client connects first; once all are
/// connected, all send `getPinStatus` in the same instant. Time from that
/// instant to each response.
async fn held_round(o: &Opts, server: &Served, params: &Arc<Value>) -> Res<Round> {
    let mut conns = Vec::with_capacity(o.clients);
    let connecting: Vec<_> = (0..o.clients)
        .map(|_| tokio::spawn(ws_connect(server.port)))
        .collect();
    for c in connecting {
        conns.push(c.await.map_err(|e| e.to_string())??);
    }
    let go = Arc::new(tokio::sync::Barrier::new(o.clients + 1));
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut ws| {
            let (go, params) = (go.clone(), params.clone());
            tokio::spawn(async move {
                go.wait().await;
                let t = Instant::now();
                let r = call_ok(&mut ws, 1, "getPinStatus", &params).await;
                (t.elapsed(), r.map(|_| ()), ws)
            })
        })
        .collect();
    // Every task waits at the barrier; releasing it starts the clock.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let run = async {
        go.wait().await;
        let mut r = (Vec::new(), Vec::new(), Vec::new());
        for t in tasks {
            match t.await {
                Ok((d, Ok(()), ws)) => {
                    r.0.push(d);
                    r.1.push(ws);
                }
                Ok((_, Err(e), _)) => r.2.push(e),
                Err(e) => r.2.push(e.to_string()),
            }
        }
        r
    };
    let ((times, open, errors), wall, server_cpu_ns, clients_cpu_ns, machine_busy) =
        measured(server, run).await?;
    let closing: Vec<_> = open
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let _ = ws.close(None).await;
                while let Some(Ok(_)) = ws.next().await {}
            })
        })
        .collect();
    for c in closing {
        let _ = c.await;
    }
    Ok(Round {
        requests: times.clone(),
        times,
        errors,
        wall,
        server_cpu_ns,
        clients_cpu_ns,
        machine_busy,
    })
}

fn print_round(label: &str, o: &Opts, r: &Round, extra: &str) {
    println!(
        "  {label}: {} ok, {} errors, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, all done in {:.0} ms{extra}{}\n    {}",
        r.times.len(),
        r.errors.len(),
        pct(&r.times, 0.5),
        pct(&r.times, 0.99),
        pct(&r.times, 1.0),
        ms(r.wall),
        r.errors
            .first()
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default(),
        r.cpu(o.clients),
    );
}

async fn many_clients(o: &Opts, daemon: &Daemon, reader: &str) -> Res<()> {
    let params = Arc::new(json!({"reader": reader, "pin": "pin"}));
    let bare = bare::Process::spawn()?;
    let served = Served {
        name: "cardgate",
        port: daemon.port,
        pid: daemon.pid(),
    };
    let reference = Served {
        name: "reference",
        port: bare.port,
        pid: bare.pid(),
    };
    println!(
        "\n{} concurrent WebSocket clients, {} rounds each, cardgate interleaved with a reference server \
         (a bare tokio-tungstenite server answering every request with a fixed status: the floor of any \
         WebSocket server on this machine):",
        o.clients, o.client_rounds
    );
    if o.runs("clients") {
        burst(o, daemon, &served, &reference, &params).await?;
    }
    if o.runs("connected") {
        connected(o, &served, &reference, &params).await?;
    }
    Ok(())
}

async fn burst(
    o: &Opts,
    daemon: &Daemon,
    served: &Served,
    reference: &Served,
    params: &Arc<Value>,
) -> Res<()> {
    println!(
        "burst (all connect at once, getPinStatus, disconnect; time from connect to response):"
    );
    let mut rss = Vec::new();
    let mut all_ok = true;
    let (mut worst99, mut ref99) = (0.0f64, 0.0f64);
    let (mut cpu, mut ref_cpu) = (0u64, 0u64);
    for round in 1..=o.client_rounds {
        let r = burst_round(o, served, params).await?;
        // Let the daemon finish closing.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let kib = daemon.rss_kib()?;
        rss.push(kib);
        worst99 = worst99.max(pct(&r.times, 0.99));
        cpu += r.server_cpu_ns;
        all_ok &= r.errors.is_empty();
        let extra = format!(
            " (of which getPinStatus p50 {:.2} ms, p99 {:.2} ms); daemon RSS {:.1} MB",
            pct(&r.requests, 0.5),
            pct(&r.requests, 0.99),
            kib as f64 / 1024.0
        );
        print_round(&format!("{} round {round}", served.name), o, &r, &extra);
        let b = burst_round(o, reference, params).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        ref99 = ref99.max(pct(&b.times, 0.99));
        ref_cpu += b.server_cpu_ns;
        all_ok &= b.errors.is_empty();
        print_round(&format!("{} round {round}", reference.name), o, &b, "");
    }
    let per_client = |ns: u64| ns as f64 / 1e3 / (o.clients * o.client_rounds) as f64;
    println!(
        "  worst p99: cardgate {worst99:.1} ms, reference {ref99:.1} ms; server CPU per client: cardgate {:.0} µs, reference {:.0} µs ({:.2}×)",
        per_client(cpu),
        per_client(ref_cpu),
        cpu as f64 / ref_cpu.max(1) as f64
    );
    println!(
        "  [target no error, p99 < 20 ms: {}]",
        verdict(all_ok && worst99 < 20.0)
    );
    // Memory on repeat: more rounds against the daemon alone (the
    // interleaved ones are too few to see past the allocator's warm-up).
    let mut extra_errors = 0;
    for _ in 0..o.rss_rounds {
        let r = burst_round(o, served, params).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        extra_errors += r.errors.len();
        rss.push(daemon.rss_kib()?);
    }
    if o.rss_rounds > 0 {
        println!(
            "  {} more rounds against the daemon alone, for its RSS: {} errors",
            o.rss_rounds, extra_errors
        );
    }
    if rss.len() >= 4 {
        // The allocator keeps its high-water mark: it rises over the first
        // ten or so rounds (more connections at once than ever before), then
        // stays, stepping up now and then by a few hundred KiB. A leak
        // keeps rising: judged by the least-squares slope over the later
        // half of the series. A leak of 64 bytes per client would make it
        // 62.5 KiB/round; one step of 500 KiB in the middle of 20 rounds
        // makes it ~37.
        let later: Vec<(f64, f64)> = rss
            .iter()
            .enumerate()
            .skip(rss.len() / 2)
            .map(|(i, kib)| (i as f64, *kib as f64))
            .collect();
        let trend = slope(&later);
        let growth_ok = trend < 64.0 && extra_errors == 0;
        println!(
            "  RSS round 1 → {}: {} KiB; slope over rounds {}–{}: {:+.1} KiB/round  [target no growth on repeat (slope < 64 KiB/round, 64 bytes per client): {}]",
            rss.len(),
            rss.iter().map(u64::to_string).collect::<Vec<_>>().join(" "),
            rss.len() / 2 + 1,
            rss.len(),
            trend,
            verdict(growth_ok)
        );
    }
    Ok(())
}

async fn connected(o: &Opts, served: &Served, reference: &Served, params: &Arc<Value>) -> Res<()> {
    println!(
        "connected (all {} connected first, then all send getPinStatus at once; time from that instant to each response):",
        o.clients
    );
    let (mut held99, mut held_ref99, mut held_ok) = (0.0f64, 0.0f64, true);
    for round in 1..=o.client_rounds {
        let r = held_round(o, served, params).await?;
        held99 = held99.max(pct(&r.times, 0.99));
        held_ok &= r.errors.is_empty();
        print_round(&format!("{} round {round}", served.name), o, &r, "");
        let b = held_round(o, reference, params).await?;
        held_ref99 = held_ref99.max(pct(&b.times, 0.99));
        print_round(&format!("{} round {round}", reference.name), o, &b, "");
    }
    println!(
        "  worst p99: cardgate {held99:.1} ms, reference {held_ref99:.1} ms  [target no error, p99 < 20 ms: {}]",
        verdict(held_ok && held99 < 20.0)
    );
    Ok(())
}

/// The reference server: what any WebSocket server costs on this machine.
/// Same runtime (tokio, two workers), same listen backlog and read buffer
/// as the daemon; it parses each request as JSON and answers with a fixed
/// PIN status of the daemon's shape. No HTTP router, no checks, no card.
mod bare {
    use super::Res;
    use futures_util::{SinkExt, StreamExt};
    use std::io::BufRead;
    use std::process::{Child, Command, Stdio};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

    const STATUS: &str = r#"{"id":"pin","label":"PIV Card Application PIN","initialized":true,"toBeChanged":false,"blocked":false,"tryCountLow":false,"lastTry":false,"remainingTries":15,"maxTries":15,"validated":false,"soValidated":false,"protectedAuthPath":false,"minLength":6,"maxLength":8}"#;

    pub fn serve() -> Res<()> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
            socket
                .bind("127.0.0.1:0".parse().expect("address"))
                .map_err(|e| e.to_string())?;
            let listener = socket.listen(1024).map_err(|e| e.to_string())?;
            println!(
                "{}",
                listener.local_addr().map_err(|e| e.to_string())?.port()
            );
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let config = WebSocketConfig::default().read_buffer_size(1024);
                    let Ok(mut ws) =
                        tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
                    else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        match msg {
                            Message::Text(t) => {
                                let id = serde_json::from_str::<serde_json::Value>(t.as_str())
                                    .map(|v| v["id"].clone())
                                    .unwrap_or_default();
                                let answer =
                                    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{STATUS}}}"#);
                                if ws.send(Message::text(answer)).await.is_err() {
                                    break;
                                }
                            }
                            Message::Close(_) => break,
                            _ => {}
                        }
                    }
                });
            }
        })
    }

    /// The reference server as a process of its own, stopped on drop.
    pub struct Process {
        child: Child,
        pub port: u16,
    }

    impl Process {
        pub fn spawn() -> Res<Process> {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut child = Command::new(exe)
                .env(super::BARE_VAR, "1")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("reference server: {e}"))?;
            let mut line = String::new();
            let out = child.stdout.take().ok_or("no stdout")?;
            std::io::BufReader::new(out)
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            let port = line
                .trim()
                .parse()
                .map_err(|_| format!("reference server said {line:?}"))?;
            Ok(Process { child, port })
        }

        pub fn pid(&self) -> u32 {
            self.child.id()
        }
    }

    impl Drop for Process {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Card removal / insertion: the daemon's notification against a raw
/// PC/SC watcher, both woken by the same pcscd event.
async fn notifications(
    o: &Opts,
    daemon: &Daemon,
    reader: &str,
    port: u16,
    card: &mut Option<VirtualCardProcess>,
) -> Res<()> {
    let (raw_tx, raw_rx) = std::sync::mpsc::channel();
    let watcher = Watcher::start(reader, raw_tx)?;
    let mut ws = ws_connect(daemon.port).await?;
    call_ok(&mut ws, 1, "hello", &json!({})).await?;
    let (note_tx, mut note_rx) = tokio::sync::mpsc::unbounded_channel();
    let reader_name = reader.to_string();
    let listener = tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let now = Instant::now();
            if let Message::Text(t) = msg
                && let Ok(v) = serde_json::from_str::<Value>(t.as_str())
                && v["params"]["reader"] == reader_name.as_str()
            {
                let m = v["method"].as_str().unwrap_or("").to_string();
                if m == "cardInserted" || m == "cardRemoved" {
                    let _ = note_tx.send((now, m == "cardInserted"));
                }
            }
        }
    });
    let mut removed = Vec::new();
    let mut inserted = Vec::new();
    let wait_pair = async |want: bool,
                           note_rx: &mut tokio::sync::mpsc::UnboundedReceiver<(Instant, bool)>|
           -> Res<f64> {
        let raw = tokio::task::block_in_place(|| {
            loop {
                match raw_rx.recv_timeout(Duration::from_secs(20)) {
                    Ok((t, p)) if p == want => return Ok(t),
                    Ok(_) => continue,
                    Err(e) => return Err(format!("raw watcher: {e}")),
                }
            }
        })?;
        loop {
            let (t, p) = tokio::time::timeout(Duration::from_secs(20), note_rx.recv())
                .await
                .map_err(|_| "no notification within 20 s".to_string())?
                .ok_or("notification listener ended")?;
            if p == want {
                return Ok((t.duration_since(raw).as_secs_f64()
                    - raw.duration_since(t).as_secs_f64())
                    * 1e3);
            }
        }
    };
    for _ in 0..o.notify_cycles {
        if let Some(mut c) = card.take() {
            c.kill();
        }
        removed.push(wait_pair(false, &mut note_rx).await?);
        // The card process retries until vpcd takes it again.
        *card = Some(VirtualCardProcess::spawn("openpgp", port, &[])?);
        inserted.push(wait_pair(true, &mut note_rx).await?);
    }
    listener.abort();
    drop(watcher);
    let show = |name: &str, v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        println!(
            "  {name:<10} extra over the raw watcher: p50 {:.2} ms, max {:.2} ms",
            s[s.len() / 2],
            s[s.len() - 1]
        );
        s[s.len() - 1]
    };
    println!(
        "\ncard removal / insertion → WebSocket notification vs raw SCardGetStatusChange ({} cycles):",
        o.notify_cycles
    );
    let worst = show("removal", &removed).max(show("insertion", &inserted));
    println!(
        "  (insertion includes recognising the card: connect, SELECT, both PINs' status)  [target < 50 ms: {}]",
        verdict(worst < 50.0)
    );
    Ok(())
}

fn idle_cpu(o: &Opts, rt: &tokio::runtime::Runtime, daemon: &Daemon) -> Res<()> {
    // A page stays connected, doing nothing (as a browser tab would).
    let ws = rt.block_on(ws_connect(daemon.port))?;
    std::thread::sleep(Duration::from_secs(1));
    let (c0, w0, n0) = (
        daemon.cpu_ticks()?,
        daemon.wakeups()?,
        harness::cpu_ns(daemon.pid())?,
    );
    let t = Instant::now();
    std::thread::sleep(o.idle);
    let (c1, w1, n1) = (
        daemon.cpu_ticks()?,
        daemon.wakeups()?,
        harness::cpu_ns(daemon.pid())?,
    );
    let secs = t.elapsed().as_secs_f64();
    // The CPU time the scheduler counted to the nanosecond
    // (`/proc/PID/task/*/schedstat`): the tick counts of `/proc/PID/stat`
    // charge a whole 10 ms tick to whoever runs when it falls, so a single
    // wake-up can show as a tick. No polling loop: under 1 ms in the whole
    // period (a loop waking ten times a second would cost more than that
    // and show hundreds of wake-ups).
    let busy_ns = n1.saturating_sub(n0);
    let share = busy_ns as f64 / 1e9 / secs * 100.0;
    println!(
        "\nidle over {:.0} s, two readers with cards, one idle WebSocket client: CPU {:.3} ms = {:.5} % ({} ticks), {} thread wake-ups ({} threads)  [target 0 %, no polling (< 1 ms in the period): {}]",
        secs,
        busy_ns as f64 / 1e6,
        share,
        c1 - c0,
        w1 - w0,
        daemon.threads(),
        verdict(busy_ns < 1_000_000)
    );
    drop(ws);
    Ok(())
}

/// Mixed clients and operations for `o.soak`, the RSS sampled every second.
async fn soak(o: &Opts, daemon: &Daemon, reader0: &str, reader1: &str) -> Res<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut tasks = Vec::new();
    for n in 0..16u64 {
        let (stop, ops, errors, first_error) = (
            stop.clone(),
            ops.clone(),
            errors.clone(),
            first_error.clone(),
        );
        let (r0, r1, port) = (reader0.to_string(), reader1.to_string(), daemon.port);
        tasks.push(tokio::spawn(async move {
            let mut seed = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            while !stop.load(Ordering::Relaxed) {
                let mut ws = match ws_connect(port).await {
                    Ok(ws) => ws,
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.lock().unwrap().get_or_insert(e);
                        continue;
                    }
                };
                let calls = 1 + next() % 20;
                for id in 0..calls {
                    // Wrong PINs are rare next to right ones (which reset the
                    // counter): 14 wrong in a row would leave the last try,
                    // which a page may not use (LAST_TRY_PROTECTED) — for
                    // right PINs too, until the user's own dialog.
                    let (method, params, allowed): (&str, Value, &[&str]) = match next() % 20 {
                        0 | 1 => ("getReaders", json!({}), &[]),
                        2..=4 => (
                            "login",
                            json!({"reader": r0, "pin": "pin", "value": "123456"}),
                            &[],
                        ),
                        5 => (
                            "login",
                            json!({"reader": r0, "pin": "pin", "value": "000000"}),
                            &["PIN_INCORRECT", "LAST_TRY_PROTECTED"],
                        ),
                        6 | 7 => ("logout", json!({"reader": r0, "pin": "pin"}), &[]),
                        8 | 9 => (
                            "checkConstraints",
                            json!({"reader": r0, "pin": "pin", "oldPin": "123456", "newPin": "654321"}),
                            &[],
                        ),
                        10 | 11 => ("hello", json!({"protocol": 1}), &[]),
                        12..=15 => ("getPinStatus", json!({"reader": r1, "pin": "user"}), &[]),
                        _ => ("getPinStatus", json!({"reader": r0, "pin": "pin"}), &[]),
                    };
                    match call(&mut ws, id, method, &params).await {
                        Ok(v) => {
                            ops.fetch_add(1, Ordering::Relaxed);
                            if let Some(code) = v["error"]["data"]["code"].as_str()
                                && !allowed.contains(&code)
                            {
                                errors.fetch_add(1, Ordering::Relaxed);
                                first_error
                                    .lock()
                                    .unwrap()
                                    .get_or_insert(format!("{method}: {v}"));
                            }
                        }
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            first_error.lock().unwrap().get_or_insert(e);
                            break;
                        }
                    }
                }
                // Half the clients leave politely, half just drop the socket.
                if next() % 2 == 0 {
                    let _ = ws.close(None).await;
                }
                drop(ws);
                tokio::time::sleep(Duration::from_millis(next() % 10)).await;
            }
        }));
    }
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < o.soak {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push((start.elapsed().as_secs_f64(), daemon.rss_kib()? as f64));
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // The slope after a warm-up of a fifth of the run (allocator arenas,
    // buffers reaching their working size).
    let warm = samples.len() / 5;
    let tail = &samples[warm..];
    let kib_per_min = slope(tail) * 60.0;
    let (min, max) = tail
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let n_ops = ops.load(Ordering::Relaxed);
    let n_err = errors.load(Ordering::Relaxed);
    println!(
        "\nsoak, {:.0} s, 16 client loops (connect, 1-20 mixed calls on two cards, close or drop): {} calls ({:.0}/s), {} unexpected errors{}",
        o.soak.as_secs_f64(),
        n_ops,
        n_ops as f64 / o.soak.as_secs_f64(),
        n_err,
        first_error
            .lock()
            .unwrap()
            .as_ref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    println!(
        "  RSS after warm-up {:.1}..{:.1} MB, slope {:+.1} KiB/min  [target |slope| < 64 KiB/min, no error: {}]",
        min / 1024.0,
        max / 1024.0,
        kib_per_min,
        verdict(kib_per_min.abs() < 64.0 && n_err == 0)
    );
    Ok(())
}
