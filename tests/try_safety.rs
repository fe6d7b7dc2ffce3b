//! Try safety against hostile pages, over the WebSocket against the daemon
//! on simulated cards: each credential is judged where it came from at the
//! moment it is sent (a page's PUK held for `init` stays the page's), the
//! counts shown are the card's, and the daemon's dialog only opens when its
//! answer can be used. The card's own log of every value it compared
//! ([`cardgate::vcard::Presentation`]) is the witness.

#[path = "common/card.rs"]
mod card;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/fake_pinentry.rs"]
mod fake_pinentry;
#[path = "common/ws_client.rs"]
mod ws_client;

use card::tries;
use cardgate::vcard::config::CardConfig;
use cardgate::vcard::sim::SimBackend;
use cardgate::{Limits, Server};
use daemon::SimDaemon;
use fake_pinentry::{Behaviour, FakePinentry};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use ws_client::Client;

const PIV: &str = "Sim PIV";
const PGP: &str = "Sim OpenPGP";
const SITE: &str = "https://bank.example";

/// The daemon on a PIV and an OpenPGP card (with a reset code), the PIN
/// dialog played by `dialog`.
async fn daemon(dialog: Option<&Path>, piv: CardConfig) -> (Server, SimBackend) {
    daemon_with(dialog, piv, Limits::default()).await
}

async fn daemon_with(
    dialog: Option<&Path>,
    piv: CardConfig,
    limits: Limits,
) -> (Server, SimBackend) {
    let pgp = CardConfig {
        reset_code: Some("87654321".into()),
        ..CardConfig::openpgp()
    };
    SimDaemon::new()
        .card(PIV, piv)
        .card(PGP, pgp)
        .origins(&[SITE, "https://other.example"])
        .limits(limits)
        .pin_dialog(dialog, Duration::from_secs(5))
        .start()
        .await
}

async fn client(port: u16, origin: &str) -> Client {
    Client::page(port, origin).await
}

fn on(reader: &str, pin: &str, extra: Value) -> Value {
    let mut v = json!({ "reader": reader, "pin": pin });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
}

/// The values a reference data object compared, as text, with its counter
/// before each.
fn presented(sim: &SimBackend, reader: &str, name: &str) -> Vec<(String, u8)> {
    card::presented(sim, reader, name)
        .into_iter()
        .map(|(value, before, _)| (value, before))
        .collect()
}

