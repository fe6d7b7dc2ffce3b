//! The daemon: HTTP/1.1 on the loopback interface, `/ws` upgraded to the
//! WebSocket protocol, plus the JavaScript client, its types, the demo page
//! and a health check.

mod caller;
pub(crate) mod cmd;
mod credentials;
mod dispatch;
mod handshake;
mod http;
pub(crate) mod hub;
mod logins;
mod operation;
mod session;
mod site;
mod ws;

use crate::pinentry::PinDialog;
use crate::policy::PolicySet;
use crate::security::origin::{OriginGate, OriginsFile};
use crate::service::Service;
pub(crate) use crate::settings::{DEFAULT_OP_TIMEOUT, DEFAULT_PORT, Limits, default_origins_file};
use crate::transport::Backend;
use hub::Hub;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(Debug, Clone)]
/// How to run the daemon: its port, limits, origins, policies and TLS.
pub struct ServerConfig {
    /// 0 picks a free port (tests).
    pub port: u16,
    /// How long a request waits for its card work before it is answered
    /// `TIMEOUT` (the work still completes on the card).
    pub op_timeout: Duration,
    /// The origins allowlist file, re-read when it changes (`None`: none).
    pub origins_file: Option<PathBuf>,
    /// Origins settings given directly (added to the file's).
    pub origins: OriginsFile,
    /// Limits that protect the daemon and the cards from pages.
    pub limits: Limits,
    /// PIN policies (default: the built-in ones; `cardgate serve` adds the
    /// system and user policy files).
    pub policies: Arc<PolicySet>,
    /// Card profiles (default: the built-in ones; `cardgate serve` adds
    /// those of `card_dirs`).
    pub profiles: Arc<crate::card::ProfileSet>,
    /// wss:// on the same port: TLS clients are told apart from plain HTTP
    /// by their first byte (`None`: plain only).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The daemon's PIN dialog (pinentry program and timeout).
    pub pin_dialog: PinDialog,
    /// How long a new connection has, from its accept, to finish its TLS
    /// handshake (if any) and its first request head. Not configurable by
    /// users; tests shorten it.
    #[doc(hidden)]
    pub handshake_timeout: Duration,
    /// How long a write to a WebSocket client may make no progress before
    /// the connection is closed (a client that does not read). Not
    /// configurable by users; tests shorten it.
    #[doc(hidden)]
    pub send_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            port: DEFAULT_PORT,
            op_timeout: DEFAULT_OP_TIMEOUT,
            origins_file: default_origins_file(),
            origins: OriginsFile::default(),
            limits: Limits::default(),
            policies: Arc::new(PolicySet::builtin()),
            profiles: Arc::new(crate::card::ProfileSet::builtin()),
            tls: None,
            pin_dialog: PinDialog::new(None, crate::pinentry::DEFAULT_TIMEOUT),
            handshake_timeout: http::HANDSHAKE_TIMEOUT,
            send_timeout: session::SEND_TIMEOUT,
        }
    }
}

/// A running daemon.
pub struct Server {
    addrs: Vec<SocketAddr>,
    hub: Arc<Hub>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// TCP connections being served (HTTP requests, handshakes).
    active: Arc<AtomicUsize>,
}

