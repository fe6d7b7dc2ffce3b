//! A client's contract, the same scenarios over both front ends: the
//! daemon's WebSocket (the real daemon on port 0) and a session of the
//! native-messaging host (its `serve` driven in-process over pipes, framed
//! as a browser frames native messages, relaying to a daemon on port 0),
//! each with the simulated cards.
//! Requests answered exactly once, batches, the rate per request, the
//! notification of an operation before its answer, idle logins, malformed
//! and oversize messages, and requests in flight when a session closes.

#[path = "common/ws_client.rs"]
mod ws_client;

use cardgate::vcard::VirtualCard;
use cardgate::vcard::config::CardConfig;
use cardgate::vcard::sim::SimBackend;
use cardgate::{Limits, Server, ServerConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::Message;

const PIV: &str = "Sim PIV";
const BANK: &str = "https://bank.example";
const WAIT: Duration = Duration::from_secs(10);
/// The most requests a batch may hold (docs/protocol.md).
const MAX_BATCH: usize = 64;
/// The largest message a client may send (docs/protocol.md).
const MAX_MESSAGE: usize = 64 * 1024;

/// What a client receives.
#[derive(Debug)]
enum Event {
    Json(Value),
    /// The session was closed by the daemon, with this close code.
    Closed(Option<u16>),
}

/// One front end, as a page sees it: text messages in and out.
trait Front: Sized {
    async fn start(sim: SimBackend, limits: Limits) -> Self;
    async fn send_text(&mut self, text: &str);
    async fn recv(&mut self) -> Event;
    async fn finish(self);
}

fn sim() -> SimBackend {
    let sim = SimBackend::new();
    sim.add_reader(PIV);
    sim.insert_card(PIV, VirtualCard::new(CardConfig::piv()))
        .unwrap();
    sim
}

struct Ws {
    server: Server,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Front for Ws {
    async fn start(sim: SimBackend, limits: Limits) -> Ws {
        let config = ServerConfig {
            limits,
            ..ws_client::local_tool_config()
        };
        let server = Server::start(Arc::new(sim), config).await.unwrap();
        let url = format!("ws://127.0.0.1:{}/ws", server.port());
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Ws { server, ws }
    }

    async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    async fn recv(&mut self) -> Event {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("nothing from the daemon within the wait");
            match m {
                Some(Ok(Message::Text(t))) => {
                    return Event::Json(serde_json::from_str(t.as_str()).unwrap());
                }
                Some(Ok(Message::Close(frame))) => {
                    return Event::Closed(frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Event::Closed(None),
            }
        }
    }

    async fn finish(mut self) {
        let _ = self.ws.close(None).await;
        self.server.shutdown().await;
    }
}

struct Native {
    /// The daemon the host relays to.
    server: Server,
    input: Option<DuplexStream>,
    output: DuplexStream,
    host: tokio::task::JoinHandle<u8>,
}

impl Native {
    async fn envelope(&mut self, v: Value) {
        let text = v.to_string();
        let mut frame = (text.len() as u32).to_ne_bytes().to_vec();
        frame.extend_from_slice(text.as_bytes());
        let input = self.input.as_mut().unwrap();
        input.write_all(&frame).await.unwrap();
        input.flush().await.unwrap();
    }

    async fn frame(&mut self) -> Value {
        let mut len = [0u8; 4];
        tokio::time::timeout(WAIT, self.output.read_exact(&mut len))
            .await
            .expect("nothing from the host within the wait")
            .unwrap();
        let mut body = vec![0u8; u32::from_ne_bytes(len) as usize];
        self.output.read_exact(&mut body).await.unwrap();
        serde_json::from_slice(&body).unwrap()
    }
}

impl Front for Native {
    async fn start(sim: SimBackend, limits: Limits) -> Native {
        let config = ServerConfig {
            limits,
            ..ws_client::page_config(BANK)
        };
        let server = Server::start(Arc::new(sim), config).await.unwrap();
        let (input, host_in) = tokio::io::duplex(1 << 20);
        let (host_out, output) = tokio::io::duplex(1 << 20);
        let host = tokio::spawn(cardgate::testing::native_host(
            server.port(),
            host_in,
            host_out,
        ));
        let mut n = Native {
            server,
            input: Some(input),
            output,
            host,
        };
        n.envelope(json!({ "type": "open", "session": 1, "origin": BANK }))
            .await;
        let opened = n.frame().await;
        assert_eq!(opened["type"], "opened", "{opened}");
        n
    }

    async fn send_text(&mut self, text: &str) {
        self.envelope(json!({ "type": "message", "session": 1, "data": text }))
            .await;
    }

    async fn recv(&mut self) -> Event {
        let f = self.frame().await;
        assert_eq!(f["session"], 1, "{f}");
        match f["type"].as_str() {
            Some("message") => {
                Event::Json(serde_json::from_str(f["data"].as_str().unwrap()).unwrap())
            }
            Some("closed") => Event::Closed(f["code"].as_u64().map(|c| c as u16)),
            _ => panic!("unexpected frame {f}"),
        }
    }

    async fn finish(mut self) {
        drop(self.input.take());
        let code = tokio::time::timeout(WAIT, self.host)
            .await
            .expect("the host ends at the end of its input")
            .unwrap();
        assert_eq!(code, 0);
        self.server.shutdown().await;
    }
}

fn req(id: impl Into<Value>, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id.into(), "method": method, "params": params })
}

fn pin() -> Value {
    json!({ "reader": PIV, "pin": "pin" })
}

fn login(value: &str) -> Value {
    json!({ "reader": PIV, "pin": "pin", "value": value })
}

fn fast_limits() -> Limits {
    Limits::default()
}

async fn json<F: Front>(f: &mut F) -> Value {
    match f.recv().await {
        Event::Json(v) => v,
        Event::Closed(code) => panic!("closed ({code:?}) where a message was expected"),
    }
}

/// The answer with `id`; notifications before it are returned too.
async fn answer<F: Front>(f: &mut F, id: &Value) -> (Value, Vec<Value>) {
    let mut notes = Vec::new();
    loop {
        let v = json(f).await;
        if v.get("id") == Some(id) {
            return (v, notes);
        }
        assert!(v.get("id").is_none(), "another answer before {id}: {v}");
        notes.push(v);
    }
}

async fn each_request_is_answered_once<F: Front>() {
    let mut f = F::start(sim(), fast_limits()).await;
    for i in 0..40u64 {
        let r = match i % 3 {
            0 => req(i, "hello", json!({})),
            1 => req(i, "getPinStatus", pin()),
            _ => req(i, "noSuchMethod", json!({})),
        };
        f.send_text(&r.to_string()).await;
        // A notification (no id) is never answered.
        f.send_text(&json!({ "jsonrpc": "2.0", "method": "hello", "params": {} }).to_string())
            .await;
    }
    f.send_text(&req("last", "hello", json!({})).to_string())
        .await;
    let mut seen = std::collections::BTreeSet::new();
    let mut last = false;
    while seen.len() < 40 || !last {
        let v = json(&mut f).await;
        if v["id"] == "last" {
            assert!(!last, "answered twice: {v}");
            last = true;
            continue;
        }
        let id = v["id"].as_u64().unwrap_or_else(|| panic!("{v}"));
        assert!(seen.insert(id), "answered twice: {v}");
        if id % 3 == 2 {
            assert_eq!(v["error"]["code"], -32601, "{v}");
        } else {
            assert!(v.get("result").is_some(), "{v}");
        }
    }
    // Nothing more: the next message is the next request's answer.
    f.send_text(&req("after", "hello", json!({})).to_string())
        .await;
    let v = json(&mut f).await;
    assert_eq!(v["id"], "after", "{v}");
    f.finish().await;
}

async fn a_batch_is_answered_as_an_array<F: Front>() {
    let mut f = F::start(sim(), fast_limits()).await;
    let batch = json!([
        req("a", "hello", json!({})),
        { "jsonrpc": "2.0", "method": "hello", "params": {} },
        req("b", "getPinStatus", pin()),
        req("c", "noSuchMethod", json!({})),
    ]);
    f.send_text(&batch.to_string()).await;
    let v = json(&mut f).await;
    let a = v.as_array().unwrap_or_else(|| panic!("not an array: {v}"));
    assert_eq!(a.len(), 3, "{v}");
    assert_eq!(a[0]["id"], "a");
    assert_eq!(a[1]["id"], "b");
    assert_eq!(a[1]["result"]["remainingTries"], 3);
    assert_eq!(a[2]["error"]["code"], -32601);
    // A batch of notifications only: no answer at all.
    f.send_text(&json!([{ "jsonrpc": "2.0", "method": "hello", "params": {} }]).to_string())
        .await;
    f.send_text(&req(1, "hello", json!({})).to_string()).await;
    assert_eq!(json(&mut f).await["id"], 1);
    // An empty batch is an invalid request.
    f.send_text("[]").await;
    let v = json(&mut f).await;
    assert_eq!(v["id"], Value::Null, "{v}");
    assert_eq!(v["error"]["code"], -32600, "{v}");
    f.finish().await;
}

async fn the_rate_is_charged_per_request<F: Front>() {
    let limits = Limits {
        rate_burst: 10,
        rate_per_second: 1,
        ..Limits::default()
    };
    let mut f = F::start(sim(), limits).await;
    let batch: Vec<Value> = (0..15).map(|i| req(i, "hello", json!({}))).collect();
    f.send_text(&Value::Array(batch).to_string()).await;
    let v = json(&mut f).await;
    let a = v.as_array().unwrap();
    assert_eq!(a.len(), 15);
    let limited: Vec<bool> = a
        .iter()
        .map(|r| r["error"]["data"]["code"] == "RATE_LIMITED")
        .collect();
    assert!(limited[..10].iter().all(|l| !l), "{v}");
    assert!(limited[11..].iter().all(|l| *l), "{v}");
    // A single request over the rate: limited too, and nothing is run.
    f.send_text(&req("x", "getPinStatus", pin()).to_string())
        .await;
    let v = json(&mut f).await;
    assert_eq!(v["id"], "x");
    assert_eq!(v["error"]["data"]["code"], "RATE_LIMITED", "{v}");
    f.finish().await;
}

async fn a_batch_too_large_is_one_error<F: Front>() {
    let mut f = F::start(sim(), fast_limits()).await;
    let batch: Vec<Value> = (0..=MAX_BATCH)
        .map(|i| req(i as u64, "login", login("000000")))
        .collect();
    f.send_text(&Value::Array(batch).to_string()).await;
    let v = json(&mut f).await;
    assert_eq!(v["id"], Value::Null, "{v}");
    assert_eq!(v["error"]["code"], -32600, "{v}");
    assert_eq!(v["error"]["data"]["code"], "BATCH_TOO_LARGE", "{v}");
    assert_eq!(v["error"]["data"]["maxBatch"], MAX_BATCH, "{v}");
    // None of its wrong PINs was tried.
    f.send_text(&req(1, "getPinStatus", pin()).to_string())
        .await;
    let (v, _) = answer(&mut f, &json!(1)).await;
    assert_eq!(v["result"]["remainingTries"], 3, "{v}");
    f.finish().await;
}

async fn an_operations_notification_comes_before_its_answer<F: Front>() {
    let mut f = F::start(sim(), fast_limits()).await;
    for i in 0..10u64 {
        let (method, params, validated) = if i % 2 == 0 {
            ("login", login("123456"), true)
        } else {
            ("logout", pin(), false)
        };
        f.send_text(&req(i, method, params).to_string()).await;
        let (v, notes) = answer(&mut f, &json!(i)).await;
        assert!(v.get("error").is_none(), "{v}");
        assert!(
            notes.iter().any(|n| n["method"] == "pinStateChanged"
                && n["params"]["status"]["validated"] == validated),
            "{method} {i}: its pinStateChanged did not come before its answer ({notes:?})"
        );
    }
    f.finish().await;
}

async fn a_quiet_session_loses_its_login<F: Front>() {
    let limits = Limits {
        login_idle: Duration::from_secs(1),
        ..Limits::default()
    };
    let mut f = F::start(sim(), limits).await;
    f.send_text(&req(1, "login", login("123456")).to_string())
        .await;
    answer(&mut f, &json!(1)).await;
    // Talking keeps it.
    for i in 2..7u64 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        f.send_text(&req(i, "hello", json!({})).to_string()).await;
        answer(&mut f, &json!(i)).await;
    }
    f.send_text(&req(7, "getPinStatus", pin()).to_string())
        .await;
    let (v, _) = answer(&mut f, &json!(7)).await;
    assert_eq!(v["result"]["validated"], true, "{v}");
    // Silence past the idle time ends it.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    f.send_text(&req(8, "getPinStatus", pin()).to_string())
        .await;
    let (v, _) = answer(&mut f, &json!(8)).await;
    assert_eq!(v["result"]["validated"], false, "{v}");
    assert_eq!(v["result"]["remainingTries"], 3, "{v}");
    f.finish().await;
}

