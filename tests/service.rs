//! The daemon as an installed service, through the real binary: the
//! configuration's precedence and errors, `Type=notify` readiness with a
//! fake `NOTIFY_SOCKET`, systemd socket activation (`LISTEN_FDS` /
//! `LISTEN_PID`, through systemd's own `systemd-socket-activate`) with the
//! idle exit, and wss:// with the certificate from `cardgate tls init`.
//!
//! Every process started here is stopped by its pid before the test ends.

#[path = "common/home.rs"]
mod home;
#[path = "common/net.rs"]
mod net;

use home::{BIN, Home};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn run(mut c: Command) -> (ExitStatus, String, String) {
    let out = c.output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends SIGTERM to a child we started, by its pid.
fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

/// Waits for a child to exit, killing it (by its handle) after `limit`.
/// What an exited child (spawned with a piped stderr) wrote on stderr.
fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr piped")
        .read_to_string(&mut err)
        .unwrap();
    err
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// A minimal JSON-RPC client over any WebSocket stream.
struct Rpc<S> {
    ws: tokio_tungstenite::WebSocketStream<S>,
    next: u64,
}

impl<S> Rpc<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    fn new(ws: tokio_tungstenite::WebSocketStream<S>) -> Self {
        Rpc { ws, next: 1 }
    }

    /// Calls a method that must succeed; returns its result.
    async fn ok(&mut self, method: &str, params: Value) -> Value {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let id = self.next;
        self.next += 1;
        let req = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        self.ws.send(Message::text(req.to_string())).await.unwrap();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("an answer")
                .expect("open")
                .unwrap();
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }
}

async fn ws_connect(port: u16) -> Rpc<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Origin",
        format!("http://127.0.0.1:{port}").parse().unwrap(),
    );
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    Rpc::new(ws)
}

// ---- configuration ----------------------------------------------------------

