//! Try safety against hostile pages on the real pcscd + vpcd + our virtual
//! card processes: the daemon (`Server` on `PcscBackend`, port 0) with an
//! allowlisted site, the daemon's PIN dialog played by a fake pinentry, and
//! the card's own retry counters (the card process's `--state` file,
//! written before it answers each command) as the witness of every try
//! spent. The same reproductions as `tests/try_safety.rs` and
//! `tests/security_sim.rs`, on the real stack.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ws_client::Client;
use cardgate::LockoutConfig;
use cardgate::PinDialog;
use cardgate::apdu::commands;
use cardgate::transport::Backend;
use cardgate::transport::pcsc::PcscBackend;
use cardgate::{Limits, Server, ServerConfig};
use libtest_mimic::{Failed, Trial};
use serde_json::{Value, json};

use crate::fake_pinentry::{Behaviour, FakePinentry};
use crate::harness::*;

const SITE: &str = "https://bank.example";

/// Every test of this module, by name.
pub fn tests() -> Vec<Trial> {
    trials([
        (
            "try_safety_held_reset_code_is_judged_when_sent",
            pcsc_held_reset_code_is_judged_when_sent,
        ),
        (
            "try_safety_lockout_holds_across_batches_pipelines_and_connections",
            pcsc_lockout_holds_across_batches_pipelines_and_connections,
        ),
        (
            "try_safety_piv_so_login_checks_the_puk",
            pcsc_piv_so_login_checks_the_puk,
        ),
        (
            "try_safety_dialog_opens_only_when_it_can_help",
            pcsc_dialog_opens_only_when_it_can_help,
        ),
        (
            "try_safety_lockout_escalates_and_only_the_user_unlocks",
            pcsc_lockout_escalates_and_only_the_user_unlocks,
        ),
    ])
}

// ------------------------------------------------------------ the card

/// A card process in a vpcd slot whose retry counters are kept in a
/// `--state` file (lines `NAME TRIES SPENT`).
struct Card {
    _process: VirtualCardProcess,
    state: PathBuf,
}

impl Card {
    fn insert(
        dir: &Path,
        profile: &str,
        port: u16,
        extra: &[&str],
        config: Option<&str>,
    ) -> Result<Card, Failed> {
        let state = dir.join(format!("counters-{port}"));
        let state_arg = state.to_str().ok_or("path")?.to_string();
        let mut args: Vec<String> = vec!["--state".into(), state_arg];
        if let Some(toml) = config {
            let path = dir.join(format!("card-{port}.toml"));
            std::fs::write(&path, toml)?;
            args.push("--config".into());
            args.push(path.to_str().ok_or("path")?.into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = card(profile, port, &args)?;
        Ok(Card {
            _process: process,
            state,
        })
    }

    /// (tries left, tries spent over the card's life) of `name` (PIV `pin`,
    /// `puk`; OpenPGP `pw1`, `pw3`, `rc`), from the card process itself.
    fn counter(&self, name: &str) -> Result<(u8, u64), Failed> {
        let text = std::fs::read_to_string(&self.state)
            .map_err(|e| format!("{}: {e}", self.state.display()))?;
        let all: HashMap<&str, (u8, u64)> = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((
                    f.next()?,
                    (f.next()?.parse().ok()?, f.next()?.parse().ok()?),
                ))
            })
            .collect();
        all.get(name)
            .copied()
            .ok_or_else(|| format!("no counter {name} in {text:?}").into())
    }
}

// ------------------------------------------------------------ the daemon

fn config(dialog: Option<&Path>, limits: Limits) -> ServerConfig {
    ServerConfig {
        limits: Limits {
            // Requests are not what is limited here.
            rate_per_second: 10_000,
            rate_burst: 10_000,
            ..limits
        },
        pin_dialog: PinDialog::new(dialog.map(Path::to_path_buf), Duration::from_secs(10)),
        ..crate::ws_client::page_config(SITE)
    }
}

/// Runs `f` against a daemon on the real PC/SC service, bound to port 0;
/// the daemon is shut down afterwards whatever `f` returned.
fn with_daemon<F>(config: ServerConfig, f: F) -> Result<(), Failed>
where
    F: for<'a> AsyncFnOnce(&'a Server) -> Result<(), Failed>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = Server::start(Arc::new(PcscBackend::new()), config).await?;
        let result = f(&server).await;
        server.shutdown().await;
        result
    })
}

