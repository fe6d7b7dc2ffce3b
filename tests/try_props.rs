//! Try safety as invariants over random interleavings: five connections
//! of two sites send PIN operations — single frames, batches, pipelined
//! without waiting, all at once — on two cards (PIV in a pinpad reader, and
//! OpenPGP), with values from the page, `requestCredential` handles (the
//! connection waits for the handle, the others go on), the daemon's dialog
//! and the reader's pinpad. The scripted user answers a handle's dialog
//! with a value of the site's own (told apart from the dialog's and the
//! pinpad's in the card's log). Whatever the interleaving, the card's own
//! log of every value it compared shows:
//! - no value a site chose (page or handle) reached a credential whose
//!   counter was at 1 (or unknown: then it is refused before anything is
//!   sent), while the user's dialog and pinpad are never refused for that;
//! - at most the lockout's allowance of a site's wrong values reached the
//!   cards (a site that never sends a right value: 3 in all, pages and
//!   handles together), and the user's own dialog and pinpad failures never
//!   count: the site is refused for a lock, during the run or after it,
//!   only once its own three reached the cards;
//! - every request is answered, with a result or a structured error;
//! - every count the daemon reported is one the card had for that
//!   credential, and at rest every connection sees the card's own counter;
//! - at most one connection sees a login on a card.

#[path = "common/card.rs"]
mod card;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/fake_pinentry.rs"]
mod fake_pinentry;
#[path = "common/ws_client.rs"]
mod ws_client;

use card::{presented, tries as card_tries};
use cardgate::vcard::config::CardConfig;
use cardgate::vcard::sim::SimBackend;
use cardgate::vcard::sim::pinpad::{PinpadInput, SimPinpad};
use cardgate::{Limits, Server};
use daemon::SimDaemon;
use fake_pinentry::{Behaviour, FakePinentry};
use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const PIV: &str = "Sim PIV";
const PGP: &str = "Sim OpenPGP";
/// Sends right and wrong values.
const SITE_A: &str = "https://a.example";
/// Only ever sends wrong values.
const SITE_B: &str = "https://b.example";
/// What the user types in the daemon's dialog (always a typo here).
const DIALOG_VALUE: &str = "99999999";
/// What the user types in a handle's dialog for site A (always wrong).
const HANDLE_A: &str = "13131313";
/// … and for site B (always wrong; B's values all begin with 2).
const HANDLE_B: &str = "23232323";
/// What the user types on the pinpad (always a typo).
const PINPAD_VALUE: &str = "77777777";
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
    /// The user's own entry on the PIV reader's pinpad (always a typo):
    /// `login(null)` or `change(null, null)`.
    Pinpad {
        change: bool,
    },
    Status {
        card: usize,
    },
    Logout {
        card: usize,
    },
}

/// What a `requestCredential` handle is used for.
#[derive(Debug, Clone, Copy)]
enum HandleUse {
    Login,
    SoLogin,
    /// As the current PIN of a change.
    Change,
}

/// A `requestCredential` (naming the card's PIN object or not), its
/// answer awaited, then an operation with the handle.
#[derive(Debug, Clone, Copy)]
struct HandleStep {
    card: usize,
    used_for: HandleUse,
    names_the_pin: bool,
}

/// One frame of a connection.
#[derive(Debug, Clone)]
enum Frame {
    /// A single request, or a batch.
    Steps(Vec<Step>),
    /// A handle, then its use: the connection waits for the handle (the
    /// others go on meanwhile).
    Handle(HandleStep),
}

fn step() -> impl Strategy<Value = Step> {
    let card = 0usize..2;
    prop_oneof![
        4 => (card.clone(), any::<bool>()).prop_map(|(card, right)| Step::Login { card, right }),
        2 => card.clone().prop_map(|card| Step::SoLogin { card }),
        2 => card.clone().prop_map(|card| Step::Change { card }),
        1 => (card.clone(), any::<bool>()).prop_map(|(card, so)| Step::Dialog { card, so }),
        2 => any::<bool>().prop_map(|change| Step::Pinpad { change }),
        2 => card.clone().prop_map(|card| Step::Status { card }),
        1 => card.prop_map(|card| Step::Logout { card }),
    ]
}

fn handle_step() -> impl Strategy<Value = HandleStep> {
    let used_for = prop_oneof![
        3 => Just(HandleUse::Login),
        1 => Just(HandleUse::SoLogin),
        2 => Just(HandleUse::Change),
    ];
    (0usize..2, used_for, any::<bool>()).prop_map(|(card, used_for, names_the_pin)| HandleStep {
        card,
        used_for,
        names_the_pin,
    })
}

