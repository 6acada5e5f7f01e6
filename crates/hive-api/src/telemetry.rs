//! Logging setup: `tracing` to stderr, as text or one JSON object per line, filtered by
//! `RUST_LOG` (default `info`). Request spans carry the request id; nothing logs secrets.
//!
//! Lines are written by a background thread (`tracing-appender`), so a request never waits
//! on stderr; the writer is lossless (a full buffer slows logging down rather than dropping
//! lines), and the returned guard flushes what is left when the process ends.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Install the global subscriber. Keep the returned guard alive for the life of the process
/// (dropping it flushes the log); `None` when a subscriber was already installed (tests).
#[must_use = "dropping the guard stops the log writer"]
pub fn init(format: LogFormat) -> Option<WorkerGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    }
    .is_ok();
    installed.then_some(guard)
}
