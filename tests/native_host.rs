//! `cardgate native-host` through the real binary over pipes, framed as
//! browsers frame native messages (4-byte native-endian length + JSON),
//! relaying to a daemon with the simulated cards of `--demo` that the host
//! starts on demand on a free port (a temporary HOME): sessions, JSON-RPC
//! round trips, notifications, the origin allowlist, malformed, oversize
//! and truncated input; and the one daemon behind both front ends: logins
//! owned per connection and one lockout per site across the host and a
//! page's WebSocket, a daemon already running used as it is, and a clear
//! refusal when none can be reached. Every daemon a test started is
//! stopped by pid at its end, failed or not.

#[path = "common/net.rs"]
mod net;

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite;

const BIN: &str = env!("CARGO_BIN_EXE_cardgate");
const WAIT: Duration = Duration::from_secs(10);
const BANK: &str = "https://bank.example";
/// What the browser passes the host: the extension's origin.
const EXTENSION: &str = "chrome-extension://abcdefghijklmnop/";

/// A temporary HOME with the configuration: a free port, the allowlist,
/// the lockout kept in memory only (so that only one daemon's can count).
/// Dropped last: it stops every process still running with this HOME (the
/// daemons the hosts started on demand), by pid.
struct Home {
    dir: tempfile::TempDir,
    port: u16,
    origins: PathBuf,
}

impl Home {
    fn new() -> Home {
        Home::with_config("")
    }