/// A connection of the page at `SITE`.
async fn page(port: u16) -> Result<Client, Failed> {
    let (ws, _) =
        tokio_tungstenite::connect_async(crate::ws_client::page_request(port, SITE)).await?;
    Ok(Client::from_stream(ws))
}

fn on(reader: &str, pin: &str, extra: Value) -> Value {
    let mut v = json!({ "reader": reader, "pin": pin });
    if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        v.extend(extra.clone());
    }
    v
}

/// `error.data` of a call that must fail.
async fn err(c: &mut Client, method: &str, params: Value) -> Result<Value, Failed> {
    let r = c.call(method, params).await;
    match r.get("error") {
        Some(e) => Ok(e["data"].clone()),
        None => Err(format!("{method} should fail: {r}").into()),
    }
}

/// The result of a call that must succeed.
async fn ok(c: &mut Client, method: &str, params: Value) -> Result<Value, Failed> {
    let r = c.call(method, params).await;
    match r.get("error") {
        None => Ok(r["result"].clone()),
        Some(_) => Err(format!("{method} failed: {r}").into()),
    }
}

/// (code, remainingTries) of an error.
fn code_tries(e: &Value) -> (Option<&str>, Option<u64>) {
    (e["code"].as_str(), e["remainingTries"].as_u64())
}

/// Another PC/SC client (our own connection, not the daemon's) presents a
/// wrong OpenPGP reset code (RESET RETRY COUNTER P1=00) and gets the card's
/// status word. The card is left as it is (no reset).
fn other_client_spends_a_reset_code_try(reader: &str) -> Result<u16, Failed> {
    let mut t = PcscBackend::new().connect(reader)?;
    let select = commands::select_aid(&commands::OPENPGP_AID);
    let r = cardgate::transport::exchange(t.as_mut(), &select)?;
    check(
        r.sw.to_u16() == 0x9000,
        format!("SELECT: {:04X}", r.sw.to_u16()),
    )?;
    let rrc = commands::reset_retry_counter(commands::OPENPGP_PW1_SIGN, b"00000000", b"123456");
    let r = cardgate::transport::exchange(t.as_mut(), &rrc)?;
    t.disconnect();
    Ok(r.sw.to_u16())
}

// ------------------------------------------------------------ 1

/// OpenPGP reset code held at the page's SO login; another PC/SC client
/// brings it to its last try; `init` with the dialog, a handle or a typed
/// new PIN must not send the page's code.
fn pcsc_held_reset_code_is_judged_when_sent() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let card = Card::insert(
        dir.path(),
        "openpgp",
        PORT_0,
        &[],
        Some("profile = \"openpgp\"\nreset_code = \"87654321\"\n"),
    )?;
    wait_card(READER_1, false)?;
    let dialog = FakePinentry::new(
        dir.path(),
        "pinentry",
        Behaviour::Pins(&["246813", "246813"]),
    );
    let card = &card;
    let dialog = &dialog;
    with_daemon(
        config(Some(&dialog.program), Limits::default()),
        async |server| {
            let mut c = page(server.port()).await?;
            eq(card.counter("rc")?, (3, 0), "reset code at start")?;
            let so_rc = on(
                READER_0,
                "user",
                json!({ "value": "00000000", "so": true, "soPath": "resetCode" }),
            );
            // Held: the card cannot check a reset code alone.
            ok(&mut c, "login", so_rc.clone()).await?;
            let st = ok(&mut c, "getPinStatus", on(READER_0, "user", json!({}))).await?;
            eq(st["soValidated"].as_bool(), Some(true), "soValidated")?;
            eq(card.counter("rc")?, (3, 0), "nothing sent at SO login")?;

            // Another application spends reset-code tries down to 1.
            let sws = tokio::task::spawn_blocking(|| -> Result<Vec<u16>, String> {
                let mut sws = Vec::new();
                for _ in 0..2 {
                    sws.push(
                        other_client_spends_a_reset_code_try(READER_0)
                            .map_err(|e| format!("{e:?}"))?,
                    );
                }
                Ok(sws)
            })
            .await??;
            eq(sws, vec![0x63C2, 0x63C1], "the other client's answers")?;
            eq(
                card.counter("rc")?,
                (1, 2),
                "reset code after the other client",
            )?;

            // The dialog would only give the new PIN: the code that would
            // reach the card is the page's. Refused, the user not asked.
            let e = err(
                &mut c,
                "init",
                on(READER_0, "user", json!({ "newValue": false })),
            )
            .await?;
            eq(
                code_tries(&e),
                (Some("LAST_TRY_PROTECTED"), Some(1)),
                &format!("init(dialog): {e}"),
            )?;
            eq(dialog.runs(), 0, "dialog runs after init(dialog)")?;
            eq(card.counter("rc")?, (1, 2), "reset code after init(dialog)")?;

            // A requestCredential handle for the new PIN (that dialog is
            // the page's request, and runs once).
            let handle = ok(
                &mut c,
                "requestCredential",
                json!({ "pinLabel": "new PIN" }),
            )
            .await?;
            check(handle["handle"].is_string(), format!("handle: {handle}"))?;
            let runs = dialog.runs();
            let e = err(
                &mut c,
                "init",
                on(READER_0, "user", json!({ "newValue": handle })),
            )
            .await?;
            eq(
                code_tries(&e),
                (Some("LAST_TRY_PROTECTED"), Some(1)),
                &format!("init(handle): {e}"),
            )?;
            eq(dialog.runs(), runs, "no dialog for init(handle)")?;
            eq(card.counter("rc")?, (1, 2), "reset code after init(handle)")?;

            // A typed new PIN.
            let e = err(
                &mut c,
                "init",
                on(READER_0, "user", json!({ "newValue": "246813" })),
            )
            .await?;
            eq(
                code_tries(&e),
                (Some("LAST_TRY_PROTECTED"), Some(1)),
                &format!("init(typed): {e}"),
            )?;
            eq(card.counter("rc")?, (1, 2), "reset code after init(typed)")?;

            // A new SO login with a page's code is refused at once.
            let e = err(&mut c, "login", so_rc).await?;
            eq(
                e["code"].as_str(),
                Some("LAST_TRY_PROTECTED"),
                &format!("SO login at 1: {e}"),
            )?;
            eq(card.counter("rc")?, (1, 2), "reset code at the end")?;
            eq(card.counter("pw1")?, (3, 0), "user PIN untouched")?;
            Ok(())
        },
    )
}

