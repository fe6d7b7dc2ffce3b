//! The demo page in real headless Chromium, on real pcscd + vpcd + our
//! virtual card processes + a `cardgate serve` process.
//!
//! This test owns every process: the daemon and the cards (killed by pid on
//! drop) and the Node scripts in `tests/browser/` that drive Chromium
//! through playwright-core. A script asks for card removal, reinsertion, a
//! daemon restart or the card's own tries with request lines on its stdout
//! (`@@remove-card`, `@@insert-card`, `@@restart-daemon`, `@@card-tries
//! READER`); this side does it and answers `ok [VALUE]` (or `error …`) on
//! its stdin. `@@done` ends a good run.
//!
//! Needs Node.js, `npm ci --prefix tests/browser` and Debian's `chromium`
//! (or `CHROMIUM=/path`). Missing any of them fails the test with a clear
//! message; it is never skipped. Screenshots and the daemon's log go to
//! `target/browser-screenshots/`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use libtest_mimic::{Failed, Trial};

use crate::fake_pinentry::{Behaviour, FakePinentry};
use crate::harness::*;

/// The whole browser run, from Chromium's start to `@@done`.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);
const DAEMON_START: Duration = Duration::from_secs(15);

pub fn tests() -> Vec<Trial> {
    vec![
        Trial::test("browser_demo_end_to_end", browser_demo_end_to_end),
        Trial::test("browser_demo_yubikey_applications", browser_demo_yubikey),
        Trial::test("browser_hostile_pages_and_pin_dialog", browser_security),
    ]
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// `target/browser-screenshots` (next to the test's own tmp directory).
fn output_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("browser-screenshots")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Everything the browser test needs, or what to install.
fn prerequisites() -> Result<(), String> {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output();
    match node {
        Ok(out) if out.status.success() => {}
        _ => {
            return Err(
                "browser test: `node` not found; install Node.js (>= 20), then \
                 `npm ci --prefix tests/browser`"
                    .into(),
            );
        }
    }
    if !browser_dir()
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return Err(
            "browser test: playwright-core is not installed; run `npm ci --prefix tests/browser`"
                .into(),
        );
    }
    let chromium = chromium();
    if !chromium.exists() {
        return Err(format!(
            "browser test: no Chromium at {}; install it (`apt-get install -y chromium`) or set CHROMIUM",
            chromium.display()
        ));
    }
    Ok(())
}

/// A free port on 127.0.0.1 (and, almost surely, on [::1]).
fn free_port() -> Result<u16, String> {
    crate::net::try_free_port().map_err(|e| e.to_string())
}

/// Whether `GET /health` answers 200.
fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req =
        format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

/// A `cardgate serve --port N` process; stopped (SIGTERM by pid) on drop.
struct Daemon {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    args: Vec<String>,
}

