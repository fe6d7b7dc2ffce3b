//! `cardgate serve` and `cardgate demo`.

use crate::config::{Config, Overrides};
use crate::daemon::{DemoCard, demo_sim, server_config};
use crate::server::{Server, shutdown_signal};
use crate::transport::Backend;
use clap::Args;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The daemon's flags, declared with the configuration keys they set.
#[derive(Args)]
pub(super) struct ServeArgs {
    #[command(flatten)]
    flags: Overrides,
}

impl ServeArgs {
    /// The values given on the command line.
    pub(super) fn overrides(&self) -> Overrides {
        self.flags.clone()
    }
}

#[derive(Args)]
pub(super) struct DemoArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Cards to simulate, one reader each (repeatable). Default: one PIV card.
    #[arg(long = "card", value_enum)]
    cards: Vec<DemoCard>,
    /// Shorthand for `--card openpgp`.
    #[arg(long)]
    openpgp: bool,
}

/// Listening sockets passed by systemd (`LISTEN_FDS`, `LISTEN_PID`).
/// Read before any thread starts: the variables are removed.
fn inherited_listeners() -> Result<Vec<std::net::TcpListener>, String> {
    let mut fds = listenfd::ListenFd::from_env();
    let mut out = Vec::new();
    for i in 0..fds.len() {
        match fds.take_tcp_listener(i) {
            Ok(Some(l)) => out.push(l),
            Ok(None) => {}
            Err(e) => return Err(format!("inherited socket {i} is not a TCP listener: {e}")),
        }
    }
    Ok(out)
}

fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// Runs the daemon until SIGINT/SIGTERM (or, when socket-activated, until
/// it has been idle for `idle_exit`).
fn run(
    backend: Arc<dyn Backend>,
    config: &Config,
    inherited: Vec<std::net::TcpListener>,
    banner: impl FnOnce(u16, bool),
) -> ExitCode {
    let server_config = match server_config(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(super::exit::CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let idle_exit = config.idle_exit;
    runtime.block_on(async move {
        let port = server_config.port;
        let tls = server_config.tls.is_some();
        let activated = !inherited.is_empty();
        let started = if activated {
            Server::start_on(backend, server_config, inherited).await
        } else {
            Server::start(backend, server_config).await
        };
        let server = match started {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                eprintln!(
                    "error: port {port} on 127.0.0.1 is in use: is cardgate already running (`cardgate status`)? Otherwise pick another port (`port` in config.toml or --port)"
                );
                notify(&[sd_notify::NotifyState::Errno(98)]);
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("error: cannot start on 127.0.0.1:{port}: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Ready only now that the sockets accept connections.
        let status = format!("listening on 127.0.0.1:{}", server.port());
        notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ]);
        banner(server.port(), tls);
        let idle = async {
            if !activated || idle_exit.is_zero() {
                return std::future::pending().await;
            }
            let tick = (idle_exit / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
            let mut since: Option<tokio::time::Instant> = None;
            loop {
                tokio::time::sleep(tick).await;
                if !server.is_idle() {
                    since = None;
                    continue;
                }
                let start = *since.get_or_insert_with(tokio::time::Instant::now);
                if start.elapsed() + tick > idle_exit {
                    break;
                }
            }
        };
        tokio::select! {
            () = shutdown_signal() => eprintln!("shutting down"),
            () = idle => eprintln!("idle for {} s; exiting (systemd starts cardgate again on the next connection)", idle_exit.as_secs()),
        }
        notify(&[sd_notify::NotifyState::Stopping]);
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

fn url(port: u16, tls: bool) -> String {
    if tls {
        format!("ws://127.0.0.1:{port}/ws and wss://127.0.0.1:{port}/ws")
    } else {
        format!("ws://127.0.0.1:{port}/ws")
    }
}

/// Sockets from systemd, or exit status 1 when they cannot be used.
pub(super) fn take_inherited() -> Result<Vec<std::net::TcpListener>, ExitCode> {
    inherited_listeners().map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

pub(super) fn serve(config: &Config, inherited: Vec<std::net::TcpListener>) -> ExitCode {
    let backend: Arc<dyn Backend> = Arc::new(crate::transport::pcsc::PcscBackend::new());
    run(backend, config, inherited, |port, tls| {
        eprintln!(
            "cardgate {} listening on {}",
            env!("CARGO_PKG_VERSION"),
            url(port, tls)
        );
        eprintln!("demo page: http://127.0.0.1:{port}/demo");
    })
}

/// The flags `demo` shares with `serve`.
impl DemoArgs {
    pub(super) fn serve_args(&self) -> &ServeArgs {
        &self.serve
    }
}

pub(super) fn demo(
    args: DemoArgs,
    config: &Config,
    inherited: Vec<std::net::TcpListener>,
) -> ExitCode {
    let mut cards = args.cards.clone();
    if args.openpgp {
        cards.push(DemoCard::Openpgp);
    }
    if cards.is_empty() {
        cards.push(DemoCard::Piv);
    }
    let (sim, lines) = demo_sim(&cards);
    run(Arc::new(sim), config, inherited, move |port, _tls| {
        eprintln!("cardgate demo: simulated readers and cards (factory default PINs):");
        for l in &lines {
            eprintln!("{l}");
        }
        eprintln!("open http://127.0.0.1:{port}/demo  (Ctrl-C to stop)");
    })
}
