//! The daemon the native-messaging host relays to: a WebSocket to
//! `ws://127.0.0.1:PORT/ws` per session, with the page's origin as the
//! `Origin` header, and the daemon started on demand when nothing listens.
//!
//! Starting it: with `cardgate.socket` installed (and not `--demo`), the
//! host asks systemd to start the socket unit, exactly what would have
//! happened at login had it been enabled, so the daemon stays systemd's
//! (journal, idle exit, restarts). Otherwise it spawns `cardgate serve`
//! (`cardgate demo` for `--demo`) itself with the same configuration, in
//! a process group of its own and with no standard streams, so it outlives
//! the host as a socket-activated daemon would. Either way the host then
//! waits, bounded, until the port accepts connections; concurrent sessions
//! start it once.

use serde_json::Value;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A relayed session's connection to the daemon.
pub(crate) type DaemonSocket = WebSocketStream<TcpStream>;

/// How long a TCP connection to the daemon's port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the daemon may take to accept the WebSocket once connected.
/// Long: with `origins.unknown = "prompt"` the daemon asks the user first.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(150);
/// How long a daemon started on demand may take to listen.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `systemctl --user start cardgate.socket` may take.
const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a session could not be relayed: the `refused` envelope's code and
/// message.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    /// The stable code, e.g. `DAEMON_UNREACHABLE`.
    pub code: String,
    /// What went wrong, for the user.
    pub message: String,
}

impl Refusal {
    fn unreachable(message: impl Into<String>) -> Refusal {
        Refusal {
            code: "DAEMON_UNREACHABLE".into(),
            message: message.into(),
        }
    }
}

/// What the host runs when no daemon listens.
#[derive(Debug, Clone)]
pub(crate) struct Starter {
    /// The `cardgate` executable.
    pub exe: PathBuf,
    /// Arguments before the subcommand (`--config FILE`).
    pub global_args: Vec<OsString>,
    /// `cardgate demo` with both simulated cards instead of `cardgate serve`.
    pub demo: bool,
}

/// Where the daemon is, and how to start it.
pub(crate) struct Upstream {
    port: u16,
    starter: Option<Starter>,
    /// Held while a daemon is being started: sessions opened meanwhile
    /// wait for it instead of starting another.
    starting: tokio::sync::Mutex<()>,
}

enum Attempt {
    /// Nothing listens on the port (or not yet).
    Nothing(String),
    Refused(Refusal),
}

impl Upstream {
    /// The daemon on `port`; `starter` starts one when none listens
    /// (`None`: never start one).
    pub(crate) fn new(port: u16, starter: Option<Starter>) -> Upstream {
        Upstream {
            port,
            starter,
            starting: tokio::sync::Mutex::new(()),
        }
    }

    /// A WebSocket to the daemon for a page of `origin` (serialised, as
    /// a browser sends it), starting the daemon first if nothing listens.
    pub(crate) async fn connect(&self, origin: &str) -> Result<DaemonSocket, Refusal> {
        let first = match self.attempt(origin).await {
            Ok(ws) => return Ok(ws),
            Err(Attempt::Refused(r)) => return Err(r),
            Err(Attempt::Nothing(why)) => why,
        };
        let Some(starter) = &self.starter else {
            return Err(Refusal::unreachable(self.unreachable_message(&first)));
        };
        let _starting = self.starting.lock().await;
        // Another session may have started it while this one waited.
        if listening(self.port).await {
            return self.finish(origin).await;
        }
        self.start(starter).await?;
        self.finish(origin).await
    }

    async fn finish(&self, origin: &str) -> Result<DaemonSocket, Refusal> {
        match self.attempt(origin).await {
            Ok(ws) => Ok(ws),
            Err(Attempt::Refused(r)) => Err(r),
            Err(Attempt::Nothing(why)) => Err(Refusal::unreachable(self.unreachable_message(&why))),
        }
    }

    fn unreachable_message(&self, why: &str) -> String {
        format!(
            "the cardgate daemon is not reachable on 127.0.0.1:{} ({why}); start it with `cardgate serve`",
            self.port
        )
    }