impl Server {
    /// Binds `127.0.0.1` and `[::1]` (the latter when the machine has IPv6) and
    /// starts serving. Never listens on any other interface.
    pub async fn start(backend: Arc<dyn Backend>, config: ServerConfig) -> std::io::Result<Server> {
        let v4 = listen(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            config.port,
        ))?;
        let port = v4.local_addr()?.port();
        let mut listeners = vec![v4];
        match listen(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port)) {
            Ok(v6) => listeners.push(v6),
            Err(e) => tracing::warn!(error = %e, "not listening on [::1]"),
        }
        Server::serve(backend, config, listeners)
    }

    /// Serves on listeners made by someone else (systemd socket
    /// activation). Each must be a loopback address, all on one port.
    pub async fn start_on(
        backend: Arc<dyn Backend>,
        config: ServerConfig,
        listeners: Vec<std::net::TcpListener>,
    ) -> std::io::Result<Server> {
        let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
        if listeners.is_empty() {
            return Err(invalid("no listening socket was passed".into()));
        }
        let mut ports = Vec::new();
        let mut tokio_listeners = Vec::new();
        for l in listeners {
            let addr = l.local_addr()?;
            if !addr.ip().is_loopback() {
                return Err(invalid(format!(
                    "refusing the inherited socket on {addr}: cardgate only listens on loopback addresses"
                )));
            }
            ports.push(addr.port());
            l.set_nonblocking(true)?;
            tokio_listeners.push(TcpListener::from_std(l)?);
        }
        if ports.iter().any(|p| *p != ports[0]) {
            return Err(invalid(format!(
                "the inherited sockets listen on different ports {ports:?}; use one port"
            )));
        }
        Server::serve(backend, config, tokio_listeners)
    }

    fn serve(
        backend: Arc<dyn Backend>,
        config: ServerConfig,
        listeners: Vec<TcpListener>,
    ) -> std::io::Result<Server> {
        let port = listeners[0].local_addr()?.port();
        let addrs = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let mut gate = OriginGate::new(config.origins_file, config.origins);
        gate.set_port(port);
        let service =
            Service::with_policies(backend.clone(), config.policies).with_profiles(config.profiles);
        let hub = Hub::start(hub::HubParts {
            backend,
            service,
            op_timeout: config.op_timeout,
            gate,
            port,
            limits: config.limits,
            dialog: config.pin_dialog,
        })?;
        let (shutdown, _) = watch::channel(false);
        let active = Arc::new(AtomicUsize::new(0));
        let tls = config.tls.map(tokio_rustls::TlsAcceptor::from);
        let timeouts = http::Timeouts {
            handshake: config.handshake_timeout,
            send: config.send_timeout,
        };
        let mut tasks = JoinSet::new();
        for listener in listeners {
            tasks.spawn(http::accept_loop(
                listener,
                hub.clone(),
                shutdown.subscribe(),
                tls.clone(),
                active.clone(),
                timeouts,
            ));
        }
        tracing::info!(port, tls = tls.is_some(), "listening");
        Ok(Server {
            addrs,
            hub,
            shutdown,
            tasks,
            active,
        })
    }

    /// Nothing is connected: no HTTP request or handshake in progress, no
    /// WebSocket open.
    pub fn is_idle(&self) -> bool {
        self.active.load(Ordering::SeqCst) == 0 && self.hub.connection_count() == 0
    }

    /// The port the daemon listens on (its first address's).
    pub fn port(&self) -> u16 {
        self.addrs[0].port()
    }

    /// The addresses the daemon listens on.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// What the daemon's connections share.
    #[cfg(feature = "test-support")]
    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Stops accepting, lets open requests finish, closes every WebSocket,
    /// then logs out every PIN on every card.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.hub.stop_watching();
        let hub = self.hub.clone();
        let _ = tokio::task::spawn_blocking(move || logout_everything(&hub)).await;
        tracing::info!("stopped");
    }
}

/// Connections the kernel queues for `accept` (the limit of open
/// connections, `limits.max_connections`, is 1024 by default). The
/// standard library's `bind` listens with 128: with a burst of a few
/// hundred page loads the queue overflowed and the kernel dropped the SYNs,
/// which clients retry only after 1 s.
const LISTEN_BACKLOG: u32 = 1024;

/// Binds `addr` (with SO_REUSEADDR, as `std` does) and listens.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Ends every verified state the daemon's clients created.
pub(crate) fn logout_everything(hub: &Hub) {
    for reader in hub.service.reader_list().readers {
        if reader.atr.is_none() {
            continue;
        }
        let result = hub.service.with_engine(&reader.name, logins::logout_all);
        if let Err(e) = result {
            tracing::debug!(reader = reader.name, error = %e, "logout at shutdown failed");
        }
    }
}

/// Waits for SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
