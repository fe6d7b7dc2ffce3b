//! No PIN, PUK, admin PIN or reset code ever reaches a log line, at any
//! level: every operation runs with tracing at TRACE into a buffer, which is
//! then searched for the values (as text, hex and base64).

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/home.rs"]
mod home;
#[path = "common/ws_client.rs"]
mod ws_client;

use base64::Engine as _;
use cardgate::vcard::config::CardConfig;
use daemon::SimDaemon;
use home::Home;
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
    // Everything at TRACE, set up the way the daemon sets up its logs.
    assert!(cardgate::testing::init_with_writer("trace", move || writer.clone()));

    let piv =
        CardConfig::from_toml_str("profile = \"piv\"\npin = \"864209\"\npuk = \"57319246\"\n")
            .unwrap();
    let pgp = CardConfig::from_toml_str(
        "profile = \"openpgp\"\npw1 = \"s3cr3t-pw1\"\npw3 = \"adm1n-pw3x\"\nreset_code = \"r3set-c0de\"\n",
    )
    .unwrap();
    let (server, _sim) = SimDaemon::local_tool()
        .card("PIV", piv)
        .card("PGP", pgp)
        .start()
        .await;
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

// ---------------------------------------------------------------------------
// The real binary: whatever filter the user sets — environment, `-vv` or
// `log_level` in config.toml — the WebSocket library's frame logging never
// reaches stderr (it prints whole frames, PINs included).

const ORIGIN: &str = "https://bank.example";
const PIV: &str = "cardgate demo reader 0";
const PGP: &str = "cardgate demo reader 1";

/// The values the binary run sets and sends (the demo cards start with
/// PINs 123456 / 12345678, too common to search a log for).
const DEMO_SECRETS: [&str; 6] = [
    "915368",      // wrong PIV PIN
    "864209",      // new PIV PIN
    "703192",      // PIV PIN set with the PUK
    "s3cr3t-pw1",  // new OpenPGP user PIN
    "adm1n-pw3x",  // new OpenPGP admin PIN
    "n3w-user-pw", // OpenPGP user PIN set with the admin PIN
];

/// How the log filter is given to the daemon.
enum LogSetting {
    Env(&'static str),
    Verbose,
    ConfigFile(&'static str),
}

struct Daemon {
    child: std::process::Child,
    port: u16,
    /// Taken by [`Daemon::stop`].
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
    _home: Home,
}

fn start_daemon(log: &LogSetting) -> Daemon {
    use std::io::BufRead;
    use std::process::Stdio;
    let home = Home::new();
    home.allow_origin(ORIGIN);
    let mut cmd = home.cardgate();
    cmd.env("NO_COLOR", "1")
        .args(["demo", "--port", "0", "--card", "piv", "--card", "openpgp"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    match log {
        LogSetting::Env(spec) => {
            cmd.env("CARDGATE_LOG", spec);
        }
        LogSetting::Verbose => {
            cmd.arg("-vv");
        }
        LogSetting::ConfigFile(spec) => {
            home.write(&home.user_config(), &format!("log_level = \"{spec}\"\n"));
        }
    }
    let mut child = cmd.spawn().unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            match err.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            all.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line);
            if let Some(rest) = text.split("open http://127.0.0.1:").nth(1) {
                let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let _ = tx.send(port.parse::<u16>().unwrap());
            }
        }
        all
    });
    let port = match rx.recv_timeout(std::time::Duration::from_secs(20)) {
        Ok(p) => p,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let log = stderr.join().unwrap();
            panic!(
                "the daemon did not start: {}",
                String::from_utf8_lossy(&log)
            );
        }
    };
    Daemon {
        child,
        port,
        stderr: Some(stderr),
        _home: home,
    }
}

impl Daemon {
    /// SIGTERM (to our own child, by pid), then its whole stderr.
    fn stop(mut self) -> String {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = std::time::Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if start.elapsed() > std::time::Duration::from_secs(20) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let stderr = self.stderr.take().expect("stopped once");
        String::from_utf8_lossy(&stderr.join().unwrap()).into_owned()
    }
}

