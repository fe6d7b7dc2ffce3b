//! Protocol conformance against the real daemon bound to port 0, with the
//! in-process simulated readers and cards.

#[path = "common/card.rs"]
mod card;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/ws_client.rs"]
mod ws_client;

use cardgate::Server;
use cardgate::vcard::config::CardConfig;
use cardgate::vcard::sim::SimBackend;
use daemon::SimDaemon;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use ws_client::Client;

const PIV: &str = "Sim PIV";
const PGP: &str = "Sim OpenPGP";

async fn daemon() -> (Server, SimBackend) {
    SimDaemon::local_tool()
        .card(PIV, CardConfig::piv())
        .card(PGP, CardConfig::openpgp())
        .start()
        .await
}

/// A daemon and a client that has logged in to the PIV card.
async fn logged_in() -> (Server, SimBackend, Client) {
    let (server, sim) = daemon().await;
    let mut c = Client::connect(server.port()).await;
    c.ok(
        "login",
        with(target(PIV, "pin"), json!({ "value": "123456" })),
    )
    .await;
    (server, sim, c)
}

fn target(reader: &str, pin: &str) -> Value {
    json!({ "reader": reader, "pin": pin })
}

fn with(mut v: Value, extra: Value) -> Value {
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
}

async fn http_get(port: u16, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes() {
    let (server, _sim) = daemon().await;
    let port = server.port();
    let health = http_get(port, "/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let body: Value = serde_json::from_str(health.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["pcsc"], "up");
    assert_eq!(body["readers"], json!([PGP, PIV]));
    for (path, ty) in [
        ("/scws.js", "text/javascript"),
        ("/scws.d.ts", "application/typescript"),
        ("/demo", "text/html"),
    ] {
        let r = http_get(port, path).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{path}: {r}");
        assert!(
            r.to_lowercase().contains(&format!("content-type: {ty}")),
            "{path}: {r}"
        );
        assert!(
            !r.to_lowercase().contains("access-control-allow-origin"),
            "{path}"
        );
    }
    assert!(http_get(port, "/nope").await.starts_with("HTTP/1.1 404"));
    assert!(http_get(port, "/ws").await.starts_with("HTTP/1.1 400"));
    // Listening on loopback only, and on both address families when present.
    for a in server.addrs() {
        assert!(a.ip().is_loopback(), "{a}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_readers_and_status() {
    let (server, _sim) = daemon().await;
    let mut c = Client::connect(server.port()).await;
    let hello = c.ok("hello", json!({ "protocol": 1 })).await;
    assert_eq!(hello["protocol"], 1);
    assert_eq!(hello["daemon"], "cardgate");
    assert!(
        hello["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("login"))
    );
    assert_eq!(
        c.err("hello", json!({ "protocol": 99 })).await["code"],
        "PROTOCOL_UNSUPPORTED"
    );

    let readers = c.ok("getReaders", json!({})).await;
    assert_eq!(readers["pcsc"], "up");
    let list = readers["readers"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let piv = list.iter().find(|r| r["name"] == PIV).unwrap();
    assert_eq!(piv["cardPresent"], true);
    assert_eq!(piv["token"]["profile"], "piv");
    assert_eq!(piv["token"]["protectedAuthPath"], false);
    assert_eq!(piv["token"]["pins"][0]["id"], "pin");
    assert_eq!(piv["token"]["pins"][0]["remainingTries"], 3);
    let pgp = list.iter().find(|r| r["name"] == PGP).unwrap();
    assert_eq!(pgp["token"]["pins"][1]["id"], "admin");

    let st = c.ok("getPinStatus", target(PIV, "pin")).await;
    for field in [
        "initialized",
        "toBeChanged",
        "blocked",
        "tryCountLow",
        "lastTry",
        "validated",
        "remainingTries",
        "maxTries",
        "label",
    ] {
        assert!(st.get(field).is_some(), "missing {field}: {st}");
    }
    // The PUK's counter is unknown: the field is absent, not guessed.
    assert!(
        c.ok("getPinStatus", target(PIV, "puk"))
            .await
            .get("remainingTries")
            .is_none()
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pin_operation_and_its_notifications() {
    let (server, _sim) = daemon().await;
    let mut c = Client::connect(server.port()).await;
    let mut watcher = Client::connect(server.port()).await;
    watcher.ok("hello", json!({})).await;

    let e = c
        .err(
            "login",
            with(target(PIV, "pin"), json!({ "value": "000000" })),
        )
        .await;
    assert_eq!(e["code"], "PIN_INCORRECT");
    assert_eq!(e["remainingTries"], 2);
    // Another client hears about it without asking.
    let n = watcher
        .notification("pinStateChanged", |p| p["reader"] == PIV)
        .await;
    assert_eq!(n["pin"], "pin");
    assert_eq!(n["status"]["remainingTries"], 2);
    assert_eq!(n["status"]["tryCountLow"], true);

    // A CredentialValue works like a string.
    let cred = json!({ "type": "pin", "data": "MTIzNDU2" });
    assert_eq!(
        c.ok("login", with(target(PIV, "pin"), json!({ "value": cred })))
            .await,
        Value::Null
    );
    // The login is c's: c hears validated, the other client does not.
    let n = c
        .notification("pinStateChanged", |p| p["status"]["remainingTries"] == 3)
        .await;
    assert_eq!(n["status"]["validated"], true);
    let n = watcher
        .notification("pinStateChanged", |p| p["status"]["remainingTries"] == 3)
        .await;
    assert_eq!(n["status"]["validated"], false);
    assert_eq!(
        watcher.ok("getPinStatus", target(PIV, "pin")).await["validated"],
        false
    );
    assert_eq!(
        c.ok("getPinStatus", target(PIV, "pin")).await["validated"],
        true
    );

    c.ok(
        "change",
        with(
            target(PIV, "pin"),
            json!({ "oldValue": "123456", "newValue": "24681357" }),
        ),
    )
    .await;
    let e = c
        .err(
            "change",
            with(
                target(PIV, "pin"),
                json!({ "oldValue": "1", "newValue": "2" }),
            ),
        )
        .await;
    assert_eq!(e["code"], "PIN_LENGTH_INVALID");
    c.ok("logout", target(PIV, "pin")).await;
    assert_eq!(
        c.ok("getPinStatus", target(PIV, "pin")).await["validated"],
        false
    );

    // Unblock with the PUK: SO login then init.
    assert_eq!(
        c.err(
            "init",
            with(target(PIV, "pin"), json!({ "newValue": "111111" }))
        )
        .await["code"],
        "SO_LOGIN_REQUIRED"
    );
    // A PIV PUK's counter cannot be read: a page's PUK is not sent while
    // the card has not told it (the PIN dialog or the pinpad may).
    let e = c
        .err(
            "login",
            with(
                target(PIV, "pin"),
                json!({ "value": "12345678", "so": true }),
            ),
        )
        .await;
    assert_eq!(e["code"], "LAST_TRY_PROTECTED", "{e}");
    c.ok(
        "login",
        with(target(PIV, "pin"), json!({ "value": "24681357" })),
    )
    .await;

    // OpenPGP: admin PIN as SO; a wrong one reports its own tries.
    let e = c
        .err(
            "login",
            with(
                target(PGP, "user"),
                json!({ "value": "00000000", "so": true }),
            ),
        )
        .await;
    assert_eq!(e["code"], "SO_PIN_INCORRECT");
    assert_eq!(e["remainingTries"], 2);
    c.ok(
        "login",
        with(
            target(PGP, "user"),
            json!({ "value": "12345678", "so": true }),
        ),
    )
    .await;
    c.ok(
        "init",
        with(target(PGP, "user"), json!({ "newValue": "fresh-pin" })),
    )
    .await;
    c.ok(
        "login",
        with(target(PGP, "user"), json!({ "value": "fresh-pin" })),
    )
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_structured_errors() {
    let (server, _sim) = daemon().await;
    let mut c = Client::connect(server.port()).await;
    let expect = async |c: &mut Client, text: &str, code: i64| {
        c.send_text(text).await;
        let r = c.recv().await.expect("a response");
        assert_eq!(r["error"]["code"], code, "{text} → {r}");
        assert!(r["error"]["data"]["code"].is_string(), "{r}");
        r
    };
    let r = expect(&mut c, "{oops", -32700).await;
    assert_eq!(r["id"], Value::Null);
    expect(&mut c, "42", -32600).await;
    expect(
        &mut c,
        r#"{"jsonrpc":"1.0","id":1,"method":"hello"}"#,
        -32600,
    )
    .await;
    let r = expect(
        &mut c,
        r#"{"jsonrpc":"2.0","id":"x","method":"selfDestruct"}"#,
        -32601,
    )
    .await;
    assert_eq!(r["id"], "x");
    expect(
        &mut c,
        r#"{"jsonrpc":"2.0","id":2,"method":"login","params":{"reader":"Sim PIV"}}"#,
        -32602,
    )
    .await;
    expect(
        &mut c,
        r#"{"jsonrpc":"2.0","id":3,"method":"login","params":{"reader":"Sim PIV","pin":"pin","value":["1"]}}"#,
        -32602,
    )
    .await;
    expect(
        &mut c,
        r#"{"jsonrpc":"2.0","id":4,"method":"getPinStatus","params":"Sim PIV"}"#,
        -32602,
    )
    .await;
    let r = expect(
        &mut c,
        r#"{"jsonrpc":"2.0","id":5,"method":"getPinStatus","params":{"reader":"Nowhere","pin":"pin"}}"#,
        -32000,
    )
    .await;
    assert_eq!(r["error"]["data"]["code"], "READER_NOT_FOUND");
    let r = expect(
        &mut c,
        r#"{"jsonrpc":"2.0","id":6,"method":"getPinStatus","params":{"reader":"Sim PIV","pin":"zz"}}"#,
        -32000,
    )
    .await;
    assert_eq!(r["error"]["data"]["code"], "PIN_NOT_FOUND");
    c.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(c.recv().await.unwrap()["error"]["code"], -32600);

    // A notification (no id) is executed silently; the next call is answered.
    c.send_text(r#"{"jsonrpc":"2.0","method":"getReaders"}"#)
        .await;
    assert_eq!(c.ok("hello", json!({})).await["protocol"], 1);

    // A batch is answered by an array in the same order; notifications skipped.
    let status = format!(
        r#"{{"jsonrpc":"2.0","id":12,"method":"getPinStatus","params":{}}}"#,
        target(PIV, "pin")
    );
    c.send_text(format!(r#"[{{"jsonrpc":"2.0","id":10,"method":"hello"}},{{"jsonrpc":"2.0","method":"hello"}},{{"jsonrpc":"2.0","id":11,"method":"nope"}},{status}]"#)).await;
    let batch = c.recv().await.unwrap();
    let items = batch.as_array().expect("an array");
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["id"], 10);
    assert_eq!(items[0]["jsonrpc"], "2.0");
    assert_eq!(items[1]["error"]["code"], -32601);
    assert_eq!(items[2]["id"], 12);
    assert_eq!(items[2]["jsonrpc"], "2.0");
    assert_eq!(items[2]["result"]["id"], "pin");
    assert_eq!(items[2]["result"]["remainingTries"], 3);

    // No PIN try was spent by any of this.
    assert_eq!(
        c.ok("getPinStatus", target(PIV, "pin")).await["remainingTries"],
        3
    );

    // A big message under the limit (the read buffer starts at 1 KiB and
    // grows): a full batch (64) of status reads with long string ids,
    // about 40 KiB, all answered.
    let pad = "i".repeat(600);
    let one = format!(
        r#"{{"jsonrpc":"2.0","id":"ID{pad}","method":"getPinStatus","params":{}}}"#,
        target(PIV, "pin")
    );
    let batch: Vec<String> = (0..64).map(|i| one.replace("ID", &i.to_string())).collect();
    let text = format!("[{}]", batch.join(","));
    assert!(
        text.len() > 32 * 1024 && text.len() < 64 * 1024,
        "{}",
        text.len()
    );
    c.send_text(text).await;
    let answers = c.recv().await.expect("the batch's answer");
    let answers = answers.as_array().expect("an array");
    assert_eq!(answers.len(), 64);
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a["id"], format!("{i}{pad}"), "{a}");
        assert_eq!(a["result"]["remainingTries"], 3, "{a}");
    }

    // A message over the limit closes the connection with 1009.
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"hello","params":{{"x":"{}"}}}}"#,
        "a".repeat(70 * 1024)
    );
    let _ = c.ws.send(Message::text(huge)).await;
    let mut code = None;
    while let Ok(Some(msg)) = tokio::time::timeout(ws_client::WAIT, c.ws.next()).await {
        if let Ok(Message::Close(Some(frame))) = msg {
            code = Some(u16::from(frame.code));
            break;
        }
        if msg.is_err() {
            break;
        }
    }
    assert_eq!(code, Some(1009));
    // The daemon is fine.
    let mut d = Client::connect(server.port()).await;
    assert_eq!(d.ok("hello", json!({})).await["protocol"], 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_clients() {
    let (server, _sim) = daemon().await;
    let port = server.port();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            tokio::spawn(async move {
                let mut c = Client::connect(port).await;
                let reader = if i % 2 == 0 { PIV } else { PGP };
                let pin = if i % 2 == 0 { "pin" } else { "user" };
                for _ in 0..3 {
                    let st = c.ok("getPinStatus", target(reader, pin)).await;
                    assert_eq!(st["remainingTries"], 3);
                }
                let readers = c.ok("getReaders", json!({})).await;
                assert_eq!(readers["readers"].as_array().unwrap().len(), 2);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_and_reader_events_are_pushed() {
    let (server, sim) = daemon().await;
    let mut c = Client::connect(server.port()).await;
    c.ok("hello", json!({})).await;
    let card = sim.remove_card(PIV).unwrap();
    c.notification("cardRemoved", |p| p["reader"] == PIV).await;
    assert_eq!(
        c.err("getPinStatus", target(PIV, "pin")).await["code"],
        "CARD_ABSENT"
    );
    sim.insert_card(PIV, card).unwrap();
    let n = c.notification("cardInserted", |p| p["reader"] == PIV).await;
    assert_eq!(n["token"]["profile"], "piv");
    assert!(n["atr"].as_str().unwrap().starts_with("3B"));
    sim.add_reader("Hot Plugged");
    c.notification("readerAdded", |p| p["reader"] == "Hot Plugged")
        .await;
    sim.remove_reader("Hot Plugged");
    c.notification("readerRemoved", |p| p["reader"] == "Hot Plugged")
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_clients_and_logs_the_card_out() {
    let (server, sim, mut c) = logged_in().await;
    assert_eq!(
        c.ok("getPinStatus", target(PIV, "pin")).await["validated"],
        true
    );
    server.shutdown().await;
    // The client is told, not left hanging.
    let mut closed = false;
    while let Ok(Some(msg)) = tokio::time::timeout(ws_client::WAIT, c.ws.next()).await {
        if matches!(msg, Ok(Message::Close(_)) | Err(_)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the client saw the connection close");
    // The card itself is no longer verified.
    assert!(!card::pin_verified(&sim, PIV).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraints_over_the_protocol() {
    let (server, sim) = daemon().await;
    let mut c = Client::connect(server.port()).await;
    let constraints = c.ok("getConstraints", target(PIV, "pin")).await;
    assert_eq!(
        constraints,
        json!([{ "type": "numeric" }, { "type": "minMaxLength", "minLength": 6, "maxLength": 8 }])
    );
    let check =
        |old: &str, new: &str| with(target(PIV, "pin"), json!({ "oldPin": old, "newPin": new }));
    assert_eq!(
        c.ok("checkConstraints", check("123456", "654321")).await,
        json!([true, true])
    );
    assert_eq!(
        c.ok("checkConstraints", check("123456", "12ab")).await,
        json!([false, false])
    );
    assert_eq!(
        c.ok("checkConstraints", check("", "1234567")).await,
        json!([true, true])
    );
    // A change that breaks the policy never reaches the card.
    let e = c
        .err(
            "change",
            with(
                target(PIV, "pin"),
                json!({ "oldValue": "000000", "newValue": "12ab5678" }),
            ),
        )
        .await;
    assert_eq!(e["code"], "CONSTRAINT_VIOLATION");
    assert_eq!(e["constraints"], json!([{ "type": "numeric" }]));
    assert!(!e.to_string().contains("12ab5678"));
    assert_eq!(sim.with_card(PIV, |card| card.user_pin_tries()), Some(3));
    let pgp = c.ok("getConstraints", target(PGP, "user")).await;
    assert!(pgp.as_array().is_some_and(|a| !a.is_empty()), "{pgp}");
    server.shutdown().await;
}
/// The `pinStateChanged` an operation causes reaches its caller before the
/// operation's response, so a client's PIN objects are fresh when the call
/// settles (the JavaScript client relies on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operations_notification_precedes_its_response() {
    let (server, _sim) = daemon().await;
    let mut c = Client::connect(server.port()).await;
    for i in 0..40 {
        let value = if i % 2 == 0 { "000000" } else { "123456" };
        c.call("login", with(target(PIV, "pin"), json!({ "value": value })))
            .await;
        let note = c.notes.pop_front();
        assert!(
            note.as_ref()
                .is_some_and(|n| n["method"] == "pinStateChanged"),
            "round {i}: the response came before the notification ({note:?})"
        );
        assert!(c.notes.is_empty(), "round {i}: {:?}", c.notes);
    }
    server.shutdown().await;
}

/// A browser keeps its HTTP connection open after loading the page
/// (keep-alive). Shutdown must not wait for it: it closes idle connections,
/// then logs the card out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_idle_keep_alive_connections() {
    // The logged-in client stays connected through the shutdown.
    let (server, sim, _client) = logged_in().await;
    let port = server.port();
    // An idle keep-alive connection, like the one that loaded /demo.
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    idle.write_all(format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // And one that never sent a byte (a browser's preconnect).
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();

    tokio::time::timeout(Duration::from_secs(3), server.shutdown())
        .await
        .expect("shutdown finished while idle connections were open");
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("the silent connection was closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing on the silent connection");
    // The idle connection was closed by the daemon.
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("the idle connection was closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "no more data on the idle connection");
    assert!(
        !card::pin_verified(&sim, PIV).await,
        "the card was logged out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_status_reads_share_the_card_but_not_the_login() {
    let (server, _sim) = daemon().await;
    let mut owner = Client::connect(server.port()).await;
    let mut others = Vec::new();
    for _ in 0..8 {
        others.push(Client::connect(server.port()).await);
    }
    owner
        .ok(
            "login",
            with(target(PIV, "pin"), json!({ "value": "123456" })),
        )
        .await;
    // Hold the reader's worker so every request below queues behind it.
    let service = cardgate::testing::service(&server);
    let (release, held) = std::sync::mpsc::channel::<()>();
    drop(service.queue(PIV, move |_| {
        let _ = held.recv();
        Ok(())
    }));
    let request =
        json!({"jsonrpc": "2.0", "id": 7, "method": "getPinStatus", "params": target(PIV, "pin")});
    owner.send_text(request.to_string()).await;
    for c in &mut others {
        c.send_text(request.to_string()).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A read queued now joins the one waiting (its own work never runs):
    // the requests above were merged into one card read.
    let probe_ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ran = probe_ran.clone();
    let probe = service.queue_shared(PIV, "status pin", move |e| {
        ran.store(true, std::sync::atomic::Ordering::SeqCst);
        // The same result type as the daemon's reads: status and owner (a
        // connection id).
        Ok((e.status("pin")?, None::<u64>))
    });
    release.send(()).unwrap();
    let r = owner.response(&json!(7)).await;
    assert_eq!(r["result"]["validated"], true, "{r}");
    assert_eq!(r["result"]["remainingTries"], 3, "{r}");
    for c in &mut others {
        let r = c.response(&json!(7)).await;
        assert_eq!(r["result"]["validated"], false, "not their login: {r}");
        assert_eq!(r["result"]["remainingTries"], 3, "{r}");
    }
    assert!(probe.await.is_ok());
    assert!(
        !probe_ran.load(std::sync::atomic::Ordering::SeqCst),
        "the status requests were queued as one shared read"
    );
    server.shutdown().await;
}

/// A client that sends requests but stops reading their answers fills its
/// socket and holds its connection's writes; shutdown still finishes (after
/// its grace), and logs the card out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_hang_on_a_client_that_stopped_reading() {
    let (server, sim, mut c) = logged_in().await;
    // Full batches of status reads, never read.
    let one = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"getPinStatus","params":{}}}"#,
        target(PIV, "pin")
    );
    let batch = format!("[{}]", vec![one; 64].join(","));
    for _ in 0..150 {
        if tokio::time::timeout(
            Duration::from_secs(1),
            c.ws.send(Message::text(batch.clone())),
        )
        .await
        .map_or(true, |r| r.is_err())
        {
            break; // the daemon stopped reading too: its writes are stuck
        }
    }
    tokio::time::timeout(Duration::from_secs(15), server.shutdown())
        .await
        .expect("shutdown finished despite a client that does not read");
    assert!(
        !card::pin_verified(&sim, PIV).await,
        "the card was logged out at shutdown"
    );
    drop(c);
}

/// A client that never stops sending (and reads every answer) does not
/// hold shutdown off: the daemon stops reading it and closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_off_by_a_client_that_keeps_sending() {
    let (server, _sim) = daemon().await;
    let c = Client::connect(server.port()).await;
    let (mut tx, mut rx) = c.ws.split();
    let sender = tokio::spawn(async move {
        let hello = r#"{"jsonrpc":"2.0","id":1,"method":"hello"}"#;
        while tx.send(Message::text(hello)).await.is_ok() {}
    });
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(Duration::from_secs(3), server.shutdown())
        .await
        .expect("shutdown finished while the client kept sending");
    reader.abort();
    sender.abort();
}

/// A client that sends requests and never reads their answers: once its
/// socket is full, the daemon's write makes no progress and after the send
/// timeout the connection is closed (its task, answers and buffers freed);
/// other clients are served meanwhile and afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_closed() {
    let send_timeout = Duration::from_millis(500);
    let (server, _sim) = SimDaemon::local_tool()
        .card(PIV, CardConfig::piv())
        .config(|c| c.send_timeout = send_timeout)
        .start()
        .await;
    let port = server.port();
    // A small receive window: the client's side fills soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/ws"), stream)
        .await
        .unwrap();
    let hello = r#"{"jsonrpc":"2.0","id":1,"method":"hello","params":{}}"#;
    let batch = format!("[{}]", vec![hello; 64].join(","));
    let start = std::time::Instant::now();
    let mut sent = 0;
    // Send until the daemon stops reading (its write is stuck).
    while start.elapsed() < Duration::from_secs(20) {
        match tokio::time::timeout(
            Duration::from_secs(2),
            ws.send(Message::text(batch.clone())),
        )
        .await
        {
            Ok(Ok(())) => sent += 1,
            _ => break,
        }
    }
    assert!(cardgate::testing::connection_count(&server) <= 1);
    // Within the send timeout (and a margin) of the stall, it is closed;
    // a fresh client is answered at once meanwhile.
    let mut fresh = Client::connect(port).await;
    assert_eq!(fresh.ok("hello", json!({})).await["daemon"], "cardgate");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while cardgate::testing::connection_count(&server) > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "a client that does not read is still connected ({sent} frames sent)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fresh.ok("hello", json!({})).await["daemon"], "cardgate");
    drop(ws);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_close_frame_is_answered_with_one() {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let (server, _sim) = daemon().await;
    let mut c = Client::connect(server.port()).await;
    c.ok("hello", json!({})).await;
    c.ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    // RFC 6455 §5.5.1: the endpoint answers a Close frame with a Close frame
    // (a browser otherwise reports code 1006, wasClean false).
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match c.ws.next().await {
                Some(Ok(Message::Close(frame))) => return Some(frame),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("an answer in time");
    let frame = answer.expect("a Close frame, not a dropped connection");
    assert_eq!(frame.map(|f| f.code), Some(CloseCode::Normal));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_reader_does_not_hold_up_another_readers_notifications() {
    let (server, sim) = daemon().await;
    let mut c = Client::connect(server.port()).await;
    c.ok("hello", json!({})).await;
    // The PIV reader's worker is busy for a while (as with a PIN typed on
    // a pinpad), and its card comes back meanwhile: its token can only be
    // described once the worker is free.
    let busy = Duration::from_secs(3);
    drop(cardgate::testing::service(&server).queue(PIV, move |_| {
        std::thread::sleep(busy);
        Ok(())
    }));
    let card = sim.remove_card(PIV).unwrap();
    sim.insert_card(PIV, card).unwrap();
    // The other reader's card goes and comes back: its notifications do not
    // wait for the busy reader.
    let started = std::time::Instant::now();
    let card = sim.remove_card(PGP).unwrap();
    sim.insert_card(PGP, card).unwrap();
    c.notification("cardInserted", |p| p["reader"] == PGP).await;
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    // The busy reader's own notifications come, in their order.
    let removed = c.notification("cardRemoved", |p| p["reader"] == PIV).await;
    assert_eq!(removed["reader"], PIV);
    let inserted = c.notification("cardInserted", |p| p["reader"] == PIV).await;
    assert_eq!(inserted["token"]["profile"], "piv", "{inserted}");
    server.shutdown().await;
}