// ------------------------------------------------------------ 2

/// One site: a batch of wrong values for two real readers plus the right
/// PIN, pipelined frames and a second connection, all at once.
fn pcsc_lockout_holds_across_batches_pipelines_and_connections() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let card0 = Card::insert(dir.path(), "piv", PORT_0, &["--max-tries", "10"], None)?;
    let card1 = Card::insert(dir.path(), "piv", PORT_1, &["--max-tries", "10"], None)?;
    let cards = [&card0, &card1];
    let limits = Limits {
        lockout: LockoutConfig {
            max_failures: 3,
            lock: Duration::from_secs(300),
            lock_until_unlocked: true,
        },
        ..Limits::default()
    };
    with_daemon(config(None, limits), async |server| {
        let readers = [READER_0, READER_1];
        let login = |id: u64, reader: &str, value: &str| {
            json!({ "jsonrpc": "2.0", "id": id, "method": "login",
                    "params": on(reader, "pin", json!({ "value": value })) })
        };
        let mut c1 = page(server.port()).await?;
        let mut c2 = page(server.port()).await?;
        // Connection 1: a batch of eight wrong values to both readers, then
        // the right PIN; then four pipelined single frames.
        let mut batch: Vec<Value> = (0..8)
            .map(|i| login(i, readers[i as usize % 2], "000000"))
            .collect();
        batch.push(login(8, READER_0, "123456"));
        c1.send_text(Value::Array(batch).to_string()).await;
        for i in 100..104u64 {
            c1.send_text(login(i, readers[i as usize % 2], "000000").to_string())
                .await;
        }
        // Connection 2 of the same origin, at once.
        for i in 200..204u64 {
            c2.send_text(login(i, readers[i as usize % 2], "000000").to_string())
                .await;
        }
        let collect = async |c: &mut Client, expected: usize| -> Vec<Value> {
            let mut answers = Vec::new();
            while answers.len() < expected {
                match c.recv().await {
                    Some(Value::Array(a)) => answers.extend(a),
                    Some(v) if v.get("id").is_some() => answers.push(v),
                    Some(_) => {} // a notification
                    None => break,
                }
            }
            answers
        };
        let (a1, a2) = tokio::join!(collect(&mut c1, 13), collect(&mut c2, 4));
        eq(a1.len() + a2.len(), 17, "answers")?;
        let code = |a: &Value| {
            a["error"]["data"]["code"]
                .as_str()
                .unwrap_or("OK")
                .to_string()
        };
        let codes: Vec<(u64, String)> = a1
            .iter()
            .chain(&a2)
            .map(|a| (a["id"].as_u64().unwrap_or(u64::MAX), code(a)))
            .collect();
        let incorrect = codes.iter().filter(|(_, c)| c == "PIN_INCORRECT").count();
        let spent: u64 = cards
            .iter()
            .map(|c| c.counter("pin").map(|(_, s)| s))
            .sum::<Result<u64, Failed>>()?;
        check(
            spent <= 3,
            format!("{spent} wrong values reached the cards; answers {codes:?}"),
        )?;
        eq(
            incorrect as u64,
            spent,
            &format!("PIN_INCORRECT answers vs tries spent; answers {codes:?}"),
        )?;
        check(
            codes
                .iter()
                .all(|(_, c)| c == "PIN_INCORRECT" || c == "TEMPORARILY_LOCKED"),
            format!("every other value refused as locked: {codes:?}"),
        )?;
        let right = a1
            .iter()
            .find(|a| a["id"] == 8)
            .ok_or("no answer to the right PIN")?;
        eq(
            right["error"]["data"]["code"].as_str(),
            Some("TEMPORARILY_LOCKED"),
            &format!("the right PIN in the batch: {right}"),
        )?;
        // The right PIN never reached a card (it would have reset its
        // counter to 10).
        for (card, reader) in cards.iter().zip(readers) {
            let (tries, spent) = card.counter("pin")?;
            eq(
                u64::from(tries) + spent,
                10,
                &format!("{reader}: tries + spent"),
            )?;
        }
        // The lock stands: the right PIN from a new connection is refused.
        let mut c3 = page(server.port()).await?;
        let e = err(
            &mut c3,
            "login",
            on(READER_0, "pin", json!({ "value": "123456" })),
        )
        .await?;
        eq(
            e["code"].as_str(),
            Some("TEMPORARILY_LOCKED"),
            &format!("after the batch: {e}"),
        )?;
        let total: u64 = cards
            .iter()
            .map(|c| c.counter("pin").map(|(_, s)| s))
            .sum::<Result<u64, Failed>>()?;
        eq(total, spent, "nothing sent while locked")?;
        Ok(())
    })
}

