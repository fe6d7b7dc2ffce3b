//! No PIN, PUK, admin PIN or reset code ever reaches a log line, at any
//! level: every operation runs with tracing at TRACE into a buffer, which is
//! then searched for the values (as text, hex and base64).

#[path = "common/ws_client.rs"]
mod ws_client;

use base64::Engine as _;
use cardgate::server::Server;
use cardgate::transport::sim::SimBackend;
use cardgate::vcard::VirtualCard;
use cardgate::vcard::config::CardConfig;
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use ws_client::Client;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const SECRETS: [&str; 8] = [
    "864209",      // PIV PIN
    "57319246",    // PIV PUK
    "703192",      // new PIV PIN
    "915368",      // wrong PIV PIN
    "s3cr3t-pw1",  // OpenPGP user PIN
    "adm1n-pw3x",  // OpenPGP admin PIN
    "r3set-c0de",  // OpenPGP reset code
    "n3w-user-pw", // new OpenPGP user PIN
];

fn forms(secret: &str) -> Vec<String> {
    let hex: String = secret.bytes().map(|b| format!("{b:02X}")).collect();
    vec![
        secret.to_string(),
        hex.clone(),
        hex.to_lowercase(),
        base64::engine::general_purpose::STANDARD.encode(secret),
        format!("{:?}", secret.as_bytes()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_log_line() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    // Everything at TRACE, filtered the way the daemon filters its logs.
    tracing_subscriber::fmt()
        .with_env_filter(cardgate::logging::filter("trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let piv =
        CardConfig::from_toml_str("profile = \"piv\"\npin = \"864209\"\npuk = \"57319246\"\n")
            .unwrap();
    let pgp = CardConfig::from_toml_str(
        "profile = \"openpgp\"\npw1 = \"s3cr3t-pw1\"\npw3 = \"adm1n-pw3x\"\nreset_code = \"r3set-c0de\"\n",
    )
    .unwrap();
    let sim = SimBackend::new();
    sim.add_reader("PIV");
    sim.add_reader("PGP");
    sim.insert_card("PIV", VirtualCard::new(piv)).unwrap();
    sim.insert_card("PGP", VirtualCard::new(pgp)).unwrap();
    let config = ws_client::local_tool_config();
    let server = Server::start(Arc::new(sim), config).await.unwrap();
    let mut c = Client::connect(server.port()).await;
    let t = |r: &str, p: &str| json!({ "reader": r, "pin": p });
    let with = |mut v: serde_json::Value, k: &str, val: serde_json::Value| {
        v[k] = val;
        v
    };

    c.err("login", with(t("PIV", "pin"), "value", json!("915368")))
        .await;
    c.ok("login", with(t("PIV", "pin"), "value", json!("864209")))
        .await;
    let change =
        json!({ "reader": "PIV", "pin": "pin", "oldValue": "864209", "newValue": "703192" });
    c.ok("change", change).await;
    // A page's PIV PUK is refused before any APDU (its counter cannot be
    // read); it was still parsed, and must not be logged.
    c.err(
        "login",
        json!({ "reader": "PIV", "pin": "pin", "value": "57319246", "so": true }),
    )
    .await;
    c.err("init", with(t("PIV", "pin"), "newValue", json!("864209")))
        .await;
    let cred = json!({ "type": "pin", "data": base64::engine::general_purpose::STANDARD.encode("s3cr3t-pw1") });
    c.ok("login", with(t("PGP", "user"), "value", cred)).await;
    c.ok(
        "login",
        json!({ "reader": "PGP", "pin": "user", "value": "adm1n-pw3x", "so": true }),
    )
    .await;
    c.ok(
        "init",
        with(t("PGP", "user"), "newValue", json!("n3w-user-pw")),
    )
    .await;
    let rc =
        json!({ "reader": "PGP", "pin": "user", "value": "r3set-c0de", "soPath": "resetCode" });
    c.ok("login", rc).await;
    c.ok(
        "init",
        with(t("PGP", "user"), "newValue", json!("s3cr3t-pw1")),
    )
    .await;
    // Malformed requests carrying secrets.
    c.err(
        "login",
        json!({ "reader": "PIV", "pin": "pin", "value": { "type": "pin", "data": "915368" } }),
    )
    .await;
    c.err(
        "login",
        json!({ "reader": "Nowhere", "pin": "pin", "value": "915368" }),
    )
    .await;
    c.err(
        "change",
        json!({ "reader": "PIV", "pin": "pin", "oldValue": "915368" }),
    )
    .await;
    c.ok("logout", t("PIV", "pin")).await;
    server.shutdown().await;

    let log = String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned();
    // The log really is at trace level and saw the card traffic.
    assert!(log.contains("TRACE"), "no trace output captured");
    assert!(log.contains("vcard command"), "no card traffic in the log");
    for secret in SECRETS {
        for form in forms(secret) {
            let line = log.lines().find(|l| l.contains(&form)).unwrap_or("");
            assert!(
                !log.contains(&form),
                "{secret:?} appears in the log as {form:?}: {line}"
            );
        }
    }
}
