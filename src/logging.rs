//! Log setup. Whatever the user asks for (`-v`, `CARDGATE_LOG`), the
//! WebSocket library's frame tracing stays off: at TRACE it prints whole
//! frame payloads, which carry the PINs pages send.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;

/// Libraries whose logs may contain message payloads, and the most verbose
/// level they are ever allowed.
const PAYLOAD_LOGGERS: [&str; 2] = ["tungstenite=info", "tokio_tungstenite=info"];

/// An env-filter from `spec` (e.g. "warn", "cardgate=trace", "trace") with
/// the payload loggers capped.
pub fn filter(spec: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("warn"));
    for d in PAYLOAD_LOGGERS {
        if let Ok(d) = d.parse::<Directive>() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

/// Logs to stderr: `CARDGATE_LOG` if set, else by verbosity (0 warn,
/// 1 debug, 2+ trace for cardgate).
pub fn init(verbose: u8) {
    let spec = std::env::var("CARDGATE_LOG").unwrap_or_else(|_| {
        match verbose {
            0 => "warn",
            1 => "cardgate=debug",
            _ => "cardgate=trace",
        }
        .to_string()
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(&spec))
        .with_writer(std::io::stderr)
        .try_init();
}
