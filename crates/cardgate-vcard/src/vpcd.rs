//! The card side of vsmartcard's vpcd protocol: a TCP client of the vpcd
//! driver loaded by pcscd (port 35963 = reader "Virtual PCD 00 00",
//! 35964 = "Virtual PCD 00 01").
//!
//! Every message is a 2-byte big-endian length followed by the payload. A
//! 1-byte payload is a control: 0 power off, 1 power on, 2 reset, 4 get ATR
//! (answered with the ATR). A longer payload is a command APDU, answered
//! with response data || SW1 SW2.
//!
//! Latency: TCP_NODELAY is set and TCP_QUICKACK before every read, otherwise
//! Nagle and delayed ACKs cost ~44 ms per APDU.
//!
//! A connection is an insertion: the card is reset when it connects and when
//! the connection drops; then the client reconnects with a short backoff.
//! The same [`VirtualCard`] object (PINs, counters) lives on across
//! connections.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::VirtualCard;

/// Default TCP port of the first vpcd slot ("Virtual PCD 00 00").
pub const DEFAULT_PORT: u16 = 35963;

const CTRL_POWER_OFF: u8 = 0;
const CTRL_POWER_ON: u8 = 1;
const CTRL_RESET: u8 = 2;
const CTRL_GET_ATR: u8 = 4;

/// Timing of the client.
#[derive(Debug, Clone)]
pub struct Options {
    /// First delay before reconnecting (also after a dropped connection).
    pub backoff_min: Duration,
    /// Longest delay between connection attempts.
    pub backoff_max: Duration,
    /// How often a blocked read looks at the stop flag.
    pub poll: Duration,
    /// Timeout of one connection attempt.
    pub connect_timeout: Duration,
    /// Where the retry counters are kept ([`VirtualCard::counters`]):
    /// written after every change, before the card answers, as a real
    /// card writes its counter before it responds.
    pub state: Option<PathBuf>,
    /// Waits this long before answering each command APDU (after the
    /// counters are stored), so tests can pull the card mid-operation.
    pub response_delay: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
            poll: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(1),
            state: None,
            response_delay: Duration::ZERO,
        }
    }
}

/// What happened to the connection, for the caller's messages.
#[derive(Debug)]
pub enum Event<'a> {
    /// Connected to `addr` ("host:port"): the card is inserted.
    Connected {
        /// vpcd's address, "host:port".
        addr: &'a str,
    },
    /// The connection ended (the card is removed); `error` says why when
    /// it was not a clean close by vpcd or a stop request.
    Disconnected {
        /// The failure that ended it, if any.
        error: Option<&'a io::Error>,
    },
    /// A connection attempt failed; the next one follows after `retry_in`.
    ConnectFailed {
        /// Why the attempt failed.
        error: &'a io::Error,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
}

/// Serves `card` to vpcd at `host:port` until `stop` is set; returns the card.
/// Meant to run on its own thread.
pub fn run(card: VirtualCard, host: &str, port: u16, stop: &AtomicBool) -> VirtualCard {
    run_with(card, host, port, stop, &Options::default(), |_| {})
}

/// [`run`] with explicit timing and a callback for connection events.
pub fn run_with(
    mut card: VirtualCard,
    host: &str,
    port: u16,
    stop: &AtomicBool,
    options: &Options,
    mut on_event: impl FnMut(&Event<'_>),
) -> VirtualCard {
    let addr = format!("{host}:{port}");
    let mut backoff = options.backoff_min;
    while !stop.load(Ordering::Relaxed) {
        match connect(host, port, options.connect_timeout) {
            Ok(stream) => {
                backoff = options.backoff_min;
                card.reset();
                tracing::info!(%addr, profile = %card.profile(), "virtual card connected to vpcd");
                on_event(&Event::Connected { addr: &addr });
                let result = serve(&mut card, stream, stop, options);
                card.reset();
                let error = result
                    .err()
                    .filter(|e| e.kind() != io::ErrorKind::UnexpectedEof);
                tracing::info!(%addr, error = ?error, "virtual card disconnected from vpcd");
                on_event(&Event::Disconnected {
                    error: error.as_ref(),
                });
                sleep_unless_stopped(options.backoff_min, stop);
            }
            Err(error) => {
                tracing::debug!(%addr, %error, "vpcd not reachable");
                on_event(&Event::ConnectFailed {
                    error: &error,
                    retry_in: backoff,
                });
                sleep_unless_stopped(backoff, stop);
                backoff = (backoff * 2).min(options.backoff_max);
            }
        }
    }
    card
}

fn connect(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for host");
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let end = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

/// Answers vpcd's messages until the connection ends (Err) or `stop` is set (Ok).
fn serve(
    card: &mut VirtualCard,
    mut stream: TcpStream,
    stop: &AtomicBool,
    options: &Options,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(options.poll))?;
    let mut saved = card.counters();
    loop {
        let mut header = [0u8; 2];
        if !read_full(&mut stream, &mut header, stop)? {
            return Ok(());
        }
        let len = usize::from(u16::from_be_bytes(header));
        // May carry a PIN: wiped when dropped.
        let mut payload = Zeroizing::new(vec![0u8; len]);
        if !read_full(&mut stream, &mut payload, stop)? {
            return Ok(());
        }
        match payload.as_slice() {
            [] => {}
            [control] => match *control {
                CTRL_POWER_OFF | CTRL_POWER_ON | CTRL_RESET => {
                    tracing::debug!(control, "vpcd control");
                    card.reset();
                }
                CTRL_GET_ATR => send(&mut stream, &card.atr())?,
                other => tracing::debug!(control = other, "unknown vpcd control ignored"),
            },
            apdu => {
                let response = Zeroizing::new(card.process(apdu));
                if let Some(path) = &options.state {
                    let now = card.counters();
                    if now != saved {
                        save_counters(path, &now)?;
                        saved = now;
                    }
                }
                if !options.response_delay.is_zero() {
                    std::thread::sleep(options.response_delay);
                }
                send(&mut stream, &response)?;
            }
        }
    }
}

/// Replaces the counters file in one step (write a sibling, rename), so a
/// card killed at any moment leaves the old or the new counters, never a
/// torn file.
pub fn save_counters(path: &Path, counters: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, counters)?;
    std::fs::rename(&tmp, path)
}

/// Fills `buf`, tolerating read timeouts (used to watch `stop`).
/// Ok(false): stopped; Err(UnexpectedEof): vpcd closed the connection.
fn read_full(stream: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        if stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        quickack(stream);
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(target_os = "linux")]
fn quickack(stream: &TcpStream) {
    use std::os::linux::net::TcpStreamExt;
    // Best effort: only latency depends on it.
    let _ = stream.set_quickack(true);
}

#[cfg(not(target_os = "linux"))]
fn quickack(_stream: &TcpStream) {}

/// Sends one frame in one write (length || payload).
fn send(stream: &mut TcpStream, payload: &[u8]) -> io::Result<()> {
    let len = u16::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "response longer than 65535"))?;
    let mut frame = Zeroizing::new(Vec::with_capacity(payload.len() + 2));
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    stream.write_all(&frame)
}