async fn malformed_messages_are_answered<F: Front>() {
    let mut f = F::start(sim(), fast_limits()).await;
    for (text, code) in [
        ("this is not JSON", -32700),
        ("{\"jsonrpc\":\"2.0\",", -32700),
        ("{\"jsonrpc\":\"2.0\"}", -32600),
        ("42", -32600),
        (
            "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"hello\"}",
            -32600,
        ),
    ] {
        f.send_text(text).await;
        let v = json(&mut f).await;
        assert_eq!(v["jsonrpc"], "2.0", "{text}: {v}");
        assert_eq!(v["error"]["code"], code, "{text}: {v}");
    }
    // The session goes on.
    f.send_text(&req(1, "hello", json!({})).to_string()).await;
    assert_eq!(json(&mut f).await["id"], 1);
    f.finish().await;
}

/// A message over the limit closes the session (1009); the requests it
/// had in flight are answered first.
async fn an_oversize_message_closes_after_the_answers_in_flight<F: Front>() {
    let sim = sim();
    let mut f = F::start(sim.clone(), fast_limits()).await;
    f.send_text(&req(1, "hello", json!({})).to_string()).await;
    assert_eq!(json(&mut f).await["id"], 1);
    // The card is busy for a while: the status read waits for it.
    let busy = sim.clone();
    let (held_tx, held) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        busy.with_card(PIV, |_| {
            held_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(500));
        });
    });
    held.recv().unwrap();
    f.send_text(&req(2, "getPinStatus", pin()).to_string())
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"hello","params":{{"pad":"{}"}}}}"#,
        "x".repeat(MAX_MESSAGE)
    );
    f.send_text(&big).await;
    let mut events = Vec::new();
    loop {
        let e = f.recv().await;
        let closed = matches!(e, Event::Closed(_));
        events.push(e);
        if closed {
            break;
        }
    }
    holder.join().unwrap();
    assert!(
        matches!(&events[..], [Event::Json(v), Event::Closed(Some(1009))] if v["id"] == 2
            && v["result"]["remainingTries"] == 3),
        "{events:?}"
    );
    f.finish().await;
}

macro_rules! both {
    ($($scenario:ident),* $(,)?) => {
        mod websocket {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario::<super::Ws>().await;
                }
            )*
        }
        mod native_messaging {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario::<super::Native>().await;
                }
            )*
        }
    };
}

both!(
    each_request_is_answered_once,
    a_batch_is_answered_as_an_array,
    the_rate_is_charged_per_request,
    a_batch_too_large_is_one_error,
    an_operations_notification_comes_before_its_answer,
    a_quiet_session_loses_its_login,
    malformed_messages_are_answered,
    an_oversize_message_closes_after_the_answers_in_flight,
);
