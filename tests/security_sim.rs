//! Whose login is whose, the last-try guard, progressive lockout per origin,
//! rate and connection limits — against the real daemon on port 0 with
//! simulated cards. Each test would fail if its protection were removed.

#[path = "common/card.rs"]
mod card;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/ws_client.rs"]
mod ws_client;

use cardgate::LockoutConfig;
use cardgate::vcard::config::CardConfig;
use cardgate::vcard::sim::SimBackend;
use cardgate::{Limits, Server};
use daemon::SimDaemon;
use serde_json::{Value, json};
use std::time::Duration;
use ws_client::Client;

const R: &str = "Sim PIV";

async fn daemon(card: CardConfig, limits: Limits) -> (Server, SimBackend) {
    SimDaemon::new()
        .card(R, card)
        .origins(&["https://a.example", "https://b.example"])
        .limits(limits)
        .start()
        .await
}

/// The daemon on a PIV card with ten tries that locks an origin out for
/// `lock` after three wrong values.
async fn locking_daemon(lock: Duration) -> (Server, SimBackend) {
    let card = CardConfig {
        max_tries: 10,
        ..CardConfig::piv()
    };
    let limits = Limits {
        lockout: LockoutConfig {
            max_failures: 3,
            lock,
            ..LockoutConfig::default()
        },
        ..Limits::default()
    };
    daemon(card, limits).await
}

async fn client(port: u16, origin: &str) -> Client {
    Client::page(port, origin).await
}

fn login(value: &str) -> Value {
    json!({ "reader": R, "pin": "pin", "value": value })
}

fn status() -> Value {
    json!({ "reader": R, "pin": "pin" })
}