fn frames() -> impl Strategy<Value = Vec<(usize, Frame)>> {
    let frame = prop_oneof![
        3 => prop::collection::vec(step(), 1..5).prop_map(Frame::Steps),
        1 => handle_step().prop_map(Frame::Handle),
    ];
    prop::collection::vec((0..CONNECTIONS.len(), frame), 4..28)
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

/// The reader and PIN object of a card.
fn target(card: usize) -> (&'static str, &'static str) {
    if card == 0 {
        (PIV, "pin")
    } else {
        (PGP, "user")
    }
}

/// The card's name for the credential a request presents.
fn credential(card: usize, so: bool) -> (&'static str, &'static str) {
    match (card, so) {
        (0, false) => (PIV, "pin"),
        (0, true) => (PIV, "puk"),
        (_, false) => (PGP, "pw1"),
        (_, true) => (PGP, "pw3"),
    }
}

/// Who typed what a request presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Page,
    Handle,
    Dialog,
    Pinpad,
    /// Presents nothing (status, logout, requestCredential).
    None,
}

/// What each request id was: its source and the credential it presents.
type Sent = HashMap<u64, (Source, Option<(&'static str, &'static str)>)>;

fn request(
    id: u64,
    site: &str,
    step: Step,
) -> (Value, Source, Option<(&'static str, &'static str)>) {
    let card = match step {
        Step::Login { card, .. }
        | Step::SoLogin { card }
        | Step::Change { card }
        | Step::Dialog { card, .. }
        | Step::Status { card }
        | Step::Logout { card } => card,
        Step::Pinpad { .. } => 0,
    };
    let (reader, pin) = target(card);
    let (method, mut params, source, cred) = match step {
        Step::Login { card, right } => {
            let value = if right && site == SITE_A {
                RIGHT
            } else {
                wrong_value(site, card, false)
            };
            (
                "login",
                json!({ "value": value }),
                Source::Page,
                Some(credential(card, false)),
            )
        }
        Step::SoLogin { card } => (
            "login",
            json!({ "value": wrong_value(site, card, true), "so": true }),
            Source::Page,
            Some(credential(card, true)),
        ),
        Step::Change { card } => (
            "change",
            json!({ "oldValue": wrong_value(site, card, false), "newValue": "13572468" }),
            Source::Page,
            Some(credential(card, false)),
        ),
        Step::Dialog { card, so } => (
            "login",
            json!({ "value": false, "so": so }),
            Source::Dialog,
            Some(credential(card, so)),
        ),
        Step::Pinpad { change: false } => (
            "login",
            json!({ "value": null }),
            Source::Pinpad,
            Some(credential(0, false)),
        ),
        Step::Pinpad { change: true } => (
            "change",
            json!({ "oldValue": null, "newValue": null }),
            Source::Pinpad,
            Some(credential(0, false)),
        ),
        Step::Status { .. } => ("getPinStatus", json!({}), Source::None, None),
        Step::Logout { .. } => ("logout", json!({}), Source::None, None),
    };
    params["reader"] = json!(reader);
    params["pin"] = json!(pin);
    (
        json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }),
        source,
        cred,
    )
}

/// The `requestCredential` of a handle step, and its use with `HANDLE` in
/// place of the handle.
fn handle_requests(rc_id: u64, op_id: u64, h: HandleStep) -> (Value, Value) {
    let (reader, pin) = target(h.card);
    let so = matches!(h.used_for, HandleUse::SoLogin);
    // The page's message is shown in the dialog: the scripted user answers
    // a handle's dialog with the site's handle value.
    let mut rc = json!({ "pinLabel": "HANDLE", "error": "HANDLE" });
    if h.names_the_pin {
        rc["reader"] = json!(reader);
        rc["pin"] = json!(pin);
        rc["so"] = json!(so);
    } else {
        rc["cardLabel"] = json!("some card");
    }
    let mut params = match h.used_for {
        HandleUse::Login => json!({ "value": "HANDLE" }),
        HandleUse::SoLogin => json!({ "value": "HANDLE", "so": true }),
        HandleUse::Change => json!({ "oldValue": "HANDLE", "newValue": "13572468" }),
    };
    params["reader"] = json!(reader);
    params["pin"] = json!(pin);
    let method = if matches!(h.used_for, HandleUse::Change) {
        "change"
    } else {
        "login"
    };
    (
        json!({ "jsonrpc": "2.0", "id": rc_id, "method": "requestCredential", "params": rc }),
        json!({ "jsonrpc": "2.0", "id": op_id, "method": method, "params": params }),
    )
}