// ------------------------------------------------------------ 3

/// PIV: a page's PUK is never sent blind; the dialog's PUK is checked at
/// login; the page's wrong PUK counts; at 1 the page is refused.
fn pcsc_piv_so_login_checks_the_puk() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let card = Card::insert(dir.path(), "piv", PORT_0, &[], None)?;
    wait_card(READER_1, false)?;
    let dialog = FakePinentry::new(dir.path(), "pinentry", Behaviour::Pins(&["11111111"]));
    let card = &card;
    let dialog = &dialog;
    with_daemon(
        config(Some(&dialog.program), Limits::default()),
        async |server| {
            let mut c = page(server.port()).await?;
            let so = |v: Value| on(READER_0, "pin", json!({ "value": v, "so": true }));
            let e = err(&mut c, "login", so(json!("00000000"))).await?;
            eq(
                e["code"].as_str(),
                Some("LAST_TRY_PROTECTED"),
                &format!("page PUK, count unknown: {e}"),
            )?;
            check(
                e.get("remainingTries").is_none(),
                format!("no remainingTries: {e}"),
            )?;
            eq(
                card.counter("puk")?,
                (3, 0),
                "PUK after the refused page value",
            )?;

            // The dialog's wrong PUK: checked at login, not held for init.
            let e = err(&mut c, "login", so(json!(false))).await?;
            eq(
                code_tries(&e),
                (Some("SO_PIN_INCORRECT"), Some(2)),
                &format!("dialog's wrong PUK: {e}"),
            )?;
            eq(dialog.runs(), 1, "dialog runs")?;
            eq(card.counter("puk")?, (2, 1), "PUK after the dialog's value")?;
            let st = ok(&mut c, "getPinStatus", on(READER_0, "pin", json!({}))).await?;
            eq(st["soValidated"].as_bool(), Some(false), "soValidated")?;

            // The count is known now: the page's wrong PUK is sent, counted.
            let e = err(&mut c, "login", so(json!("00000000"))).await?;
            eq(
                code_tries(&e),
                (Some("SO_PIN_INCORRECT"), Some(1)),
                &format!("page's wrong PUK: {e}"),
            )?;
            check(
                e["attemptsBeforeLock"].is_u64(),
                format!("lockout fields: {e}"),
            )?;
            eq(card.counter("puk")?, (1, 2), "PUK after the page's value")?;

            // At 1: never from the page, not even the right one.
            let e = err(&mut c, "login", so(json!("12345678"))).await?;
            eq(
                code_tries(&e),
                (Some("LAST_TRY_PROTECTED"), Some(1)),
                &format!("page's right PUK at 1: {e}"),
            )?;
            eq(card.counter("puk")?, (1, 2), "PUK at the end")?;
            Ok(())
        },
    )
}