async fn eventually(mut f: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..50 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_belongs_to_its_connection() {
    let (server, sim) = daemon(CardConfig::piv(), Limits::default()).await;
    let mut tab1 = client(server.port(), "https://a.example").await;
    let mut tab2 = client(server.port(), "https://a.example").await;
    let mut other = client(server.port(), "https://b.example").await;
    tab1.ok("login", login("123456")).await;
    assert_eq!(tab1.ok("getPinStatus", status()).await["validated"], true);
    // Same origin, other tab; other origin: neither sees the login.
    assert_eq!(tab2.ok("getPinStatus", status()).await["validated"], false);
    assert_eq!(other.ok("getPinStatus", status()).await["validated"], false);
    let readers = other.ok("getReaders", json!({})).await;
    assert_eq!(
        readers["readers"][0]["token"]["pins"][0]["validated"],
        false
    );
    assert!(card::pin_verified(&sim, R).await);
    // A PIN operation of another connection ends tab1's login first.
    other.ok("logout", status()).await;
    assert!(!card::pin_verified(&sim, R).await);
    assert_eq!(tab1.ok("getPinStatus", status()).await["validated"], false);

    // A login ends when its connection closes.
    tab2.ok("login", login("123456")).await;
    assert!(card::pin_verified(&sim, R).await);
    drop(tab2);
    assert!(
        eventually(async || !card::pin_verified(&sim, R).await).await,
        "login outlived its connection"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_ends_after_the_idle_timeout() {
    let limits = Limits {
        login_idle: Duration::from_millis(300),
        ..Limits::default()
    };
    let (server, sim) = daemon(CardConfig::piv(), limits).await;
    let mut tab = client(server.port(), "https://a.example").await;
    tab.ok("login", login("123456")).await;
    assert!(card::pin_verified(&sim, R).await);
    // A page that keeps talking keeps its login, well past the idle time.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tab.ok("hello", json!({})).await;
    }
    assert!(
        card::pin_verified(&sim, R).await,
        "a busy page lost its login"
    );
    // Quiet: the login ends.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        eventually(async || !card::pin_verified(&sim, R).await).await,
        "idle login not ended"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_never_spends_the_last_try() {
    let (server, sim) = daemon(CardConfig::piv(), Limits::default()).await;
    let mut page = client(server.port(), "https://a.example").await;
    assert_eq!(
        page.err("login", login("000000")).await["remainingTries"],
        2
    );
    assert_eq!(
        page.err("login", login("000000")).await["remainingTries"],
        1
    );
    for _ in 0..5 {
        let e = page.err("login", login("000000")).await;
        assert_eq!(e["code"], "LAST_TRY_PROTECTED", "{e}");
        let e = page
            .err(
                "change",
                json!({ "reader": R, "pin": "pin", "oldValue": "000000", "newValue": "111111" }),
            )
            .await;
        assert_eq!(e["code"], "LAST_TRY_PROTECTED", "{e}");
    }
    // Even the right PIN: the last try is for the user's own dialog.
    assert_eq!(
        page.err("login", login("123456")).await["code"],
        "LAST_TRY_PROTECTED"
    );
    assert_eq!(sim.with_card(R, |c| c.user_pin_tries()), Some(1));
    // A PIV PUK's counter cannot be read (SP 800-73-4 has no VERIFY for
    // it): a page's PUK is not risked at all while the card has not told
    // its count; nothing reaches the card.
    let puk = || sim.with_card(R, |c| c.counters()).unwrap();
    let before = puk();
    let e = page
        .err(
            "login",
            json!({ "reader": R, "pin": "pin", "value": "12345678", "so": true }),
        )
        .await;
    assert_eq!(e["code"], "LAST_TRY_PROTECTED", "{e}");
    assert!(e.get("remainingTries").is_none(), "{e}");
    assert_eq!(puk(), before);
    assert_eq!(sim.with_card(R, |c| c.user_pin_tries()), Some(1));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pins_lock_the_origin_for_a_while() {
    let (server, sim) = locking_daemon(Duration::from_secs(2)).await;
    let mut a = client(server.port(), "https://a.example").await;
    let mut a2 = client(server.port(), "https://a.example").await;
    let mut b = client(server.port(), "https://b.example").await;
    let e = a.err("login", login("000000")).await;
    assert_eq!(
        (e["code"].as_str(), e["attemptsBeforeLock"].as_u64()),
        (Some("PIN_INCORRECT"), Some(2))
    );
    // Counted per origin, not per connection.
    let e = a2.err("login", login("000000")).await;
    assert_eq!(e["attemptsBeforeLock"], 1);
    let e = a.err("login", login("000000")).await;
    assert_eq!(e["code"], "PIN_INCORRECT");
    assert_eq!(e["lockedFor"], 2);
    // Locked: even the right PIN is refused without touching the card.
    let tries = sim.with_card(R, |c| c.user_pin_tries());
    let e = a2.err("login", login("123456")).await;
    assert_eq!(e["code"], "TEMPORARILY_LOCKED");
    assert!(
        e["retryAfter"]
            .as_u64()
            .is_some_and(|s| (1..=2).contains(&s)),
        "{e}"
    );
    assert_eq!(sim.with_card(R, |c| c.user_pin_tries()), tries);
    // Another origin is not affected.
    b.ok("login", login("123456")).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    a.ok("login", login("123456")).await;
    // A right PIN resets the count.
    assert_eq!(
        a.err("login", login("000000")).await["attemptsBeforeLock"],
        2
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_rate_and_connection_count_are_limited() {
    let limits = Limits {
        rate_per_second: 5,
        rate_burst: 5,
        max_connections: 2,
        ..Limits::default()
    };
    let (server, _sim) = daemon(CardConfig::piv(), limits).await;
    let mut a = client(server.port(), "https://a.example").await;
    let mut limited = 0;
    for _ in 0..20 {
        let r = a.call("hello", json!({})).await;
        if r["error"]["data"]["code"] == "RATE_LIMITED" {
            limited += 1;
        }
    }
    assert!(limited >= 10, "only {limited} of 20 requests were limited");
    let _b = client(server.port(), "https://a.example").await;
    let third = Client::connect_page(server.port(), "https://a.example").await;
    assert!(third.is_err_and(|e| e.contains("503")));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_code_does_not_reset_the_wrong_pin_count() {
    let card = CardConfig {
        max_tries: 10,
        reset_code: Some("12345678".into()),
        ..CardConfig::openpgp()
    };
    let (server, _sim) = daemon(card, Limits::default()).await;
    let mut a = client(server.port(), "https://a.example").await;
    let user = |v: &str| json!({ "reader": R, "pin": "user", "value": v });
    assert_eq!(
        a.err("login", user("000000")).await["attemptsBeforeLock"],
        2
    );
    assert_eq!(
        a.err("login", user("000000")).await["attemptsBeforeLock"],
        1
    );
    // The OpenPGP reset code is only held at SO login (the card cannot
    // check it alone): nothing was verified, nothing resets.
    a.ok(
        "login",
        json!({ "reader": R, "pin": "user", "value": "12345678", "so": true, "soPath": "resetCode" }),
    )
    .await;
    let e = a.err("login", user("000000")).await;
    assert!(e["lockedFor"].is_u64(), "{e}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_gets_no_more_wrong_values_to_the_card_than_the_lock_allows() {
    let (server, sim) = locking_daemon(Duration::from_secs(1)).await;
    let mut a = client(server.port(), "https://a.example").await;
    let tries = sim.with_card(R, |c| c.user_pin_tries()).unwrap();
    // Eight wrong values and then the right one, in one batch: the lockout
    // is consulted as each reaches the card, not when the batch arrives.
    let mut items: Vec<String> = (0..8)
        .map(|i| {
            json!({ "jsonrpc": "2.0", "id": i, "method": "login", "params": login("000000") })
                .to_string()
        })
        .collect();
    items.push(
        json!({ "jsonrpc": "2.0", "id": 8, "method": "login", "params": login("123456") })
            .to_string(),
    );
    a.send_text(format!("[{}]", items.join(","))).await;
    let answers = loop {
        let m = a.recv().await.expect("the batch's answer");
        if m.is_array() {
            break m;
        }
    };
    let codes: Vec<&str> = answers
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"]["data"]["code"].as_str().unwrap_or("OK"))
        .collect();
    assert_eq!(&codes[..3], ["PIN_INCORRECT"; 3], "{answers}");
    assert!(
        codes[3..].iter().all(|c| *c == "TEMPORARILY_LOCKED"),
        "{answers}"
    );
    assert_eq!(answers[2]["error"]["data"]["lockout"], "LOCKED_FOR");
    assert_eq!(sim.with_card(R, |c| c.user_pin_tries()), Some(tries - 3));

    // After the lock the next stage ends with a lock until the user unlocks it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let e = a.err("login", login("000000")).await;
    assert_eq!(
        (e["code"].as_str(), e["attemptsBeforeLock"].as_u64()),
        (Some("PIN_INCORRECT"), Some(2))
    );
    assert!(e.get("lockout").is_none(), "{e}");
    let e = a.err("login", login("000000")).await;
    assert_eq!(e["lockout"], "ONE_MORE_LOCKS");
    assert_eq!(e["nextLockUntilUnlocked"], true);
    let e = a.err("login", login("000000")).await;
    assert_eq!(e["lockout"], "LOCKED_UNTIL_UNLOCKED");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let e = a.err("login", login("123456")).await;
    assert_eq!(e["code"], "SITE_LOCKED");
    assert_eq!(e["origin"], "https://a.example");
    assert_eq!(sim.with_card(R, |c| c.user_pin_tries()), Some(tries - 6));
    server.shutdown().await;
}

/// The most requests a batch may hold (docs/protocol.md).
const MAX_BATCH: usize = 64;

/// Every try the card's user PIN ever spent (its own counter).
fn pin_tries_spent(sim: &SimBackend) -> u64 {
    let counters = sim.with_card(R, |c| c.counters()).unwrap();
    let line = counters
        .lines()
        .find(|l| l.starts_with("pin "))
        .expect("a pin counter");
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

fn batch_of(n: usize, method: &str, params: &Value) -> String {
    let reqs: Vec<Value> = (0..n)
        .map(|i| json!({ "jsonrpc": "2.0", "id": i, "method": method, "params": params }))
        .collect();
    Value::Array(reqs).to_string()
}

/// Reads messages until an answer to a request (not a notification).
async fn answer(c: &mut Client) -> Value {
    loop {
        let m = c.recv().await.expect("an answer");
        if m.is_array() || m.get("id").is_some() {
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_maximum_runs_nothing() {
    let card = CardConfig {
        max_tries: 15,
        ..CardConfig::piv()
    };
    let (server, sim) = daemon(card, Limits::default()).await;
    let mut a = client(server.port(), "https://a.example").await;
    let before = sim.with_card(R, |c| c.counters()).unwrap();
    a.send_text(batch_of(MAX_BATCH + 1, "login", &login("000000")))
        .await;
    let e = answer(&mut a).await;
    assert!(e.is_object(), "one error for the whole batch: {e}");
    assert_eq!(e["id"], Value::Null, "{e}");
    assert_eq!(e["error"]["code"], -32600, "{e}");
    assert_eq!(e["error"]["data"]["code"], "BATCH_TOO_LARGE", "{e}");
    assert_eq!(e["error"]["data"]["maxBatch"], MAX_BATCH, "{e}");
    // Nothing of it reached the card, and nobody was told of a change.
    assert_eq!(sim.with_card(R, |c| c.counters()).unwrap(), before);
    assert_eq!(a.ok("getPinStatus", status()).await["remainingTries"], 15);
    assert!(a.notes.is_empty(), "{:?}", a.notes);
    // A full batch is answered, one response per request.
    a.send_text(batch_of(MAX_BATCH, "hello", &json!({}))).await;
    let all = answer(&mut a).await;
    assert_eq!(all.as_array().map(Vec::len), Some(MAX_BATCH), "{all}");
    server.shutdown().await;
}

/// A daemon whose rate limit (burst 10, 1 a second) is the only guard
/// left between a page and the card: no lockout, 15 tries.
async fn rate_limited_daemon() -> (Server, SimBackend) {
    let card = CardConfig {
        max_tries: 15,
        ..CardConfig::piv()
    };
    let limits = Limits {
        rate_per_second: 1,
        rate_burst: 10,
        lockout: LockoutConfig {
            max_failures: 0,
            ..LockoutConfig::default()
        },
        ..Limits::default()
    };
    daemon(card, limits).await
}

fn count_codes(responses: &[Value]) -> (usize, usize) {
    let limited = responses
        .iter()
        .filter(|r| r["error"]["data"]["code"] == "RATE_LIMITED")
        .count();
    (limited, responses.len() - limited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_counts_each_request_of_a_batch() {
    let (server, sim) = rate_limited_daemon().await;
    let mut a = client(server.port(), "https://a.example").await;
    a.send_text(batch_of(MAX_BATCH, "login", &login("000000")))
        .await;
    let all = answer(&mut a).await;
    let all = all.as_array().expect("a batch answer");
    assert_eq!(all.len(), MAX_BATCH);
    let (limited, ran) = count_codes(all);
    // The burst (10), and at most one token refilled meanwhile.
    assert!(ran <= 11, "{ran} of {MAX_BATCH} ran, {limited} limited");
    let spent = pin_tries_spent(&sim);
    assert!(spent <= 11, "{spent} wrong PINs reached the card");
    assert!(spent >= 1, "the burst did reach the card");
    // Nothing was run for a limited request: each one carries its own id.
    let mut ids: Vec<u64> = all.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, (0..MAX_BATCH as u64).collect::<Vec<_>>());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_counts_requests_of_pipelined_frames() {
    let (server, sim) = rate_limited_daemon().await;
    let mut a = client(server.port(), "https://a.example").await;
    // Frames sent without waiting: batches of status reads, then single
    // wrong logins.
    for _ in 0..10 {
        a.send_text(batch_of(MAX_BATCH, "getPinStatus", &status()))
            .await;
    }
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.extend(answer(&mut a).await.as_array().unwrap().clone());
    }
    let (_, ran) = count_codes(&statuses);
    assert!(ran <= 11, "{ran} of {} status reads ran", statuses.len());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut b = client(server.port(), "https://a.example").await;
    for i in 0..MAX_BATCH {
        let req =
            json!({ "jsonrpc": "2.0", "id": i, "method": "login", "params": login("000000") });
        b.send_text(req.to_string()).await;
    }
    let mut logins = Vec::new();
    for _ in 0..MAX_BATCH {
        logins.push(answer(&mut b).await);
    }
    let (_, ran) = count_codes(&logins);
    assert!(ran <= 11, "{ran} of {MAX_BATCH} logins ran");
    let spent = pin_tries_spent(&sim);
    assert!(
        (1..=11).contains(&spent),
        "{spent} wrong PINs reached the card"
    );
    server.shutdown().await;
}
