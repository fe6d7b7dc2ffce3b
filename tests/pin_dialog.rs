//! PIN entry outside the page, through the real pinentry (Assuan) protocol
//! with scripted pinentry programs: login(false), change(false, false),
//! init(false), requestCredential handles, cancel and timeout, and the
//! consent prompt for unknown origins.

#[path = "common/card.rs"]
mod card;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/fake_pinentry.rs"]
mod fake_pinentry;
#[path = "common/ws_client.rs"]
mod ws_client;

use cardgate::OriginsFile;
use cardgate::vcard::config::CardConfig;
use cardgate::vcard::sim::SimBackend;
use cardgate::{ConsentMode, Limits, Server};
use daemon::SimDaemon;
use fake_pinentry::{Behaviour, FakePinentry};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use ws_client::Client;

const R: &str = "Sim PIV";
const SITE: &str = "https://bank.example";

async fn daemon(
    program: &Path,
    timeout: Duration,
    origins_file: Option<&Path>,
    consent: ConsentMode,
) -> (Server, SimBackend) {
    let allowed: &[&str] = if consent == ConsentMode::Prompt {
        &[]
    } else {
        &[SITE]
    };
    SimDaemon::new()
        .card(R, CardConfig::piv())
        .origins_file(origins_file)
        .origins(allowed)
        .limits(Limits {
            consent,
            ..Limits::default()
        })
        .pin_dialog(Some(program), timeout)
        .start()
        .await
}

/// The daemon with `program` as its PIN dialog (5 s to answer), the site
/// allowed and no consent prompt.
async fn daemon_with_dialog(program: &Path) -> (Server, SimBackend) {
    daemon(program, Duration::from_secs(5), None, ConsentMode::Refuse).await
}

async fn client(port: u16, origin: &str) -> Result<Client, String> {
    Client::connect_page(port, origin).await
}

fn t(extra: Value) -> Value {
    let mut v = json!({ "reader": R, "pin": "pin" });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
}

