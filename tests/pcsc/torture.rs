//! Fault torture: the daemon (`cardgate serve`, its own process) on a
//! private pcscd, through cycles of
//! 1. the card process killed while a wrong-PIN login is in flight, then
//!    started again in the other slot (the same card: its retry counters
//!    live in a `--state` file, as a real card's live in its chip);
//! 2. a client that sends a wrong-PIN login and drops its connection at once;
//! 3. pcscd stopped (by pid) while a wrong-PIN login is in flight, then
//!    started again;
//!
//! and after each fault the right PIN (so the counter never reaches the
//! last-try guard). Checked throughout:
//! - the daemon never exits and never panics;
//! - every request is answered, with a result or a structured error
//!   (`error.data.code`);
//! - after the card or pcscd comes back, the daemon serves the card within
//!   2 s of a raw PC/SC client seeing it;
//! - tries: the card's own count of spent tries moves by exactly 1 for
//!   each `PIN_INCORRECT` and each dropped wrong login, by 0 for a status
//!   read or a right PIN, by 0 or 1 for a login cut off by the fault (the
//!   card may or may not count it, before the daemon's answer or just
//!   after, which the next status read then shows — never 2: no try is
//!   replayed), and every `remainingTries` the daemon reports is the
//!   card's counter;
//! - the daemon's RSS over the cycles has no growth trend.
//!
//! `CARDGATE_TORTURE_CYCLES` (default 100) sets the number of cycles.
//! Runs in a child process (libpcsclite reads `PCSCLITE_CSOCK_NAME` once
//! per process); needs `unshare -m` (root), as in CI.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cardgate::transport::Backend;
use cardgate::transport::pcsc::PcscBackend;
use futures_util::{SinkExt, StreamExt};
use libtest_mimic::{Failed, Trial};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::harness::*;

/// vpcd ports of the private pcscd: the first pair free from 36020/36021
/// up (two runs on one machine then do not collide).
fn free_vpcd_ports() -> Result<u16, Failed> {
    let free = |p: u16| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok();
    (36020..36120)
        .step_by(2)
        .find(|&p| free(p) && free(p + 1))
        .ok_or_else(|| "no free pair of ports for vpcd in 36020..36120".into())
}
const MAX_TRIES: u8 = 15;
/// How long the card may take to answer each APDU: a fault then lands in
/// the middle of an operation (a login is three APDUs).
const CARD_DELAY_MS: u64 = 3;
/// The daemon must serve the card again this soon after it is back.
const RECONNECT_LIMIT: Duration = Duration::from_secs(2);
/// Any answer must come within this (the daemon's op_timeout is 5 s).
const ANSWER_LIMIT: Duration = Duration::from_secs(15);

pub fn tests() -> Vec<Trial> {
    let t = Trial::test("torture_card_pcscd_and_clients", torture_in_child);
    // CI runs as root: there it must run, never be skipped.
    vec![
        if PrivatePcscd::supported() || std::env::var_os("CI").is_some() {
            t
        } else {
            t.with_ignored_flag(true)
        },
    ]
}

fn torture_in_child() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let sock = dir.path().join("run").join("pcscd.comm");
    crate::run_in_child(
        "torture",
        &[
            ("PCSCLITE_CSOCK_NAME", sock.to_str().ok_or("path")?),
            ("CARDGATE_PRIVATE_BASE", dir.path().to_str().ok_or("path")?),
        ],
    )
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(what().into()) }
}