    async fn attempt(&self, origin: &str) -> Result<DaemonSocket, Attempt> {
        let connect = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect(("127.0.0.1", self.port)),
        );
        let tcp = match connect.await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(Attempt::Nothing(e.to_string())),
            Err(_) => return Err(Attempt::Nothing("the connection timed out".into())),
        };
        let _ = tcp.set_nodelay(true);
        let url = format!("ws://127.0.0.1:{}/ws", self.port);
        let mut request = url
            .into_client_request()
            .map_err(|e| Attempt::Refused(Refusal::unreachable(e.to_string())))?;
        let value = HeaderValue::from_str(origin).map_err(|_| {
            Attempt::Refused(Refusal {
                code: "ORIGIN_NOT_ALLOWED".into(),
                message: format!("{origin:?} is not a valid origin"),
            })
        })?;
        request.headers_mut().insert("Origin", value);
        // The daemon's answers are bounded by its own limits; a page's
        // messages over 64 KiB go through so that the daemon closes the
        // session with 1009 after the answers in flight, as for a page.
        let config = WebSocketConfig::default().max_message_size(Some(super::MAX_OUT_FRAME));
        let handshake = tokio_tungstenite::client_async_with_config(request, tcp, Some(config));
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(e)) => Err(Attempt::Refused(refusal_of(e))),
            Err(_) => Err(Attempt::Refused(Refusal::unreachable(
                "the cardgate daemon did not accept the connection in time",
            ))),
        }
    }

    /// Starts the daemon and waits until it listens.
    async fn start(&self, starter: &Starter) -> Result<(), Refusal> {
        if !starter.demo && socket_unit_installed() {
            match systemctl_start().await {
                Ok(()) => {
                    tracing::info!("started cardgate.socket");
                    return self.wait_listening(None).await.map_err(|why| {
                        Refusal::unreachable(format!(
                            "cardgate.socket was started but nothing listens on 127.0.0.1:{} ({why}); its ListenStream= must match `port` in config.toml",
                            self.port
                        ))
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start cardgate.socket; starting the daemon directly")
                }
            }
        }
        let mut command = Command::new(&starter.exe);
        command.args(&starter.global_args);
        if starter.demo {
            command.args(["demo", "--card", "piv", "--card", "openpgp"]);
        } else {
            command.arg("serve");
        }
        command.arg("--port").arg(self.port.to_string());
        // Not the browser's pipes (stdout is the native-messaging stream),
        // and not the host's process group: the daemon outlives the host.
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES");
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().map_err(|e| {
            Refusal::unreachable(format!(
                "cannot start the cardgate daemon ({}): {e}",
                starter.exe.display()
            ))
        })?;
        let pid = child.id();
        tracing::info!(pid, demo = starter.demo, "started the daemon");
        let result = self.wait_listening(Some(child)).await;
        result.map_err(|why| {
            Refusal::unreachable(format!(
                "the cardgate daemon started on demand does not listen on 127.0.0.1:{} ({why}); run `cardgate serve` to see why",
                self.port
            ))
        })
    }

    /// Polls the port until it accepts a connection, for at most
    /// [`START_TIMEOUT`]; a spawned daemon that exits meanwhile ends the
    /// wait. The child is then left to run, reaped by a thread of its own.
    async fn wait_listening(&self, mut child: Option<Child>) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let outcome = loop {
            if listening(self.port).await {
                break Ok(());
            }
            if let Some(c) = child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                break Err(format!("it exited: {status}"));
            }
            if tokio::time::Instant::now() >= deadline {
                break Err(format!("not listening after {} s", START_TIMEOUT.as_secs()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if let Some(mut c) = child {
            // Reaps it when it exits while the host still runs.
            std::thread::spawn(move || {
                let _ = c.wait();
            });
        }
        outcome
    }
}

/// True when something accepts connections on the port.
async fn listening(port: u16) -> bool {
    matches!(
        tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(("127.0.0.1", port))).await,
        Ok(Ok(_))
    )
}

/// The daemon's refusal of a handshake (`403`/`503` with `{"code", "message"}`)
/// as the page is told it.
fn refusal_of(e: tokio_tungstenite::tungstenite::Error) -> Refusal {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Http(response) => {
            let body: Option<Value> = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok());
            let field = |k: &str| {
                body.as_ref()
                    .and_then(|b| b.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            match field("code") {
                Some(code) => Refusal {
                    code,
                    message: field("message").unwrap_or_default(),
                },
                None => Refusal::unreachable(format!(
                    "the daemon refused the connection: HTTP {}",
                    response.status()
                )),
            }
        }
        other => Refusal::unreachable(format!("the daemon's handshake failed: {other}")),
    }
}

/// `cardgate.socket` is installed for this user or by the package.
fn socket_unit_installed() -> bool {
    let user = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("systemd/user/cardgate.socket"));
    user.into_iter()
        .chain([
            PathBuf::from("/etc/systemd/user/cardgate.socket"),
            PathBuf::from("/usr/lib/systemd/user/cardgate.socket"),
        ])
        .any(|p| p.exists())
}

async fn systemctl_start() -> Result<(), String> {
    let mut child = Command::new("systemctl")
        .args(["--user", "start", "cardgate.socket"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + SYSTEMCTL_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(s)) if s.success() => return Ok(()),
            Ok(Some(s)) => return Err(format!("systemctl exited with {s}")),
            Ok(None) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("systemctl did not finish in time".into());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}
