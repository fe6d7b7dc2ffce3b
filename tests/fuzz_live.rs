//! A bounded run that throws random frames at a live daemon: it never
//! panics or hangs, answers every request that has an id with a result or a
//! structured error, and never blocks the card (the last-try guard).

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/ws_client.rs"]
mod ws_client;

use cardgate::Limits;
use cardgate::vcard::config::CardConfig;
use daemon::SimDaemon;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use ws_client::Client;

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn random_value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 2 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!(rng.pick(&[
            "", "pin", "puk", "user", "Sim PIV", "x", "2.0", "\u{0}", "é"
        ])),
        4 => json!(rng.pick(&["12", "123456", "1234567890123", "ÿÿÿÿÿÿ", "MTIzNDU2"])),
        5 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.below(5) {
                let k = rng.pick(&[
                    "reader", "pin", "value", "so", "type", "data", "newValue", "oldValue", "zz",
                ]);
                m.insert(k.into(), random_value(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// A frame: mostly request-shaped JSON with random parts, some garbage.
fn random_frame(rng: &mut Rng, id: u64) -> (String, bool) {
    let method = rng.pick(&[
        "hello",
        "getReaders",
        "getPinStatus",
        "login",
        "change",
        "init",
        "logout",
        "getConstraints",
        "checkConstraints",
        "nope",
    ]);
    match rng.below(6) {
        0 => {
            let len = rng.below(200) as usize;
            let bytes: String = (0..len)
                .map(|_| char::from(32 + rng.below(95) as u8))
                .collect();
            (bytes, false)
        }
        1 => (
            json!({ "jsonrpc": "2.0", "method": method, "params": random_value(rng, 0) })
                .to_string(),
            false,
        ),
        _ => {
            let mut params = random_value(rng, 0);
            if let Some(obj) = params.as_object_mut() {
                obj.insert("reader".into(), json!("Sim PIV"));
                if rng.below(2) == 0 {
                    obj.insert("pin".into(), json!("pin"));
                }
            }
            let req = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
            (req.to_string(), true)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_frames_get_structured_answers() {
    // Plenty of tries, so a lucky right PIN or wrong PINs cannot block it.
    let card = CardConfig {
        max_tries: 15,
        ..CardConfig::piv()
    };
    let (server, sim) = SimDaemon::local_tool()
        .card("Sim PIV", card)
        .limits(Limits {
            rate_per_second: 100_000,
            rate_burst: 100_000,
            ..Limits::default()
        })
        .start()
        .await;
    let mut c = Client::connect(server.port()).await;
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    for id in 1..=600u64 {
        if rng.below(50) == 0 {
            let len = rng.below(64) as usize;
            c.ws.send(Message::binary(vec![0xAB; len])).await.unwrap();
            let r = c.recv().await.expect("an answer to a binary frame");
            assert_eq!(r["error"]["code"], -32600);
            continue;
        }
        let (frame, has_id) = random_frame(&mut rng, id);
        c.send_text(frame.clone()).await;
        if has_id {
            let r = c.response(&json!(id)).await;
            assert!(
                r.get("result").is_some() || r["error"]["data"]["code"].is_string(),
                "frame {frame} got {r}"
            );
        } else {
            // Garbage or a notification: maybe an error with id null, maybe
            // nothing. A hello tells the connection is still in order.
            let probe_id = json!(format!("probe-{id}"));
            c.send_text(json!({ "jsonrpc": "2.0", "id": probe_id, "method": "hello" }).to_string())
                .await;
            loop {
                let m = c.recv().await.expect("the connection stays open");
                if m["id"] == probe_id {
                    assert_eq!(m["result"]["protocol"], 1, "after {frame}: {m}");
                    break;
                }
                // Only notifications and errors without an id may come first.
                assert!(
                    m.get("id").is_none() || m["id"].is_null(),
                    "after {frame}: {m}"
                );
                if m["id"].is_null() && m.get("id").is_some() {
                    assert!(m["error"]["data"]["code"].is_string(), "{m}");
                }
            }
        }
    }
    assert!(sim.with_card("Sim PIV", |c| c.user_pin_tries()).unwrap() >= 1);
    // Still serving, and a fresh client works.
    let mut d = Client::connect(server.port()).await;
    assert_eq!(d.ok("hello", json!({})).await["protocol"], 1);
    server.shutdown().await;
}
