//! Where a tier's log lines go: stderr, human-readable or JSON as `logging.format` says;
//! `RUST_LOG` filters (default `info`). Access-log lines use the target `access` (see `access`).
//!
//! **Invariant:** no log line carries a tier secret or a client's `Authorization`, whatever
//! `RUST_LOG` asks for. The libraries under the tiers print request headers whole in their
//! debug and trace lines (Pingora every request it reads and sends upstream, with the tier
//! secret it adds), so their lines below `info` are never written; this crate's own lines
//! never name a header's value.

use cdn_config::LogFormat;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Crates whose lines below `info` print request or response headers (targets are module
/// paths: `pingora_proxy::proxy_h1`, `h2::codec::framed_write`, …).
const PRINT_HEADERS: [&str; 5] = ["pingora", "h2", "hyper", "hyper_util", "reqwest"];

/// Whether a line may be written at all, before `RUST_LOG` has its say.
fn writable(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::INFO || !prints_headers(meta.target())
}

fn prints_headers(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    PRINT_HEADERS
        .iter()
        .any(|name| krate == *name || krate.strip_prefix(name).is_some_and(|r| r.starts_with('_')))
}

/// Installs the process's log subscriber; a second call keeps the first.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Json => lines.json().flatten_event(true).boxed(),
        LogFormat::Text => lines
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter).with_filter(filter_fn(writable)))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_printing_crates_are_held_at_info() {
        for target in [
            "pingora_proxy::proxy_h1",
            "pingora_core::protocols::http::v1::server",
            "pingora",
            "h2::codec::framed_write",
            "hyper::proto::h1::io",
            "hyper_util::client::legacy",
        ] {
            assert!(prints_headers(target), "{target}");
        }
        for target in [
            "access",
            "cdn_proxy::phases",
            "edge_pop::auth",
            "h2o",
            "hyperloop",
        ] {
            assert!(!prints_headers(target), "{target}");
        }
    }
}