/// Every message the page received, as text.
fn received(c: &Client, responses: &[Value]) -> String {
    let mut all: Vec<String> = responses.iter().map(Value::to_string).collect();
    all.extend(c.notes.iter().map(Value::to_string));
    all.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_through_the_dialog_never_shows_the_page_the_pin() {
    let dir = tempfile::tempdir().unwrap();
    let dialog = FakePinentry::new(
        dir.path(),
        "pinentry-wrong-then-right",
        Behaviour::Pins(&["000000"]),
    );
    let (server, sim) = daemon_with_dialog(&dialog.program).await;
    let mut page = client(server.port(), SITE).await.unwrap();
    let mut seen = Vec::new();

    let r = page.call("login", t(json!({ "value": false }))).await;
    assert_eq!(r["error"]["data"]["code"], "PIN_INCORRECT", "{r}");
    assert_eq!(r["error"]["data"]["remainingTries"], 2);
    seen.push(r);
    // The dialog said which PIN, which card and reader, which site, tries left.
    let log = dialog.log();
    for needed in [
        "SETDESC",
        "https://bank.example",
        "PIN",
        "PIV card",
        R,
        "3 tries left",
        "GETPIN",
    ] {
        assert!(log.contains(needed), "dialog text lacks {needed:?}:\n{log}");
    }

    // Second dialog: right PIN, and it shows the previous error.
    let dialog2 = FakePinentry::new(
        dir.path(),
        "pinentry-wrong-then-right",
        Behaviour::Pins(&["123456"]),
    );
    let r = page.call("login", t(json!({ "value": false }))).await;
    assert!(r.get("error").is_none(), "{r}");
    seen.push(r);
    let log = dialog2.log();
    // The error names no count (it could disagree); the count is the
    // card's, read when the dialog opened.
    assert!(
        log.contains("SETERROR The PIN entered last time was wrong."),
        "{log}"
    );
    assert!(log.contains("2 tries left"), "{log}");
    assert_eq!(
        page.ok("getPinStatus", t(json!({}))).await["validated"],
        true
    );
    assert_eq!(sim.with_card(R, |c| c.user_pin_tries()), Some(3));
    let all = received(&page, &seen);
    assert!(
        !all.contains("123456") && !all.contains("000000"),
        "a PIN reached the page: {all}"
    );
    assert!(dialog.all_gone(), "a pinentry process was left running");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dialog_may_spend_the_last_try_a_page_may_not() {
    let dir = tempfile::tempdir().unwrap();
    let dialog = FakePinentry::new(dir.path(), "pinentry", Behaviour::Pins(&["123456"]));
    let (server, _sim) = daemon_with_dialog(&dialog.program).await;
    let mut page = client(server.port(), SITE).await.unwrap();
    page.err("login", t(json!({ "value": "000000" }))).await;
    page.err("login", t(json!({ "value": "000000" }))).await;
    assert_eq!(
        page.err("login", t(json!({ "value": "123456" }))).await["code"],
        "LAST_TRY_PROTECTED"
    );
    page.ok("login", t(json!({ "value": false }))).await;
    assert!(
        dialog.log().contains("Only 1 try is left"),
        "{}",
        dialog.log()
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_and_unblock_through_the_dialog() {
    let dir = tempfile::tempdir().unwrap();
    let dialog = FakePinentry::new(
        dir.path(),
        "pinentry",
        Behaviour::Pins(&["123456", "246801"]),
    );
    let (server, _sim) = daemon_with_dialog(&dialog.program).await;
    let mut page = client(server.port(), SITE).await.unwrap();
    let mut seen = vec![
        page.ok("change", t(json!({ "oldValue": false, "newValue": false })))
            .await,
    ];
    assert!(
        dialog.log().contains("SETREPEAT"),
        "new PINs are asked twice"
    );
    seen.push(page.ok("login", t(json!({ "value": "246801" }))).await);

    // Unblock: PUK in the dialog, then the new PIN.
    let _puk = FakePinentry::new(dir.path(), "pinentry", Behaviour::Pins(&["12345678"]));
    seen.push(
        page.ok("login", t(json!({ "value": false, "so": true })))
            .await,
    );
    let log = std::fs::read_to_string(dir.path().join("pinentry.log")).unwrap();
    assert!(
        log.contains("SETPROMPT PUK:"),
        "the dialog names the PUK: {log}"
    );
    let _new = FakePinentry::new(dir.path(), "pinentry", Behaviour::Pins(&["975310"]));
    seen.push(page.ok("init", t(json!({ "newValue": false }))).await);
    seen.push(page.ok("login", t(json!({ "value": "975310" }))).await);
    let all = received(&page, &seen);
    for secret in ["123456", "246801", "12345678"] {
        assert!(!all.contains(secret), "{secret} reached the page");
    }
    // Mixing sources is refused.
    let r = page
        .call(
            "change",
            t(json!({ "oldValue": false, "newValue": "111111" })),
        )
        .await;
    assert_eq!(r["error"]["code"], -32602);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_timeout_and_missing_dialog() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = FakePinentry::new(dir.path(), "cancel", Behaviour::Cancel);
    let (server, sim) = daemon_with_dialog(&cancel.program).await;
    let mut page = client(server.port(), SITE).await.unwrap();
    assert_eq!(
        page.err("login", t(json!({ "value": false }))).await["code"],
        "PIN_ENTRY_CANCELLED"
    );
    assert_eq!(
        page.ok("requestCredential", json!({ "pinLabel": "PIN" }))
            .await,
        Value::Null
    );
    assert_eq!(sim.with_card(R, |c| c.user_pin_tries()), Some(3));
    server.shutdown().await;

    let hang = FakePinentry::new(dir.path(), "hang", Behaviour::Hang);
    let (server, sim) = daemon(
        &hang.program,
        Duration::from_secs(1),
        None,
        ConsentMode::Refuse,
    )
    .await;
    let mut page = client(server.port(), SITE).await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        page.err("login", t(json!({ "value": false }))).await["code"],
        "PIN_ENTRY_TIMEOUT"
    );
    assert!(started.elapsed() < Duration::from_secs(9));
    assert!(hang.all_gone(), "the hanging pinentry was not killed");
    assert_eq!(sim.with_card(R, |c| c.user_pin_tries()), Some(3));
    server.shutdown().await;

    let (server, _sim) = daemon(
        &dir.path().join("no-such-pinentry"),
        Duration::from_secs(1),
        None,
        ConsentMode::Refuse,
    )
    .await;
    let mut page = client(server.port(), SITE).await.unwrap();
    assert_eq!(
        page.err("login", t(json!({ "value": false }))).await["code"],
        "PIN_DIALOG_UNAVAILABLE"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_credential_gives_a_one_time_handle() {
    let dir = tempfile::tempdir().unwrap();
    let dialog = FakePinentry::new(dir.path(), "pinentry", Behaviour::Pins(&["123456"]));
    let (server, _sim) = daemon_with_dialog(&dialog.program).await;
    let mut page = client(server.port(), SITE).await.unwrap();
    let req = json!({ "pinLabel": "Card PIN", "triesLeft": 3, "error": "try again", "reader": R, "cardLabel": "My card" });
    let cred = page.ok("requestCredential", req).await;
    assert_eq!(cred["type"], "pin");
    let handle = cred["handle"].as_str().unwrap().to_string();
    assert!(!handle.contains("123456"));
    let log = dialog.log();
    for needed in [
        "Card PIN",
        "My card",
        R,
        "Message from https://bank.example: try again",
        SITE,
    ] {
        assert!(log.contains(needed), "{needed:?} missing:\n{log}");
    }
    // The page's count is not the card's: it is not shown as if it were.
    assert!(!log.contains("3 tries left"), "{log}");
    // Another connection cannot use it.
    let mut other = client(server.port(), SITE).await.unwrap();
    let value = json!({ "type": "pin", "handle": handle });
    let e = other.err("login", t(json!({ "value": value }))).await;
    assert_eq!(e["code"], "CREDENTIAL_HANDLE_INVALID");
    let seen = vec![page.ok("login", t(json!({ "value": value }))).await];
    assert_eq!(
        page.ok("getPinStatus", t(json!({}))).await["validated"],
        true
    );
    // Once only.
    assert_eq!(
        page.err("login", t(json!({ "value": value }))).await["code"],
        "CREDENTIAL_HANDLE_INVALID"
    );
    assert!(!received(&page, &seen).contains("123456"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_for_unknown_origins() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("origins.toml");
    let once = FakePinentry::new(dir.path(), "consent", Behaviour::ConfirmOk);
    let (server, _sim) = daemon(
        &once.program,
        Duration::from_secs(5),
        Some(&file),
        ConsentMode::Prompt,
    )
    .await;
    let port = server.port();
    let mut c = client(port, "https://shop.example")
        .await
        .expect("allowed once");
    c.ok("hello", json!({})).await;
    let log = once.log();
    assert!(
        log.contains("Allow https://shop.example to use your smart card?"),
        "{log}"
    );
    assert!(
        log.contains("SETOK Allow once")
            && log.contains("SETNOTOK Always allow")
            && log.contains("SETCANCEL Deny")
    );
    // "Once" is not remembered: the next connection asks again.
    client(port, "https://shop.example").await.unwrap();
    assert_eq!(once.runs(), 2);

    let always = FakePinentry::new(dir.path(), "consent", Behaviour::ConfirmNotOk);
    client(port, "https://always.example")
        .await
        .expect("always allowed");
    client(port, "https://always.example")
        .await
        .expect("remembered");
    assert_eq!(always.runs(), 3, "asked once for always.example");
    let stored = OriginsFile::load(&file).unwrap();
    assert_eq!(stored.allowed, vec!["https://always.example".to_string()]);

    let deny = FakePinentry::new(dir.path(), "consent", Behaviour::ConfirmCancel);
    let e = client(port, "https://evil.example")
        .await
        .err()
        .expect("denied");
    assert!(e.contains("403"), "{e}");
    assert!(client(port, "https://evil.example").await.is_err());
    assert_eq!(deny.runs(), 4, "a denied site is not asked about again");
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_cardgate"))
        .args(["origins", "--file", file.to_str().unwrap(), "list"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("allowed  https://always.example")
            && listed.contains("denied   https://evil.example"),
        "{listed}"
    );
    assert!(deny.all_gone());
    server.shutdown().await;
}

/// A page's WebSocket opened on the connection that loaded a page first
/// (keep-alive, then the upgrade through the HTTP server).
async fn client_after_page_load(port: u16, origin: &str) -> Client {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut buf = vec![0; 8192];
    let get = format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    s.write_all(get.as_bytes()).await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let upgrade = format!(
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {origin}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(upgrade.as_bytes()).await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 101"));
    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        tokio_tungstenite::MaybeTlsStream::Plain(s),
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    Client::from_stream(ws)
}

/// Shutdown waits for a login whose PIN the user is still typing, answers
/// it, and only then logs the card out — on a WebSocket opened directly and
/// on one upgraded on a keep-alive connection alike. (The second ran on its
/// own after shutdown: its login landed after the final logout and left
/// the card verified.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_a_login_still_in_the_dialog_then_logs_out() {
    for after_page_load in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let dialog = FakePinentry::new(dir.path(), "slow", Behaviour::SlowPins(&["123456"]));
        let (server, sim) = daemon_with_dialog(&dialog.program).await;
        let mut page = if after_page_load {
            client_after_page_load(server.port(), SITE).await
        } else {
            client(server.port(), SITE).await.unwrap()
        };
        page.send_text(
            json!({ "jsonrpc": "2.0", "id": 7, "method": "login", "params": t(json!({ "value": false })) })
                .to_string(),
        )
        .await;
        for _ in 0..500 {
            if dialog.runs() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(dialog.runs(), 1, "the dialog is up");
        server.shutdown().await;
        // Answered when shutdown returns, not a second later.
        let r = tokio::time::timeout(Duration::from_millis(300), page.response(&json!(7)))
            .await
            .unwrap_or_else(|_| {
                panic!("no answer at shutdown (after page load: {after_page_load})")
            });
        // Its notification came first, as always.
        assert!(
            page.notes.iter().any(|n| n["method"] == "pinStateChanged"),
            "{:?}",
            page.notes
        );
        assert!(r.get("error").is_none(), "the login went through: {r}");
        // The card itself, read after the daemon is gone.
        assert!(
            !card::pin_verified(&sim, R).await,
            "the card is logged out (after page load: {after_page_load})"
        );
    }
}