// ------------------------------------------------------------ 4

/// The dialog: init(null) without a pinpad, the dialog's wrong entries
/// down to 0, no dialog for a blocked PIN.
fn pcsc_dialog_opens_only_when_it_can_help() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let card = Card::insert(dir.path(), "piv", PORT_0, &[], None)?;
    wait_card(READER_1, false)?;
    let dialog = FakePinentry::new(
        dir.path(),
        "pinentry",
        Behaviour::Pins(&["000000", "000000", "000000"]),
    );
    let card = &card;
    let dialog = &dialog;
    with_daemon(
        config(Some(&dialog.program), Limits::default()),
        async |server| {
            let mut c = page(server.port()).await?;
            let pin = |v: Value| on(READER_0, "pin", json!({ "value": v }));
            // vpcd has no pinpad.
            let e = err(
                &mut c,
                "init",
                on(READER_0, "pin", json!({ "newValue": null })),
            )
            .await?;
            eq(
                e["code"].as_str(),
                Some("OPERATION_NOT_SUPPORTED"),
                &format!("init(null): {e}"),
            )?;
            for left in [2, 1] {
                let e = err(&mut c, "login", pin(json!(false))).await?;
                eq(
                    code_tries(&e),
                    (Some("PIN_INCORRECT"), Some(left)),
                    &format!("dialog's wrong PIN: {e}"),
                )?;
            }
            // The dialog's wrong entry spends the last try.
            let e = err(&mut c, "login", pin(json!(false))).await?;
            eq(
                code_tries(&e),
                (Some("PIN_INCORRECT"), Some(0)),
                &format!("the try that blocks: {e}"),
            )?;
            eq(card.counter("pin")?, (0, 3), "PIN on the card")?;
            eq(dialog.runs(), 3, "dialog runs")?;
            // Blocked: no dialog.
            let e = err(&mut c, "login", pin(json!(false))).await?;
            eq(
                e["code"].as_str(),
                Some("PIN_BLOCKED"),
                &format!("login when blocked: {e}"),
            )?;
            let e = err(
                &mut c,
                "change",
                on(
                    READER_0,
                    "pin",
                    json!({ "oldValue": false, "newValue": false }),
                ),
            )
            .await?;
            eq(
                e["code"].as_str(),
                Some("PIN_BLOCKED"),
                &format!("change when blocked: {e}"),
            )?;
            eq(dialog.runs(), 3, "no dialog for a blocked PIN")?;
            eq(card.counter("pin")?, (0, 3), "PIN at the end")?;
            Ok(())
        },
    )
}

// ------------------------------------------------------------ 5

