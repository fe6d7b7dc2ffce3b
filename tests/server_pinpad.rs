//! `Token.protectedAuthPath` over the protocol: true for a card in a
//! pinpad reader (PC/SC part 10 VERIFY_PIN_DIRECT), false otherwise.

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/ws_client.rs"]
mod ws_client;

use cardgate::Server;
use cardgate::vcard::config::CardConfig;
use cardgate::vcard::sim::SimBackend;
use cardgate::vcard::sim::pinpad::SimPinpad;
use daemon::SimDaemon;
use serde_json::{Value, json};
use ws_client::Client;

const PAD_PIV: &str = "Sim Pinpad PIV";
const PAD_PGP: &str = "Sim Pinpad OpenPGP";
const PLAIN: &str = "Sim PIV";

async fn daemon() -> (Server, SimBackend) {
    SimDaemon::local_tool()
        .pinpad_card(PAD_PIV, SimPinpad::full(), CardConfig::piv())
        .pinpad_card(PAD_PGP, SimPinpad::verify_only(), CardConfig::openpgp())
        .card(PLAIN, CardConfig::piv())
        .start()
        .await
}

fn token<'a>(readers: &'a Value, name: &str) -> &'a Value {
    &readers["readers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no reader {name}: {readers}"))["token"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_auth_path_follows_the_reader() {
    let (server, sim) = daemon().await;
    let mut c = Client::connect(server.port()).await;
    c.ok("hello", json!({ "protocol": 1 })).await;
    let readers = c.ok("getReaders", json!({})).await;
    assert_eq!(token(&readers, PAD_PIV)["protectedAuthPath"], true);
    assert_eq!(token(&readers, PAD_PIV)["profile"], "piv");
    assert_eq!(token(&readers, PAD_PGP)["protectedAuthPath"], true);
    assert_eq!(token(&readers, PAD_PGP)["profile"], "openpgp");
    assert_eq!(token(&readers, PLAIN)["protectedAuthPath"], false);
    // Describing the token asked the reader, never the user.
    assert_eq!(sim.pinpad_pending(PAD_PIV), 0);
    assert!(
        sim.pinpad_requests(PAD_PIV)
            .iter()
            .all(|(code, _)| *code != 0x4233_0006),
        "no PIN entry was started"
    );
    // A card inserted later: the notification's token says it too.
    let card = sim.remove_card(PAD_PIV).unwrap();
    c.notification("cardRemoved", |p| p["reader"] == PAD_PIV)
        .await;
    sim.insert_card(PAD_PIV, card).unwrap();
    let note = c
        .notification("cardInserted", |p| p["reader"] == PAD_PIV)
        .await;
    assert_eq!(note["token"]["protectedAuthPath"], true, "{note}");
    server.shutdown().await;
}

/// `login(null)` / `change(null, null)` / `init(null)`: the user types on the
/// reader; the page and the daemon never see the values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_operations_on_the_pinpad_over_the_protocol() {
    use cardgate::vcard::sim::pinpad::PinpadInput;
    let (server, sim) = daemon().await;
    let mut c = Client::connect(server.port()).await;
    let t = |reader: &str, extra: Value| {
        let mut v = json!({ "reader": reader, "pin": "pin" });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    sim.pinpad_input(PAD_PIV, [PinpadInput::digits("000000")])
        .unwrap();
    let e = c.err("login", t(PAD_PIV, json!({ "value": null }))).await;
    assert_eq!(
        (e["code"].as_str(), e["remainingTries"].as_u64()),
        (Some("PIN_INCORRECT"), Some(2))
    );
    sim.pinpad_input(PAD_PIV, [PinpadInput::Cancel]).unwrap();
    assert_eq!(
        c.err("login", t(PAD_PIV, json!({}))).await["code"],
        "PIN_ENTRY_CANCELLED"
    );
    sim.pinpad_input(PAD_PIV, [PinpadInput::digits("123456")])
        .unwrap();
    c.ok("login", t(PAD_PIV, json!({ "value": null }))).await;
    assert_eq!(
        c.ok("getPinStatus", t(PAD_PIV, json!({}))).await["validated"],
        true
    );
    for digits in ["123456", "24681357", "24681357"] {
        sim.pinpad_input(PAD_PIV, [PinpadInput::digits(digits)])
            .unwrap();
    }
    c.ok(
        "change",
        t(PAD_PIV, json!({ "oldValue": null, "newValue": null })),
    )
    .await;
    c.ok("login", t(PAD_PIV, json!({ "value": "24681357" })))
        .await;
    // A reader without a pinpad says so.
    let e = c.err("login", t(PLAIN, json!({ "value": null }))).await;
    assert_eq!(e["code"], "OPERATION_NOT_SUPPORTED");
    assert_eq!(sim.with_card(PLAIN, |card| card.user_pin_tries()), Some(3));
    server.shutdown().await;
}
