//! Log setup. Whatever the user asks for (`-v`, `CARDGATE_LOG`, `log_level`),
//! the WebSocket library's frame tracing stays off: at TRACE it prints whole
//! frame payloads, which carry the PINs pages send.
//!
//! Under systemd (stderr is the journal stream named by `JOURNAL_STREAM`)
//! each line starts with its syslog priority (`<3>` error … `<7>` debug),
//! which journald records as the entry's priority, and carries neither
//! colours nor a timestamp (the journal has its own). Otherwise lines are
//! for humans.

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

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

/// The log filter for `-v` (1) and `-vv` (2+); `None` for 0.
pub fn verbosity(verbose: u8) -> Option<String> {
    match verbose {
        0 => None,
        1 => Some("cardgate=debug".into()),
        _ => Some("cardgate=trace".into()),
    }
}

/// Logs to stderr: `CARDGATE_LOG` if set, else by verbosity (0 warn,
/// 1 debug, 2+ trace for cardgate).
pub fn init(verbose: u8) {
    let spec = std::env::var("CARDGATE_LOG")
        .ok()
        .or_else(|| verbosity(verbose))
        .unwrap_or_else(|| "warn".into());
    init_with(&spec);
}

/// Logs to stderr with this filter, in the journal's format when stderr is
/// the journal.
pub fn init_with(spec: &str) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(spec))
        .with_writer(std::io::stderr);
    let _ = if stderr_is_journal() {
        builder
            .with_ansi(false)
            .event_format(JournalFormat(
                Format::default()
                    .without_time()
                    .with_level(false)
                    .with_ansi(false),
            ))
            .try_init()
    } else {
        builder.try_init()
    };
}

/// Is stderr the journal stream systemd connected (`JOURNAL_STREAM` is
/// `device:inode` of that stream)?
pub fn stderr_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata("/proc/self/fd/2") {
            return value == format!("{}:{}", m.dev(), m.ino());
        }
    }
    !value.is_empty()
}

/// The syslog priority journald reads from a `<N>` line prefix.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Prefixes each line with `<priority>` for journald.
struct JournalFormat<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}