    /// `extra` is appended to config.toml.
    fn with_config(extra: &str) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config/cardgate");
        std::fs::create_dir_all(&config).unwrap();
        let origins = config.join("origins.toml");
        std::fs::write(&origins, format!("allowed = [\"{BANK}\"]\n")).unwrap();
        let port = net::free_port();
        std::fs::write(
            config.join("config.toml"),
            format!("port = {port}\n{extra}\n[limits]\nlockout_file = \"\"\n"),
        )
        .unwrap();
        Home { dir, port, origins }
    }

    /// `cardgate` with this HOME.
    fn command(&self) -> Command {
        let home = self.dir.path();
        let mut c = Command::new(BIN);
        c.env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .env("XDG_RUNTIME_DIR", home.join("run"))
            .env("CARDGATE_SYSTEM_CONFIG", home.join("none.toml"))
            .env_remove("CARDGATE_CONFIG")
            .env_remove("CARDGATE_LOG");
        c
    }

    /// The pids of the processes running with this HOME.
    fn processes(&self) -> Vec<u32> {
        let needle = format!("HOME={}\0", self.dir.path().display());
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            let zombie = std::fs::read_to_string(entry.path().join("stat"))
                .map(|s| {
                    s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(true);
            if !zombie
                && environ
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes())
            {
                pids.push(pid);
            }
        }
        pids
    }

    fn listening(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    /// Stops the processes of this HOME: SIGTERM, then SIGKILL.
    fn stop_all(&self) {
        for signal in ["-TERM", "-KILL"] {
            let pids = self.processes();
            if pids.is_empty() {
                return;
            }
            for pid in &pids {
                let _ = Command::new("kill")
                    .args([signal, &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
            let deadline = Instant::now() + WAIT;
            while !self.processes().is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        self.stop_all();
    }
}

struct Host {
    child: Child,
    stdin: Option<ChildStdin>,
    frames: mpsc::Receiver<Value>,
    /// Messages of other sessions or kinds seen while waiting.
    pending: Vec<Value>,
    next_id: u64,
    /// Declared last: dropped after the host is stopped.
    home: Home,
}

impl Host {
    fn start() -> Host {
        Host::start_in(Home::new())
    }

    fn start_in(home: Home) -> Host {
        let mut command = home.command();
        command.args(["native-host", "--demo", EXTENSION]);
        Host::spawn(home, command)
    }

    /// Runs `command`, a native host of `home`.
    fn spawn(home: Home, mut command: Command) -> Host {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, frames) = mpsc::channel();
        std::thread::spawn(move || {
            loop {
                let mut len = [0u8; 4];
                if stdout.read_exact(&mut len).is_err() {
                    break;
                }
                let mut body = vec![0u8; u32::from_ne_bytes(len) as usize];
                if stdout.read_exact(&mut body).is_err() {
                    break;
                }
                let v: Value = serde_json::from_slice(&body).expect("the host sends JSON");
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Host {
            stdin: child.stdin.take(),
            child,
            frames,
            pending: Vec::new(),
            next_id: 1,
            home,
        }
    }

    fn write_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    fn send(&mut self, v: Value) {
        let text = v.to_string();
        let mut frame = (text.len() as u32).to_ne_bytes().to_vec();
        frame.extend_from_slice(text.as_bytes());
        self.write_raw(&frame);
    }

    /// The next frame matching `pred` (others are kept for later).
    fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i);
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .frames
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {what}; seen {:?}", self.pending));
            if pred(&v) {
                return v;
            }
            self.pending.push(v);
        }
    }

    fn open(&mut self, session: u64, origin: &str) -> Value {
        self.send(json!({ "type": "open", "session": session, "origin": origin }));
        self.expect("open answer", |v| {
            v["session"] == session && (v["type"] == "opened" || v["type"] == "refused")
        })
    }

    fn send_text(&mut self, session: u64, text: &str) {
        self.send(json!({ "type": "message", "session": session, "data": text }));
    }

    /// A JSON-RPC call in a session; the whole response.
    fn call(&mut self, session: u64, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let req = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        self.send_text(session, &req.to_string());
        let frame = self.expect(method, |v| {
            v["type"] == "message"
                && v["session"] == session
                && data(v).get("id") == Some(&json!(id))
        });
        data(&frame)
    }

    fn ok(&mut self, session: u64, method: &str, params: Value) -> Value {
        let r = self.call(session, method, params);
        assert!(r.get("error").is_none(), "{method}: {r}");
        r["result"].clone()
    }

    /// Closes stdin and waits for the exit status.
    fn finish(&mut self) -> ExitStatus {
        drop(self.stdin.take());
        self.wait()
    }

    fn wait(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if start.elapsed() > WAIT {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the host did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The JSON-RPC message inside a `message` envelope.
fn data(frame: &Value) -> Value {
    serde_json::from_str(frame["data"].as_str().expect("data is text")).expect("data is JSON")
}

const PIV: &str = "cardgate demo reader 0";

/// A page connected to the daemon's WebSocket directly.
struct Page {
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    next_id: u64,
    /// Notifications received while waiting for answers.
    notes: Vec<Value>,
}

impl Page {
    fn connect(port: u16, origin: &str) -> Page {
        use tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://127.0.0.1:{port}/ws")
            .into_client_request()
            .unwrap();
        req.headers_mut().insert("Origin", origin.parse().unwrap());
        let (ws, _) = tungstenite::connect(req).expect("the daemon accepts the page");
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(WAIT)).unwrap();
        }
        Page {
            ws,
            next_id: 1000,
            notes: Vec::new(),
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let req = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        self.ws
            .send(tungstenite::Message::text(req.to_string()))
            .unwrap();
        loop {
            match self.ws.read().expect("an answer from the daemon") {
                tungstenite::Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["id"] == json!(id) {
                        return v;
                    }
                    self.notes.push(v);
                }
                tungstenite::Message::Close(c) => panic!("closed: {c:?}"),
                _ => {}
            }
        }
    }

    fn ok(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(method, params);
        assert!(r.get("error").is_none(), "{method}: {r}");
        r["result"].clone()
    }
}

fn piv_pin() -> Value {
    json!({ "reader": PIV, "pin": "pin" })
}

#[test]
fn round_trips_in_a_session() {
    let mut h = Host::start();
    assert_eq!(h.open(1, BANK)["type"], "opened");
    let hello = h.ok(1, "hello", json!({ "protocol": 1 }));
    assert_eq!(hello["daemon"], "cardgate");
    let readers = h.ok(1, "getReaders", json!({}));
    assert_eq!(readers["readers"][0]["name"], PIV);
    assert_eq!(readers["readers"][1]["name"], "cardgate demo reader 1");
    let status = h.ok(1, "getPinStatus", piv_pin());
    assert_eq!(status["remainingTries"], 3);

    // A wrong PIN: the card's error, and the pushed status.
    let mut login = piv_pin();
    login["value"] = json!("999999");
    let r = h.call(1, "login", login.clone());
    assert_eq!(r["error"]["data"]["code"], "PIN_INCORRECT", "{r}");
    assert_eq!(r["error"]["data"]["remainingTries"], 2);
    let note = h.expect("pinStateChanged", |v| {
        v["type"] == "message" && data(v)["method"] == "pinStateChanged"
    });
    assert_eq!(data(&note)["params"]["status"]["remainingTries"], 2);

    // The right one.
    login["value"] = json!("123456");
    h.ok(1, "login", login);
    assert_eq!(h.ok(1, "getPinStatus", piv_pin())["validated"], true);

    // A second page sees the login masked: logins belong to their session.
    assert_eq!(h.open(2, BANK)["type"], "opened");
    assert_eq!(h.ok(2, "getPinStatus", piv_pin())["validated"], false);

    // Batches and JSON-RPC errors, exactly as over the WebSocket.
    h.send_text(
        1,
        &json!([
            { "jsonrpc": "2.0", "id": "a", "method": "hello", "params": {} },
            { "jsonrpc": "2.0", "id": "b", "method": "noSuchMethod", "params": {} }
        ])
        .to_string(),
    );
    let batch = h.expect("batch", |v| v["type"] == "message" && data(v).is_array());
    let batch = data(&batch);
    assert_eq!(batch[1]["error"]["code"], -32601, "{batch}");
    h.send_text(1, "this is not JSON");
    let e = h.expect("parse error", |v| {
        v["type"] == "message" && data(v)["error"]["code"] == -32700
    });
    assert_eq!(e["session"], 1);

    // Closing a session ends its login.
    h.send(json!({ "type": "close", "session": 1 }));
    let deadline = Instant::now() + WAIT;
    loop {
        let s = h.ok(2, "getPinStatus", piv_pin());
        if s["validated"] == false && s["remainingTries"] == 3 {
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(h.finish().success());
}

#[test]
fn origins_are_checked_against_the_allowlist() {
    let mut h = Host::start();
    let r = h.open(1, "https://evil.test");
    assert_eq!(r["type"], "refused");
    assert_eq!(r["code"], "ORIGIN_NOT_ALLOWED");
    for bad in [
        "null",
        "",
        "chrome-extension://abc",
        "https://bank.example/path",
    ] {
        assert_eq!(h.open(9, bad)["type"], "refused", "{bad}");
    }
    // No session, no answer but "closed".
    h.send_text(
        1,
        r#"{"jsonrpc":"2.0","id":1,"method":"hello","params":{}}"#,
    );
    let c = h.expect("closed", |v| v["type"] == "closed" && v["session"] == 1);
    assert_eq!(c["code"], 1000);

    // Revoked while open: the next request gets ORIGIN_NOT_ALLOWED and the
    // session is closed with 1008.
    assert_eq!(h.open(2, BANK)["type"], "opened");
    h.ok(2, "hello", json!({}));
    std::thread::sleep(Duration::from_millis(1100)); // a new mtime
    std::fs::write(&h.home.origins, "allowed = []\n").unwrap();
    h.send_text(
        2,
        r#"{"jsonrpc":"2.0","id":5,"method":"hello","params":{}}"#,
    );
    let e = h.expect("refusal", |v| v["type"] == "message" && v["session"] == 2);
    assert_eq!(data(&e)["error"]["data"]["code"], "ORIGIN_NOT_ALLOWED");
    let c = h.expect("closed", |v| v["type"] == "closed" && v["session"] == 2);
    assert_eq!(c["code"], 1008);
    assert!(h.finish().success());
}

#[test]
fn malformed_envelopes_are_answered_and_the_host_goes_on() {
    let mut h = Host::start();
    // Not JSON at all.
    h.write_raw(&[5, 0, 0, 0]);
    h.write_raw(b"{{{{{");
    let e = h.expect("error", |v| v["type"] == "error");
    assert_eq!(e["code"], "INVALID_ENVELOPE");
    // JSON, but not an envelope.
    for bad in [
        json!([1, 2]),
        json!({ "type": "open" }),
        json!({ "type": "dance", "session": 1 }),
        json!({ "type": "message", "session": 1 }),
        json!({ "type": "open", "session": -1, "origin": BANK }),
    ] {
        h.send(bad.clone());
        let e = h.expect("error", |v| v["type"] == "error");
        assert_eq!(e["code"], "INVALID_ENVELOPE", "{bad}");
    }
    // A JSON-RPC message over 64 KiB closes its session (1009), like the
    // WebSocket; the host and other sessions go on.
    assert_eq!(h.open(1, BANK)["type"], "opened");
    assert_eq!(h.open(2, BANK)["type"], "opened");
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"hello","params":{{"pad":"{}"}}}}"#,
        "x".repeat(70 * 1024)
    );
    h.send_text(1, &big);
    let c = h.expect("closed", |v| v["type"] == "closed" && v["session"] == 1);
    assert_eq!(c["code"], 1009);
    h.ok(2, "hello", json!({}));
    assert!(h.finish().success());
}

#[test]
fn a_session_whose_messages_pile_up_is_closed_with_a_structured_error() {
    let home = Home::new();
    // A "daemon" that accepts the WebSocket and then never reads: the
    // session's messages wait in the host.
    let listener = std::net::TcpListener::bind(("127.0.0.1", home.port)).unwrap();
    let (done, end) = mpsc::channel::<()>();
    let daemon = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let ws = tungstenite::accept(tcp).unwrap();
        let _ = end.recv_timeout(WAIT);
        drop(ws);
    });
    let mut h = Host::start_in(home);
    assert_eq!(h.open(1, BANK)["type"], "opened");
    // 200 KiB each: the socket's buffers hold some, the host's queue 64.
    let text = format!(
        r#"{{"jsonrpc":"2.0","method":"hello","params":{{"pad":"{}"}}}}"#,
        "x".repeat(200 * 1024)
    );
    let mut overflowed = None;
    for sent in 1..=500 {
        h.send_text(1, &text);
        if let Ok(v) = h.frames.try_recv() {
            if v["type"] == "error" {
                overflowed = Some((sent, v));
                break;
            }
            h.pending.push(v);
        }
    }
    let (sent, e) = overflowed.unwrap_or_else(|| {
        let e = h.expect("queue error", |v| v["type"] == "error");
        (500, e)
    });
    assert_eq!(e["session"], 1, "{e}");
    assert_eq!(e["code"], "TOO_MANY_MESSAGES", "{e}");
    assert!(sent > 64, "closed after {sent} messages");
    let c = h.expect("closed", |v| v["type"] == "closed" && v["session"] == 1);
    assert_eq!(c["code"], 1008, "{c}");
    // The session is gone; the host goes on.
    h.send_text(1, "{}");
    let c = h.expect("closed", |v| v["type"] == "closed" && v["session"] == 1);
    assert_eq!(c["reason"], "no such session", "{c}");
    // The host does not wait for the daemon that does not read.
    let started = Instant::now();
    assert!(h.finish().success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    done.send(()).unwrap();
    daemon.join().unwrap();
}

#[test]
fn an_oversize_frame_ends_the_host_without_reading_it() {
    let mut h = Host::start();
    assert_eq!(h.open(1, BANK)["type"], "opened");
    // 3 GiB announced: refused from the length alone.
    h.write_raw(&(3u32 << 30).to_ne_bytes());
    let e = h.expect("error", |v| v["type"] == "error");
    assert_eq!(e["code"], "MESSAGE_TOO_BIG");
    assert_eq!(h.wait().code(), Some(1));
}

#[test]
fn a_truncated_frame_ends_the_host_with_failure() {
    let mut h = Host::start();
    h.write_raw(&100u32.to_ne_bytes());
    h.write_raw(b"{\"type\":");
    assert_eq!(h.finish().code(), Some(1));
    // And a half length.
    let mut h = Host::start();
    h.write_raw(&[7, 0]);
    assert_eq!(h.finish().code(), Some(1));
}

/// The most requests a batch may hold (docs/protocol.md).
const MAX_BATCH: usize = 64;

fn batch_of(n: usize, first_id: usize, method: &str, params: &Value) -> String {
    let reqs: Vec<Value> = (first_id..first_id + n)
        .map(|i| json!({ "jsonrpc": "2.0", "id": i, "method": method, "params": params }))
        .collect();
    Value::Array(reqs).to_string()
}

#[test]
fn batches_are_bounded_and_rate_limited_per_request() {
    let mut h = Host::start();
    assert_eq!(h.open(1, BANK)["type"], "opened");
    // Over the maximum: one error, and none of its wrong PINs is tried.
    let mut wrong = piv_pin();
    wrong["value"] = json!("000000");
    h.send_text(1, &batch_of(MAX_BATCH + 1, 1000, "login", &wrong));
    let e = data(&h.expect("the batch's error", |v| {
        v["type"] == "message" && v["session"] == 1 && data(v).get("id").is_some()
    }));
    assert_eq!(e["id"], Value::Null, "{e}");
    assert_eq!(e["error"]["code"], -32600, "{e}");
    assert_eq!(e["error"]["data"]["code"], "BATCH_TOO_LARGE", "{e}");
    assert_eq!(e["error"]["data"]["maxBatch"], MAX_BATCH, "{e}");
    assert_eq!(h.ok(1, "getPinStatus", piv_pin())["remainingTries"], 3);
    // Three full batches at once: 192 requests against a burst of 100 (and
    // 50 a second): each request takes its token.
    for b in 0..3 {
        h.send_text(
            1,
            &batch_of(MAX_BATCH, 2000 + b * MAX_BATCH, "hello", &json!({})),
        );
    }
    let mut limited = 0;
    for _ in 0..3 {
        let answer = data(&h.expect("a batch answer", |v| {
            v["type"] == "message" && v["session"] == 1 && data(v).is_array()
        }));
        let answer = answer.as_array().unwrap();
        assert_eq!(answer.len(), MAX_BATCH);
        limited += answer
            .iter()
            .filter(|r| r["error"]["data"]["code"] == "RATE_LIMITED")
            .count();
    }
    assert!(limited >= 50, "only {limited} of 192 requests were limited");
    assert!(h.finish().success());
}

#[test]
fn the_host_starts_the_daemon_and_shares_its_cards_and_logins_with_pages() {
    let home = Home::new();
    assert!(!home.listening());
    let mut h = Host::start_in(home);
    // The first session starts the daemon (`cardgate demo`) on the
    // configured port, and is relayed to it.
    assert_eq!(h.open(1, BANK)["type"], "opened");
    assert!(h.home.listening());
    let mut page = Page::connect(h.home.port, BANK);

    // One card: a wrong value through the host is seen by the page.
    let mut login = piv_pin();
    login["value"] = json!("999999");
    let r = h.call(1, "login", login.clone());
    assert_eq!(r["error"]["data"]["code"], "PIN_INCORRECT", "{r}");
    assert_eq!(page.ok("getPinStatus", piv_pin())["remainingTries"], 2);

    // The host's login is its session's: the page sees it masked.
    login["value"] = json!("123456");
    h.ok(1, "login", login.clone());
    assert_eq!(h.ok(1, "getPinStatus", piv_pin())["validated"], true);
    let s = page.ok("getPinStatus", piv_pin());
    assert_eq!(s["validated"], false, "{s}");
    assert_eq!(s["remainingTries"], 3, "{s}");

    // The page's own login makes way: the host's session no longer has it.
    page.ok("login", login);
    assert_eq!(page.ok("getPinStatus", piv_pin())["validated"], true);
    assert_eq!(h.ok(1, "getPinStatus", piv_pin())["validated"], false);

    // The host ends cleanly; the daemon it started keeps running, as a
    // socket-activated one would, until it is stopped (by pid).
    assert!(h.finish().success());
    assert!(h.home.listening());
    assert_eq!(page.ok("hello", json!({}))["daemon"], "cardgate");
    let daemons = h.home.processes();
    assert_eq!(daemons.len(), 1, "{daemons:?}");
    h.home.stop_all();
    assert!(!h.home.listening());
}

#[test]
fn wrong_values_through_the_host_and_a_page_count_toward_one_lockout() {
    // The lockout is kept in memory only (Home): only one daemon counts.
    let mut h = Host::start();
    assert_eq!(h.open(1, BANK)["type"], "opened");
    let mut page = Page::connect(h.home.port, BANK);
    let mut wrong = piv_pin();
    wrong["value"] = json!("000000");
    let r = h.call(1, "login", wrong.clone());
    assert_eq!(r["error"]["data"]["code"], "PIN_INCORRECT", "{r}");
    assert_eq!(r["error"]["data"]["attemptsBeforeLock"], 2, "{r}");
    // The page's first wrong value is the site's second.
    let r = page.call("login", wrong);
    assert_eq!(r["error"]["data"]["code"], "PIN_INCORRECT", "{r}");
    assert_eq!(r["error"]["data"]["attemptsBeforeLock"], 1, "{r}");
    assert_eq!(r["error"]["data"]["lockout"], "ONE_MORE_LOCKS", "{r}");
    // Another site, through the host, starts afresh.
    std::fs::write(
        &h.home.origins,
        format!("allowed = [\"{BANK}\", \"https://shop.example\"]\n"),
    )
    .unwrap();
    assert_eq!(h.open(2, "https://shop.example")["type"], "opened");
    let wrong = json!({ "reader": "cardgate demo reader 1", "pin": "user", "value": "000000" });
    let r = h.call(2, "login", wrong);
    assert_eq!(r["error"]["data"]["attemptsBeforeLock"], 2, "{r}");
    assert!(h.finish().success());
}

#[test]
fn a_running_daemon_is_used_as_it_is() {
    let home = Home::new();
    // One simulated card only: a daemon the host started would have two.
    let mut daemon = home
        .command()
        .args(["demo", "--card", "piv", "--port", &home.port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while !home.listening() {
        assert!(Instant::now() < deadline, "the daemon does not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut h = Host::start_in(home);
    assert_eq!(h.open(1, BANK)["type"], "opened");
    let readers = h.ok(1, "getReaders", json!({}));
    assert_eq!(readers["readers"].as_array().unwrap().len(), 1, "{readers}");
    assert!(h.finish().success());
    let pids = h.home.processes();
    assert_eq!(pids, vec![daemon.id()], "no other daemon was started");
    h.home.stop_all();
    let _ = daemon.wait();
}

#[test]
fn the_host_starts_the_daemon_through_its_systemd_socket_unit() {
    // The user's cardgate.socket is installed, and `systemctl` is a fake
    // that notes its arguments and, for `--user start cardgate.socket`,
    // starts a daemon on the port as the socket unit would (one with
    // simulated cards: a `cardgate serve` the host started itself would
    // have none).
    let home = Home::new();
    let units = home.dir.path().join("config/systemd/user");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(units.join("cardgate.socket"), "[Socket]\n").unwrap();
    let bin = home.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = home.dir.path().join("systemctl.log");
    let fake = bin.join("systemctl");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\n\
             echo \"$*\" >> '{log}'\n\
             if [ \"$*\" = \"--user start cardgate.socket\" ]; then\n\
             '{BIN}' demo --card piv --port {port} </dev/null >/dev/null 2>&1 &\n\
             fi\n",
            log = log.display(),
            port = home.port,
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![bin];
    dirs.extend(std::env::split_paths(&path));
    let mut command = home.command();
    command
        .env("PATH", std::env::join_paths(dirs).unwrap())
        .args(["native-host", EXTENSION]);
    let mut h = Host::spawn(home, command);

    assert_eq!(h.open(1, BANK)["type"], "opened");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(calls, "--user start cardgate.socket\n");
    // The session reaches the daemon the unit started.
    assert_eq!(h.ok(1, "hello", json!({}))["daemon"], "cardgate");
    let readers = h.ok(1, "getReaders", json!({}));
    assert_eq!(
        readers["readers"][0]["name"], "cardgate demo reader 0",
        "{readers}"
    );
    // A second session uses the running daemon: systemctl is not asked again.
    assert_eq!(h.open(2, BANK)["type"], "opened");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), calls);
    assert!(h.finish().success());
}

#[test]
fn a_daemon_that_cannot_be_reached_is_a_clear_refusal() {
    // The daemon started on demand exits at once (wss:// without its
    // certificate): the page is told, and the host goes on.
    let mut h = Host::start_in(Home::with_config("[tls]\nenabled = true"));
    let r = h.open(1, BANK);
    assert_eq!(r["type"], "refused", "{r}");
    assert_eq!(r["code"], "DAEMON_UNREACHABLE", "{r}");
    assert!(r["message"].as_str().unwrap().contains("exited"), "{r}");

    // Something that is not the daemon on the port: no daemon is started,
    // the session is refused.
    let home = Home::new();
    let listener = std::net::TcpListener::bind(("127.0.0.1", home.port)).unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    let mut h2 = Host::start_in(home);
    let r = h2.open(1, BANK);
    assert_eq!(r["type"], "refused", "{r}");
    assert_eq!(r["code"], "DAEMON_UNREACHABLE", "{r}");
    assert!(h2.finish().success());
    assert!(h.finish().success());
}