impl Daemon {
    fn start(port: u16, log: &Path, args: &[String]) -> Result<Daemon, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("daemon log {}: {e}", log.display()))?;
        let child = Command::new(cardgate_bin())
            .args(["serve", "--port", &port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| format!("cannot start `cardgate serve`: {e}"))?;
        let mut d = Daemon {
            child: Some(child),
            port,
            log: log.to_path_buf(),
            args: args.to_vec(),
        };
        let deadline = Instant::now() + DAEMON_START;
        loop {
            if healthy(port) {
                return Ok(d);
            }
            if let Some(c) = d.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(format!(
                    "`cardgate serve --port {port}` exited ({status}); log:\n{}",
                    d.log_text()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "`cardgate serve --port {port}` did not answer /health within {DAEMON_START:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }

    fn restart(&mut self) -> Result<(), String> {
        self.stop();
        *self = Daemon::start(self.port, &self.log.clone(), &self.args.clone())?;
        Ok(())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Node process (which owns its Chromium); SIGTERM by pid on drop, so
/// playwright closes the browser, then SIGKILL if it lingers.
struct NodeProcess(Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        terminate(&mut self.0);
    }
}

enum Line {
    Out(String),
    Eof,
}

/// Answers a request: `ok`, `ok VALUE` or `error MESSAGE`, one line.
fn reply(stdin: &mut ChildStdin, result: Result<String, String>) -> Result<(), String> {
    let line = match result {
        Ok(v) if v.is_empty() => "ok\n".to_string(),
        Ok(v) => format!("ok {}\n", v.replace('\n', " ")),
        Err(e) => format!("error {}\n", e.replace('\n', " ")),
    };
    stdin
        .write_all(line.as_bytes())
        .and_then(|()| stdin.flush())
        .map_err(|e| format!("writing to the browser script: {e}"))
}

fn browser_demo_end_to_end() -> Result<(), Failed> {
    demo_script("demo.e2e.mjs", output_dir(), "demo-pinentry", None)
}

/// A demo-page script on a fresh screenshot folder, with a PIN dialog
/// that is cancelled (requestCredential resolves to undefined) and, if
/// given, a second card (profile, vpcd port).
fn demo_script(
    script: &str,
    out: PathBuf,
    dialog: &str,
    second_card: Option<(&str, u16)>,
) -> Result<(), Failed> {
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let dialog = FakePinentry::new(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        dialog,
        Behaviour::Cancel,
    );
    let port = free_port()?;
    let args = vec![
        "--pinentry".to_string(),
        dialog.program.display().to_string(),
    ];
    run_script(script, port, args, Vec::new(), second_card, &out, || Ok(()))
}

/// A YubiKey (PIV + OpenPGP) in the second slot next to the PIV card: the
/// page shows its four PINs grouped by application, and a login on the
/// OpenPGP user PIN from the page leaves the card's counters as the page
/// shows them.
fn browser_demo_yubikey() -> Result<(), Failed> {
    demo_script(
        "demo-yubikey.e2e.mjs",
        output_dir().join("yubikey"),
        "yubikey-pinentry",
        Some(("yubikey", PORT_1)),
    )
}

/// The tries left of every PIN on the card in `reader`, as the card says
/// through `cardgate pin status` (a process of its own, beside the
/// daemon): a JSON object, PIN id → tries (null when the card does not
/// tell).
fn card_tries(reader: &str) -> Result<String, String> {
    let (code, out) = cli(&["pin", "status", "--reader", reader, "--json"], "", &[])
        .map_err(|e| format!("cardgate pin status: {e:?}"))?;
    if code != 0 {
        return Err(format!("cardgate pin status exited with {code}: {out}"));
    }
    let status: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("not JSON ({e}): {out}"))?;
    let tries: serde_json::Map<String, serde_json::Value> = status["pins"]
        .as_array()
        .ok_or_else(|| format!("no pins in {out}"))?
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?.to_string(), p["remainingTries"].clone())))
        .collect();
    Ok(serde_json::Value::Object(tries).to_string())
}

/// Hostile pages from two sites in two tabs, served by the script itself
/// on two ports mapped to `site-a.test` / `site-b.test`; the daemon's PIN
/// dialog answers with the right PIN.
fn browser_security() -> Result<(), Failed> {
    let out = output_dir().join("security");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dialog = FakePinentry::new(
        tmp,
        "security-pinentry",
        Behaviour::Pins(&["123456", "123456", "123456"]),
    );
    let (site_a, site_b) = (free_port()?, free_port()?);
    let origins = tmp.join("security-origins.toml");
    std::fs::write(
        &origins,
        format!("allowed = [\"http://site-a.test:{site_a}\", \"http://site-b.test:{site_b}\"]\n"),
    )?;
    let port = free_port()?;
    let args = vec![
        "--pinentry".to_string(),
        dialog.program.display().to_string(),
        "--origins-file".to_string(),
        origins.display().to_string(),
    ];
    let env = vec![
        ("SITE_A_PORT".to_string(), site_a.to_string()),
        ("SITE_B_PORT".to_string(), site_b.to_string()),
    ];
    run_script("security.e2e.mjs", port, args, env, None, &out, || {
        // Whatever the pages did, the card kept at least one try.
        let service = cardgate::testing::Service::new(std::sync::Arc::new(
            cardgate::transport::pcsc::PcscBackend::new(),
        ));
        let st = service
            .with_engine(READER_0, |e| e.status("pin"))
            .map_err(|e| format!("reading the card after the run: {e}"))?;
        if st.remaining_tries.unwrap_or(0) < 1 || st.blocked {
            return Err(format!("the pages blocked the card: {st:?}"));
        }
        Ok(())
    })
}

