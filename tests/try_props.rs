//! Try safety as invariants over random interleavings: several connections
//! of two sites send PIN operations — single frames, batches, pipelined
//! without waiting, all at once — on two cards (PIV and OpenPGP), with
//! values from the page and from the daemon's dialog. Whatever the
//! interleaving, the card's own log of every value it compared shows:
//! - no value from a page reached a credential whose counter was at 1 (or
//!   unknown: then it is refused before anything is sent);
//! - at most the lockout's allowance of a site's wrong values reached the
//!   cards (a site that never sends a right value: 3 in all);
//! - every count the daemon reported is one the card had, and at rest every
//!   connection sees the card's own counter;
//! - at most one connection sees a login on a card.

#[path = "common/fake_pinentry.rs"]
mod fake_pinentry;

use cardgate::pinentry::PinDialog;
use cardgate::security::origin::OriginsFile;
use cardgate::server::{Limits, Server, ServerConfig};
use cardgate::transport::sim::SimBackend;
use cardgate::vcard::VirtualCard;
use cardgate::vcard::config::CardConfig;
use fake_pinentry::{Behaviour, FakePinentry};
use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const PIV: &str = "Sim PIV";
const PGP: &str = "Sim OpenPGP";
/// Sends right and wrong values.
const SITE_A: &str = "https://a.example";
/// Only ever sends wrong values.
const SITE_B: &str = "https://b.example";
/// What the user types in the daemon's dialog (always a typo here).
const DIALOG_VALUE: &str = "99999999";
const RIGHT: &str = "123456";

/// The sites of the connections: three of A, two of B.
const CONNECTIONS: [&str; 5] = [SITE_A, SITE_A, SITE_B, SITE_A, SITE_B];

#[derive(Debug, Clone, Copy)]
enum Step {
    /// A page's value for the user PIN: right (site A only) or wrong.
    Login {
        card: usize,
        right: bool,
    },
    /// A page's wrong value for the security officer (PIV PUK, OpenPGP
    /// admin PIN).
    SoLogin {
        card: usize,
    },
    /// A page's wrong current PIN in a change.
    Change {
        card: usize,
    },
    /// The user's dialog, for the PIN or its security officer.
    Dialog {
        card: usize,
        so: bool,
    },
    Status {
        card: usize,
    },
    Logout {
        card: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let card = 0usize..2;
    prop_oneof![
        4 => (card.clone(), any::<bool>()).prop_map(|(card, right)| Step::Login { card, right }),
        2 => card.clone().prop_map(|card| Step::SoLogin { card }),
        2 => card.clone().prop_map(|card| Step::Change { card }),
        1 => (card.clone(), any::<bool>()).prop_map(|(card, so)| Step::Dialog { card, so }),
        2 => card.clone().prop_map(|card| Step::Status { card }),
        1 => card.prop_map(|card| Step::Logout { card }),
    ]
}

/// One frame of a connection: a single request, or a batch.
fn frames() -> impl Strategy<Value = Vec<(usize, Vec<Step>)>> {
    prop::collection::vec(
        (0..CONNECTIONS.len(), prop::collection::vec(step(), 1..5)),
        4..24,
    )
}

fn wrong_value(site: &str, card: usize, so: bool) -> &'static str {
    match (site == SITE_A, card, so) {
        (true, 0, false) => "111111",
        (true, _, true) => "11111111",
        (true, _, false) => "1111111",
        (false, 0, false) => "222222",
        (false, _, true) => "22222222",
        (false, _, false) => "2222222",
    }
}