fn show(home: &Home, extra: &[&str]) -> Value {
    let mut c = home.cardgate();
    c.args(extra).args(["config", "show", "--json"]);
    let (status, out, err) = run(c);
    assert!(status.success(), "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn config_precedence_flag_env_user_system_default() {
    let home = Home::new();
    home.write(
        &home.system_config(),
        "port = 1111\nop_timeout = 7\nlog_level = \"info\"\n[limits]\nrate_burst = 9\n",
    );
    home.write(&home.user_config(), "port = 2222\nlog_level = \"debug\"\n");
    let v = show(&home, &[]);
    let s = &v["settings"];
    assert_eq!(s["port"]["value"], 2222);
    assert_eq!(s["port"]["source"]["kind"], "user");
    assert_eq!(s["op_timeout"]["value"], 7);
    assert_eq!(s["op_timeout"]["source"]["kind"], "system");
    assert_eq!(s["limits.rate_burst"]["value"], 9);
    assert_eq!(s["limits.rate_per_second"]["source"]["kind"], "default");
    assert_eq!(s["log_level"]["value"], "debug");

    // The environment beats the files; -v beats the environment.
    let mut c = home.cardgate();
    c.env("CARDGATE_LOG", "error")
        .args(["config", "show", "--json"]);
    let v: Value = serde_json::from_str(&run(c).1).unwrap();
    assert_eq!(v["settings"]["log_level"]["value"], "error");
    assert_eq!(v["settings"]["log_level"]["source"]["name"], "CARDGATE_LOG");
    let v = show(&home, &["-v"]);
    assert_eq!(v["settings"]["log_level"]["value"], "cardgate=debug");
    assert_eq!(v["settings"]["log_level"]["source"]["kind"], "flag");

    // --config names another user file.
    let other = home.path("other.toml");
    home.write(&other, "port = 3333\n");
    let v = show(&home, &["--config", other.to_str().unwrap()]);
    assert_eq!(v["settings"]["port"]["value"], 3333);
    assert_eq!(v["settings"]["port"]["source"]["file"], json!(other));

    // The text form says where each value came from.
    let mut c = home.cardgate();
    c.args(["config", "show"]);
    let (_, text, _) = run(c);
    let line = text.lines().find(|l| l.starts_with("port = ")).unwrap();
    assert!(line.contains("# user file"), "{line}");
    assert!(
        line.contains(home.user_config().to_str().unwrap()),
        "{line}"
    );
}

#[test]
fn bad_config_is_an_error_with_file_and_line() {
    let home = Home::new();
    home.write(
        &home.user_config(),
        "port = 27183\n\n[limits]\nrate_brust = 5\n",
    );
    for args in [
        &["serve"][..],
        &["demo", "--port", "0"],
        &["config", "show"],
    ] {
        let mut c = home.cardgate();
        c.args(args);
        let (status, _, err) = run(c);
        assert_eq!(status.code(), Some(78), "{args:?}: {err}");
        let want = format!("{}:4:1:", home.user_config().display());
        assert!(err.contains(&want), "{args:?}: {err}");
        assert!(err.contains("rate_brust"), "{err}");
    }
    // A bad system file too, even under a good user file.
    home.write(&home.user_config(), "port = 1\n");
    home.write(&home.system_config(), "op_timeout = \"soon\"\n");
    let mut c = home.cardgate();
    c.args(["config", "show"]);
    let (status, _, err) = run(c);
    assert_eq!(status.code(), Some(78));
    assert!(
        err.contains(&format!("{}:1:14:", home.system_config().display())),
        "{err}"
    );
    // TLS enabled without a certificate: a clear error, not plain ws.
    home.write(&home.system_config(), "");
    home.write(&home.user_config(), "[tls]\nenabled = true\n");
    let mut c = home.cardgate();
    c.args(["demo", "--port", "0"]);
    let (status, _, err) = run(c);
    assert_eq!(status.code(), Some(78), "{err}");
    assert!(err.contains("cardgate tls init"), "{err}");
}

// ---- readiness ---------------------------------------------------------------

/// A fake service manager's notification socket.
struct Notify {
    sock: UnixDatagram,
    path: PathBuf,
}

impl Notify {
    fn new(home: &Home) -> Notify {
        let path = home.path("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Notify { sock, path }
    }

    fn recv(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Waits for READY=1; returns the port from STATUS.
    fn ready(&self) -> u16 {
        let msg = self.recv();
        assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
        let status = msg
            .lines()
            .find_map(|l| l.strip_prefix("STATUS=listening on 127.0.0.1:"))
            .unwrap_or_else(|| panic!("no STATUS in {msg:?}"));
        status.parse().unwrap()
    }
}

/// Starts `cardgate demo --port 0` with a notification socket; returns the
/// child and the port it reported when ready.
fn start_demo(home: &Home, notify: &Notify, extra: &[&str]) -> (Child, u16) {
    let mut c = home.cardgate();
    c.env("NOTIFY_SOCKET", &notify.path)
        .args(["demo", "--port", "0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = c.spawn().unwrap();
    let port = notify.ready();
    (child, port)
}

#[test]
fn notify_ready_only_when_listening_and_stopping_on_term() {
    let home = Home::new();
    let notify = Notify::new(&home);
    let (mut child, port) = start_demo(&home, &notify, &[]);
    // READY=1 came after the sockets were listening: no retry needed.
    let health = http_get(port, "/health").expect("listening when READY=1 arrives");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("cardgate demo reader 0"), "{health}");
    terminate(&child);
    let msg = notify.recv();
    assert!(msg.lines().any(|l| l == "STOPPING=1"), "{msg}");
    let status = wait_exit(&mut child, Duration::from_secs(20)).expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn status_command_reports_a_running_daemon() {
    let home = Home::new();
    let notify = Notify::new(&home);
    let (mut child, port) = start_demo(&home, &notify, &[]);
    let mut c = home.cardgate();
    c.args(["status", "--json", "--port", &port.to_string()]);
    let (status, out, err) = run(c);
    terminate(&child);
    let _ = wait_exit(&mut child, Duration::from_secs(20));
    assert!(status.success(), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["running"], true);
    assert_eq!(v["health"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["health"]["readers"], json!(["cardgate demo reader 0"]));
    // And nobody there.
    let mut c = home.cardgate();
    c.args(["status", "--port", &net::free_port().to_string()]);
    let (status, out, _) = run(c);
    assert_eq!(status.code(), Some(1));
    assert!(out.contains("no cardgate daemon answers"), "{out}");
}

// ---- socket activation -------------------------------------------------------

/// `systemd-socket-activate` (Debian's systemd package): listens, and on
/// the first connection executes the command with the socket as fd 3,
/// `LISTEN_FDS=1` and `LISTEN_PID` set to the command's own pid.
fn socket_activate() -> Option<&'static str> {
    let path = "/usr/bin/systemd-socket-activate";
    if Path::new(path).exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must install the systemd package (systemd-socket-activate)"
    );
    eprintln!("skipped: systemd-socket-activate not installed (apt-get install systemd)");
    None
}

fn wait_for_port(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn socket_activation_serves_the_inherited_socket_then_exits_when_idle() {
    let Some(activate) = socket_activate() else {
        return;
    };
    let home = Home::new();
    let notify = Notify::new(&home);
    let port = net::free_port();
    let mut c = home.cmd(activate);
    // It does not pass NOTIFY_SOCKET on by itself.
    let notify_env = format!("NOTIFY_SOCKET={}", notify.path.display());
    c.args(["-E", &notify_env])
        .args(["-l", &format!("127.0.0.1:{port}"), "--", BIN])
        .args(["demo", "--idle-exit", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    wait_for_port(port);
    // The first connection starts the daemon, on the socket it inherited
    // (its own --port would be 27183).
    let health = http_get(port, "/health").unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("cardgate demo reader 0"), "{health}");
    // systemd-socket-activate replaced itself by cardgate: same pid.
    let reported = notify.ready();
    assert_eq!(reported, port);
    // A WebSocket keeps it alive past the idle period…
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = ws_connect(port).await;
        client.ok("hello", json!({})).await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let r = client.ok("getReaders", json!({})).await;
        assert_eq!(r["readers"][0]["name"], "cardgate demo reader 0");
    });
    assert!(child.try_wait().unwrap().is_none(), "exited while in use");
    // …and once nothing is connected it exits on its own, cleanly.
    let status = wait_exit(&mut child, Duration::from_secs(15)).expect("idle exit");
    assert!(status.success(), "{status:?}");
    let err = stderr_of(&mut child);
    assert!(err.contains("idle for 1 s"), "{err}");
}

#[test]
fn socket_activation_refuses_a_socket_not_on_loopback() {
    let Some(activate) = socket_activate() else {
        return;
    };
    let home = Home::new();
    let port = net::free_port();
    let mut c = home.cmd(activate);
    c.args(["-l", &format!("0.0.0.0:{port}"), "--", BIN, "demo"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    wait_for_port(port);
    let _ = http_get(port, "/health");
    let status = wait_exit(&mut child, Duration::from_secs(15)).expect("exits");
    assert_eq!(status.code(), Some(1));
    let err = stderr_of(&mut child);
    assert!(err.contains("only listens on loopback"), "{err}");
}

// ---- wss ----------------------------------------------------------------------

fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

async fn wss_client(
    port: u16,
    host: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    String,
> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let host_header = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let req = tokio_tungstenite::tungstenite::handshake::client::Request::builder()
        .uri(format!("wss://{host_header}/ws"))
        .header("Host", host_header.clone())
        .header("Origin", format!("https://{host_header}"))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .unwrap();
    let (ws, _) = tokio_tungstenite::client_async(req, tls)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

#[test]
fn wss_with_the_generated_certificate() {
    let home = Home::new();
    let mut c = home.cardgate();
    c.args(["tls", "init"]);
    let (status, out, err) = run(c);
    assert!(status.success(), "{err}");
    assert!(out.contains("certutil"), "{out}");
    let tls_dir = home.path("data/cardgate/tls");
    let ca = tls_dir.join("ca.pem");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tls_dir.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    home.write(&home.user_config(), "[tls]\nenabled = true\n");
    let notify = Notify::new(&home);
    let (mut child, port) = start_demo(&home, &notify, &[]);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            let trusted = client_config(&ca);
            for host in ["127.0.0.1", "localhost", "::1"] {
                if host == "::1" && std::net::TcpListener::bind("[::1]:0").is_err() {
                    continue;
                }
                let ws = wss_client(port, host, trusted.clone())
                    .await
                    .unwrap_or_else(|e| panic!("wss to {host}: {e}"));
                let mut client = Rpc::new(ws);
                let hello = client.ok("hello", json!({})).await;
                assert_eq!(hello["daemon"], "cardgate");
                let r = client.ok("getReaders", json!({})).await;
                assert_eq!(r["readers"][0]["name"], "cardgate demo reader 0");
            }
            // A client that does not trust the CA is refused by TLS itself.
            let other_ca = cardgate::testing::tls_init(&home.path("other-tls")).unwrap();
            let untrusted = client_config(&other_ca);
            let e = wss_client(port, "127.0.0.1", untrusted).await.unwrap_err();
            assert!(e.contains("certificate"), "{e}");
            // Plain ws:// still works on the same port.
            ws_connect(port).await.ok("hello", json!({})).await;
        })
    }));
    terminate(&child);
    let _ = wait_exit(&mut child, Duration::from_secs(20));
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

// ---- service install, journald -------------------------------------------------

#[test]
fn service_install_writes_units_and_runs_systemctl_user() {
    let home = Home::new();
    // A stand-in systemctl that records its arguments.
    let log = home.path("systemctl.log");
    let fake = home.path("systemctl");
    home.write(
        &fake,
        &format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()),
    );
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut c = home.cardgate();
    c.env("CARDGATE_SYSTEMCTL", &fake)
        .args(["service", "install", "--copy"]);
    let (status, out, err) = run(c);
    assert!(status.success(), "{out}{err}");
    let units = home.path("config/systemd/user");
    let service = std::fs::read_to_string(units.join("cardgate.service")).unwrap();
    assert!(
        service.contains(&format!("ExecStart={BIN} serve")),
        "{service}"
    );
    assert!(service.contains("Type=notify"));
    let socket = std::fs::read_to_string(units.join("cardgate.socket")).unwrap();
    assert!(socket.contains("ListenStream=127.0.0.1:27183"));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls,
        "--user daemon-reload\n--user enable --now cardgate.socket\n"
    );

    // No systemctl: the units are there, and the message says it plainly.
    let mut c = home.cardgate();
    c.env("CARDGATE_SYSTEMCTL", home.path("no-such-systemctl"))
        .args(["service", "install", "--copy"]);
    let (status, _, err) = run(c);
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("installed but NOT enabled"), "{err}");
    assert!(err.contains("systemctl was not found"), "{err}");

    // Uninstall removes what install wrote.
    let mut c = home.cardgate();
    c.env("CARDGATE_SYSTEMCTL", &fake)
        .args(["service", "uninstall"]);
    let (status, _, err) = run(c);
    assert!(status.success(), "{err}");
    assert!(!units.join("cardgate.service").exists());
    assert!(!units.join("cardgate.socket").exists());
}

#[test]
fn logs_carry_journald_priorities_under_systemd() {
    use std::os::unix::fs::MetadataExt;
    let home = Home::new();
    let log_path = home.path("stderr.log");
    let file = std::fs::File::create(&log_path).unwrap();
    let meta = file.metadata().unwrap();
    let notify = Notify::new(&home);
    let mut c = home.cardgate();
    c.env("NOTIFY_SOCKET", &notify.path)
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env("CARDGATE_LOG", "info")
        .args(["demo", "--port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::from(file));
    let mut child = c.spawn().unwrap();
    notify.ready();
    terminate(&child);
    let _ = wait_exit(&mut child, Duration::from_secs(20));
    let text = std::fs::read_to_string(&log_path).unwrap();
    let listening = text
        .lines()
        .find(|l| l.contains("listening") && l.starts_with('<'))
        .unwrap_or_else(|| panic!("{text}"));
    // INFO is priority 6; no ANSI colours, no timestamp.
    assert!(listening.starts_with("<6>"), "{listening}");
    assert!(!text.contains('\u{1b}'), "{text}");
}