/// Runs a Node script against `cardgate serve` (with `serve_args`) and a
/// virtual PIV card in slot 0 (`CARDGATE_READER`), and with `second` a
/// card of that profile in that port's slot (`CARDGATE_SECOND_READER`),
/// serving its requests for card and daemon changes.
fn run_script(
    name: &str,
    port: u16,
    serve_args: Vec<String>,
    env: Vec<(String, String)>,
    second: Option<(&str, u16)>,
    out: &Path,
    // Runs after a good run, while the card and the daemon are still there.
    after: impl FnOnce() -> Result<(), String>,
) -> Result<(), Failed> {
    prerequisites()?;
    let verbose = std::env::var_os("CARDGATE_TEST_VERBOSE").is_some();

    let mut card_process = Some(card("piv", PORT_0, &[])?);
    let second_card = match second {
        Some((profile, port)) => Some(card(profile, port, &[])?),
        None => None,
    };
    let second_reader = second_card.as_ref().map_or("", |c| c.reader());
    let mut daemon = Daemon::start(port, &out.join("daemon.log"), &serve_args)?;

    let script = browser_dir().join(name);
    let mut node = NodeProcess(
        Command::new("node")
            .arg(&script)
            .current_dir(browser_dir())
            .envs(env)
            .env("CARDGATE_URL", format!("http://127.0.0.1:{port}"))
            .env("CARDGATE_READER", READER_0)
            .env("CARDGATE_SECOND_READER", second_reader)
            .env("SCREENSHOT_DIR", out)
            .env("CHROMIUM", chromium())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start node: {e}"))?,
    );
    let mut stdin = node.0.stdin.take().ok_or("node stdin")?;
    let stdout = node.0.stdout.take().ok_or("node stdout")?;
    let mut stderr = node.0.stderr.take().ok_or("node stderr")?;

    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => {
                    if tx.send(Line::Out(l)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(Line::Eof);
    });
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    let deadline = Instant::now() + RUN_TIMEOUT;
    let mut transcript = Vec::new();
    let mut done = false;
    let mut failure: Option<String> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(Line::Out(l)) => l,
            Ok(Line::Eof) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                failure = Some(format!("the browser run took longer than {RUN_TIMEOUT:?}"));
                break;
            }
        };
        if verbose {
            eprintln!("browser: {line}");
        }
        let result = match line.as_str() {
            "@@remove-card" => {
                if let Some(mut vc) = card_process.take() {
                    vc.kill();
                }
                wait_card(READER_0, false).map(|()| String::new())
            }
            "@@insert-card" => reinsert_card("piv", PORT_0, &[]).map(|vc| {
                card_process = Some(vc);
                String::new()
            }),
            "@@restart-daemon" => daemon.restart().map(|()| String::new()),
            other if other.starts_with("@@card-tries ") => {
                card_tries(other.strip_prefix("@@card-tries ").unwrap_or_default())
            }
            "@@done" => {
                done = true;
                transcript.push(line);
                continue;
            }
            other if other.starts_with("@@") => Err(format!("unknown request {other:?}")),
            _ => {
                transcript.push(line);
                continue;
            }
        };
        transcript.push(format!("{line} -> {result:?}"));
        reply(&mut stdin, result)?;
    }
    drop(stdin);
    let status = if failure.is_none() {
        poll(Duration::from_secs(20), || node.0.try_wait().ok().flatten())
    } else {
        None
    };
    drop(node); // stops node (and so Chromium) if it is still running
    let stderr_text = errors.join().unwrap_or_default();
    let ok = done && status.is_some_and(|s| s.success());
    if ok && failure.is_none() {
        return Ok(after()?);
    }
    let why = failure.unwrap_or_else(|| match status {
        Some(s) if !done => format!("the browser script exited ({s}) before @@done"),
        Some(s) => format!("the browser script exited with {s}"),
        None => "the browser script did not exit".into(),
    });
    Err(format!(
        "{why}\n--- script output ---\n{}\n--- script stderr ---\n{}\n--- daemon log: {} ---\nscreenshots: {}",
        transcript.join("\n"),
        stderr_text.trim_end(),
        daemon.log.display(),
        out.display()
    )
    .into())
}