fn request(id: u64, site: &str, step: Step) -> Value {
    let card = match step {
        Step::Login { card, .. }
        | Step::SoLogin { card }
        | Step::Change { card }
        | Step::Dialog { card, .. }
        | Step::Status { card }
        | Step::Logout { card } => card,
    };
    let (reader, pin) = if card == 0 {
        (PIV, "pin")
    } else {
        (PGP, "user")
    };
    let (method, mut params) = match step {
        Step::Login { card, right } => {
            let value = if right && site == SITE_A {
                RIGHT
            } else {
                wrong_value(site, card, false)
            };
            ("login", json!({ "value": value }))
        }
        Step::SoLogin { card } => (
            "login",
            json!({ "value": wrong_value(site, card, true), "so": true }),
        ),
        Step::Change { card } => (
            "change",
            json!({ "oldValue": wrong_value(site, card, false), "newValue": "13572468" }),
        ),
        Step::Dialog { so, .. } => ("login", json!({ "value": false, "so": so })),
        Step::Status { .. } => ("getPinStatus", json!({})),
        Step::Logout { .. } => ("logout", json!({})),
    };
    params["reader"] = json!(reader);
    params["pin"] = json!(pin);
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

async fn daemon(dialog: &Path, piv_tries: u8) -> (Server, SimBackend) {
    let sim = SimBackend::new();
    sim.add_reader(PIV);
    let piv = CardConfig {
        max_tries: piv_tries,
        ..CardConfig::piv()
    };
    sim.insert_card(PIV, VirtualCard::new(piv)).unwrap();
    sim.add_reader(PGP);
    sim.insert_card(PGP, VirtualCard::new(CardConfig::openpgp()))
        .unwrap();
    let config = ServerConfig {
        port: 0,
        origins_file: None,
        origins: OriginsFile {
            allowed: vec![SITE_A.into(), SITE_B.into()],
            ..OriginsFile::default()
        },
        limits: Limits {
            // Requests are not what is limited here.
            rate_per_second: 10_000,
            rate_burst: 10_000,
            ..Limits::default()
        },
        pin_dialog: PinDialog::new(Some(dialog.to_path_buf()), Duration::from_secs(5)),
        ..ServerConfig::default()
    };
    (
        Server::start(Arc::new(sim.clone()), config).await.unwrap(),
        sim,
    )
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(port: u16, site: &str) -> Ws {
    let mut req = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("Origin", site.parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

/// Sends every frame without waiting, then collects the answers.
async fn run_connection(mut ws: Ws, frames: Vec<String>, expected: usize) -> (Ws, Vec<Value>) {
    for f in frames {
        ws.send(Message::text(f)).await.unwrap();
    }
    let mut answers = Vec::new();
    while answers.len() < expected {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("every request is answered")
            .expect("connection open")
            .unwrap();
        let Message::Text(t) = msg else { continue };
        match serde_json::from_str::<Value>(t.as_str()).unwrap() {
            Value::Array(batch) => answers.extend(batch),
            v if v.get("id").is_some() => answers.push(v),
            _ => {} // a notification
        }
    }
    (ws, answers)
}

async fn call(ws: &mut Ws, id: u64, method: &str, params: Value) -> Value {
    let req = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
    ws.send(Message::text(req.to_string())).await.unwrap();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        if v["id"] == json!(id) {
            return v;
        }
    }
}

/// The values a reference data object compared: (value, before, after).
fn presented(sim: &SimBackend, reader: &str, name: &str) -> Vec<(String, u8, u8)> {
    sim.with_card(reader, |c| c.presented(name))
        .unwrap()
        .into_iter()
        .map(|p| {
            let bytes: Vec<u8> = p
                .value
                .expose()
                .iter()
                .copied()
                .filter(|b| *b != 0xFF)
                .collect();
            (
                String::from_utf8_lossy(&bytes).into_owned(),
                p.tries_before,
                p.tries_after,
            )
        })
        .collect()
}

fn card_tries(sim: &SimBackend, reader: &str, name: &str) -> u8 {
    let text = sim.with_card(reader, |c| c.counters()).unwrap();
    text.lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(name)).then(|| f.next().unwrap().parse().unwrap())
        })
        .unwrap()
}