/// Another application spends one try of the OpenPGP reset code
/// (RESET RETRY COUNTER with a wrong code), as a second program would.
fn another_application_spends_a_reset_code_try(sim: &SimBackend) {
    sim.with_card(PGP, |c| {
        let mut apdu = vec![0x00, 0xA4, 0x04, 0x00, 0x06];
        apdu.extend([0xD2, 0x76, 0x00, 0x01, 0x24, 0x01]);
        c.process(&apdu);
        let mut data = b"00000000".to_vec();
        data.extend(b"123456");
        let mut rrc = vec![0x00, 0x2C, 0x00, 0x81, data.len() as u8];
        rrc.extend(data);
        c.process(&rrc);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_page_code_is_judged_when_it_is_sent_whatever_supplies_the_new_pin() {
    let dir = tempfile::tempdir().unwrap();
    let dialog = FakePinentry::new(
        dir.path(),
        "pinentry",
        Behaviour::Pins(&["246813", "246813"]),
    );
    let (server, sim) = daemon(Some(&dialog.program), CardConfig::piv()).await;
    let mut page = client(server.port(), SITE).await;
    let so_rc = |v: &str| {
        on(
            PGP,
            "user",
            json!({ "value": v, "so": true, "soPath": "resetCode" }),
        )
    };
    // The reset code is held at SO login (the card cannot check it alone).
    page.ok("login", so_rc("00000000")).await;
    assert!(page.ok("getPinStatus", on(PGP, "user", json!({}))).await["soValidated"] == true);
    // Meanwhile another application brings it down to its last try.
    another_application_spends_a_reset_code_try(&sim);
    another_application_spends_a_reset_code_try(&sim);
    assert_eq!(tries(&sim, PGP, "rc"), 1);
    let before = presented(&sim, PGP, "rc").len();
    // The daemon's dialog would only give the new PIN: the code that would
    // reach the card is still the page's. Refused, the user is not asked.
    let e = page
        .err("init", on(PGP, "user", json!({ "newValue": false })))
        .await;
    assert_eq!(e["code"], "LAST_TRY_PROTECTED", "{e}");
    assert_eq!(e["remainingTries"], 1);
    assert_eq!(
        dialog.runs(),
        0,
        "no dialog for a new PIN that cannot be used"
    );
    // A requestCredential handle for the new PIN: the same.
    let handle = page
        .ok("requestCredential", json!({ "pinLabel": "new PIN" }))
        .await;
    let e = page
        .err("init", on(PGP, "user", json!({ "newValue": handle })))
        .await;
    assert_eq!(e["code"], "LAST_TRY_PROTECTED", "{e}");
    // A typed new PIN: the same.
    let e = page
        .err("init", on(PGP, "user", json!({ "newValue": "246813" })))
        .await;
    assert_eq!(e["code"], "LAST_TRY_PROTECTED", "{e}");
    assert_eq!(
        presented(&sim, PGP, "rc").len(),
        before,
        "the page's code never reached the card"
    );
    assert_eq!(tries(&sim, PGP, "rc"), 1);
    // And a new SO login with a page's code is refused at once.
    let e = page.err("login", so_rc("00000000")).await;
    assert_eq!(e["code"], "LAST_TRY_PROTECTED", "{e}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_piv_puk_is_checked_at_login_and_a_page_never_risks_it_blind() {
    let dir = tempfile::tempdir().unwrap();
    // The user mistypes the PUK twice in the daemon's own dialog.
    let dialog = FakePinentry::new(
        dir.path(),
        "pinentry",
        Behaviour::Pins(&["11111111", "22222222"]),
    );
    let (server, sim) = daemon(Some(&dialog.program), CardConfig::piv()).await;
    let mut page = client(server.port(), SITE).await;
    let so = |v: Value| on(PIV, "pin", json!({ "value": v, "so": true }));
    // SP 800-73-4 gives no way to read the PUK's counter: a page's PUK is
    // not sent while the card has not told it.
    let e = page.err("login", so(json!("00000000"))).await;
    assert_eq!(e["code"], "LAST_TRY_PROTECTED", "{e}");
    assert!(e.get("remainingTries").is_none(), "{e}");
    assert!(presented(&sim, PIV, "puk").is_empty());
    // The user's dialog may: the PUK is checked at login (CHANGE REFERENCE
    // DATA to itself), not held unchecked until init.
    let e = page.err("login", so(json!(false))).await;
    assert_eq!(
        (e["code"].as_str(), e["remainingTries"].as_u64()),
        (Some("SO_PIN_INCORRECT"), Some(2))
    );
    assert!(page.ok("getPinStatus", on(PIV, "pin", json!({}))).await["soValidated"] == false);
    // Now the count is known (2): a page's wrong PUK is sent and counted.
    let e = page.err("login", so(json!("00000000"))).await;
    assert_eq!(
        (e["code"].as_str(), e["remainingTries"].as_u64()),
        (Some("SO_PIN_INCORRECT"), Some(1))
    );
    assert!(
        e["attemptsBeforeLock"].is_u64(),
        "counted for the site: {e}"
    );
    // At 1: never from the page, not even the right one.
    let e = page.err("login", so(json!("12345678"))).await;
    assert_eq!(
        (e["code"].as_str(), e["remainingTries"].as_u64()),
        (Some("LAST_TRY_PROTECTED"), Some(1))
    );
    // The user's own dialog may use the last try; a wrong value that
    // spends it says so (a try was spent), it is not "already blocked".
    let e = page.err("login", so(json!(false))).await;
    assert_eq!(
        (e["code"].as_str(), e["remainingTries"].as_u64()),
        (Some("SO_PIN_INCORRECT"), Some(0))
    );
    assert_eq!(tries(&sim, PIV, "puk"), 0);
    // Every page value that reached the card found at least two tries.
    for (value, before) in presented(&sim, PIV, "puk") {
        if value == "00000000" || value == "12345678" {
            assert!(before >= 2, "a page's {value} was sent at {before}");
        }
    }
    // Blocked: refused before anyone is asked.
    let runs = dialog.runs();
    let e = page.err("login", so(json!(false))).await;
    assert_eq!(e["code"], "SO_PIN_BLOCKED");
    assert_eq!(dialog.runs(), runs, "no dialog for a blocked PUK");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dialog_shows_the_cards_state_and_opens_only_when_it_can_help() {
    let dir = tempfile::tempdir().unwrap();
    let dialog = FakePinentry::new(
        dir.path(),
        "pinentry",
        Behaviour::Pins(&["000000", "000000", "000000", "111111", "222222"]),
    );
    let (server, sim) = daemon(Some(&dialog.program), CardConfig::piv()).await;
    let mut page = client(server.port(), SITE).await;
    let pin = |v: Value| on(PIV, "pin", json!({ "value": v }));
    // init(null) on a reader without a keypad: not supported, whatever the
    // SO state.
    let e = page
        .err("init", on(PIV, "pin", json!({ "newValue": null })))
        .await;
    assert_eq!(e["code"], "OPERATION_NOT_SUPPORTED", "{e}");
    // init(false) without a SO login: said before the user is asked.
    let e = page
        .err("init", on(PIV, "pin", json!({ "newValue": false })))
        .await;
    assert_eq!(e["code"], "SO_LOGIN_REQUIRED", "{e}");
    assert_eq!(dialog.runs(), 0);
    for left in [2, 1] {
        let e = page.err("login", pin(json!(false))).await;
        assert_eq!(
            (e["code"].as_str(), e["remainingTries"].as_u64()),
            (Some("PIN_INCORRECT"), Some(left))
        );
    }
    // The second dialog showed the card's count, not an older error's.
    let log = dialog.log();
    assert!(log.contains("2 tries left"), "{log}");
    assert!(
        log.contains("SETERROR The PIN entered last time was wrong."),
        "{log}"
    );
    // The dialog's wrong entry spends the last try: PIN_INCORRECT, 0 left.
    let e = page.err("login", pin(json!(false))).await;
    assert_eq!(
        (e["code"].as_str(), e["remainingTries"].as_u64()),
        (Some("PIN_INCORRECT"), Some(0))
    );
    assert_eq!(sim.with_card(PIV, |c| c.user_pin_tries()), Some(0));
    assert!(dialog.log().contains("Only 1 try is left"));
    // Blocked: no dialog, PIN_BLOCKED (nothing spent).
    let runs = dialog.runs();
    let e = page.err("login", pin(json!(false))).await;
    assert_eq!(e["code"], "PIN_BLOCKED");
    let e = page
        .err(
            "change",
            on(PIV, "pin", json!({ "oldValue": false, "newValue": false })),
        )
        .await;
    assert_eq!(e["code"], "PIN_BLOCKED");
    assert_eq!(dialog.runs(), runs);
    // The PUK error is not shown in the PIN's dialogs, nor the reverse.
    let log = dialog.log();
    assert!(!log.contains("PUK entered last time"), "{log}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_shown_are_the_cards_even_when_a_failed_change_hides_them() {
    use cardgate::vcard::config::Quirk;
    let piv = CardConfig::piv()
        .with_quirk(Quirk::ChangeWrongOld6300)
        .with_quirk(Quirk::FailedChangeKeepsVerification);
    let (server, sim) = daemon(None, piv).await;
    let mut page = client(server.port(), SITE).await;
    page.ok("login", on(PIV, "pin", json!({ "value": "123456" })))
        .await;
    let e = page
        .err(
            "change",
            on(
                PIV,
                "pin",
                json!({ "oldValue": "000000", "newValue": "654321" }),
            ),
        )
        .await;
    let card = sim.with_card(PIV, |c| c.user_pin_tries()).unwrap();
    assert_eq!(card, 2);
    assert_eq!(e["remainingTries"], 2, "{e}");
    let st = page.ok("getPinStatus", on(PIV, "pin", json!({}))).await;
    assert_eq!(st["remainingTries"], 2, "{st}");
    assert_eq!(st["validated"], false, "{st}");
    // The notification said the same.
    let note = page
        .notification("pinStateChanged", |p| {
            p["reader"] == PIV && p["status"]["remainingTries"] == 2
        })
        .await;
    assert_eq!(note["status"]["validated"], false);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_a_site_is_locked_the_users_own_dialog_may_only_unblock() {
    let dir = tempfile::tempdir().unwrap();
    // The PUK, then the new PIN twice.
    let dialog = FakePinentry::new(
        dir.path(),
        "pinentry",
        Behaviour::Pins(&["12345678", "24681357", "24681357"]),
    );
    let piv = CardConfig {
        max_tries: 10,
        ..CardConfig::piv()
    };
    let (server, sim) = daemon(Some(&dialog.program), piv).await;
    let mut page = client(server.port(), SITE).await;
    let pin = |v: Value| on(PIV, "pin", json!({ "value": v }));
    for _ in 0..3 {
        page.err("login", pin(json!("000000"))).await;
    }
    // Locked: a login through the dialog is refused before anyone is asked.
    let e = page.err("login", pin(json!(false))).await;
    assert_eq!(e["code"], "TEMPORARILY_LOCKED", "{e}");
    let e = page
        .err(
            "change",
            on(PIV, "pin", json!({ "oldValue": false, "newValue": false })),
        )
        .await;
    assert_eq!(e["code"], "TEMPORARILY_LOCKED", "{e}");
    assert_eq!(dialog.runs(), 0);
    // The user may reset the PIN meanwhile, in the daemon's own dialog.
    page.ok(
        "login",
        on(PIV, "pin", json!({ "value": false, "so": true })),
    )
    .await;
    page.ok("init", on(PIV, "pin", json!({ "newValue": false })))
        .await;
    assert_eq!(sim.with_card(PIV, |c| c.user_pin_tries()), Some(10));
    // That did not lift the site's lock: even the right PIN is refused.
    let e = page.err("login", pin(json!("24681357"))).await;
    assert_eq!(e["code"], "TEMPORARILY_LOCKED", "{e}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_made_elsewhere_is_ended_to_see_the_count_before_a_page_value() {
    let (server, sim) = daemon(None, CardConfig::piv()).await;
    // Another application verified the PIN: the status query answers 9000
    // and the daemon has never seen the count.
    let other = cardgate::testing::Service::new(Arc::new(sim.clone()));
    tokio::task::spawn_blocking(move || {
        other
            .with_engine(PIV, |e| e.login("pin", &"123456".into(), false))
            .unwrap();
    })
    .await
    .unwrap();
    let mut page = client(server.port(), SITE).await;
    let st = page.ok("getPinStatus", on(PIV, "pin", json!({}))).await;
    assert!(st.get("remainingTries").is_none(), "not the card's: {st}");
    // A page's value: the count is learned first, then the value sent.
    let e = page
        .err("login", on(PIV, "pin", json!({ "value": "000000" })))
        .await;
    assert_eq!(
        (e["code"].as_str(), e["remainingTries"].as_u64()),
        (Some("PIN_INCORRECT"), Some(2))
    );
    page.ok("login", on(PIV, "pin", json!({ "value": "123456" })))
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_the_consent_prompt_is_configured_the_user_may_unlock_a_locked_site() {
    use cardgate::ConsentMode;
    use cardgate::LockoutConfig;
    let dir = tempfile::tempdir().unwrap();
    let dialog = FakePinentry::new(dir.path(), "pinentry", Behaviour::ConfirmOk);
    let piv = CardConfig {
        max_tries: 10,
        ..CardConfig::piv()
    };
    let limits = Limits {
        consent: ConsentMode::Prompt,
        // One wrong value locks for a second, the second until unlocked.
        lockout: LockoutConfig {
            max_failures: 1,
            lock: Duration::from_secs(1),
            ..LockoutConfig::default()
        },
        ..Limits::default()
    };
    let (server, sim) = daemon_with(Some(&dialog.program), piv, limits).await;
    let mut page = client(server.port(), SITE).await;
    let pin = |v: &str| on(PIV, "pin", json!({ "value": v }));
    let e = page.err("login", pin("000000")).await;
    assert_eq!(e["lockout"], "LOCKED_FOR", "{e}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let e = page.err("login", pin("000000")).await;
    assert_eq!(e["lockout"], "LOCKED_UNTIL_UNLOCKED", "{e}");
    // Without the consent prompt this stays SITE_LOCKED; with it the user
    // is asked (here: unlock) and the request goes on.
    page.ok("login", pin("123456")).await;
    let log = dialog.log();
    assert!(log.contains("is locked"), "{log}");
    assert!(log.contains("CONFIRM"), "{log}");
    assert_eq!(sim.with_card(PIV, |c| c.user_pin_tries()), Some(10));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_login_costs_the_guards_status_read_and_the_verify_nothing_more() {
    let (server, sim) = daemon(None, CardConfig::piv()).await;
    let mut page = client(server.port(), SITE).await;
    page.ok("getPinStatus", on(PIV, "pin", json!({}))).await;
    let sent = || sim.with_card(PIV, |c| c.commands().to_vec()).unwrap();
    for value in ["000000", "123456", "000000"] {
        let before = sent().len();
        let _ = page
            .call("login", on(PIV, "pin", json!({ "value": value })))
            .await;
        let new: Vec<_> = sent()[before..].to_vec();
        // The status query (VERIFY without data), then the VERIFY: the
        // answer (63Cx or 9000) is the state, not read again.
        assert_eq!(
            new,
            vec![
                ([0x00, 0x20, 0x00, 0x80], false),
                ([0x00, 0x20, 0x00, 0x80], true)
            ],
            "after {value}"
        );
    }
    server.shutdown().await;
}