/// A test that fails half way does not leave its daemon running.
impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every kind of PIN operation, with the values as JSON strings and as
/// base64 CredentialValues, and malformed requests carrying them.
async fn pin_operations(port: u16) {
    let mut c = Client::page(port, ORIGIN).await;
    let b64 = |s: &str| json!({ "type": "pin", "data": base64::engine::general_purpose::STANDARD.encode(s) });
    let piv = |v: serde_json::Value| {
        let mut p = json!({ "reader": PIV, "pin": "pin" });
        p.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        p
    };
    let pgp = |pin: &str, v: serde_json::Value| {
        let mut p = json!({ "reader": PGP, "pin": pin });
        p.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        p
    };
    c.err("login", piv(json!({ "value": "915368" }))).await;
    c.ok("login", piv(json!({ "value": "123456" }))).await;
    c.ok(
        "change",
        piv(json!({ "oldValue": "123456", "newValue": b64("864209") })),
    )
    .await;
    c.ok("login", piv(json!({ "value": "864209" }))).await;
    c.ok("login", piv(json!({ "value": b64("864209") }))).await;
    // A page's PIV PUK is refused before any APDU (its counter cannot be
    // read): parsed all the same, and never logged.
    c.err("login", piv(json!({ "value": "12345678", "so": true })))
        .await;
    c.err("init", piv(json!({ "newValue": "703192" }))).await;
    c.ok("login", piv(json!({ "value": b64("864209") }))).await;
    c.ok(
        "change",
        pgp(
            "user",
            json!({ "oldValue": "123456", "newValue": "s3cr3t-pw1" }),
        ),
    )
    .await;
    c.ok("login", pgp("user", json!({ "value": b64("s3cr3t-pw1") })))
        .await;
    c.ok(
        "change",
        pgp(
            "admin",
            json!({ "oldValue": "12345678", "newValue": b64("adm1n-pw3x") }),
        ),
    )
    .await;
    c.ok(
        "login",
        pgp("user", json!({ "value": "adm1n-pw3x", "so": true })),
    )
    .await;
    c.ok(
        "init",
        pgp("user", json!({ "newValue": b64("n3w-user-pw") })),
    )
    .await;
    // Malformed requests and a batch carrying values.
    c.err(
        "login",
        piv(json!({ "value": { "type": "pin", "data": "915368" } })),
    )
    .await;
    c.err(
        "login",
        json!({ "reader": "Nowhere", "pin": "pin", "value": "915368" }),
    )
    .await;
    c.err("change", piv(json!({ "oldValue": "915368" }))).await;
    let batch = json!([
        { "jsonrpc": "2.0", "id": "b1", "method": "login", "params": piv(json!({ "value": "703192" })) },
        { "jsonrpc": "2.0", "id": "b2", "method": "login", "params": pgp("user", json!({ "value": b64("n3w-user-pw") })) },
    ]);
    c.send_text(batch.to_string()).await;
    let answer = loop {
        let m = c.recv().await.expect("the batch's answer");
        if m.is_array() {
            break m;
        }
    };
    assert_eq!(answer.as_array().unwrap().len(), 2, "{answer}");
    c.ok("logout", piv(json!({}))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_the_daemons_stderr_whatever_the_filter() {
    // `cardgate=trace` is added where the form alone would not make the
    // daemon log at TRACE, so each run provably logs at that level.
    let settings = [
        LogSetting::Env("trace"),
        LogSetting::Env("tungstenite=trace,cardgate=trace"),
        LogSetting::Env("tungstenite::protocol=trace,cardgate=trace"),
        LogSetting::Env("tokio_tungstenite=trace,cardgate=trace"),
        LogSetting::Env("tungstenite::protocol::frame=trace,cardgate=trace"),
        LogSetting::Env("info,tungstenite::protocol=trace,cardgate=trace"),
        LogSetting::Verbose,
        LogSetting::ConfigFile("info,tungstenite::protocol=trace,cardgate=trace"),
    ];
    for setting in &settings {
        let name = match setting {
            LogSetting::Env(s) => format!("CARDGATE_LOG={s}"),
            LogSetting::Verbose => "-vv".into(),
            LogSetting::ConfigFile(s) => format!("log_level = {s:?} in config.toml"),
        };
        let daemon = start_daemon(setting);
        pin_operations(daemon.port).await;
        let log = daemon.stop();
        assert!(log.contains("TRACE"), "{name}: no TRACE output:\n{log}");
        assert!(
            log.contains("vcard command"),
            "{name}: no card traffic in the log"
        );
        for secret in DEMO_SECRETS {
            for form in forms(secret) {
                if let Some(line) = log.lines().find(|l| l.contains(&form)) {
                    panic!("{name}: {secret:?} appears in stderr as {form:?}: {line}");
                }
            }
        }
    }
}
