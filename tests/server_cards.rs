//! Cards beyond one application, through the daemon: a YubiKey's four PIN
//! objects over the protocol, and an unknown card that counts an empty
//! VERIFY as a wrong PIN, served to pages through an hour's worth of card
//! events without ever losing a try.

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/ws_client.rs"]
mod ws_client;

use cardgate::vcard::config::{CardConfig, Profile, Quirk};
use daemon::SimDaemon;
use serde_json::json;
use ws_client::Client;

const KEY: &str = "Sim YubiKey";
const ODD: &str = "Sim Unknown";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yubikey_is_one_token_with_four_pins() {
    let (server, _sim) = SimDaemon::local_tool()
        .card(KEY, CardConfig::for_profile(Profile::YubiKey))
        .start()
        .await;
    let mut c = Client::connect(server.port()).await;
    let readers = c.ok("getReaders", json!({})).await;
    let token = &readers["readers"][0]["token"];
    assert_eq!(token["profile"], "yubikey");
    let apps: Vec<&str> = token["applications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(apps, ["piv", "openpgp"]);
    let pins: Vec<(String, String)> = token["pins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["application"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        pins,
        [
            ("pin".into(), "piv".into()),
            ("puk".into(), "piv".into()),
            ("user".into(), "openpgp".into()),
            ("admin".into(), "openpgp".into())
        ]
    );
    // Both applications' PINs work through the one token.
    c.ok(
        "login",
        json!({ "reader": KEY, "pin": "user", "value": "123456" }),
    )
    .await;
    let st = c
        .ok("getPinStatus", json!({ "reader": KEY, "pin": "pin" }))
        .await;
    assert_eq!(st["application"], "piv");
    assert_eq!(st["remainingTries"], 3);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_card_keeps_its_tries_through_an_hour_of_events() {
    let hostile = CardConfig::for_profile(Profile::Iso)
        .with_quirk(Quirk::EmptyVerifySpendsTry)
        .with_quirk(Quirk::WrongVerify6300);
    let (server, sim) = SimDaemon::local_tool().card(ODD, hostile).start().await;
    // One event a second for an hour, each followed by what pages do: list
    // the readers, ask for statuses, try to log in.
    for second in 0..3600 {
        match second % 3 {
            0 => {
                let card = sim.remove_card(ODD).unwrap();
                sim.insert_card(ODD, card).unwrap();
            }
            1 => sim.reset_card(ODD).unwrap(),
            _ => {}
        }
        if second % 60 == 59 {
            // The page asks once the daemon has seen the last event (a
            // card just re-inserted is absent until then).
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let mut c = Client::connect(server.port()).await;
            let readers = c.ok("getReaders", json!({})).await;
            let reader = &readers["readers"][0];
            assert_eq!(reader["cardPresent"], true);
            assert!(reader.get("token").is_none_or(|t| t.is_null()), "{reader}");
            let e = c
                .err("getPinStatus", json!({ "reader": ODD, "pin": "pin" }))
                .await;
            assert_eq!(e["code"], "CARD_NOT_SUPPORTED");
            assert!(e["atr"].as_str().is_some_and(|a| !a.is_empty()), "{e}");
            let e = c
                .err(
                    "login",
                    json!({ "reader": ODD, "pin": "pin", "value": "1234" }),
                )
                .await;
            assert_eq!(e["code"], "CARD_NOT_SUPPORTED");
        }
    }
    let tries = |name: &str| sim.with_card(ODD, |card| card.tries(name)).unwrap();
    assert_eq!(tries("pin"), Some(3));
    assert_eq!(tries("puk"), Some(3));
    assert!(
        sim.with_card(ODD, |card| card.presented("pin"))
            .unwrap()
            .is_empty()
    );
    server.shutdown().await;
}
