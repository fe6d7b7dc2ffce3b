//! A small JSON-RPC WebSocket client for tests against the real daemon.
#![allow(dead_code)] // each test binary uses part of it

use cardgate::OriginsFile;
use cardgate::ServerConfig;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub const WAIT: Duration = Duration::from_secs(10);

/// The daemon as the tests run it for this client: a free port, no
/// allowlist file, and no `Origin` needed (the client is a local tool).
pub fn local_tool_config() -> ServerConfig {
    config_allowing(OriginsFile {
        allow_missing_origin: true,
        ..OriginsFile::default()
    })
}

/// The daemon as the tests run it for pages of `origin`, the one origin
/// allowed: a free port, no allowlist file.
pub fn page_config(origin: &str) -> ServerConfig {
    config_allowing(OriginsFile {
        allowed: vec![origin.into()],
        ..OriginsFile::default()
    })
}

fn config_allowing(origins: OriginsFile) -> ServerConfig {
    ServerConfig {
        port: 0,
        op_timeout: Duration::from_secs(10),
        origins_file: None,
        origins,
        ..ServerConfig::default()
    }
}

/// The WebSocket handshake request of a page at `origin` to the daemon on
/// `port` (its `Origin` header set).
pub fn page_request(port: u16, origin: &str) -> Request {
    let mut req = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("Origin", origin.parse().unwrap());
    req
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Notifications received while waiting for responses.
    pub notes: VecDeque<Value>,
}

impl Client {
    pub async fn connect(port: u16) -> Client {
        let (ws, _) = connect_async(format!("ws://127.0.0.1:{port}/ws"))
            .await
            .expect("websocket connect");
        Client::from_stream(ws)
    }

    /// A page at `origin` connects; the daemon may refuse it (the error as text).
    pub async fn connect_page(port: u16, origin: &str) -> Result<Client, String> {
        match connect_async(page_request(port, origin)).await {
            Ok((ws, _)) => Ok(Client::from_stream(ws)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A page at `origin` connects, and the daemon lets it.
    pub async fn page(port: u16, origin: &str) -> Client {
        let (ws, _) = connect_async(page_request(port, origin))
            .await
            .expect("connect");
        Client::from_stream(ws)
    }

    pub fn from_stream(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        Client {
            ws,
            next_id: 1,
            notes: VecDeque::new(),
        }
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::text(text.into()))
            .await
            .expect("send");
    }

    /// The next JSON message from the daemon (response or notification).
    pub async fn recv(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no message within the wait")?;
            match msg {
                Ok(Message::Text(t)) => {
                    return Some(serde_json::from_str(t.as_str()).expect("daemon sent JSON"));
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Waits for the response with `id`, keeping notifications aside.
    pub async fn response(&mut self, id: &Value) -> Value {
        loop {
            let msg = self
                .recv()
                .await
                .expect("connection closed before the response");
            if msg.get("id") == Some(id) {
                return msg;
            }
            if msg.get("id").is_none() {
                self.notes.push_back(msg);
            } else {
                panic!("unexpected response {msg}");
            }
        }
    }

    /// Calls a method; returns the whole response object.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = json!(self.next_id);
        self.next_id += 1;
        let req = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        self.send_text(req.to_string()).await;
        self.response(&id).await
    }

    /// Calls a method that must succeed; returns its result.
    pub async fn ok(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(method, params).await;
        assert!(r.get("error").is_none(), "{method} failed: {r}");
        r["result"].clone()
    }

    /// Calls a method that must fail; returns `error.data`.
    pub async fn err(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(method, params).await;
        assert!(r.get("error").is_some(), "{method} should fail: {r}");
        r["error"]["data"].clone()
    }

    /// Waits for a notification `method` matching `pred`.
    pub async fn notification(&mut self, method: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self
            .notes
            .iter()
            .position(|n| n["method"] == method && pred(&n["params"]))
        {
            return self.notes.remove(i).unwrap()["params"].clone();
        }
        loop {
            let msg = self
                .recv()
                .await
                .unwrap_or_else(|| panic!("closed while waiting for {method}"));
            if msg["method"] == method && pred(&msg["params"]) {
                return msg["params"].clone();
            }
            self.notes.push_back(msg);
        }
    }
}