async fn daemon(dialog: &Path, piv_tries: u8) -> (Server, SimBackend) {
    let piv = CardConfig {
        max_tries: piv_tries,
        ..CardConfig::piv()
    };
    SimDaemon::new()
        .pinpad_card(PIV, SimPinpad::full(), piv)
        .card(PGP, CardConfig::openpgp())
        .origins(&[SITE_A, SITE_B])
        .limits(Limits {
            // Requests are not what is limited here.
            rate_per_second: 10_000,
            rate_burst: 10_000,
            ..Limits::default()
        })
        .pin_dialog(Some(dialog), Duration::from_secs(5))
        .start()
        .await
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(port: u16, site: &str) -> Ws {
    ws_client::Client::page(port, site).await.ws
}

/// What a connection sends, in order.
enum Action {
    /// A frame and how many answers it has.
    Send(String, usize),
    /// A `requestCredential`; once its handle is there, the operation (its
    /// `"HANDLE"` value replaced by the handle).
    Handle { rc: Value, op: Value },
}

/// Reads one message, keeping its answers.
async fn read_answers(ws: &mut Ws, answers: &mut Vec<Value>) {
    let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
        .await
        .expect("every request is answered")
        .expect("connection open")
        .unwrap();
    let Message::Text(t) = msg else { return };
    match serde_json::from_str::<Value>(t.as_str()).unwrap() {
        Value::Array(batch) => answers.extend(batch),
        v if v.get("id").is_some() => answers.push(v),
        _ => {} // a notification
    }
}

/// Sends every frame without waiting (but for a handle before its use),
/// then collects the answers.
async fn run_connection(mut ws: Ws, actions: Vec<Action>) -> (Ws, Vec<Value>) {
    let mut answers: Vec<Value> = Vec::new();
    let mut expected = 0;
    for action in actions {
        match action {
            Action::Send(frame, n) => {
                ws.send(Message::text(frame)).await.unwrap();
                expected += n;
            }
            Action::Handle { rc, mut op } => {
                ws.send(Message::text(rc.to_string())).await.unwrap();
                expected += 1;
                let handle = loop {
                    if let Some(a) = answers.iter().find(|a| a["id"] == rc["id"]) {
                        break a["result"].clone();
                    }
                    read_answers(&mut ws, &mut answers).await;
                };
                // Cancelled or refused: nothing to use.
                if !handle.is_object() {
                    continue;
                }
                for field in ["value", "oldValue"] {
                    if op["params"][field] == "HANDLE" {
                        op["params"][field] = handle.clone();
                    }
                }
                ws.send(Message::text(op.to_string())).await.unwrap();
                expected += 1;
            }
        }
    }
    while answers.len() < expected {
        read_answers(&mut ws, &mut answers).await;
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

async fn check_case(frames: Vec<(usize, Frame)>, piv_tries: u8) {
    let dir = tempfile::tempdir().unwrap();
    let dialog = FakePinentry::new(
        dir.path(),
        "pinentry",
        Behaviour::ByTitle(&[
            ("b.example: HANDLE", HANDLE_B),
            ("HANDLE", HANDLE_A),
            ("", DIALOG_VALUE),
        ]),
    );
    let (server, sim) = daemon(&dialog.program, piv_tries).await;
    let port = server.port();
    // Each connection's actions, in order; ids unique over all.
    let mut plans: Vec<Vec<Action>> = (0..CONNECTIONS.len()).map(|_| Vec::new()).collect();
    let mut sent = Sent::new();
    let mut pinpad_inputs = 0;
    let mut next_id = 1u64;
    for (conn, frame) in &frames {
        let site = CONNECTIONS[*conn];
        match frame {
            Frame::Steps(steps) => {
                let reqs: Vec<Value> = steps
                    .iter()
                    .map(|s| {
                        next_id += 1;
                        let (req, source, cred) = request(next_id, site, *s);
                        sent.insert(next_id, (source, cred));
                        if let Step::Pinpad { change } = s {
                            // The current PIN, or it and the new one twice.
                            pinpad_inputs += if *change { 3 } else { 1 };
                        }
                        req
                    })
                    .collect();
                let text = if reqs.len() == 1 {
                    reqs[0].to_string()
                } else {
                    Value::Array(reqs.clone()).to_string()
                };
                plans[*conn].push(Action::Send(text, reqs.len()));
            }
            Frame::Handle(h) => {
                let (rc_id, op_id) = (next_id + 1, next_id + 2);
                next_id += 2;
                let (rc, op) = handle_requests(rc_id, op_id, *h);
                let so = matches!(h.used_for, HandleUse::SoLogin);
                sent.insert(rc_id, (Source::None, None));
                sent.insert(op_id, (Source::Handle, Some(credential(h.card, so))));
                plans[*conn].push(Action::Handle { rc, op });
            }
        }
    }
    // The user mistypes on the pinpad every time.
    sim.pinpad_input(
        PIV,
        (0..pinpad_inputs).map(|_| PinpadInput::digits(PINPAD_VALUE)),
    )
    .unwrap();
    let mut sockets = Vec::new();
    for site in CONNECTIONS {
        sockets.push(connect(port, site).await);
    }
    let tasks: Vec<_> = sockets
        .into_iter()
        .zip(plans)
        .map(|(ws, actions)| tokio::spawn(run_connection(ws, actions)))
        .collect();
    let mut conns = Vec::new();
    // (connection, answer)
    let mut answers = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let (ws, a) = t.await.unwrap();
        conns.push(ws);
        answers.extend(a.into_iter().map(|a| (i, a)));
    }

    // What a site chose: a page's value or a handle's.
    let from_site = |v: &str| v != DIALOG_VALUE && v != PINPAD_VALUE;
    let cards = [(PIV, ["pin", "puk"]), (PGP, ["pw1", "pw3"])];
    let mut wrong_b = 0;
    let mut user_values = 0;
    for (reader, names) in cards {
        for name in names {
            for (value, before, _) in presented(&sim, reader, name) {
                if from_site(&value) {
                    assert!(
                        before >= 2,
                        "a site's value {value} reached {reader}/{name} with {before} tries left"
                    );
                } else {
                    user_values += 1;
                }
                // Site B's page values and handles.
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
    // Every count reported is one the card had for that credential after a
    // compared value (or at rest, below).
    let mut had: HashMap<(&str, &str), HashSet<u8>> = HashMap::new();
    for (reader, names) in cards {
        for name in names {
            let had = had.entry((reader, name)).or_default();
            had.insert(card_tries(&sim, reader, name));
            had.insert(if reader == PIV && name == "pin" {
                piv_tries
            } else {
                3
            });
            for (_, before, after) in presented(&sim, reader, name) {
                had.insert(before);
                had.insert(after);
            }
        }
    }
    let mut answered = HashSet::new();
    for (conn, a) in &answers {
        let id = a["id"].as_u64().expect("an answer to a request");
        assert!(answered.insert(id), "{id} answered twice");
        let (source, cred) = sent[&id];
        assert!(
            a.get("result").is_some() || a["error"]["data"]["code"].is_string(),
            "every request answered with a result or a structured error: {a}"
        );
        let code = a["error"]["data"]["code"].as_str();
        if let (Some("PIN_INCORRECT" | "SO_PIN_INCORRECT"), Some(n)) =
            (code, a["error"]["data"]["remainingTries"].as_u64())
        {
            let cred = cred.expect("a credential was presented");
            assert!(
                had[&cred].iter().any(|t| u64::from(*t) == n),
                "reported {n} tries never on {cred:?}: {a}"
            );
        }
        // The user's own entries may spend the last try.
        if matches!(source, Source::Dialog | Source::Pinpad) {
            assert_ne!(
                code,
                Some("LAST_TRY_PROTECTED"),
                "the user's own entry: {a}"
            );
        }
        // Only the site's own wrong values lock it: site B is refused for a
        // lock only once its three have reached the cards (or are on their
        // way there, all wrong).
        if CONNECTIONS[*conn] == SITE_B
            && matches!(code, Some("TEMPORARILY_LOCKED" | "SITE_LOCKED"))
        {
            assert_eq!(
                wrong_b, 3,
                "site B locked with {wrong_b} of its values on the cards \
                 ({user_values} of the user's own): {a}"
            );
        }
    }
    for id in sent.keys() {
        let handle_op = matches!(sent[id].0, Source::Handle);
        // A handle's use is only sent once the handle was given.
        assert!(
            answered.contains(id) || handle_op,
            "request {id} unanswered"
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
    // Site B is locked now exactly when three of its own values reached the
    // cards: the user's dialog and pinpad entries never counted. Its dialog
    // login is refused for a lock before anyone is asked.
    let b = CONNECTIONS.iter().position(|s| *s == SITE_B).unwrap();
    let probe = call(
        &mut conns[b],
        20_000,
        "login",
        json!({ "reader": PGP, "pin": "user", "value": false }),
    )
    .await;
    let locked = matches!(
        probe["error"]["data"]["code"].as_str(),
        Some("TEMPORARILY_LOCKED" | "SITE_LOCKED")
    );
    assert_eq!(
        locked,
        wrong_b == 3,
        "site B with {wrong_b} of its values and {user_values} of the user's on the cards: {probe}"
    );
    server.shutdown().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

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
