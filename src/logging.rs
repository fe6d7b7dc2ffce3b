//! Log setup. Whatever the user asks for (`-v`, `CARDGATE_LOG`, `log_level`),
//! the WebSocket library's logs never reach any output: at TRACE it prints
//! whole frames and messages, which carry the PINs pages send. No filter
//! directive is relied on for that (a more specific one, such as
//! `tungstenite::protocol=trace`, overrides a cap): the libraries log
//! through the `log` crate, and the `log` → `tracing` bridge installed here
//! drops every record of theirs before any filter sees it. The subscriber
//! is installed without `tracing-subscriber`'s own bridge (`try_init` would
//! add one that forwards everything).
//!
//! Under systemd (stderr is the journal stream named by `JOURNAL_STREAM`)
//! each line starts with its syslog priority (`<3>` error … `<7>` debug),
//! which journald records as the entry's priority, and carries neither
//! colours nor a timestamp (the journal has its own). Otherwise lines are
//! for humans.

use tracing::{Event, Level, Subscriber};
use tracing_log::AsLog;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Crates whose `log` records are never forwarded, at any level: the
/// WebSocket library logs frame and message payloads (PINs). Matched as
/// a prefix of the record's target (`tungstenite::protocol::frame` …).
/// The other `log` user in the daemon, rustls, logs no payloads; hyper and
/// httparse do not log at all (hyper's `tracing` feature is off).
pub(crate) const SILENCED_CRATES: [&str; 2] = ["tungstenite", "tokio_tungstenite"];

/// An env-filter from `spec` (e.g. "warn", "cardgate=trace", "trace");
/// "warn" if `spec` is not a filter.
pub(crate) fn filter(spec: &str) -> EnvFilter {
    EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("warn"))
}

/// The log filter for `-v` (1) and `-vv` (2+); `None` for 0.
pub(crate) fn verbosity(verbose: u8) -> Option<String> {
    match verbose {
        0 => None,
        1 => Some("cardgate=debug".into()),
        _ => Some("cardgate=trace".into()),
    }
}

/// Logs to stderr: `CARDGATE_LOG` if set, else by verbosity (0 warn,
/// 1 debug, 2+ trace for cardgate).
pub(crate) fn init(verbose: u8) {
    let spec = std::env::var("CARDGATE_LOG")
        .ok()
        .or_else(|| verbosity(verbose))
        .unwrap_or_else(|| "warn".into());
    init_with(&spec);
}

/// Logs to stderr with this filter, in the journal's format when stderr is
/// the journal.
pub(crate) fn init_with(spec: &str) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(spec))
        .with_writer(std::io::stderr);
    if stderr_is_journal() {
        install(
            builder
                .with_ansi(false)
                .event_format(JournalFormat(
                    Format::default()
                        .without_time()
                        .with_level(false)
                        .with_ansi(false),
                ))
                .finish(),
        );
    } else {
        install(builder.finish());
    }
}

/// Logs with this filter to `writer` (tests read what the daemon would
/// print); set up exactly as `init_with`, the payload loggers silenced.
/// `false` if a subscriber was already installed.
#[cfg(feature = "test-support")]
pub fn init_with_writer<W>(spec: &str, writer: W) -> bool
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    install(
        tracing_subscriber::fmt()
            .with_env_filter(filter(spec))
            .with_writer(writer)
            .with_ansi(false)
            .finish(),
    )
}

/// Installs `subscriber` as the global default, then the `log` bridge
/// that never forwards [`SILENCED_CRATES`].
fn install<S>(subscriber: S) -> bool
where
    S: Subscriber + Send + Sync + 'static,
{
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        return false;
    }
    let mut bridge = tracing_log::LogTracer::builder()
        // After the subscriber: its most verbose level is the `log` crate's.
        .with_max_level(tracing::level_filters::LevelFilter::current().as_log());
    for name in SILENCED_CRATES {
        bridge = bridge.ignore_crate(name);
    }
    // Fails only if a `log` logger is already set: none is, and a second
    // one could not be installed over it anyway.
    let _ = bridge.init();
    true
}

/// Is stderr the journal stream systemd connected (`JOURNAL_STREAM` is
/// `device:inode` of that stream)?
pub(crate) fn stderr_is_journal() -> bool {
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
pub(crate) fn priority(level: &Level) -> u8 {
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
