//! Where a tier's log lines go: stderr, human-readable or JSON as `logging.format` says;
//! `RUST_LOG` filters (default `info`). Access-log lines use the target `access` (see `access`).

use cdn_config::LogFormat;

/// Installs the process's log subscriber; a second call keeps the first.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}