/// The card's user PIN counter from its state file: (tries, spent).
fn card_counter(state: &Path) -> Result<(u8, u64), Failed> {
    let text = std::fs::read_to_string(state)?;
    let line = text
        .lines()
        .find(|l| l.starts_with("pin "))
        .ok_or_else(|| format!("no pin line in {text:?}"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    Ok((f[1].parse()?, f[2].parse()?))
}

fn reader_of(slot: u16) -> &'static str {
    if slot == 0 { READER_0 } else { READER_1 }
}

struct Rig {
    /// vpcd port of slot 0 (slot 1 is the next one).
    vpcd_port: u16,
    pcscd: PrivatePcscd,
    state: PathBuf,
    card: Option<VirtualCardProcess>,
    /// The slot (0 or 1) the card is in.
    slot: u16,
    daemon: DaemonProcess,
    daemon_log: PathBuf,
    /// The card's spent count at the last check.
    spent: u64,
    /// The worst time from "a raw PC/SC client sees the card" to "the
    /// daemon serves it".
    worst_reconnect: Duration,
    /// Requests sent, answers seen by kind.
    requests: u64,
    ambiguous: u64,
    /// A cut-off login the card has not counted yet (it may still).
    unsettled: u64,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(port: u16) -> Result<Ws, Failed> {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws")).await?;
    Ok(ws)
}

fn request(id: u64, method: &str, params: Value) -> Message {
    Message::text(
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
    )
}

/// Waits for the response to `id` (notifications are skipped) and checks
/// it is a result or a structured error.
async fn answer(ws: &mut Ws, id: u64) -> Result<Value, Failed> {
    let deadline = Instant::now() + ANSWER_LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .map_err(|_| format!("request {id}: no answer within {ANSWER_LIMIT:?}"))?
            .ok_or_else(|| format!("request {id}: connection closed before the answer"))??;
        let Message::Text(text) = msg else { continue };
        let v: Value = serde_json::from_str(text.as_str())?;
        if v.get("id") != Some(&json!(id)) {
            check(v.get("id").is_none(), || format!("unexpected response {v}"))?;
            continue;
        }
        let structured = v.get("result").is_some()
            || (v["error"]["code"].is_i64() && v["error"]["data"]["code"].is_string());
        check(structured, || {
            format!("request {id}: unstructured answer {v}")
        })?;
        return Ok(v);
    }
}

fn code(v: &Value) -> Option<&str> {
    v["error"]["data"]["code"].as_str()
}

/// Errors a request may meet while the card or the service is going away.
const FAULT_CODES: &[&str] = &[
    "CARD_REMOVED",
    "CARD_ABSENT",
    "NO_PCSC_SERVICE",
    "READER_NOT_FOUND",
    "READER_ERROR",
    "CARD_ERROR",
    "TIMEOUT",
];

impl Rig {
    fn reader(&self) -> &'static str {
        reader_of(self.slot)
    }

    fn spawn_card(&mut self) -> Result<(), Failed> {
        let state = self.state.to_str().ok_or("path")?.to_string();
        let delay = CARD_DELAY_MS.to_string();
        let max = MAX_TRIES.to_string();
        self.card = Some(VirtualCardProcess::spawn(
            "piv",
            self.vpcd_port + self.slot,
            &["--max-tries", &max, "--state", &state, "--delay-ms", &delay],
        )?);
        Ok(())
    }

    /// How much the card's spent count moved since the last check.
    fn delta(&mut self) -> Result<(u64, u8), Failed> {
        let (tries, spent) = card_counter(&self.state)?;
        let d = spent
            .checked_sub(self.spent)
            .ok_or("the card's spent count went back")?;
        self.spent = spent;
        Ok((d, tries))
    }

    /// Waits until a raw PC/SC client sees the card, then until the daemon
    /// serves its status; checks the second came within the limit.
    async fn wait_served(&mut self, ws: &mut Ws, id: &mut u64, what: &str) -> Result<(), Failed> {
        let reader = self.reader();
        let seen = tokio::task::spawn_blocking(move || {
            let backend = PcscBackend::new();
            poll(Duration::from_secs(20), || {
                let readers = backend.list_readers().ok()?;
                readers
                    .iter()
                    .any(|r| r.name == reader && r.atr.is_some())
                    .then(Instant::now)
            })
        })
        .await?
        .ok_or_else(|| format!("{what}: the card never showed up in {reader}"))?;
        loop {
            *id += 1;
            self.requests += 1;
            ws.send(request(
                *id,
                "getPinStatus",
                json!({"reader": reader, "pin": "pin"}),
            ))
            .await?;
            let v = answer(ws, *id).await?;
            if v.get("result").is_some() {
                let took = seen.elapsed();
                self.worst_reconnect = self.worst_reconnect.max(took);
                check(took < RECONNECT_LIMIT, || {
                    format!("{what}: the daemon served the card {took:?} after PC/SC showed it")
                })?;
                let (d, tries) = self.delta()?;
                // A login cut off by the fault may still be counted by the
                // card after the daemon answered (the card had the command
                // and was working on it when the service died): that try
                // shows here, once — never a second one.
                let unsettled = std::mem::take(&mut self.unsettled);
                check(d <= unsettled, || {
                    format!("{what}: a status read spent {d} tries ({unsettled} unsettled)")
                })?;
                check(v["result"]["remainingTries"] == tries, || {
                    format!("{what}: daemon says {}, card has {tries}", v["result"])
                })?;
                return Ok(());
            }
            let c = code(&v).unwrap_or("");
            check(FAULT_CODES.contains(&c), || {
                format!("{what}: status while reconnecting gave {v}")
            })?;
            if seen.elapsed() > RECONNECT_LIMIT {
                return Err(format!(
                    "{what}: the daemon still answers {c} {:?} after PC/SC showed the card",
                    seen.elapsed()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A wrong-PIN login cut off by `fault` after `after`: the answer must
    /// be PIN_INCORRECT (the card answered first: exactly one try, the
    /// counter reported) or a fault error (zero or one try).
    async fn login_cut_off(
        &mut self,
        ws: &mut Ws,
        id: &mut u64,
        after: Duration,
        fault: impl FnOnce(&mut Rig),
        what: &str,
    ) -> Result<(), Failed> {
        *id += 1;
        self.requests += 1;
        let reader = self.reader();
        ws.send(request(
            *id,
            "login",
            json!({"reader": reader, "pin": "pin", "value": "000000"}),
        ))
        .await?;
        tokio::time::sleep(after).await;
        fault(self);
        let v = answer(ws, *id).await?;
        let (d, tries) = self.delta()?;
        match code(&v) {
            Some("PIN_INCORRECT") => {
                check(d == 1, || {
                    format!("{what}: PIN_INCORRECT but {d} tries spent")
                })?;
                check(v["error"]["data"]["remainingTries"] == tries, || {
                    format!("{what}: daemon says {v}, card has {tries}")
                })?;
            }
            Some(c) if FAULT_CODES.contains(&c) => {
                self.ambiguous += 1;
                check(d <= 1, || format!("{what}: {c} but {d} tries spent"))?;
                self.unsettled = 1 - d;
            }
            _ => return Err(format!("{what}: login gave {v}").into()),
        }
        Ok(())
    }

    /// The right PIN: no try spent, the counter back at its maximum.
    async fn right_pin(&mut self, ws: &mut Ws, id: &mut u64, what: &str) -> Result<(), Failed> {
        *id += 1;
        self.requests += 1;
        let reader = self.reader();
        ws.send(request(
            *id,
            "login",
            json!({"reader": reader, "pin": "pin", "value": "123456"}),
        ))
        .await?;
        let v = answer(ws, *id).await?;
        check(v.get("result").is_some(), || {
            format!("{what}: right PIN gave {v}")
        })?;
        let (d, tries) = self.delta()?;
        check(d == 0 && tries == MAX_TRIES, || {
            format!("{what}: after the right PIN: {d} spent, {tries} left")
        })
    }

    fn daemon_ok(&mut self, what: &str) -> Result<(), Failed> {
        let log = std::fs::read_to_string(&self.daemon_log).unwrap_or_default();
        check(!log.contains("panicked"), || {
            format!("{what}: the daemon panicked: {log}")
        })?;
        check(self.daemon.alive(), || {
            format!("{what}: the daemon exited: {log}")
        })
    }
}

/// Runs in the child process, talking only to its private pcscd.
pub fn child() -> Result<(), Failed> {
    let base = PathBuf::from(std::env::var("CARDGATE_PRIVATE_BASE")?);
    let cycles: usize = std::env::var("CARDGATE_TORTURE_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let vpcd_port = free_vpcd_ports()?;
    let mut pcscd = PrivatePcscd::new(&base, vpcd_port)?;
    pcscd.start()?;
    wait_for_readers(&[READER_0, READER_1], Duration::from_secs(10))?;
    let config = base.join("config.toml");
    std::fs::write(
        &config,
        "port = 0\nop_timeout = 5\npolicy_dirs = []\n\
         [origins]\nfile = \"\"\nallow_missing_origin = true\n\
         [limits]\nrate_per_second = 100000\nrate_burst = 100000\nmax_failures = 0\n",
    )?;
    let daemon_log = base.join("daemon.log");
    let daemon = DaemonProcess::spawn(
        &base,
        &config,
        &[],
        Stdio::from(std::fs::File::create(&daemon_log)?),
    )?;
    let mut rig = Rig {
        vpcd_port,
        pcscd,
        state: base.join("card.state"),
        card: None,
        slot: 0,
        daemon,
        daemon_log,
        spent: 0,
        worst_reconnect: Duration::ZERO,
        requests: 0,
        ambiguous: 0,
        unsettled: 0,
    };
    rig.spawn_card()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let result = rt.block_on(run(&mut rig, cycles));
    let log = std::fs::read_to_string(&rig.daemon_log).unwrap_or_default();
    let status = rig.daemon.stop();
    rig.card.take();
    rig.pcscd.stop();
    eprintln!(
        "torture: {cycles} cycles in {:.0?}, {} requests ({} cut off by a fault), worst reconnect {:?}",
        started.elapsed(),
        rig.requests,
        rig.ambiguous,
        rig.worst_reconnect
    );
    result?;
    check(status.is_some_and(|s| s.success()), || {
        format!("the daemon's exit status {status:?}: {log}")
    })
}

async fn run(rig: &mut Rig, cycles: usize) -> Result<(), Failed> {
    let mut ws = connect(rig.daemon.port).await?;
    let mut id = 0;
    rig.wait_served(&mut ws, &mut id, "start").await?;
    rig.spent = card_counter(&rig.state)?.1;
    let mut rss = Vec::new();
    let mut fds = Vec::new();
    // A cheap deterministic spread of fault timings over a login's span.
    let login_span = CARD_DELAY_MS * 3 + 2;
    for cycle in 0..cycles {
        let after = |k: u64| {
            Duration::from_micros((cycle as u64 * 7919 + k * 104_729) % (login_span * 1000))
        };

        // 1. The card dies mid-login, and comes back in the other slot.
        let what = format!("cycle {cycle}, card killed");
        rig.login_cut_off(
            &mut ws,
            &mut id,
            after(1),
            |r| {
                if let Some(mut c) = r.card.take() {
                    c.kill();
                }
            },
            &what,
        )
        .await?;
        rig.slot = 1 - rig.slot;
        rig.spawn_card()?;
        rig.wait_served(&mut ws, &mut id, &what).await?;
        rig.right_pin(&mut ws, &mut id, &what).await?;

        // 2. A client sends a wrong PIN and drops the connection at once:
        // the login still runs on the card, exactly once.
        let what = format!("cycle {cycle}, client dropped");
        {
            let mut quitter = connect(rig.daemon.port).await?;
            quitter
                .send(request(
                    1,
                    "login",
                    json!({"reader": rig.reader(), "pin": "pin", "value": "000000"}),
                ))
                .await?;
            rig.requests += 1;
            drop(quitter);
        }
        let spent_before = rig.spent;
        let landed = poll(Duration::from_secs(5), || {
            card_counter(&rig.state)
                .ok()
                .filter(|(_, s)| *s > spent_before)
        });
        check(landed.is_some(), || {
            format!("{what}: the dropped client's login never reached the card")
        })?;
        // Settled: the next request on the card runs after it.
        id += 1;
        rig.requests += 1;
        ws.send(request(
            id,
            "getPinStatus",
            json!({"reader": rig.reader(), "pin": "pin"}),
        ))
        .await?;
        let v = answer(&mut ws, id).await?;
        let (d, tries) = rig.delta()?;
        check(d == 1, || format!("{what}: {d} tries spent"))?;
        check(v["result"]["remainingTries"] == tries, || {
            format!("{what}: daemon says {v}, card has {tries}")
        })?;
        rig.right_pin(&mut ws, &mut id, &what).await?;

        // 3. pcscd stops mid-login (by pid), then starts again.
        let what = format!("cycle {cycle}, pcscd restarted");
        rig.login_cut_off(&mut ws, &mut id, after(2), |r| r.pcscd.stop(), &what)
            .await?;
        // While it is down, requests get a structured answer at once.
        id += 1;
        rig.requests += 1;
        ws.send(request(
            id,
            "getPinStatus",
            json!({"reader": rig.reader(), "pin": "pin"}),
        ))
        .await?;
        let v = answer(&mut ws, id).await?;
        check(v.get("error").is_some(), || {
            format!("{what}: status without pcscd gave {v}")
        })?;
        rig.pcscd.start().map_err(|e| format!("{what}: {e}"))?;
        rig.wait_served(&mut ws, &mut id, &what).await?;
        rig.right_pin(&mut ws, &mut id, &what).await?;

        rig.daemon_ok(&what)?;
        rss.push(rig.daemon.rss_kib()? as f64);
        fds.push(rig.daemon.fds());
    }
    // No file descriptor growth: a leaked connection, task or PC/SC
    // context keeps one open.
    if let (Some(first), Some(last)) = (fds.first(), fds.last()) {
        check(*last <= first + 2, || {
            format!("daemon file descriptors grew: {fds:?}")
        })?;
    }
    // RSS over the cycles: no growth trend once warmed up (the first fifth
    // left out). Threshold 4 KiB per cycle (a cycle is ~11 requests and 2
    // connections): seen 1.5 KiB/cycle (the allocator settling), while the
    // leak this caught — finished request tasks kept in a JoinSet until the
    // connection closed — showed 6.3 KiB/cycle, and leaking one card session
    // (its 64 KiB transport buffer, two reconnects a cycle) would show
    // 128 KiB/cycle.
    if rss.len() >= 20 {
        let tail = &rss[rss.len() / 5..];
        let n = tail.len() as f64;
        let mx = (n - 1.0) / 2.0;
        let my = tail.iter().sum::<f64>() / n;
        let sxy: f64 = tail
            .iter()
            .enumerate()
            .map(|(i, y)| (i as f64 - mx) * (y - my))
            .sum();
        let sxx: f64 = (0..tail.len()).map(|i| (i as f64 - mx).powi(2)).sum();
        let slope = sxy / sxx;
        eprintln!(
            "torture: daemon RSS {:.0}..{:.0} KiB, slope {slope:+.2} KiB/cycle",
            tail.iter().cloned().fold(f64::MAX, f64::min),
            tail.iter().cloned().fold(0.0, f64::max)
        );
        check(slope < 4.0, || {
            format!("daemon RSS grows {slope:.1} KiB per cycle: {rss:?}")
        })?;
    }
    eprintln!(
        "torture: daemon file descriptors {:?} → {:?}",
        fds.first(),
        fds.last()
    );
    // The books balance: the card spent exactly what the operations say.
    rig.daemon_ok("end")?;
    Ok(())
}