/// The progressive lockout's stages on a real card; while the site is
/// locked the user's dialog may only unblock; `Lockout::unlock` lifts it.
fn pcsc_lockout_escalates_and_only_the_user_unlocks() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let card = Card::insert(dir.path(), "piv", PORT_0, &["--max-tries", "10"], None)?;
    wait_card(READER_1, false)?;
    // The PUK, then the new PIN twice.
    let dialog = FakePinentry::new(
        dir.path(),
        "pinentry",
        Behaviour::Pins(&["12345678", "24681357", "24681357"]),
    );
    let limits = Limits {
        lockout: LockoutConfig {
            max_failures: 3,
            lock: Duration::from_secs(2),
            lock_until_unlocked: true,
        },
        ..Limits::default()
    };
    let card = &card;
    let dialog = &dialog;
    with_daemon(config(Some(&dialog.program), limits), async |server| {
        let mut c = page(server.port()).await?;
        let pin = |v: Value| on(READER_0, "pin", json!({ "value": v }));
        let wrong = || pin(json!("000000"));

        let e = err(&mut c, "login", wrong()).await?;
        eq(
            (e["code"].as_str(), e["attemptsBeforeLock"].as_u64()),
            (Some("PIN_INCORRECT"), Some(2)),
            &format!("1st: {e}"),
        )?;
        check(e.get("lockout").is_none(), format!("1st is ordinary: {e}"))?;
        let e = err(&mut c, "login", wrong()).await?;
        eq(
            (e["lockout"].as_str(), e["nextLockFor"].as_u64()),
            (Some("ONE_MORE_LOCKS"), Some(2)),
            &format!("2nd: {e}"),
        )?;
        let e = err(&mut c, "login", wrong()).await?;
        let locked_at = Instant::now();
        eq(
            (
                e["code"].as_str(),
                e["lockout"].as_str(),
                e["lockedFor"].as_u64(),
            ),
            (Some("PIN_INCORRECT"), Some("LOCKED_FOR"), Some(2)),
            &format!("3rd: {e}"),
        )?;
        eq(card.counter("pin")?, (7, 3), "PIN after 3 wrong")?;
        let e = err(&mut c, "login", pin(json!("123456"))).await?;
        eq(
            e["code"].as_str(),
            Some("TEMPORARILY_LOCKED"),
            &format!("right PIN while locked: {e}"),
        )?;
        let e = err(&mut c, "login", pin(json!(false))).await?;
        eq(
            e["code"].as_str(),
            Some("TEMPORARILY_LOCKED"),
            &format!("dialog login while locked: {e}"),
        )?;
        eq(dialog.runs(), 0, "no dialog for a locked site's login")?;
        eq(card.counter("pin")?, (7, 3), "nothing sent while locked")?;

        let wait = Duration::from_millis(2100).saturating_sub(locked_at.elapsed());
        tokio::time::sleep(wait).await;
        let e = err(&mut c, "login", wrong()).await?;
        eq(
            (e["code"].as_str(), e["attemptsBeforeLock"].as_u64()),
            (Some("PIN_INCORRECT"), Some(2)),
            &format!("4th: {e}"),
        )?;
        check(e.get("lockout").is_none(), format!("4th is ordinary: {e}"))?;
        let e = err(&mut c, "login", wrong()).await?;
        eq(
            (e["lockout"].as_str(), e["nextLockUntilUnlocked"].as_bool()),
            (Some("ONE_MORE_LOCKS"), Some(true)),
            &format!("5th: {e}"),
        )?;
        let e = err(&mut c, "login", wrong()).await?;
        eq(
            e["lockout"].as_str(),
            Some("LOCKED_UNTIL_UNLOCKED"),
            &format!("6th: {e}"),
        )?;
        eq(card.counter("pin")?, (4, 6), "PIN after 6 wrong")?;
        let e = err(&mut c, "login", pin(json!("123456"))).await?;
        eq(
            (e["code"].as_str(), e["origin"].as_str()),
            (Some("SITE_LOCKED"), Some(SITE)),
            &format!("right PIN when locked until unlocked: {e}"),
        )?;

        // The user's own dialog: no login, but SO login and init.
        let e = err(&mut c, "login", pin(json!(false))).await?;
        eq(
            e["code"].as_str(),
            Some("SITE_LOCKED"),
            &format!("dialog login while site-locked: {e}"),
        )?;
        eq(dialog.runs(), 0, "no dialog for a locked site's login")?;
        ok(
            &mut c,
            "login",
            on(READER_0, "pin", json!({ "value": false, "so": true })),
        )
        .await?;
        ok(
            &mut c,
            "init",
            on(READER_0, "pin", json!({ "newValue": false })),
        )
        .await?;
        eq(card.counter("pin")?.0, 10, "PIN tries after init")?;
        eq(
            card.counter("puk")?,
            (10, 0),
            "PUK after the dialog's SO login (right: nothing spent)",
        )?;
        // That did not lift the lock.
        let e = err(&mut c, "login", pin(json!("24681357"))).await?;
        eq(
            e["code"].as_str(),
            Some("SITE_LOCKED"),
            &format!("new PIN after init, still locked: {e}"),
        )?;
        eq(card.counter("pin")?, (10, 6), "nothing sent while locked")?;

        // The user unlocks the site.
        eq(
            cardgate::testing::unlock_site(server, SITE),
            Ok(true),
            "Lockout::unlock",
        )?;
        ok(&mut c, "login", pin(json!("24681357"))).await?;
        let st = ok(&mut c, "getPinStatus", on(READER_0, "pin", json!({}))).await?;
        eq(st["validated"].as_bool(), Some(true), "validated")?;
        eq(card.counter("pin")?, (10, 6), "PIN at the end")?;
        Ok(())
    })
}
