//! `cardgate serve` and `cardgate demo`.

use crate::server::{DEFAULT_PORT, Server, ServerConfig, shutdown_signal};
use crate::transport::Backend;
use crate::transport::sim::SimBackend;
use crate::vcard::VirtualCard;
use crate::vcard::config::CardConfig;
use clap::{Args, ValueEnum};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    /// Port on 127.0.0.1 and [::1].
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Seconds a card operation may take before its caller gets TIMEOUT.
    #[arg(long, default_value_t = 30)]
    op_timeout: u64,
    /// The origins allowlist (default: origins.toml in the user's config
    /// directory; managed with `cardgate origins`).
    #[arg(long, value_name = "FILE")]
    origins_file: Option<std::path::PathBuf>,
    /// The pinentry program for the daemon's PIN dialog (default: found
    /// like gpg-agent does: PINENTRY_PROGRAM, gpg-agent.conf, PATH).
    #[arg(long, value_name = "PROGRAM")]
    pinentry: Option<std::path::PathBuf>,
    /// Seconds the user has to answer the PIN dialog.
    #[arg(long, default_value_t = 60)]
    pin_timeout: u64,
    /// Pages from origins not on the allowlist: refuse them, or ask the user
    /// (allow once / always / deny) through the PIN dialog program.
    #[arg(long, value_enum, default_value_t = UnknownOrigins::Refuse)]
    unknown_origins: UnknownOrigins,
}

#[derive(Clone, Copy, ValueEnum)]
enum UnknownOrigins {
    Refuse,
    Prompt,
}

#[derive(Clone, Copy, ValueEnum)]
enum DemoCard {
    Piv,
    Openpgp,
}

#[derive(Args)]
pub struct DemoArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Cards to simulate, one reader each (repeatable). Default: one PIV card.
    #[arg(long = "card", value_enum)]
    cards: Vec<DemoCard>,
    /// Shorthand for `--card openpgp`.
    #[arg(long)]
    openpgp: bool,
}

fn config(args: &ServeArgs) -> ServerConfig {
    let defaults = ServerConfig::default();
    ServerConfig {
        port: args.port,
        op_timeout: Duration::from_secs(args.op_timeout.max(1)),
        origins_file: args.origins_file.clone().or(defaults.origins_file),
        origins: defaults.origins,
        limits: crate::server::Limits {
            consent: match args.unknown_origins {
                UnknownOrigins::Refuse => crate::server::ConsentMode::Refuse,
                UnknownOrigins::Prompt => crate::server::ConsentMode::Prompt,
            },
            ..defaults.limits
        },
        policies: super::policy::load(),
        pin_dialog: crate::pinentry::PinDialog::new(
            args.pinentry.clone(),
            Duration::from_secs(args.pin_timeout.max(1)),
        ),
    }
}

/// Runs the daemon until SIGINT/SIGTERM.
fn run(backend: Arc<dyn Backend>, config: ServerConfig, banner: impl FnOnce(u16)) -> ExitCode {
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
    runtime.block_on(async move {
        let port = config.port;
        let server = match Server::start(backend, config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot listen on 127.0.0.1:{port}: {e}");
                return ExitCode::FAILURE;
            }
        };
        banner(server.port());
        shutdown_signal().await;
        eprintln!("shutting down");
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

pub fn serve(args: ServeArgs) -> ExitCode {
    let backend: Arc<dyn Backend> = Arc::new(crate::transport::pcsc::PcscBackend::new());
    run(backend, config(&args), |port| {
        eprintln!(
            "cardgate {} listening on ws://127.0.0.1:{port}/ws",
            env!("CARGO_PKG_VERSION")
        );
        eprintln!("demo page: http://127.0.0.1:{port}/demo");
    })
}

pub fn demo(args: DemoArgs) -> ExitCode {
    let mut cards = args.cards.clone();
    if args.openpgp {
        cards.push(DemoCard::Openpgp);
    }
    if cards.is_empty() {
        cards.push(DemoCard::Piv);
    }
    let sim = SimBackend::new();
    let mut lines = Vec::new();
    for (i, card) in cards.iter().enumerate() {
        let reader = format!("cardgate demo reader {i}");
        sim.add_reader(&reader);
        let (config, pins) = match card {
            DemoCard::Piv => (CardConfig::piv(), "PIV card: PIN 123456, PUK 12345678"),
            DemoCard::Openpgp => (
                CardConfig::openpgp(),
                "OpenPGP card: user PIN 123456, admin PIN 12345678",
            ),
        };
        if sim.insert_card(&reader, VirtualCard::new(config)).is_err() {
            return ExitCode::FAILURE;
        }
        lines.push(format!("  {reader}: {pins}"));
    }
    run(Arc::new(sim), config(&args.serve), move |port| {
        eprintln!("cardgate demo: simulated readers and cards (factory default PINs):");
        for l in &lines {
            eprintln!("{l}");
        }
        eprintln!("open http://127.0.0.1:{port}/demo  (Ctrl-C to stop)");
    })
}