async fn check_case(frames: Vec<(usize, Vec<Step>)>, piv_tries: u8) {
    let dir = tempfile::tempdir().unwrap();
    let dialog = FakePinentry::new(dir.path(), "pinentry", Behaviour::Pins(&[DIALOG_VALUE; 64]));
    let (server, sim) = daemon(&dialog.program, piv_tries).await;
    let port = server.port();
    // Each connection's frames, in order; ids unique per connection.
    let mut plans: Vec<(Vec<String>, usize)> = vec![(Vec::new(), 0); CONNECTIONS.len()];
    let mut next_id = 1u64;
    for (conn, steps) in &frames {
        let site = CONNECTIONS[*conn];
        let reqs: Vec<Value> = steps
            .iter()
            .map(|s| {
                next_id += 1;
                request(next_id, site, *s)
            })
            .collect();
        let text = if reqs.len() == 1 {
            reqs[0].to_string()
        } else {
            Value::Array(reqs.clone()).to_string()
        };
        plans[*conn].0.push(text);
        plans[*conn].1 += reqs.len();
    }
    let mut sockets = Vec::new();
    for site in CONNECTIONS {
        sockets.push(connect(port, site).await);
    }
    let tasks: Vec<_> = sockets
        .into_iter()
        .zip(plans)
        .map(|(ws, (frames, n))| tokio::spawn(run_connection(ws, frames, n)))
        .collect();
    let mut conns = Vec::new();
    let mut answers = Vec::new();
    for t in tasks {
        let (ws, a) = t.await.unwrap();
        conns.push(ws);
        answers.extend(a);
    }

    let page_value = |v: &str| v != DIALOG_VALUE;
    let cards = [(PIV, ["pin", "puk"]), (PGP, ["pw1", "pw3"])];
    let mut wrong_b = 0;
    for (reader, names) in cards {
        for name in names {
            for (value, before, _) in presented(&sim, reader, name) {
                if page_value(&value) {
                    assert!(
                        before >= 2,
                        "a page's value reached {reader}/{name} with {before} tries left"
                    );
                }
                if value.starts_with('2') {
                    wrong_b += 1;
                }
            }
        }
    }
    assert!(
        wrong_b <= 3,
        "{wrong_b} wrong values of a site reached the cards"
    );
    // Every count reported is one the card had after a compared value (or
    // at rest, below).
    let mut had: HashSet<(String, u8)> = HashSet::new();
    for (reader, names) in cards {
        for name in names {
            had.insert((format!("{reader}/{name}"), card_tries(&sim, reader, name)));
            let max = if reader == PIV && name == "pin" {
                piv_tries
            } else {
                3
            };
            had.insert((format!("{reader}/{name}"), max));
            for (_, before, after) in presented(&sim, reader, name) {
                had.insert((format!("{reader}/{name}"), before));
                had.insert((format!("{reader}/{name}"), after));
            }
        }
    }
    for a in &answers {
        let code = a["error"]["data"]["code"].as_str();
        if let (Some("PIN_INCORRECT" | "SO_PIN_INCORRECT"), Some(n)) =
            (code, a["error"]["data"]["remainingTries"].as_u64())
        {
            let any = had.iter().any(|(_, t)| u64::from(*t) == n);
            assert!(any, "reported {n} tries never on a card: {a}");
        }
        assert!(
            a.get("result").is_some() || a["error"]["data"]["code"].is_string(),
            "every request answered with a result or a structured error: {a}"
        );
    }
    // At rest: every connection sees the card's own counter, and at most
    // one sees a login.
    for (reader, pin, name) in [(PIV, "pin", "pin"), (PGP, "user", "pw1")] {
        let card = card_tries(&sim, reader, name);
        let mut logged_in = 0;
        for (i, ws) in conns.iter_mut().enumerate() {
            let st = call(
                ws,
                10_000 + i as u64,
                "getPinStatus",
                json!({ "reader": reader, "pin": pin }),
            )
            .await;
            let st = &st["result"];
            assert_eq!(
                st["remainingTries"].as_u64(),
                Some(u64::from(card)),
                "{reader}: {st} with {card} on the card"
            );
            if st["validated"] == true {
                logged_in += 1;
            }
        }
        assert!(
            logged_in <= 1,
            "{logged_in} connections see a login on {reader}"
        );
    }
    server.shutdown().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings_keep_every_try_safe(frames in frames(), piv_tries in 3u8..6) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(check_case(frames, piv_tries));
    }
}
